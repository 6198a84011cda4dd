"""LoggingMixin: everything a training run writes besides checkpoints.

The Trainer owns the loop and calls the `log_*` methods at fixed points; the mixin owns the
TensorBoard writer, `metrics.csv`, `train.log`, the console block and the progress bar.
Step source: `log_step` takes the global optimizer step, `log_epoch` and the media methods
take the 0-based epoch, so every tag has an explicit x-axis (TensorBoard's step).

Tags written (x-axis in brackets):
    train/loss, train/learning_rate, train/grad_norm      [global step, every log_freq steps]
    train/<metric>, train/epoch_loss, val/<metric>        [epoch]
    pred_distribution, target_distribution                [epoch, every histogram_freq]
    weights/<name>, gradients/<name>                      [epoch, with weight_histograms]
    blendshape_comparison, mouth_shapes_over_time         [epoch, every figure_freq]
    input_audio, mel_spectrogram                          [epoch, every audio_freq]
    hparams (HPARAMS tab) + hparam/<metric>               [final epoch]
"""

from __future__ import annotations

import csv
import io
import logging
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams as hparams_summary
from tqdm.auto import tqdm

from workbench import figures
from workbench.run_folder import atomic_write_text

log = logging.getLogger("workbench")

LOG_FORMAT = "%(asctime)s - %(levelname)s - %(message)s"


class MetricsCSV:
    """`metrics.csv`: one whole line per epoch, flushed at once, valid after a crash.

    The header is fixed by the first row (`epoch`, train metric names, `val_<name>`); later
    rows leave val cells empty when validation did not run.
    """

    def __init__(self, path: Path):
        self.path = path
        self.columns: list[str] | None = None
        if path.is_file() and path.stat().st_size > 0:
            with open(path, newline="") as f:
                self.columns = next(csv.reader(f), None)

    def truncate_after(self, last_epoch: int) -> None:
        """Drop rows of epochs after `last_epoch` (resume) and any partial last line.

        The file is replaced atomically, so a crash during truncation keeps the old file.
        """
        if not self.path.is_file():
            return
        lines = self.path.read_text(encoding="utf-8").splitlines(keepends=True)
        if lines and not lines[0].endswith("\n"):
            lines = []  # a header torn by a killed process; the next append writes it again
        kept = lines[:1]
        for line in lines[1:]:
            if not line.endswith("\n"):
                break  # a partial line left by a killed process
            if int(line.split(",", 1)[0]) <= last_epoch:
                kept.append(line)
        atomic_write_text(self.path, "".join(kept))
        self.columns = next(csv.reader(kept[:1]), None)

    def append(self, epoch: int, train: dict[str, float], val: dict[str, float] | None,
               val_names: list[str]) -> None:
        buffer = io.StringIO()
        mode = "a"
        if self.columns is None:
            self.columns = ["epoch", *train.keys(), *(f"val_{k}" for k in val_names)]
            csv.writer(buffer).writerow(self.columns)
            mode = "w"
        row = {"epoch": epoch, **train, **{f"val_{k}": v for k, v in (val or {}).items()}}
        csv.writer(buffer).writerow(["" if row.get(c) is None else _fmt(row[c]) for c in self.columns])
        # One write() of whole lines (the header goes with the first row), so a crash leaves
        # either the full row or none of it.
        with open(self.path, mode, newline="") as f:
            f.write(buffer.getvalue())
            f.flush()


