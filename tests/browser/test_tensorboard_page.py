"""`workbench tensorboard` in headless Chromium: the time-series page draws the run's training loss."""

from __future__ import annotations

import io
import sys
import time

import pytest
from PIL import Image

from .background import background_server
from workbench.tensorboard import find_free_port

pytestmark = pytest.mark.browser

TAG = "train/loss"


@pytest.fixture
def tensorboard(served_root, tiny_run, tmp_path):
    """`workbench tensorboard` on the runs folder, on 127.0.0.1 and a free port; yields the base URL."""
    port = find_free_port()
    argv = [sys.executable, "-m", "workbench", "tensorboard", str(served_root / "runs"), "--port", str(port)]
    base = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "tensorboard.log"
    with background_server(argv, f"{base}/data/runs", log_path, timeout_s=90):
        yield base
    print(f"TensorBoard log: {log_path}")


def _dark_columns(chart: Image.Image) -> int:
    """Count the pixel columns of `chart` that hold a dark pixel (the run's line, not the light grid)."""
    gray = chart.convert("L")
    width, height = gray.size
    pixels = gray.load()
    return sum(any(pixels[x, y] < 160 for y in range(height)) for x in range(width))


def test_time_series_draws_train_loss(page, tensorboard, tiny_run, screenshot_dir):
    page.goto(f"{tensorboard}/#timeseries")
    run_name = f"{tiny_run.relative_to(tiny_run.parents[1]).as_posix()}/logs"
    page.get_by_text(run_name).first.wait_for()

    page.locator("metrics-tag-filter input").fill(f"^{TAG}$")
    card = page.locator("scalar-card").filter(has_text=TAG)
    card.locator("canvas").wait_for()
    # The data table under the chart fills in once the card has loaded the run's points.
    card.locator("tb-data-table-content-row").filter(has_text=run_name).wait_for()
    page.screenshot(path=screenshot_dir / "tensorboard-time-series.png")

    # The loss is logged at every step, so its line crosses most of the chart's width, unlike
    # the one-column dashed marker of the selected step. The chart is drawn off the main
    # thread, so it may lag behind the table by a frame or two.
    deadline = time.monotonic() + 15
    while True:
        chart = Image.open(io.BytesIO(card.locator("canvas").screenshot()))
        columns = _dark_columns(chart)
        if columns > chart.width // 3 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    card.screenshot(path=screenshot_dir / "tensorboard-train-loss.png")
    assert columns > chart.width // 3, f"the {TAG} line covers {columns} of {chart.width} pixel columns"
    assert not page.blocked_urls, f"TensorBoard tried to reach other hosts: {page.blocked_urls}"
