"""Framework overhead: time per optimizer step of a tiny model, three ways, interleaved.

    bare       a plain PyTorch loop: same model, loss, AdamW, cosine schedule, clipping
    bare_metrics  the same loop plus BlendshapeMetrics.update per step and compute per
               epoch, the epoch train metrics the Trainer always computes; ours minus this
               is the framework's own cost
    ours       workbench.trainer.Trainer (real train_epoch, TensorBoard, metrics.csv,
               train.log, tqdm bar, per-step metric sums, NaN flag, checkpoints each epoch)
    lightning  lightning.Trainer with TensorBoardLogger, its tqdm bar, LearningRateMonitor,
               the same log cadence, the same metric sums and its default checkpointing

All three read the same pre-built in-memory batches (no DataLoader collation), so the
difference is framework work. Media logging (histograms, figures, audio) and batch
augmentation are off in ours because no baseline has them; validation is off in all.

Each measurement runs in a fresh process (imports and process start are not timed). The
rounds interleave the three, rotating their order, and ratios are taken within a round.

    python benchmarks/overhead.py [--rounds 5] [--epochs 10] [--batches 250]
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from benchmarks.common import (BatchList, InMemoryTrainer, TinyModel, fmt_spread, header_lines,  # noqa: E402
                               load_average, make_batches, spread, tiny_config, verdict, wait_for_quiet,
                               write_section)
from workbench.metrics import BlendshapeMetrics  # noqa: E402
from workbench.model import blendshape_loss  # noqa: E402

METHODS = ("bare", "bare_metrics", "ours", "lightning")
BATCH_SIZE, FRAMES = 16, 100
LR, WEIGHT_DECAY, GRAD_CLIP, VELOCITY_WEIGHT, LOG_FREQ = 0.002, 1e-4, 1.0, 0.5, 10
TARGET_VS_BARE, TARGET_VS_LIGHTNING = 1.05, 0.8


# -- one measurement (child process) -------------------------------------------------------

def mark() -> float:
    """Current time, after the device has finished the queued work."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter()


def run_bare(batches, epochs: int, workdir: Path, device: str, with_metrics: bool = False) -> list[float]:
    torch.manual_seed(0)
    model = TinyModel().to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs, eta_min=LR * 0.05)
    loader = BatchList(batches)
    marks = []
    for _ in range(epochs):
        marks.append(mark())
        metrics = BlendshapeMetrics(device=device)
        for batch in loader:
            pred = model(batch["mel"])
            loss = blendshape_loss(pred, batch["targets"], batch["mask"], VELOCITY_WEIGHT)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
            optimizer.step()
            if with_metrics:
                metrics.update(pred.detach(), batch["targets"], batch["mask"], batch["silence"])
        if with_metrics:
            metrics.compute()
        scheduler.step()
    marks.append(mark())
    return marks


def run_ours(batches, epochs: int, workdir: Path, device: str) -> list[float]:
    marks: list[float] = []

    class TimedTrainer(InMemoryTrainer):
        def train_epoch(self, epoch):
            marks.append(mark())
            return super().train_epoch(epoch)

    cfg = tiny_config(workdir / "runs", epochs, [f"logging.log_freq={LOG_FREQ}"], device)
    TimedTrainer(cfg, batches).fit()
    marks.append(mark())
    return marks


