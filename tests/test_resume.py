"""Resume a stopped run in its own folder: same results, each step logged once, clear refusals."""

from __future__ import annotations

import csv
import json
import os
import signal
from collections import defaultdict
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

from tiny_run import make_tiny_dataset, one_torch_thread, tiny_overrides
from workbench import run_folder
from workbench.checkpoint import load_checkpoint
from workbench.config import load_config
from workbench.errors import CheckpointError, ConfigError
from workbench.trainer import Trainer

from conftest import REPO_ROOT

EPOCHS = 3


@pytest.fixture(scope="module")
def data_root(facegood_dir, tmp_path_factory):
    return make_tiny_dataset(facegood_dir, tmp_path_factory.mktemp("clips"), seconds=6.0)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("features")


@pytest.fixture(autouse=True)
def _one_thread():
    with one_torch_thread():
        yield


def config(data_root, run_root, cache_dir, **extra):
    # Media every epoch, so histograms, figures and audio are checked for duplicates as well.
    values = dict(training__max_epochs=EPOCHS, training__device="cpu", training__batch_size=2, logging__log_freq=1,
                  logging__audio_freq=1, logging__weight_histograms=True)
    values.update(extra)
    return load_config(REPO_ROOT / "configs" / "default.yaml", tiny_overrides(data_root, run_root, cache_dir, **values))


class StopAt(Trainer):
    """Stops at one step by sending itself SIGINT (as Ctrl-C does) or by raising KeyboardInterrupt."""

    def __init__(self, cfg, epoch: int, batch: int, how: str = "signal"):
        super().__init__(cfg)
        self.stop_epoch, self.stop_batch, self.how = epoch, batch, how

    def on_step_end(self, epoch: int, batch_idx: int) -> None:
        if (epoch, batch_idx) == (self.stop_epoch, self.stop_batch):
            if self.how == "signal":
                os.kill(os.getpid(), signal.SIGINT)
            else:
                raise KeyboardInterrupt


class SimulatedKill(BaseException):
    """Stands for SIGKILL: nothing after it runs in the trainer."""


class DiesBeforeCheckpoint(Trainer):
    """Logs all of epoch 1 (scalars, CSV row, media), then dies before writing its checkpoint."""

    def _save_checkpoints(self, epoch, val_metrics):
        if epoch == 1:
            self.writer.flush()  # a real process may have flushed any part of this
            raise SimulatedKill
        super()._save_checkpoints(epoch, val_metrics)

    def _fail(self, reason):  # a killed process updates nothing, but close files for the test
        self.teardown_logging()


def event_steps(logs_dir: Path) -> dict[str, list[int]]:
    """Steps of every summary value in file order, read from the raw event files (no purging)."""
    steps: dict[str, list[int]] = defaultdict(list)
    for path in sorted(logs_dir.glob("*tfevents*")):
        for event in EventFileLoader(str(path)).Load():
            for value in event.summary.value:
                steps[value.tag].append(event.step)
    return steps


def assert_steps_unique_and_increasing(logs_dir: Path) -> None:
    for tag, steps in event_steps(logs_dir).items():
        assert steps == sorted(set(steps)), f"{tag}: {steps}"
    acc = EventAccumulator(str(logs_dir), size_guidance={"scalars": 0, "histograms": 0, "images": 0,
                                                          "audio": 0, "tensors": 0})
    acc.Reload()
    readers = {"scalars": acc.Scalars, "histograms": acc.Histograms, "images": acc.Images, "audio": acc.Audio,
               "tensors": acc.Tensors}
    for kind, read in readers.items():
        for tag in acc.Tags()[kind]:
            steps = [e.step for e in read(tag)]
            assert steps == sorted(set(steps)), f"{kind} {tag}: {steps}"


def csv_epochs(run_dir: Path) -> list[str]:
    text = (run_dir / "metrics.csv").read_text()
    assert text.count("epoch,") == 1, "header written twice"
    assert text.endswith("\n")
    with open(run_dir / "metrics.csv", newline="") as f:
        return [row["epoch"] for row in csv.DictReader(f)]


def final_metrics(run_dir: Path) -> dict[str, float]:
    status = json.loads((run_dir / "status.json").read_text())
    assert status["state"] == "completed"
    return status["final_metrics"]


@pytest.fixture(scope="module")
def uninterrupted(data_root, cache_dir, tmp_path_factory):
    with one_torch_thread():
        return Trainer(config(data_root, tmp_path_factory.mktemp("runs"), cache_dir)).fit()


