"""Host syncs: the training loop reads the device at most once per `logging.log_freq` steps.

A real Trainer runs on CPU with every host-reading Tensor method wrapped by a counter
(benchmarks/common.py). Each read counted on CPU would be a device sync on a GPU.
"""

import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from benchmarks.common import write_synthetic_clips  # noqa: E402
from benchmarks.host_syncs import count_host_reads  # noqa: E402

LOG_FREQ = 3
# 2 clips of 3 s, one held out: 11 windows of 0.5 s at a 0.25 s hop, batch 2 -> 6 steps per
# epoch; 2 epochs -> 12 steps, 4 of them log points (global step a multiple of 3).
SMALL_RUN = ["training.max_epochs=2", f"logging.log_freq={LOG_FREQ}", "data.window_seconds=0.5",
             "data.window_hop_seconds=0.25", "training.batch_size=2", "model.hidden=16",
             "model.rnn_layers=1", "logging.audio_freq=1"]


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    return write_synthetic_clips(tmp_path_factory.mktemp("clips"), count=2, seconds=3.0)


@pytest.fixture(scope="module")
def small_run(clips, tmp_path_factory) -> dict:
    return count_host_reads(clips, tmp_path_factory.mktemp("runs"), SMALL_RUN)


def test_loop_reads_once_per_log_point(small_run):
    step_reads = small_run["by_phase"].get("steps", 0)

    assert small_run["steps"] == 12
    assert small_run["log_points"] == 4
    assert step_reads <= small_run["log_points"], f"per-step host reads crept in: {small_run['by_site']}"
    assert step_reads >= 1, "the counter saw no read at the log points; is it still wrapping Tensor?"


def test_epoch_reads_independent_of_steps(clips, small_run, tmp_path):
    # Twice the steps per epoch (half the window hop): per-epoch phases must read the same.
    longer = count_host_reads(clips, tmp_path / "runs", [*SMALL_RUN, "data.window_hop_seconds=0.125"])

    assert longer["steps"] > small_run["steps"]
    for phase in ("epoch_end", "validation", "media", "checkpoint", "epoch_log"):
        assert longer["by_phase"].get(phase, 0) == small_run["by_phase"].get(phase, 0), phase


def test_counter_detects_step_sync(clips, tmp_path):
    # nan_policy=skip decides on the host at every step, so the counter must report it.
    result = count_host_reads(clips, tmp_path / "runs", [*SMALL_RUN, "training.nan_policy=skip"])

    assert result["by_phase"]["steps"] >= result["steps"]
