"""training.nan_policy on a real tiny run with a NaN injected at a chosen optimizer step.

The tiny run has 5 steps per epoch, so global step 7 is epoch 2, batch 2 (both 1-based).
A NaN in one batch's mel makes the loss NaN; a gradient hook that writes Inf makes the
gradient non-finite while the loss stays finite.
"""

from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path

import pytest
import torch

from tiny_run import make_tiny_dataset, one_torch_thread, tiny_overrides
from workbench.checkpoint import load_checkpoint
from workbench.config import load_config
from workbench.trainer import NonFiniteLossError, Trainer
from tensorboard.backend.event_processing import event_accumulator

STEPS_PER_EPOCH = 5


class PoisonedLoader:
    """Wraps the training DataLoader and puts a NaN into the mel of the batches of `steps`."""

    def __init__(self, trainer: Trainer, steps: set[int]):
        self.trainer = trainer
        self.loader = trainer.train_loader
        self.steps = steps
        self.generator = self.loader.generator
        self.poisoned_windows: dict[int, list[int]] = {}

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        for batch in self.loader:
            step = self.trainer.global_step + 1  # the step this batch is about to become
            if step in self.steps:
                batch["mel"] = batch["mel"].clone()
                batch["mel"][0, 5, 3] = math.nan
                self.poisoned_windows[step] = batch["window"].tolist()
            yield batch


class NaNTrainer(Trainer):
    """A Trainer that injects a NaN loss (via the mel) or an Inf gradient at chosen steps."""

    def __init__(self, cfg, nan_loss_steps=(), inf_grad_steps=()):
        super().__init__(cfg)
        self.nan_loss_steps = set(nan_loss_steps)
        self.inf_grad_steps = set(inf_grad_steps)

    def setup_data(self) -> None:
        super().setup_data()
        self.train_loader = self.poisoned = PoisonedLoader(self, self.nan_loss_steps)

    def setup_model(self) -> None:
        super().setup_model()
        first = next(p for p in self.model.parameters() if p.requires_grad)

        def poison_gradient(grad: torch.Tensor) -> torch.Tensor:
            # Runs inside backward, before global_step counts this step.
            if self.global_step + 1 in self.inf_grad_steps:
                grad = grad.clone()
                grad.view(-1)[0] = math.inf
            return grad

        first.register_hook(poison_gradient)


@pytest.fixture(scope="module")
def tiny_data(facegood_dir, tmp_path_factory) -> Path:
    return make_tiny_dataset(facegood_dir, tmp_path_factory.mktemp("nan_data"))


def make_trainer(tiny_data, root: Path, nan_loss_steps=(), inf_grad_steps=(), **overrides) -> NaNTrainer:
    # Augmentation off: a time or frequency mask could cover the injected NaN.
    settings = dict(training__max_epochs=3, training__augment=False, logging__histogram_freq=0,
                    logging__figure_freq=0, logging__audio_freq=0)
    settings.update(overrides)
    cfg = load_config(None, tiny_overrides(tiny_data, root / "runs", root / "cache", **settings))
    return NaNTrainer(cfg, nan_loss_steps, inf_grad_steps)


def fit_expecting_error(trainer: NaNTrainer) -> NonFiniteLossError:
    with one_torch_thread(), pytest.raises(NonFiniteLossError) as caught:
        trainer.fit()
    print(f"\n{type(caught.value).__name__}: {caught.value}")
    return caught.value


def window_names(trainer: NaNTrainer, step: int) -> str:
    return trainer._describe_windows(torch.tensor(trainer.poisoned.poisoned_windows[step]))


def scalar_steps(run_dir: Path, tag: str) -> list[int]:
    acc = event_accumulator.EventAccumulator(str(run_dir / "logs"), size_guidance={event_accumulator.SCALARS: 0})
    acc.Reload()
    return [e.step for e in acc.Scalars(tag)] if tag in acc.Tags()["scalars"] else []


