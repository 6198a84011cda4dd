"""Stopping a run: Ctrl-C, a killed process, failed writes, failed runs, parallel starts."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime

import pytest
import torch

from test_resume import (EPOCHS, StopAt, assert_steps_unique_and_increasing, config, csv_epochs,  # noqa: F401
                         data_root, cache_dir, event_steps, _one_thread)
from tiny_run import tiny_overrides
from workbench import checkpoint, cli, run_folder
from workbench.checkpoint import load_checkpoint, save_checkpoint
from workbench.logging_mixin import MetricsCSV
from workbench.trainer import Trainer

from conftest import REPO_ROOT


def test_keyboard_interrupt_saves_mid_epoch(data_root, cache_dir, tmp_path):
    trainer = StopAt(config(data_root, tmp_path, cache_dir, logging__audio_freq=0), epoch=1, batch=3, how="raise")
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    run_dir = trainer.run_dir

    state = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert state["epoch"] == 1
    assert state["epoch_complete"] is False
    assert state["progress"]["batches_done"] == 4
    assert state["global_step"] == len(trainer.train_loader) + 4

    status = run_folder.read_status(run_dir)
    assert status["state"] == "interrupted"
    assert status["resume_command"] == f"workbench train --resume {run_dir}"
    assert status["checkpoint"] == {"epoch": 1, "epoch_complete": False, "global_step": state["global_step"]}

    # Every log is closed and complete: train.log names the resume command, events reach the last step.
    assert trainer._file_handler is None
    assert f"Resume with: workbench train --resume {run_dir}" in (run_dir / "train.log").read_text()
    assert event_steps(run_dir / "logs")["train/loss"][-1] == state["global_step"]
    assert csv_epochs(run_dir) == ["0"]


def test_sigterm_stops_like_ctrl_c(data_root, cache_dir, tmp_path):
    class TerminateAt(Trainer):
        def on_step_end(self, epoch, batch_idx):
            if (epoch, batch_idx) == (1, 2):
                os.kill(os.getpid(), signal.SIGTERM)

    trainer = TerminateAt(config(data_root, tmp_path, cache_dir, logging__audio_freq=0))
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    state = load_checkpoint(trainer.run_dir / "checkpoints" / "last.pt")
    assert (state["epoch"], state["epoch_complete"]) == (1, False)
    assert state["progress"]["batches_done"] == 3
    assert run_folder.read_status(trainer.run_dir)["state"] == "interrupted"
    # The handler is removed again once training stops.
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


def test_interrupt_inside_step_keeps_last_checkpoint(data_root, cache_dir, tmp_path):
    class StopInsideStep(Trainer):
        # log_step runs after optimizer.step() but before the step's bookkeeping is finished.
        def log_step(self, step, loss, lr, grad_norm):
            if self.epoch == 1:
                raise KeyboardInterrupt
            super().log_step(step, loss, lr, grad_norm)

    trainer = StopInsideStep(config(data_root, tmp_path, cache_dir, logging__audio_freq=0))
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    state = load_checkpoint(trainer.run_dir / "checkpoints" / "last.pt")
    assert (state["epoch"], state["epoch_complete"]) == (0, True)
    assert "in the middle of a step" in (trainer.run_dir / "train.log").read_text()

    Trainer.from_files(resume=trainer.run_dir).fit()
    assert csv_epochs(trainer.run_dir) == [str(e) for e in range(EPOCHS)]
    assert_steps_unique_and_increasing(trainer.run_dir / "logs")


def test_sigkill_mid_epoch_then_resume(data_root, cache_dir, tmp_path):
    # Small batches and dense windows make an epoch last about a second, so the kill lands inside one.
    overrides = tiny_overrides(data_root, tmp_path, cache_dir, training__max_epochs=EPOCHS, training__batch_size=2,
                               data__window_hop_seconds=0.1, training__device="cpu", logging__log_freq=1,
                               logging__figure_freq=0, logging__audio_freq=0)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-m", "workbench", "train", *overrides], cwd=REPO_ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        run_dir = None
        while time.monotonic() < deadline and process.poll() is None:
            runs = run_folder.find_runs(tmp_path)
            if runs and csv_lines(runs[0]) >= 2 and run_folder.read_status(runs[0]).get("epoch") == 0:
                run_dir = runs[0]
                break
            time.sleep(0.02)
        assert run_dir is not None, "the run did not finish its first epoch, or finished too early"
        time.sleep(0.2)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()

    # The killed run keeps its last completed checkpoint and valid logs.
    state = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert state["epoch_complete"] is True
    assert state["epoch"] < EPOCHS - 1, "killed after the last checkpoint: make the epochs slower"
    assert run_folder.read_status(run_dir)["state"] == "running"
    assert csv_epochs(run_dir)[: state["epoch"] + 1] == [str(e) for e in range(state["epoch"] + 1)]

    assert cli.main(["train", "--resume", str(run_dir)]) == 0
    assert f"Resumed from epoch {state['epoch'] + 1} (global step {state['global_step']})" in (
        run_dir / "train.log").read_text()
    assert csv_epochs(run_dir) == [str(e) for e in range(EPOCHS)]
    assert_steps_unique_and_increasing(run_dir / "logs")
    assert run_folder.read_status(run_dir)["state"] == "completed"


def csv_lines(run_dir) -> int:
    path = run_dir / "metrics.csv"
    return path.read_text().count("\n") if path.is_file() else 0


def test_failed_checkpoint_write_keeps_previous(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"model": {"w": torch.ones(3)}, "model_hparams": {}})

    def torn_save(obj, f):
        f.write(b"PK\x03\x04 half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint.torch, "save", torn_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, {"model": {"w": torch.zeros(3)}, "model_hparams": {}})
    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.ones(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


def test_failed_text_write_keeps_previous(tmp_path, monkeypatch):
    run_folder.write_status(tmp_path, "running", epoch=3)
    run_folder.atomic_write_text(tmp_path / "config.yaml", "a: 1\n")

    def failing_fsync(fd):
        raise OSError("I/O error")

    monkeypatch.setattr(run_folder.os, "fsync", failing_fsync)
    with pytest.raises(OSError):
        run_folder.write_status(tmp_path, "completed")
    with pytest.raises(OSError):
        run_folder.atomic_write_text(tmp_path / "config.yaml", "a: 2\n")
    assert run_folder.read_status(tmp_path)["epoch"] == 3
    assert (tmp_path / "config.yaml").read_text() == "a: 1\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml", "status.json"]


def test_metrics_csv_drops_torn_row(tmp_path):
    path = tmp_path / "metrics.csv"
    metrics = MetricsCSV(path)
    for epoch in range(3):
        metrics.append(epoch, {"loss": 0.5}, {"loss": 0.25}, ["loss"])
    with open(path, "a") as f:
        f.write("3,0.12")  # a row cut short by a killed process

    reopened = MetricsCSV(path)
    reopened.truncate_after(1)
    reopened.append(2, {"loss": 0.4}, None, ["loss"])
    assert path.read_text() == "epoch,loss,val_loss\n0,0.5,0.25\n1,0.5,0.25\n2,0.4,\n"


def test_run_folders_unique_across_threads(tmp_path):
    now = datetime(2024, 5, 1, 12, 0, 0)
    barrier = threading.Barrier(20)
    folders = []

    def create():
        barrier.wait()
        folders.append(run_folder.create_run_folder(tmp_path, "same", now=now))

    threads = [threading.Thread(target=create) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(folders)) == 20
    assert all(f.parent == tmp_path / "2024-05-01" and f.name.startswith("12-00-00-same") for f in folders)


def _create_in_process(root):
    return str(run_folder.create_run_folder(root, "", now=datetime(2024, 5, 1, 12, 0, 0)))


def test_run_folders_unique_across_processes(tmp_path):
    with multiprocessing.get_context("fork").Pool(20) as pool:
        folders = pool.map(_create_in_process, [tmp_path] * 20)
    assert len(set(folders)) == 20
    assert len(list((tmp_path / "2024-05-01").iterdir())) == 20


def test_failure_before_first_epoch_marks_run_failed(data_root, cache_dir, tmp_path):
    class Broken(Trainer):
        def train_epoch(self, epoch):
            raise RuntimeError("simulated failure in the first epoch")

    trainer = Broken(config(data_root, tmp_path, cache_dir))
    with pytest.raises(RuntimeError):
        trainer.fit()
    status = json.loads((trainer.run_dir / "status.json").read_text())
    assert status["state"] == "failed"
    assert status["error"] == "RuntimeError: simulated failure in the first epoch"
    assert "Training failed: RuntimeError: simulated failure" in (trainer.run_dir / "train.log").read_text()