def run_lightning(batches, epochs: int, workdir: Path, device: str) -> list[float]:
    import lightning as L
    from lightning.pytorch.callbacks import LearningRateMonitor
    from lightning.pytorch.loggers import TensorBoardLogger

    marks: list[float] = []

    class TinyModule(L.LightningModule):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.model = TinyModel()
            self.metrics = BlendshapeMetrics(device=device)

        def training_step(self, batch, batch_idx):
            pred = self.model(batch["mel"])
            loss = blendshape_loss(pred, batch["targets"], batch["mask"], VELOCITY_WEIGHT)
            self.metrics.update(pred.detach(), batch["targets"], batch["mask"], batch["silence"])
            self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True)
            return loss

        def on_before_optimizer_step(self, optimizer):
            norm = torch.nn.utils.clip_grad_norm_(self.parameters(), GRAD_CLIP)
            self.log("train/grad_norm", norm, on_step=True, on_epoch=False)

        def on_train_epoch_start(self):
            marks.append(mark())

        def on_train_epoch_end(self):
            values = self.metrics.compute()
            self.log_dict({f"train/{k}": values[k] for k in ("mae", "mse", "mean_correlation")})
            self.metrics.reset()

        def configure_optimizers(self):
            optimizer = torch.optim.AdamW(self.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
            scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs, eta_min=LR * 0.05)
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}

    trainer = L.Trainer(
        max_epochs=epochs, accelerator="gpu" if device.startswith("cuda") else "cpu", devices=1, default_root_dir=str(workdir),
        logger=TensorBoardLogger(str(workdir / "tb")), log_every_n_steps=LOG_FREQ,
        callbacks=[LearningRateMonitor(logging_interval="step")],
    )
    trainer.fit(TinyModule(), train_dataloaders=BatchList(batches))
    marks.append(mark())
    return marks


def measure_one(method: str, epochs: int, batch_count: int, out: Path, threads: int, device: str) -> None:
    if threads > 0:
        torch.set_num_threads(threads)
    # Batches are made on the CPU and moved once, so every method reads them from device memory.
    batches = [{k: v.to(device) for k, v in b.items()} for b in make_batches(batch_count, BATCH_SIZE, FRAMES)]
    with tempfile.TemporaryDirectory(prefix=f"overhead-{method}-") as tmp:
        runner = {"bare": run_bare, "bare_metrics": lambda *a: run_bare(*a, with_metrics=True),
                  "ours": run_ours, "lightning": run_lightning}[method]
        start = mark()
        marks = runner(batches, epochs, Path(tmp), device)
    steps = epochs * batch_count
    # Steady state: from the start of the second epoch to the start of the last one, so
    # startup, the first epoch's warm-up and teardown are left out.
    steady_steps = (epochs - 2) * batch_count
    result = {
        "method": method,
        "steps": steps,
        "total_ms_per_step": 1000 * (marks[-1] - start) / steps,
        "steady_ms_per_step": 1000 * (marks[-2] - marks[1]) / steady_steps,
        "steady_steps": steady_steps,
        "threads": torch.get_num_threads(),
    }
    out.write_text(json.dumps(result))


# -- rounds (parent process) ---------------------------------------------------------------