def assert_failed_run_closed(run_dir: Path, message: str, completed_epochs: int) -> None:
    """failed.pt saved; train.log, metrics.csv, status.json and events written and closed."""
    state = load_checkpoint(run_dir / "checkpoints" / "failed.pt")
    assert state["global_step"] > 0

    log_text = (run_dir / "train.log").read_text()
    assert f" - ERROR - Training failed: {message}" in log_text

    # metrics.csv gets its header with the first finished epoch.
    csv_path = run_dir / "metrics.csv"
    assert csv_path.is_file() == (completed_epochs > 0)
    if completed_epochs:
        with open(csv_path, newline="") as f:
            rows = list(csv.reader(f))
        assert rows[0][0] == "epoch"
        assert [int(r[0]) for r in rows[1:]] == list(range(completed_epochs))
        assert all(len(r) == len(rows[0]) for r in rows)

    status = json.loads((run_dir / "status.json").read_text())
    assert status["state"] == "failed"
    assert status["error"] == message


def test_stop_nan_loss_between_log_points(tiny_data, tmp_path):
    # Step 7 is between the log points at steps 6 and 9; the check at step 9 must name step 7.
    trainer = make_trainer(tiny_data, tmp_path, nan_loss_steps={7}, logging__log_freq=3)
    error = fit_expecting_error(trainer)
    assert len(trainer.train_loader) == STEPS_PER_EPOCH
    assert str(error).startswith("NaN or Inf loss at epoch 2/3, batch 2/5, global step 7; ")
    assert f"windows: {window_names(trainer, 7)};" in str(error)
    assert "nan_policy=skip" in str(error)
    assert_failed_run_closed(trainer.run_dir, str(error), completed_epochs=1)
    # Logged until the last healthy log point; the detecting step 9 is not logged.
    assert scalar_steps(trainer.run_dir, "train/loss") == [3, 6]


def test_stop_gradient_detected_at_epoch_end(tiny_data, tmp_path):
    # log_freq above the steps per epoch: only the end-of-epoch check can see step 8.
    trainer = make_trainer(tiny_data, tmp_path, inf_grad_steps={8}, logging__log_freq=100)
    error = fit_expecting_error(trainer)
    assert str(error).startswith("NaN or Inf gradient (the loss was finite) at epoch 2/3, batch 3/5, "
                                 "global step 8; ")
    assert re.search(r"windows: \S+@\d+\.\d\ds", str(error))
    assert_failed_run_closed(trainer.run_dir, str(error), completed_epochs=1)


def test_stop_reports_first_of_several(tiny_data, tmp_path):
    trainer = make_trainer(tiny_data, tmp_path, nan_loss_steps={2, 4}, inf_grad_steps={1},
                           logging__log_freq=5)
    error = fit_expecting_error(trainer)
    assert str(error).startswith("NaN or Inf gradient (the loss was finite) at epoch 1/3, batch 1/5, "
                                 "global step 1; ")
    assert_failed_run_closed(trainer.run_dir, str(error), completed_epochs=0)


