"""Trainer: config -> data -> model -> optimizer -> run folder -> epochs of train/validate.

The story of one run, in order:
    setup_data()        find, load and align clips; split by clip; fail before any run folder
    setup_model()       build the model, normalise inputs, start outputs at the target means
    setup_optimizer()   optimizer and per-epoch LR schedule from config
    setup_run()         run folder, config.yaml, logs (or reopen them when resuming)
    fit()               for each epoch: train_epoch(), validate() when due, checkpoints, media

Host syncs: a training step reads nothing off the device. Loss, grad norm and the NaN flag
stay on the device and are read together, once, every `logging.log_freq` steps and at the
end of each epoch. The one exception is `nan_policy=skip`, which must decide per step.
"""

from __future__ import annotations

import logging
import math
import random
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from omegaconf import OmegaConf
from torch.utils.data import DataLoader

from workbench import run_folder
from workbench.audio import read_audio
from workbench.checkpoint import save_checkpoint
from workbench.config import load_config, to_flat_dict, to_yaml
from workbench.dataset import (WindowDataset, build_cache, clip_tensors, feature_stats, load_clips,
                               split_clips)
from workbench.errors import CheckpointError, ConfigError, WorkbenchError
from workbench.logging_mixin import LoggingMixin, install_console_handler
from workbench.metrics import BlendshapeMetrics
from workbench.augment import augment_log_mel
from workbench.model import BlendshapeModel, blendshape_loss, inverse_variance_weights
from workbench.resume import (DeferredInterrupt, load_metrics_state, load_resume_checkpoint, metrics_state,
                              trim_event_files)
from workbench.tensorboard import format_command, tensorboard_command

log = logging.getLogger("workbench.trainer")

SAMPLE_SECONDS = 4.0  # length of each fixed validation sample shown in figures and viewers
NUM_SAMPLES = 3


class NonFiniteLossError(WorkbenchError):
    """A NaN or Inf loss or gradient (`nan_policy=stop`), or too many skipped steps (`skip`)."""


class _NumberedWindows(torch.utils.data.Dataset):
    """Training windows with their index as `window`, so a non-finite batch can be named."""

    def __init__(self, windows: WindowDataset):
        self.windows = windows

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {**self.windows[i], "window": i}


