"""Stopping and resuming a run in its own folder.

A run stops in one of three ways, and `workbench train --resume RUN_FOLDER` continues each:
- Ctrl-C (also the Jupyter stop button, which sends SIGINT to the kernel): `DeferredInterrupt`
  turns the signal into a flag, and the Trainer stops at the end of the current optimizer step.
  It saves `checkpoints/last.pt` with `epoch_complete=False` and the epoch's progress. The
  resumed run continues that epoch after the same batch, with the same batch order.
- A killed process (SIGKILL, power loss): `last.pt` is the checkpoint of the last completed
  epoch; the resumed run repeats the epoch that was running.
- An error: the run is marked failed and is not resumed.

Before the resumed process writes anything, `trim_event_files` cuts the TensorBoard event
files back to the checkpoint and `MetricsCSV.truncate_after` does the same for metrics.csv,
so both contain each step and each epoch once.
"""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from workbench.atomic import atomic_open
from workbench import run_folder
from workbench.checkpoint import load_checkpoint
from workbench.config import to_flat_dict
from workbench.errors import CheckpointError, ConfigError

log = logging.getLogger(__name__)

# Config keys that may differ between the interrupted run and its continuation: they do not
# change what the model computes or which data it trains on.
MAY_CHANGE_ON_RESUME = ("logging.", "run.", "debug", "training.device", "data.root", "features.cache_dir")


def load_resume_checkpoint(run_dir: str | Path, cfg) -> dict[str, Any]:
    """Load `run_dir/checkpoints/last.pt` after checking that the run can continue under `cfg`.

    Raises CheckpointError when the folder, the checkpoint or unfinished epochs are missing,
    and ConfigError when `cfg` changes a setting the checkpoint depends on. Cheap: call it
    before loading data.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"cannot resume: run folder not found: {run_dir}")
    if run_folder.read_status(run_dir).get("state") == "completed":
        raise CheckpointError(f"cannot resume {run_dir}: the run already completed all its epochs; "
                              "start a new run to train longer")
    last = run_dir / "checkpoints" / "last.pt"
    if not last.is_file():
        raise CheckpointError(f"cannot resume {run_dir}: it has no checkpoints/last.pt because the run stopped "
                              "before its first checkpoint; start a new run instead")
    state = load_checkpoint(last)
    for key in ("epoch", "global_step", "optimizer", "rng", "config_yaml"):
        if key not in state:
            raise CheckpointError(f"cannot resume from {last}: the checkpoint has no {key!r}; "
                                  "it was not written by the workbench Trainer")

    max_epochs = cfg.training.max_epochs
    if state.get("epoch_complete", True) and state["epoch"] + 1 >= max_epochs:
        raise CheckpointError(f"cannot resume {run_dir}: its checkpoint already completed all "
                              f"{max_epochs} epochs; start a new run to train longer")
    _check_same_config(last, state["config_yaml"], cfg)
    return state


def _check_same_config(path: Path, saved_yaml: str, cfg) -> None:
    saved = to_flat_dict(OmegaConf.create(saved_yaml))
    current = to_flat_dict(cfg)
    changed = [key for key in sorted(set(saved) | set(current))
               if saved.get(key) != current.get(key) and not key.startswith(MAY_CHANGE_ON_RESUME)]
    if changed:
        details = ", ".join(f"{k}: {saved.get(k)!r} -> {current.get(k)!r}" for k in changed[:5])
        raise ConfigError(f"cannot resume from {path} with a changed config ({details}); resume without "
                          "these overrides, or start a new run")


def trim_event_files(logs_dir: str | Path, saved_at: float) -> int:
    """Drop TensorBoard events created after wall time `saved_at` (seconds); return how many.

    A process that died after its last checkpoint may have logged steps, epoch scalars and
    media that the resumed run logs again. SummaryWriter's `purge_step` cannot remove them:
    TensorBoard then drops events by step number in every tag at once, but step tags count
    optimizer steps while epoch tags count epochs, so the stale epoch events stay. Every
    event carries the wall time of its creation, and the Trainer flushes the writer just
    before saving a checkpoint, so "created before the checkpoint" is "belongs to the
    checkpoint". A record torn by a killed writer is dropped as well. Each changed file is
    rewritten through a temp file and a rename.
    NOTE: a system clock set back between the two processes would keep stale events.
    """
    from tensorboard.backend.event_processing.event_file_loader import RawEventFileLoader
    from tensorboard.compat.proto import event_pb2
    from tensorboard.summary.writer.record_writer import RecordWriter

    dropped = 0
    for path in sorted(Path(logs_dir).glob("*tfevents*")):
        records = list(RawEventFileLoader(str(path)).Load())
        kept = [r for r in records if event_pb2.Event.FromString(r).wall_time <= saved_at]
        # A record is framed by a 12-byte header and a 4-byte footer; a size mismatch means a torn tail.
        if len(kept) == len(records) and sum(len(r) + 16 for r in kept) == path.stat().st_size:
            continue
        dropped += len(records) - len(kept)
        with atomic_open(path, "wb") as f:
            writer = RecordWriter(f)
            for record in kept:
                writer.write(record)
        log.info("%s: dropped %d events logged after the checkpoint", path.name, len(records) - len(kept))
    return dropped


def metrics_state(metrics) -> dict[str, Any]:
    """Copy the running sums of a BlendshapeMetrics (its tensor and flag attributes)."""
    # NOTE: reads the accumulator's attributes, because BlendshapeMetrics has no state_dict.
    return {name: value.detach().cpu().clone() if isinstance(value, torch.Tensor) else value
            for name, value in vars(metrics).items() if isinstance(value, (torch.Tensor, bool))}


def load_metrics_state(metrics, state: dict[str, Any]) -> None:
    for name, value in state.items():
        current = getattr(metrics, name)
        setattr(metrics, name, value.to(current.device, current.dtype) if isinstance(value, torch.Tensor) else value)


class DeferredInterrupt:
    """Between `install` and `uninstall`, the first SIGINT or SIGTERM sets `requested` instead of raising.

    SIGTERM (sent by `kill`, job schedulers and container stops) is treated like Ctrl-C so the
    run still saves and is marked interrupted. A second signal raises KeyboardInterrupt at
    once, for a step that hangs. Python installs
    signal handlers only from the main thread, so elsewhere this does nothing. Ctrl-C then
    raises at once, and the Trainer saves only when the interrupt lands between steps.
    """

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}
        self._installed = False

    def install(self) -> None:
        self.requested = False
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)
            self._installed = True

    def uninstall(self) -> None:
        if self._installed:
            for signum, previous in self._previous.items():
                signal.signal(signum, previous)
            self._previous = {}
            self._installed = False

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        log.warning("Interrupt received: stopping after the current step (press Ctrl-C again to stop at once)")