def test_skip_drops_steps_and_counts(tiny_data, tmp_path):
    trainer = make_trainer(tiny_data, tmp_path, nan_loss_steps={4, 11}, inf_grad_steps={7},
                           training__nan_policy="skip", training__max_nan_skips=5, logging__log_freq=1)
    with one_torch_thread():
        run_dir = trainer.fit()
    assert json.loads((run_dir / "status.json").read_text())["state"] == "completed"
    assert trainer.nan_skips == 3

    acc = event_accumulator.EventAccumulator(str(run_dir / "logs"), size_guidance={event_accumulator.SCALARS: 0})
    acc.Reload()
    assert [(e.step, e.value) for e in acc.Scalars("train/nan_skips")] == [(4, 1), (7, 2), (11, 3)]
    # Skipped steps log no loss; every other step does (log_freq=1).
    assert [e.step for e in acc.Scalars("train/loss")] == [s for s in range(1, 16) if s not in (4, 7, 11)]
    assert all(math.isfinite(e.value) for e in acc.Scalars("train/loss"))
    for name, param in trainer.model.named_parameters():
        assert torch.isfinite(param).all(), name

    warnings = [line for line in (run_dir / "train.log").read_text().splitlines() if " - WARNING - skipped step" in line]
    print("\n" + "\n".join(warnings))
    assert len(warnings) == 3
    assert (f"NaN or Inf loss at epoch 1/3, batch 4/5, global step 4; windows: {window_names(trainer, 4)}; "
            "1 skipped so far (max 5)") in warnings[0]
    assert "NaN or Inf gradient (the loss was finite) at epoch 2/3, batch 2/5, global step 7; windows: " in warnings[1]
    assert "NaN or Inf loss at epoch 3/3, batch 1/5, global step 11;" in warnings[2]


def test_skip_stops_at_max_nan_skips(tiny_data, tmp_path):
    trainer = make_trainer(tiny_data, tmp_path, nan_loss_steps={2, 3, 6}, training__nan_policy="skip",
                           training__max_nan_skips=3)
    error = fit_expecting_error(trainer)
    assert str(error) == ("3 steps skipped for NaN or Inf values (last: loss at epoch 2/3, batch 1/5, global step 6), "
                          "reaching training.max_nan_skips=3; lower training.lr or check the data")
    assert_failed_run_closed(trainer.run_dir, str(error), completed_epochs=1)


def test_cli_prints_stop_error(tiny_data, tmp_path, capsys, monkeypatch):
    # The same failure through `workbench train`: one line on stderr and exit status 2.
    from workbench import cli, trainer as trainer_module

    monkeypatch.setattr(trainer_module.Trainer, "from_files",
                        classmethod(lambda cls, config_path=None, overrides=(), resume=None:
                                    NaNTrainer(load_config(config_path, overrides), nan_loss_steps={3})))
    args = ["train", *tiny_overrides(tiny_data, tmp_path / "runs", tmp_path / "cache", training__max_epochs=1,
                                     logging__histogram_freq=0, logging__figure_freq=0, logging__audio_freq=0)]
    with one_torch_thread():
        status = cli.main(args)
    assert status == 2
    stderr = capsys.readouterr().err
    print(stderr)
    assert stderr.startswith("error: NaN or Inf loss at epoch 1/1, batch 3/5, global step 3; windows: ")


class SyncCheckingTrainer(NaNTrainer):
    """Turns CUDA's sync debug mode to "error" inside the step loop, except at log points."""

    def start_progress(self, *args) -> None:
        super().start_progress(*args)
        torch.cuda.set_sync_debug_mode("error")  # start_progress runs right before the batch loop

    def close_progress(self) -> None:
        torch.cuda.set_sync_debug_mode("default")  # and close_progress right after it
        super().close_progress()

    def _log_step(self, *args) -> None:
        torch.cuda.set_sync_debug_mode("default")
        try:
            super()._log_step(*args)
        finally:
            torch.cuda.set_sync_debug_mode("error")


# NOTE: not yet run; the machines these tests were written on had no CUDA device.
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_stop_policy_steps_do_not_sync_on_cuda(tiny_data, tmp_path):
    cfg = load_config(None, tiny_overrides(tiny_data, tmp_path / "runs", tmp_path / "cache",
                                           training__max_epochs=3, training__device="cuda", logging__log_freq=3,
                                           logging__histogram_freq=0, logging__figure_freq=0, logging__audio_freq=0))
    trainer = SyncCheckingTrainer(cfg, nan_loss_steps={7})
    try:
        with pytest.raises(NonFiniteLossError) as caught:
            trainer.fit()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert str(caught.value).startswith("NaN or Inf loss at epoch 2/3, batch 2/5, global step 7; ")