class Trainer(LoggingMixin):
    """Train a BlendshapeModel on a clip folder and log the run per the logging contract.

    Not supported: multiple devices or distributed training, gradient accumulation, and
    changing the model shape on resume (the checkpoint's shape wins and must match config).
    """

    def __init__(self, cfg, resume: str | Path | None = None):
        self.cfg = cfg
        self.resume_dir = Path(resume) if resume else None
        install_console_handler(debug=bool(cfg.debug))
        self.device = _pick_device(cfg.training.device)
        self.start_epoch = 0
        self.global_step = 0
        self.best_value: float | None = None
        self.nan_skips = 0
        self.run_dir: Path | None = None
        self._resume_state: dict[str, Any] | None = None  # last.pt of the run being resumed
        self._resume_progress: dict[str, Any] | None = None  # progress of an epoch to continue mid-way
        self._progress: dict[str, Any] | None = None  # this epoch's progress at its last whole step
        self._last_saved: dict[str, Any] | None = None  # epoch and step of the newest last.pt
        self._interrupt = DeferredInterrupt()

    @classmethod
    def from_files(cls, config_path=None, overrides=(), resume=None) -> "Trainer":
        if resume and config_path is None:
            config_path = Path(resume) / "config.yaml"
            if not config_path.is_file():
                raise CheckpointError(f"cannot resume {resume}: not a run folder (no config.yaml found)")
        return cls(load_config(config_path, overrides), resume=resume)

    # -- setup ----------------------------------------------------------------------------

    def setup_data(self) -> None:
        self._check_before_data()
        cfg = self.cfg
        _seed_everything(cfg.training.seed)
        self.cache = build_cache(cfg)
        self.frame_rate = self.cache.settings.frame_rate
        clips = load_clips(cfg.data.root, self.cache, max_mismatch_s=cfg.data.max_length_mismatch_seconds,
                           on_bad_clip=cfg.data.on_bad_clip, max_clips=cfg.data.max_clips)
        self.train_clips, self.val_clips = split_clips(clips, cfg.data.val_clips, cfg.training.seed)
        # Channels present in at least one training clip; the others are never trained.
        self.channel_mask = np.logical_or.reduce([c.channel_mask for c in self.train_clips])

        window = max(1, round(cfg.data.window_seconds * self.frame_rate))
        hop = max(1, round(cfg.data.window_hop_seconds * self.frame_rate))
        self.train_set = WindowDataset(self.train_clips, window, hop)
        generator = torch.Generator().manual_seed(cfg.training.seed)
        self.train_loader = DataLoader(_NumberedWindows(self.train_set), batch_size=cfg.training.batch_size, shuffle=True,
                                       drop_last=False, generator=generator)
        self._setup_summary = []
        self._log_setup("data: %d train clips (%d windows of %d frames), %d val clips (%s); feature cache %d hits, %d misses",
                 len(self.train_clips), len(self.train_set), window, len(self.val_clips),
                 ", ".join(c.name for c in self.val_clips) or "none", self.cache.hits, self.cache.misses)
        self.samples = self._pick_samples()

    def _log_setup(self, message: str, *args) -> None:
        log.info(message, *args)
        self._setup_summary.append((message, args))

    def setup_model(self) -> None:
        self.model = BlendshapeModel.from_config(self.cfg)
        mean, std = feature_stats(self.train_clips)
        stacked = np.concatenate([c.targets for c in self.train_clips])
        self.model.init_from_data(mean, std, stacked.mean(axis=0))
        self.model.to(self.device)
        self.channel_weight = None
        if self.cfg.training.loss_weighting == "inverse_variance":
            weights = inverse_variance_weights(stacked, self.channel_mask)
            self.channel_weight = torch.from_numpy(weights).to(self.device)
        params = sum(p.numel() for p in self.model.parameters())
        self._log_setup("model: %s, %d parameters, device %s", self.cfg.model.kind, params, self.device)

    def setup_optimizer(self) -> None:
        t = self.cfg.training
        params = self.model.parameters()
        if t.optimizer == "adamw":
            self.optimizer = torch.optim.AdamW(params, lr=t.lr, weight_decay=t.weight_decay)
        elif t.optimizer == "adam":
            self.optimizer = torch.optim.Adam(params, lr=t.lr, weight_decay=t.weight_decay)
        else:
            self.optimizer = torch.optim.SGD(params, lr=t.lr, momentum=0.9, weight_decay=t.weight_decay)

        # The schedule steps once per epoch, so the LR curve does not depend on dataset size.
        if t.scheduler == "cosine":
            self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=t.max_epochs,
                                                                        eta_min=t.lr * 0.05)
        elif t.scheduler == "step":
            self.scheduler = torch.optim.lr_scheduler.StepLR(self.optimizer, step_size=t.step_size, gamma=t.gamma)
        else:
            self.scheduler = None

    def setup_run(self) -> None:
        if self.resume_dir is not None:
            self._restore(self.resume_dir / "checkpoints" / "last.pt")
            self.run_dir = self.resume_dir
            # The stopped process may have logged past its checkpoint; drop that before appending.
            trim_event_files(self.run_dir / "logs", self._resume_state["saved_at"])
            self.setup_logging(self.run_dir)
            self.metrics_csv.truncate_after(self.start_epoch - 1)
            self._log_resumed()
        else:
            self.run_dir = run_folder.create_run_folder(self.cfg.run.root, self.cfg.run.name)
            run_folder.atomic_write_text(self.run_dir / "config.yaml", to_yaml(self.cfg))
            self.setup_logging(self.run_dir)
        run_folder.write_status(self.run_dir, "running", epoch=self.start_epoch)
        # The data and model lines were logged before train.log existed; add them to the file only.
        for message, args in getattr(self, "_setup_summary", []):
            self._file_handler.handle(log.makeRecord(log.name, logging.INFO, __file__, 0, message, args, None))
        log.info("Run folder: %s", self.run_dir)
        log.info("TensorBoard: %s", format_command(tensorboard_command(self.run_dir / "logs")))

    # -- the loop -------------------------------------------------------------------------

    def fit(self) -> Path:
        """Run every setup step and train; returns the run folder."""
        self.setup_data()  # raises on bad data before any run folder exists
        self.setup_model()
        self.setup_optimizer()
        self.setup_run()
        return self.train_loop()

    def train_loop(self) -> Path:
        """Train the epochs after every setup step has run; returns the run folder.

        Notebooks call the setup steps themselves, so they can open TensorBoard on the
        run folder before the first epoch, and then call this.
        """
        t = self.cfg.training
        started = time.perf_counter()
        log.info("Starting training...")
        self._interrupt.install()
        try:
            for epoch in range(self.start_epoch, t.max_epochs):
                self.epoch = epoch
                train_metrics = self.train_epoch(epoch)
                val_metrics = None
                if self.val_clips and (epoch % t.validation_freq == 0 or epoch == t.max_epochs - 1):
                    val_metrics = self.validate()
                self.log_epoch(epoch, t.max_epochs, train_metrics, val_metrics, self.val_metric_names)
                self._log_media(epoch)
                self._progress = None  # from here until last.pt is written, an interrupt cannot save
                if self.scheduler is not None:
                    self.scheduler.step()
                self._save_checkpoints(epoch, val_metrics)
                self.last_val_metrics = val_metrics or getattr(self, "last_val_metrics", None)
                self.last_train_metrics = train_metrics
                if self._interrupt.requested and epoch < t.max_epochs - 1:
                    raise KeyboardInterrupt  # Ctrl-C during validation or media: stop at this epoch end
        except KeyboardInterrupt:
            self._on_interrupt()
            raise
        except NonFiniteLossError as exc:
            self._fail(str(exc))
            raise
        except BaseException as exc:
            self._fail(f"{type(exc).__name__}: {exc}")
            raise
        finally:
            self._interrupt.uninstall()

        elapsed = time.perf_counter() - started
        self._finish(elapsed)
        return self.run_dir

    def train_epoch(self, epoch: int) -> dict[str, float]:
        # The loop reads config values on every step. An attribute read on an OmegaConf
        # DictConfig took about 15 us on a 2-core CPU (benchmarks/overhead.py), a plain one < 1 us.
        cfg = _plain_config(self.cfg)
        t = cfg.training
        self.model.train()
        metrics = BlendshapeMetrics(device=self.device)
        loss_sum = torch.zeros((), device=self.device)
        # Device-side record of the first non-finite step: [global step, code]; code 1 = loss, 2 = grad.
        bad = torch.tensor([-1, 0], device=self.device)
        grad_norm = torch.zeros((), device=self.device)
        steps = 0
        self._epoch_start_step = self.global_step
        self._recent_windows: dict[int, torch.Tensor] = {}  # global step -> window ids, since the last check
        skip = 0
        if self._resume_progress is not None:  # continue an epoch that Ctrl-C stopped mid-way
            skip, steps, bad = self._restore_progress(metrics, loss_sum)
        self._epoch_loader_state = self.train_loader.generator.get_state()  # fixes this epoch's batch order
        self.start_progress(epoch, t.max_epochs, len(self.train_loader))
        for batch_idx, batch in enumerate(self.train_loader):
            if batch_idx < skip:
                self.advance_progress()  # trained before the interruption
                continue
            mel = batch["mel"].to(self.device, non_blocking=True)
            target = batch["targets"].to(self.device, non_blocking=True)
            mask = batch["mask"].to(self.device, non_blocking=True)
            if cfg.debug:
                log.debug("epoch %d batch %d: mel %s targets %s mask %s", epoch, batch_idx,
                          tuple(mel.shape), tuple(target.shape), tuple(mask.shape))

            if t.augment:
                mel = augment_log_mel(mel, self.model.feature_mean)

            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=t.amp == "bf16"):
                pred = self.model(mel)
                loss = blendshape_loss(pred.float(), target, mask, t.velocity_weight, self.channel_weight)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.global_step += 1
            max_norm = t.grad_clip if t.grad_clip > 0 else math.inf
            grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm)

            finite_loss, finite_grad = torch.isfinite(loss), torch.isfinite(grad_norm)
            if t.nan_policy == "skip":
                # Skipping must be decided now, so this policy costs one host sync per step.
                if not bool(finite_loss & finite_grad):
                    self._skip_step(epoch, batch_idx, bool(finite_loss), batch["window"])
                    self.advance_progress()
                    continue
            else:
                code = (~finite_loss).long() + 2 * (~finite_grad).long() * finite_loss.long()
                record = torch.stack([code.new_full((), self.global_step), code])  # a fill, not a host copy
                bad = torch.where((bad[0] < 0) & (code > 0), record, bad)
                self._recent_windows[self.global_step] = batch["window"]  # CPU tensor: no sync
            self.optimizer.step()

            metrics.update(pred.detach().float(), target, mask, batch["silence"].to(self.device))
            loss_sum += loss.detach()
            steps += 1
            self.advance_progress()
            if self.global_step % cfg.logging.log_freq == 0:
                self._log_step(loss, grad_norm, bad, epoch)
            self._end_step(epoch, batch_idx, steps, loss_sum, metrics, bad)

        self.close_progress()
        self._check_bad(bad, epoch)
        result = {"loss": (loss_sum / max(steps, 1)).item()}
        result.update({k: v for k, v in metrics.compute().items() if k in self.train_metric_names})
        return result

    def _log_step(self, loss: torch.Tensor, grad_norm: torch.Tensor, bad: torch.Tensor, epoch: int) -> None:
        # Sync point: one device-to-host copy for loss, grad norm and the NaN record.
        loss_v, norm_v, bad_step, bad_code = torch.stack(
            [loss.detach().float(), grad_norm.float(), bad[0].float(), bad[1].float()]).tolist()
        self._check_bad((int(bad_step), int(bad_code)), epoch)  # host values: no second read
        self._recent_windows.clear()
        lr = self.optimizer.param_groups[0]["lr"]
        self.log_step(self.global_step, loss_v, lr, norm_v if self.cfg.logging.log_grad_norm else None)

    def _check_bad(self, bad: torch.Tensor | tuple[int, int], epoch: int) -> None:
        """Raise NonFiniteLossError for the first non-finite step in the record [global step, code]."""
        step, code = (int(v) for v in (bad.tolist() if isinstance(bad, torch.Tensor) else bad))
        if step < 0:
            return
        batch = step - self._epoch_start_step  # 1-based: global steps count from 1
        what = "loss" if code == 1 else "gradient (the loss was finite)"
        message = (f"NaN or Inf {what} at epoch {epoch + 1}/{self.cfg.training.max_epochs}, "
                   f"batch {batch}/{len(self.train_loader)}, global step {step}; "
                   f"windows: {self._describe_windows(self._recent_windows.get(step))}; "
                   "lower training.lr, check the input data, or set training.nan_policy=skip")
        if self._bar is not None:
            self.close_progress()
        raise NonFiniteLossError(message)

    def _skip_step(self, epoch: int, batch_idx: int, loss_finite: bool, windows: torch.Tensor) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        self.nan_skips += 1
        what = "gradient (the loss was finite)" if loss_finite else "loss"
        where = (f"epoch {epoch + 1}/{self.cfg.training.max_epochs}, batch {batch_idx + 1}/{len(self.train_loader)}, "
                 f"global step {self.global_step}")
        log.warning("skipped step: NaN or Inf %s at %s; windows: %s; %d skipped so far (max %d)", what, where,
                    self._describe_windows(windows), self.nan_skips, self.cfg.training.max_nan_skips)
        self.writer.add_scalar("train/nan_skips", self.nan_skips, self.global_step)
        if self.nan_skips >= self.cfg.training.max_nan_skips:
            raise NonFiniteLossError(
                f"{self.nan_skips} steps skipped for NaN or Inf values (last: {what} at {where}), "
                f"reaching training.max_nan_skips={self.cfg.training.max_nan_skips}; lower training.lr or check the data"
            )

    def _describe_windows(self, windows: torch.Tensor | None) -> str:
        """Name a batch's training windows as `<clip>@<start seconds>`."""
        if windows is None:
            return "unknown"
        names = []
        for i in windows.tolist():
            clip_index, start = self.train_set.index[i]
            names.append(f"{self.train_set.clips[clip_index].name}@{start / self.frame_rate:.2f}s")
        return ", ".join(names)

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Full-clip validation: each val clip runs as one sequence, as at inference."""
        t = self.cfg.training
        self.model.eval()
        metrics = BlendshapeMetrics(device=self.device)
        loss_sum, frames = 0.0, 0
        for clip in self.val_clips:
            batch = clip_tensors(clip)
            mel = batch["mel"][None].to(self.device)
            target = batch["targets"][None].to(self.device)
            mask = batch["mask"][None].to(self.device)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=t.amp == "bf16"):
                pred = self.model(mel).float()
            loss = blendshape_loss(pred, target, mask, t.velocity_weight, self.channel_weight)
            metrics.update(pred, target, mask, batch["silence"][None].to(self.device))
            loss_sum += loss.item() * clip.num_frames  # sync per val clip; validation is not the hot path
            frames += clip.num_frames
        self.model.train()
        return {"loss": loss_sum / max(frames, 1), **metrics.compute()}

    @property
    def train_metric_names(self) -> tuple[str, ...]:
        return ("mae", "mse", "mean_correlation")

    @property
    def val_metric_names(self) -> list[str]:
        return ["loss", *BlendshapeMetrics().metric_names]

    # -- media samples --------------------------------------------------------------------

    def _pick_samples(self) -> list[dict[str, Any]]:
        """Fixed validation windows (from val clips, else train clips) shown every epoch."""
        clips = self.val_clips or self.train_clips
        length = round(SAMPLE_SECONDS * self.frame_rate)
        hop = self.cache.settings.hop_length
        samples = []
        for i in range(NUM_SAMPLES):
            clip = clips[i % len(clips)]
            # Spread the samples over the clip: 1/4, 1/2, 3/4 of the way in.
            start = max(0, min(clip.num_frames - length, (i + 1) * clip.num_frames // (NUM_SAMPLES + 1) - length // 2))
            n = min(length, clip.num_frames - start)
            audio = read_audio(clip.audio_path, self.cache.settings.sample_rate)[start * hop:(start + n) * hop]
            samples.append({
                "name": f"{clip.name}@{start / self.frame_rate:.1f}s", "clip": clip.name, "start_frame": start,
                "mel": clip.mel[start:start + n], "targets": clip.targets[start:start + n],
                "channel_mask": clip.channel_mask, "audio": audio.numpy(),
                "frame_rate": self.frame_rate, "sample_rate": self.cache.settings.sample_rate,
            })
        return samples

    @torch.no_grad()
    def _log_media(self, epoch: int) -> None:
        lc = self.cfg.logging
        due = [f > 0 and epoch % f == 0 for f in (lc.histogram_freq, lc.figure_freq, lc.audio_freq)]
        if not any(due):
            return
        self.model.eval()
        predictions = [self.model(torch.from_numpy(s["mel"])[None].to(self.device)).float()[0].cpu().numpy()
                       for s in self.samples]
        self.model.train()
        self.log_epoch_media(epoch, self.model, self.samples, predictions)

    # -- checkpoints and run state --------------------------------------------------------

    def _state(self, epoch: int, progress: dict[str, Any] | None = None) -> dict[str, Any]:
        """Everything a resumed run needs; `progress` marks a save in the middle of `epoch`."""
        return {
            "epoch": epoch,
            "epoch_complete": progress is None,
            "progress": progress,
            "saved_at": time.time(),  # wall time that resume trims the TensorBoard events to
            "global_step": self.global_step,
            "model": self.model.state_dict(),
            "model_hparams": dict(self.model.hparams),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "best_value": self.best_value,
            "best_epoch": getattr(self, "best_epoch", None),
            "nan_skips": self.nan_skips,
            "feature_settings": dict(self.cache.settings.__dict__),
            "channel_mask": torch.from_numpy(self.channel_mask.copy()),
            "config_yaml": to_yaml(self.cfg),
            "rng": {
                "torch": torch.get_rng_state(),
                "loader": self.train_loader.generator.get_state(),
                "numpy": _numpy_state_to_plain(np.random.get_state()),
                "python": _python_state_to_plain(random.getstate()),
            },
        }

    def _save_checkpoints(self, epoch: int, val_metrics: dict[str, float] | None) -> None:
        ckpt_dir = self.run_dir / "checkpoints"
        t = self.cfg.training
        improved = False
        if val_metrics is not None:
            value = val_metrics.get(t.best_metric)
            if value is None:
                raise ConfigError(f"training.best_metric={t.best_metric!r} is not a validation metric; "
                                  f"choose one of {', '.join(val_metrics)}")
            if math.isfinite(value) and (self.best_value is None
                                         or (value > self.best_value if t.best_mode == "max" else value < self.best_value)):
                self.best_value = value
                self.best_epoch = epoch
                improved = True
        self.writer.flush()  # events on disk before the checkpoint: resume trims by the save time
        state = self._state(epoch)
        # best.pt first: last.pt is what resume reads, so once it exists the epoch is fully saved.
        if improved or (not self.val_clips):
            save_checkpoint(ckpt_dir / "best.pt", state)
        save_checkpoint(ckpt_dir / "last.pt", state)
        self._last_saved = {"epoch": epoch, "epoch_complete": True, "global_step": self.global_step}
        run_folder.write_status(self.run_dir, "running", epoch=epoch, global_step=self.global_step)

    def _restore(self, path: Path) -> None:
        """Load the run state from the checkpoint `path` that `_check_before_data` read."""
        if self._resume_state is None:
            self._resume_state = load_resume_checkpoint(self.resume_dir, self.cfg)
        state = self._resume_state
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError) as exc:
            raise CheckpointError(f"cannot resume from {path}: its model or optimizer does not match the run's "
                                  f"config ({str(exc).splitlines()[0][:200]})") from None
        if self.scheduler is not None and state["scheduler"] is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        if state["epoch_complete"]:
            self.start_epoch = state["epoch"] + 1
        else:
            self.start_epoch = state["epoch"]
            self._resume_progress = state["progress"]
        self.global_step = state["global_step"]
        self._last_saved = {"epoch": state["epoch"], "epoch_complete": state["epoch_complete"],
                            "global_step": state["global_step"]}
        self.best_value = state["best_value"]
        if state["best_epoch"] is not None:
            self.best_epoch = state["best_epoch"]
        self.nan_skips = state["nan_skips"]
        torch.set_rng_state(state["rng"]["torch"])
        self.train_loader.generator.set_state(state["rng"]["loader"])
        np.random.set_state(_numpy_state_from_plain(state["rng"]["numpy"]))
        random.setstate(_python_state_from_plain(state["rng"]["python"]))

    def _finish(self, elapsed: float) -> None:
        final = {f"val_{k}": v for k, v in (getattr(self, "last_val_metrics", None) or {}).items()}
        final.update({f"train_{k}": v for k, v in self.last_train_metrics.items()} if hasattr(self, "last_train_metrics") else {})
        if self.best_value is not None:
            final[f"best_val_{self.cfg.training.best_metric}"] = self.best_value
        self.log_hparams(to_flat_dict(self.cfg), final, self.cfg.training.max_epochs - 1)
        run_folder.write_status(self.run_dir, "completed", epoch=self.cfg.training.max_epochs - 1,
                                global_step=self.global_step, seconds=round(elapsed, 2), final_metrics=final)
        log.info("Training finished in %.1f s; run folder: %s", elapsed, self.run_dir)
        self.teardown_logging()

    def _fail(self, reason: str) -> None:
        if self.run_dir is None:
            return
        if hasattr(self, "model") and hasattr(self, "epoch"):
            save_checkpoint(self.run_dir / "checkpoints" / "failed.pt", self._state(self.epoch))
        log.error("Training failed: %s", reason)
        run_folder.write_status(self.run_dir, "failed", error=reason, global_step=self.global_step)
        self.teardown_logging()

    def _on_interrupt(self) -> None:
        """Save a checkpoint if the model is at a whole step, close the logs, mark the run interrupted."""
        if self.run_dir is None:
            return
        if self._bar is not None:
            self.close_progress()
        progress = self._progress
        # Unchanged global step: no optimizer step started since the last whole step.
        if progress is not None and progress["global_step"] == self.global_step:
            self.writer.flush()
            saved = {**progress, "metrics": metrics_state(progress["metrics"]),
                     "loss_sum": progress["loss_sum"].detach().cpu(), "bad": progress["bad"].cpu()}
            save_checkpoint(self.run_dir / "checkpoints" / "last.pt", self._state(self.epoch, saved))
            self._last_saved = {"epoch": self.epoch, "epoch_complete": False, "global_step": self.global_step}
            log.warning("Interrupted in epoch %d/%d after batch %d/%d; checkpoint saved", self.epoch + 1,
                        self.cfg.training.max_epochs, progress["batches_done"], len(self.train_loader))
        elif self._last_saved is not None:
            log.warning("Interrupted in the middle of a step; the run continues from its last checkpoint "
                        "(epoch %d, global step %d)", self._last_saved["epoch"] + 1, self._last_saved["global_step"])
        command = f"workbench train --resume {self.run_dir}"
        if self._last_saved is None:
            log.warning("Interrupted before the first checkpoint; nothing to resume, start a new run")
            run_folder.write_status(self.run_dir, "interrupted", global_step=self.global_step, checkpoint=None)
        else:
            log.warning("Resume with: %s", command)
            run_folder.write_status(self.run_dir, "interrupted", checkpoint=self._last_saved, resume_command=command)
        self.teardown_logging()

    # -- stopping and resuming ------------------------------------------------------------

    def on_step_end(self, epoch: int, batch_idx: int) -> None:
        """Called after every whole optimizer step; override to watch or stop training.

        Raising KeyboardInterrupt here stops the run as Ctrl-C does: with a checkpoint that
        resumes after this batch.
        """

    def _end_step(self, epoch: int, batch_idx: int, steps: int, loss_sum: torch.Tensor,
                  metrics: BlendshapeMetrics, bad: torch.Tensor) -> None:
        # Record the epoch's progress. Tensors are copied only if an interrupt saves them.
        self._progress = {"batches_done": batch_idx + 1, "steps": steps, "loss_sum": loss_sum, "metrics": metrics,
                          "bad": bad, "epoch_start_step": self._epoch_start_step, "global_step": self.global_step,
                          "loader_state": self._epoch_loader_state}
        self.on_step_end(epoch, batch_idx)
        if self._interrupt.requested:
            raise KeyboardInterrupt

    def _restore_progress(self, metrics: BlendshapeMetrics, loss_sum: torch.Tensor) -> tuple[int, int, torch.Tensor]:
        """Load a mid-epoch checkpoint's sums; returns (batches to skip, steps so far, NaN record)."""
        progress, self._resume_progress = self._resume_progress, None
        # The epoch-start generator state replays the same shuffle; the skipped batches are not trained.
        self.train_loader.generator.set_state(progress["loader_state"])
        load_metrics_state(metrics, progress["metrics"])
        loss_sum.copy_(progress["loss_sum"])
        self._epoch_start_step = progress["epoch_start_step"]
        return progress["batches_done"], progress["steps"], progress["bad"].to(self.device)

    def _check_before_data(self) -> None:
        """Fail fast on an unusable run.root or resume folder, before data loading takes time."""
        if self.resume_dir is not None:
            self._resume_state = load_resume_checkpoint(self.resume_dir, self.cfg)
        else:
            run_folder.check_run_root(self.cfg.run.root)
        if self.cfg.training.best_metric not in self.val_metric_names:
            raise ConfigError(f"training.best_metric={self.cfg.training.best_metric!r} is not a validation metric; "
                              f"choose one of {', '.join(self.val_metric_names)}")

    def _log_resumed(self) -> None:
        state, max_epochs = self._resume_state, self.cfg.training.max_epochs
        if state["epoch_complete"]:
            log.info("Resumed from epoch %d (global step %d): continuing with epoch %d/%d in %s", state["epoch"] + 1,
                     self.global_step, state["epoch"] + 2, max_epochs, self.run_dir)
        else:
            log.info("Resumed from epoch %d, batch %d (global step %d): continuing epoch %d/%d in %s",
                     state["epoch"] + 1, state["progress"]["batches_done"], self.global_step, state["epoch"] + 1,
                     max_epochs, self.run_dir)