def _fmt(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


class LoggingMixin:
    """Run logging for a Trainer: TensorBoard, metrics.csv, train.log, console, progress bar.

    The host class must set `self.cfg` (the run config) before calling `setup_logging`.
    Not supported: logging to several run folders at once from one process (train.log uses
    one file handler on the `workbench` logger at a time).
    """

    writer: SummaryWriter
    metrics_csv: MetricsCSV

    def setup_logging(self, run_dir: Path, purge_step: int | None = None) -> None:
        self.run_dir = Path(run_dir)
        install_console_handler(debug=bool(self.cfg.debug))
        self._file_handler = logging.FileHandler(self.run_dir / "train.log", encoding="utf-8")
        self._file_handler.setFormatter(logging.Formatter(LOG_FORMAT))
        self._file_handler.setLevel(logging.DEBUG if self.cfg.debug else logging.INFO)
        log.addHandler(self._file_handler)

        # purge_step drops events at or after that step left by an interrupted earlier process.
        self.writer = SummaryWriter(log_dir=str(self.run_dir / "logs"), purge_step=purge_step,
                                    flush_secs=30)
        self.metrics_csv = MetricsCSV(self.run_dir / "metrics.csv")
        self._bar: tqdm | None = None

    def teardown_logging(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if getattr(self, "writer", None) is not None:
            self.writer.flush()
            self.writer.close()
        if getattr(self, "_file_handler", None) is not None:
            log.removeHandler(self._file_handler)
            self._file_handler.close()
            self._file_handler = None

    # -- progress bar -------------------------------------------------------------------

    def start_progress(self, epoch: int, max_epochs: int, total: int) -> None:
        enabled = bool(self.cfg.logging.progress_bar)
        self._bar = tqdm(total=total, desc=f"Epoch {epoch + 1}/{max_epochs}", leave=False,
                         disable=not enabled, dynamic_ncols=True)

    def advance_progress(self) -> None:
        self._bar.update(1)

    def close_progress(self) -> None:
        self._bar.close()
        self._bar = None

    # -- scalars ------------------------------------------------------------------------

    def log_step(self, step: int, loss: float, lr: float, grad_norm: float | None) -> None:
        """Step-level scalars; the caller has already read the values off the device."""
        self.writer.add_scalar("train/loss", loss, step)
        self.writer.add_scalar("train/learning_rate", lr, step)
        if grad_norm is not None:
            self.writer.add_scalar("train/grad_norm", grad_norm, step)
        if self._bar is not None:
            self._bar.set_postfix_str(f"loss={loss:.4f}, lr={lr:.2e}", refresh=False)

    def log_epoch(self, epoch: int, max_epochs: int, train: dict[str, float],
                  val: dict[str, float] | None, val_names: list[str]) -> None:
        """Epoch scalars, the metrics.csv row and the console block; flushes the writer."""
        for name, value in train.items():
            tag = "train/epoch_loss" if name == "loss" else f"train/{name}"
            self.writer.add_scalar(tag, value, epoch)
        for name, value in (val or {}).items():
            self.writer.add_scalar(f"val/{name}", value, epoch)
        self.metrics_csv.append(epoch, train, val, val_names)

        lines = [f"Epoch {epoch + 1:3d}/{max_epochs}", "-" * 50, "Train Metrics:"]
        lines += [f"  {k}: {v:.4f}" for k, v in train.items()]
        if val is not None:
            lines.append("Validation Metrics:")
            lines += [f"  {k}: {v:.4f}" for k, v in val.items()]
        log.info("\n".join(lines))

        # Flush at each epoch end so a TensorBoard open on the run shows live data.
        self.writer.flush()

    # -- histograms, figures, audio -------------------------------------------------------

    def log_epoch_media(self, epoch: int, model: torch.nn.Module, samples: list[dict[str, Any]],
                        predictions: list[np.ndarray]) -> None:
        """Histograms, figures and audio of the fixed validation samples, per their frequencies.

        `samples[i]` contains numpy arrays `targets` [T, 52], `channel_mask` [52], `mel` [T, n_mels],
        `audio` [samples] at 16 kHz and `name`; `predictions[i]` is the model output [T, 52].
        """
        cfg = self.cfg.logging
        if not samples:
            return
        first, pred = samples[0], predictions[0]
        mask = first["channel_mask"]

        if _due(epoch, cfg.histogram_freq):
            self.writer.add_histogram("pred_distribution", pred[:, mask].ravel(), epoch)
            self.writer.add_histogram("target_distribution", first["targets"][:, mask].ravel(), epoch)
            if cfg.weight_histograms:
                for name, param in model.named_parameters():
                    if not param.requires_grad:
                        continue
                    self.writer.add_histogram(f"weights/{name}", param.detach().float().cpu(), epoch)
                    if param.grad is not None:
                        self.writer.add_histogram(f"gradients/{name}", param.grad.detach().float().cpu(), epoch)

        if _due(epoch, cfg.figure_freq):
            frame = figures.most_active_frame(first["targets"], mask)
            fig = figures.blendshape_bars(pred[frame], first["targets"][frame], mask,
                                          title=f"{first['name']} frame {frame}, epoch {epoch}")
            self.writer.add_figure("blendshape_comparison", fig, epoch, close=True)
            fig = figures.mouth_time_series(pred, first["targets"], mask, self.frame_rate,
                                            title=f"{first['name']}, epoch {epoch}")
            self.writer.add_figure("mouth_shapes_over_time", fig, epoch, close=True)
            figures.save_sample_predictions(self.run_dir / "samples", epoch, samples, predictions)

        if _due(epoch, cfg.audio_freq):
            audio = torch.as_tensor(first["audio"], dtype=torch.float32).clamp(-1, 1)
            self.writer.add_audio("input_audio", audio[None], epoch, sample_rate=self.cfg.features.sample_rate)
            fig = figures.mel_figure(first["mel"], self.frame_rate, title=f"{first['name']} log-mel")
            self.writer.add_figure("mel_spectrogram", fig, epoch, close=True)

    # -- hyperparameters ------------------------------------------------------------------

    def log_hparams(self, hparams: dict[str, Any], final_metrics: dict[str, float], step: int) -> None:
        """Write the HPARAMS-tab summaries into this run's own event file.

        `SummaryWriter.add_hparams` would open a new timestamped sub-run; writing the three
        summaries through our file writer keeps hparams and metrics in one run.
        """
        # torch's hparams() stores a bool as the number 0/1 (it tests int before bool), so bools
        # go in as the strings "true"/"false", as they are spelled in config.yaml.
        clean = {k: (str(v).lower() if isinstance(v, bool) else v) for k, v in hparams.items()
                 if isinstance(v, (int, float, str, bool))}
        metrics = {f"hparam/{k}": float(v) for k, v in final_metrics.items()
                   if v is not None and math.isfinite(v)}
        experiment, session_start, session_end = hparams_summary(clean, metrics)
        file_writer = self.writer._get_file_writer()
        for summary in (experiment, session_start, session_end):
            file_writer.add_summary(summary)
        for tag, value in metrics.items():
            self.writer.add_scalar(tag, value, step)
        self.writer.flush()


def _due(epoch: int, freq: int) -> bool:
    return freq > 0 and epoch % freq == 0


class _StdoutHandler(logging.StreamHandler):
    """A handler that writes to whatever `sys.stdout` is at emit time.

    Jupyter kernels and pytest's capture replace `sys.stdout`. A handler bound to the object
    present at install time would keep writing to a stale or closed stream.
    """

    def __init__(self) -> None:
        super().__init__(sys.stdout)

    @property
    def stream(self):  # type: ignore[override]
        return sys.stdout

    @stream.setter
    def stream(self, value) -> None:
        pass  # always sys.stdout; StreamHandler.__init__ and setStream assign here


def install_console_handler(debug: bool = False) -> None:
    """Send `workbench` log records to stdout once per process (notebooks create many Trainers)."""
    log.setLevel(logging.DEBUG if debug else logging.INFO)
    log.propagate = False
    for handler in log.handlers:
        if getattr(handler, "_workbench_console", False):
            handler.setLevel(logging.DEBUG if debug else logging.INFO)
            return
    handler = _StdoutHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.setLevel(logging.DEBUG if debug else logging.INFO)
    handler._workbench_console = True  # type: ignore[attr-defined]
    log.addHandler(handler)