def run_child(method: str, args, workdir: Path) -> dict:
    out = workdir / f"{method}.json"
    log_path = workdir / f"{method}.log"
    command = [sys.executable, __file__, "--one", method, "--epochs", str(args.epochs),
               "--batches", str(args.batches), "--out", str(out), "--threads", str(args.threads),
               "--device", args.device]
    with open(log_path, "w") as log_file:
        code = subprocess.run(command, stdout=log_file, stderr=subprocess.STDOUT).returncode
    if code != 0:
        tail = log_path.read_text()[-3000:]
        raise SystemExit(f"{method} measurement failed (exit {code}):\n{tail}")
    return json.loads(out.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=10, help="epochs per measurement (>= 3)")
    parser.add_argument("--batches", type=int, default=250, help="batches (optimizer steps) per epoch")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads; 0 keeps torch's default")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--max-load", type=float, default=1.5, help="wait for a 1-minute load average below this")
    parser.add_argument("--max-wait", type=float, default=0.0, help="seconds to wait for a quiet machine")
    parser.add_argument("--no-readme", action="store_true", help="print only; leave benchmarks/README.md as is")
    parser.add_argument("--one", choices=METHODS, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        measure_one(args.one, args.epochs, args.batches, args.out, args.threads, args.device)
        return
    if args.epochs < 3:
        parser.error("--epochs must be at least 3 (the first and last epochs are not in the steady state)")

    load = wait_for_quiet(args.max_load, args.max_wait)
    rows: list[dict[str, dict]] = []
    loads = [load]
    with tempfile.TemporaryDirectory(prefix="overhead-") as tmp:
        for r in range(args.rounds):
            shift = r % len(METHODS)
            order = METHODS[shift:] + METHODS[:shift]  # rotate so no method always goes first
            results = {m: run_child(m, args, Path(tmp)) for m in order}
            rows.append(results)
            loads.append(load_average())
            print(f"round {r + 1}: " + ", ".join(
                f"{m} {results[m]['steady_ms_per_step']:.3f} ms/step" for m in METHODS), flush=True)

    report(rows, args, loads)


def report(rows: list[dict[str, dict]], args, loads: list[float]) -> None:
    def column(method, key):
        return [row[method][key] for row in rows]

    def ratios(a, b, key):
        return [row[a][key] / row[b][key] for row in rows]

    steady_vs_bare = ratios("ours", "bare", "steady_ms_per_step")
    steady_vs_lightning = ratios("ours", "lightning", "steady_ms_per_step")
    total_vs_bare = ratios("ours", "bare", "total_ms_per_step")
    total_vs_lightning = ratios("ours", "lightning", "total_ms_per_step")
    steady_vs_bare_metrics = ratios("ours", "bare_metrics", "steady_ms_per_step")
    pass_bare = spread(steady_vs_bare)[0] <= TARGET_VS_BARE
    pass_lightning = spread(steady_vs_lightning)[0] <= TARGET_VS_LIGHTNING

    command = (f"python benchmarks/overhead.py --rounds {args.rounds} --epochs {args.epochs} "
               f"--batches {args.batches} --threads {args.threads} --device {args.device}")
    threads = rows[0]["ours"]["threads"]
    lines = ["## Framework overhead", ""] + header_lines(command, loads[0]) + [
        f"Tiny model (Conv1d 80->16 k=3 + Linear 16->52 + sigmoid, 4,740 parameters), batches of "
        f"{BATCH_SIZE} x {FRAMES} frames held in memory, AdamW, cosine schedule, clip at {GRAD_CLIP}, "
        f"MSE + {VELOCITY_WEIGHT} x velocity loss; {args.epochs} epochs x {args.batches} steps = "
        f"{args.epochs * args.batches} steps per measurement, {args.rounds} interleaved rounds, {threads} torch thread(s), "
        f"each measurement in a fresh process. Ours: default logging (log_freq={LOG_FREQ}, grad norm, "
        "tqdm bar, per-step metric sums, NaN flag, checkpoint per epoch), media logging off "
        "(histogram/figure/audio_freq=0), augmentation off (training.augment=false), no validation. Lightning: TensorBoardLogger, TQDMProgressBar, "
        f"LearningRateMonitor, log_every_n_steps={LOG_FREQ}, the same metric sums, default checkpointing.",
        "",
        "Steady state = start of epoch 2 to start of the last epoch; total = whole `fit` call "
        "including setup and teardown (imports and process start excluded). Load average over "
        f"the rounds: {min(loads):.2f}-{max(loads):.2f}.",
        "",
        "| | bare | bare + metrics | ours | Lightning |",
        "|---|---|---|---|---|",
        "| steady ms/step, median (min-max) | " + " | ".join(
            fmt_spread(column(m, "steady_ms_per_step")) for m in METHODS) + " |",
        "| total ms/step, median (min-max) | " + " | ".join(
            fmt_spread(column(m, "total_ms_per_step")) for m in METHODS) + " |",
        "",
        "| ratio (pairwise per round) | median (min-max) | target | result |",
        "|---|---|---|---|",
        f"| ours / bare, steady | {fmt_spread(steady_vs_bare)} | <= {TARGET_VS_BARE} | {verdict(pass_bare)} |",
        f"| ours / Lightning, steady | {fmt_spread(steady_vs_lightning)} | <= {TARGET_VS_LIGHTNING} | "
        f"{verdict(pass_lightning)} |",
        f"| ours / (bare + metrics), steady | {fmt_spread(steady_vs_bare_metrics)} | | |",
        f"| ours / bare, total | {fmt_spread(total_vs_bare)} | | |",
        f"| ours / Lightning, total | {fmt_spread(total_vs_lightning)} | | |",
    ]
    text = "\n".join(lines)
    print(text)
    if not args.no_readme:
        write_section("overhead" if args.device == "cpu" else f"overhead-{args.device}", text)


if __name__ == "__main__":
    main()