def _pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("training.device=cuda but no CUDA device is available; use training.device=cpu or auto")
    return torch.device(name)


def _plain_config(cfg) -> SimpleNamespace:
    """Copy a DictConfig into nested SimpleNamespaces (read-only use in hot loops)."""
    def convert(node):
        if isinstance(node, dict):
            return SimpleNamespace(**{k: convert(v) for k, v in node.items()})
        return node
    return convert(OmegaConf.to_container(cfg, resolve=True))


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# numpy and Python RNG states hold arrays and tuples; checkpoints loaded with weights_only=True
# accept only tensors and plain containers, so convert both ways.
def _numpy_state_to_plain(state) -> dict[str, Any]:
    return {"name": state[0], "keys": torch.from_numpy(state[1].astype(np.int64)), "pos": int(state[2]),
            "has_gauss": int(state[3]), "gauss": float(state[4])}


def _numpy_state_from_plain(plain) -> tuple:
    return (plain["name"], plain["keys"].numpy().astype(np.uint32), plain["pos"], plain["has_gauss"], plain["gauss"])


def _python_state_to_plain(state) -> list:
    return [state[0], list(state[1]), state[2]]


def _python_state_from_plain(plain) -> tuple:
    return (plain[0], tuple(plain[1]), plain[2])


def train(config_path=None, overrides=(), resume=None) -> Path:
    """Train from a config file plus `key=value` overrides; returns the run folder."""
    return Trainer.from_files(config_path, overrides, resume).fit()