def test_ctrl_c_resume_matches_uninterrupted(data_root, cache_dir, tmp_path, uninterrupted):
    trainer = StopAt(config(data_root, tmp_path, cache_dir), epoch=1, batch=2)
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    run_dir = trainer.run_dir
    state = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert (state["epoch"], state["epoch_complete"], state["progress"]["batches_done"]) == (1, False, 3)
    assert state["progress"]["batches_done"] < len(trainer.train_loader)

    Trainer.from_files(resume=run_dir).fit()

    resumed, reference = final_metrics(run_dir), final_metrics(uninterrupted)
    print("\nuninterrupted:", {k: reference[k] for k in ("val_loss", "val_mae", "val_mean_correlation")})
    print("interrupted + resumed:", {k: resumed[k] for k in ("val_loss", "val_mae", "val_mean_correlation")})
    assert set(resumed) == set(reference)
    for key, value in reference.items():
        if value is None:  # NaN metrics (regions the labels lack) are stored as null
            assert resumed[key] is None, key
        else:
            assert resumed[key] == pytest.approx(value, rel=1e-5, abs=1e-7), key
    assert "Resumed from epoch 2, batch 3" in (run_dir / "train.log").read_text()
    assert csv_epochs(run_dir) == ["0", "1", "2"]
    assert_steps_unique_and_increasing(run_dir / "logs")


def test_resume_drops_events_of_dead_epoch(data_root, cache_dir, tmp_path, uninterrupted):
    trainer = DiesBeforeCheckpoint(config(data_root, tmp_path, cache_dir))
    with pytest.raises(SimulatedKill):
        trainer.fit()
    run_dir = trainer.run_dir
    # The dead process logged epoch 1 everywhere but saved only epoch 0.
    assert csv_epochs(run_dir) == ["0", "1"]
    assert event_steps(run_dir / "logs")["val/loss"] == [0, 1]
    assert run_folder.read_status(run_dir)["state"] == "running"

    Trainer.from_files(resume=run_dir).fit()

    log_text = (run_dir / "train.log").read_text()
    assert "Resumed from epoch 1 (global step" in log_text
    assert "continuing with epoch 2/3" in log_text
    assert csv_epochs(run_dir) == ["0", "1", "2"]
    steps = event_steps(run_dir / "logs")
    for tag in ("val/loss", "train/epoch_loss", "pred_distribution", "blendshape_comparison", "input_audio"):
        assert steps[tag] == [0, 1, 2], tag
    assert steps["train/loss"] == sorted(set(steps["train/loss"]))
    assert_steps_unique_and_increasing(run_dir / "logs")
    # Resuming at an epoch end repeats the lost epoch exactly, so the results match too.
    resumed, reference = final_metrics(run_dir), final_metrics(uninterrupted)
    assert resumed["val_loss"] == pytest.approx(reference["val_loss"], rel=1e-5)


def test_resume_refuses_completed_run(uninterrupted):
    with pytest.raises(CheckpointError, match="already completed all its epochs"):
        Trainer.from_files(resume=uninterrupted).fit()


def test_resume_refuses_folder_without_checkpoint(data_root, cache_dir, tmp_path):
    cfg = config(data_root, tmp_path, cache_dir)
    run_dir = run_folder.create_run_folder(tmp_path, "empty")
    run_folder.atomic_write_text(run_dir / "config.yaml", (REPO_ROOT / "configs" / "default.yaml").read_text())
    with pytest.raises(CheckpointError, match=r"no checkpoints/last\.pt") as info:
        Trainer(cfg, resume=run_dir).fit()
    assert str(run_dir) in str(info.value)


def test_resume_refuses_missing_folder(tmp_path):
    with pytest.raises(CheckpointError, match="not a run folder"):
        Trainer.from_files(resume=tmp_path / "nope")


def test_resume_refuses_changed_model(data_root, cache_dir, tmp_path):
    trainer = StopAt(config(data_root, tmp_path, cache_dir, training__max_epochs=2, logging__audio_freq=0),
                     epoch=0, batch=1, how="raise")
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    with pytest.raises(ConfigError, match=r"model\.hidden: 16 -> 32"):
        Trainer.from_files(resume=trainer.run_dir, overrides=["model.hidden=32"]).fit()
    # Logging keys may change on resume.
    Trainer.from_files(resume=trainer.run_dir, overrides=["logging.log_freq=2"]).fit()
    assert run_folder.read_status(trainer.run_dir)["state"] == "completed"


def test_checkpoint_loads_with_weights_only(uninterrupted):
    state = torch.load(uninterrupted / "checkpoints" / "last.pt", weights_only=True)
    assert state["epoch_complete"] is True
    assert set(state["rng"]) == {"torch", "loader", "numpy", "python"}


def test_no_pickle_loading_in_package():
    sources = [p for p in (REPO_ROOT / "workbench").rglob("*.py")]
    for path in sources:
        text = path.read_text()
        assert "allow_pickle=True" not in text, path
        assert "import pickle" not in text, path
        for line in text.splitlines():
            if "torch.load(" in line:
                assert "weights_only=True" in line, f"{path}: {line.strip()}"
