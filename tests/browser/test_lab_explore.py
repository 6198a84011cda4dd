"""JupyterLab in headless Chromium: run `explore_run.ipynb` on a real run and use its prediction viewer.

The test opens a copy of the notebook whose `run_dir` parameter names a tiny run, runs all
cells from the Run menu, screenshots the prediction viewer, moves its epoch slider with the
keyboard, and checks that the plots were redrawn. The executed notebook, saved from Lab,
must hold no error output.
"""

from __future__ import annotations

import io
import json
import os
import re
import secrets
import sys
from pathlib import Path

import pytest
from PIL import Image, ImageChops

from .background import background_server
from workbench.tensorboard import find_free_port

pytestmark = pytest.mark.browser

REPO_ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = "notebooks/explore_run.ipynb"
VIEWER_TITLE = "Predicted vs target of"
TRACEBACK = "Traceback (most recent call last)"
KERNEL_IDLE = "Python 3 (ipykernel) | Idle"  # the status bar once the kernel is up and not busy

# Plugins that fetch from the internet, or pop up a question about doing so, on a fresh Lab.
DISABLED_PLUGINS = ["@jupyterlab/apputils-extension:announcements"]


def _notebook_for_run(served_root: Path, run_dir: Path) -> Path:
    """Copy the explore notebook into `served_root`, with `run_dir` set to the run (relative path)."""
    notebook = json.loads((REPO_ROOT / NOTEBOOK).read_text())
    cell = next(c for c in notebook["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
    source = "".join(cell["source"])
    relative = run_dir.relative_to(served_root).as_posix()
    edited, count = re.subn(r'^run_dir: str = ""', f'run_dir: str = "{relative}"', source, flags=re.MULTILINE)
    assert count == 1, f"parameters cell of {NOTEBOOK} has no line 'run_dir: str = \"\"':\n{source}"
    cell["source"] = edited.splitlines(keepends=True)
    path = served_root / NOTEBOOK
    path.write_text(json.dumps(notebook, indent=1))
    return path


def _lab_environment(config_root: Path) -> dict[str, str]:
    """Environment with Jupyter's user config, settings, workspaces and IPython profile in `config_root`."""
    env = dict(os.environ)
    for name, folder in {"JUPYTER_CONFIG_DIR": "config", "JUPYTER_RUNTIME_DIR": "runtime",
                         "JUPYTERLAB_SETTINGS_DIR": "settings", "JUPYTERLAB_WORKSPACES_DIR": "workspaces",
                         "IPYTHONDIR": "ipython"}.items():
        env[name] = str(config_root / folder)
        (config_root / folder).mkdir(parents=True, exist_ok=True)
    labconfig = config_root / "config" / "labconfig"
    labconfig.mkdir(exist_ok=True)
    page_config = {"disabledExtensions": {name: True for name in DISABLED_PLUGINS}}
    (labconfig / "page_config.json").write_text(json.dumps(page_config))
    # Start the notebook's kernel on open instead of asking in a "Select Kernel" dialog.
    tracker = config_root / "settings" / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings"
    tracker.parent.mkdir(parents=True)
    tracker.write_text(json.dumps({"autoStartDefaultKernel": True}))
    return env


@pytest.fixture
def lab(served_root, tmp_path):
    """JupyterLab serving `served_root` on 127.0.0.1 and a free port; yields (base URL, token)."""
    port, token = find_free_port(), secrets.token_hex(16)
    argv = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip", "127.0.0.1", f"--port={port}",
            "--allow-root", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={served_root}",
            "--ServerApp.port_retries=0",
            # No announcements feed, no update check, no extension listing from PyPI.
            "--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            "--LabApp.extension_manager=readonly"]
    base = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "jupyterlab.log"
    with background_server(argv, f"{base}/api", log_path, cwd=served_root,
                           env=_lab_environment(tmp_path / "jupyter")):
        yield base, token
    print(f"JupyterLab log: {log_path}")


def _wait_for_viewer_or_error(page) -> None:
    """Wait until the prediction viewer shows both plots, or fail on the first traceback."""
    page.wait_for_function(
        """([title, traceback]) => {
            if (document.body.innerText.includes(traceback)) return true;
            const viewer = [...document.querySelectorAll('.widget-vbox')]
                .find(box => box.innerText.includes(title));
            if (!viewer) return false;
            const images = [...viewer.querySelectorAll('img')];
            return images.length === 2 && images.every(img => img.complete && img.naturalWidth > 0);
        }""",
        arg=[VIEWER_TITLE, TRACEBACK], timeout=60_000)
    tracebacks = page.locator(".jp-OutputArea-output", has_text=TRACEBACK)
    if tracebacks.count():
        pytest.fail(f"a notebook cell failed:\n{tracebacks.first.inner_text()}")


def _png(locator) -> Image.Image:
    return Image.open(io.BytesIO(locator.screenshot())).convert("RGB")


def _changed_pixels(before: Image.Image, after: Image.Image, top_skip: float) -> int:
    """Count the pixels that differ, ignoring the top `top_skip` share of rows (the title).

    Matplotlib draws the same data to the same pixels, so any change means new data.
    """
    assert before.size == after.size, f"plot size changed from {before.size} to {after.size}"
    width, height = before.size
    box = (0, int(height * top_skip), width, height)
    diff = ImageChops.difference(before.crop(box), after.crop(box)).convert("L")
    return sum(count for value, count in enumerate(diff.histogram()) if value > 16)


def _saved_outputs(path: Path) -> list[tuple[dict, dict]]:
    """(cell, output) pairs of the code cells of the notebook saved at `path`."""
    notebook = json.loads(path.read_text())
    return [(cell, output) for cell in notebook["cells"] if cell["cell_type"] == "code"
            for output in cell.get("outputs", [])]


def test_explore_notebook_viewer_updates(page, lab, served_root, tiny_run, screenshot_dir):
    base, token = lab
    notebook = _notebook_for_run(served_root, tiny_run)
    page.goto(f"{base}/lab/tree/{NOTEBOOK}?token={token}")
    page.locator(".jp-Notebook .jp-Cell").first.wait_for()
    page.get_by_text(KERNEL_IDLE).wait_for()

    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
    _wait_for_viewer_or_error(page)
    page.screenshot(path=screenshot_dir / "lab-after-run-all.png")

    viewer = page.locator(".widget-vbox").filter(has_text=VIEWER_TITLE)
    bars, series = viewer.locator("img").nth(0), viewer.locator("img").nth(1)
    epoch_slider = viewer.locator(".widget-slider").filter(has=page.locator("label", has_text=re.compile(r"^epoch$")))
    readout = epoch_slider.locator(".widget-readout")
    assert readout.inner_text() == "2", "the viewer should open at the last epoch with predictions"

    viewer.scroll_into_view_if_needed()
    viewer.screenshot(path=screenshot_dir / "viewer-epoch-2.png")
    bars_before, series_before = _png(bars), _png(series)
    sources_before = [bars.get_attribute("src"), series.get_attribute("src")]

    # Home moves the handle to the first epoch, whose predictions differ most from the last.
    epoch_slider.locator(".noUi-handle").focus()
    page.keyboard.press("Home")
    page.wait_for_function(
        "([images, sources]) => images.every((img, i) => img.src !== sources[i] && img.complete && img.naturalWidth > 0)",
        arg=[viewer.locator("img").element_handles(), sources_before])
    assert readout.inner_text() == "0"
    viewer.screenshot(path=screenshot_dir / "viewer-epoch-0.png")

    # The titles name the epoch, so they change anyway. The top 8 % of each plot (the title)
    # is skipped, and below it only the predictions can differ.
    bars_changed = _changed_pixels(bars_before, _png(bars), top_skip=0.08)
    series_changed = _changed_pixels(series_before, _png(series), top_skip=0.08)
    print(f"pixels changed below the titles: bar chart {bars_changed}, time series {series_changed}")
    assert bars_changed > 0, "bar chart did not change with the epoch"
    assert series_changed > 0, "time series did not change with the epoch"

    # Save from Lab and read the file: the .ipynb tells errors from stderr, the page does not.
    page.locator(".jp-mod-dirty").first.wait_for()
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^File$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Save Notebook$")).click()
    page.wait_for_function("() => !document.querySelector('.jp-mod-dirty')")
    outputs = _saved_outputs(notebook)
    errors = [output for _, output in outputs if output["output_type"] == "error"]
    assert not errors, f"error outputs in the executed notebook: {errors}"
    unexecuted = [c for c in json.loads(notebook.read_text())["cells"]
                  if c["cell_type"] == "code" and c.get("execution_count") is None]
    assert not unexecuted, f"cells that did not run: {[''.join(c['source'])[:60] for c in unexecuted]}"
    widget_views = [o for _, o in outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert len(widget_views) == 2, "expected the histogram and the prediction viewer"
    assert not page.blocked_urls, f"JupyterLab tried to reach other hosts: {page.blocked_urls}"
