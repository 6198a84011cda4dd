"""Fixtures of the browser tests: a tiny real run, headless Chromium, and screenshot storage.

Playwright is imported inside the fixtures, so `make test` (without the `browser` extra)
still collects this folder and deselects its tests by their `browser` marker.
Setup on a fresh Debian machine: `.ci/browser-setup.sh`.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tiny_run import make_tiny_dataset, one_torch_thread, tiny_overrides

CHROMIUM = Path("/usr/bin/chromium")
# Chromium refuses to start as root with its sandbox on, so CI (root) runs it without. No GPU,
# and none of the background services that contact Google.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
LOCAL_HOSTS = {"127.0.0.1", "localhost"}


@pytest.fixture(scope="session")
def screenshot_dir(tmp_path_factory) -> Path:
    """Folder for the screenshots: $BROWSER_SCREENSHOTS when set, else a pytest temp folder."""
    chosen = os.environ.get("BROWSER_SCREENSHOTS")
    folder = Path(chosen) if chosen else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    print(f"\nbrowser screenshots: {folder}")
    return folder


@pytest.fixture(scope="session")
def served_root(tmp_path_factory) -> Path:
    """A project-like folder for JupyterLab and TensorBoard: `notebooks/` and `runs/`."""
    root = tmp_path_factory.mktemp("lab")
    (root / "notebooks").mkdir()
    (root / "runs").mkdir()
    return root


@pytest.fixture(scope="session")
def tiny_run(served_root, facegood_dir, tmp_path_factory) -> Path:
    """A real 3-epoch run with histograms and sample predictions at every epoch, scalars at every step."""
    from workbench.trainer import train

    data = make_tiny_dataset(facegood_dir, tmp_path_factory.mktemp("clips"))
    overrides = tiny_overrides(data, served_root / "runs", tmp_path_factory.mktemp("features"),
                               training__max_epochs=3, logging__figure_freq=1, logging__histogram_freq=1,
                               logging__audio_freq=0, logging__log_freq=1)
    with one_torch_thread():
        run_dir = train(None, overrides)
    assert sorted(p.name for p in (run_dir / "samples").glob("epoch_*.npz")) == \
        ["epoch_0000.npz", "epoch_0001.npz", "epoch_0002.npz"]
    return run_dir


@pytest.fixture(scope="session")
def chromium():
    """Headless Chromium from Debian's package, driven by Playwright (which downloads no browser)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is not installed; run .ci/browser-setup.sh or make test-browser")
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} not found; run .ci/browser-setup.sh (apt-get install chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(chromium, screenshot_dir, request):
    """A fresh page that may load only 127.0.0.1; `page.blocked_urls` lists what it tried elsewhere.

    The page's final state is saved as `<test name>-end.png`, which shows where a failed test stopped.
    """
    context = chromium.new_context(viewport={"width": 1600, "height": 1400})
    blocked: list[str] = []

    def guard(route):
        if urlsplit(route.request.url).hostname in LOCAL_HOSTS or route.request.url.startswith(("data:", "blob:")):
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    context.route("**/*", guard)
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.blocked_urls = blocked
    try:
        yield page
    finally:
        page.screenshot(path=screenshot_dir / f"{request.node.name}-end.png", full_page=True)
        context.close()

