"""Resident memory over a long run with media logged every epoch.

The real Trainer trains a small GRU on two synthetic 5 s clips for 200 epochs with
histograms (including weights and gradients), figures and audio logged every epoch, and
records the process RSS (psutil) after every epoch. Target: growth <= 5 % from epoch 10
to the end (the first epochs allocate caches, matplotlib state and optimizer buffers).

    python benchmarks/memory.py [--epochs 200]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psutil  # noqa: E402

from benchmarks.common import header_lines, load_average, verdict, write_section, write_synthetic_clips  # noqa: E402
from workbench.config import load_config  # noqa: E402
from workbench.trainer import Trainer  # noqa: E402

TARGET_GROWTH = 0.05
BASELINE_EPOCH = 10
OVERRIDES = ["model.hidden=16", "model.rnn_layers=1", "data.window_seconds=1.0", "data.window_hop_seconds=0.5",
             "logging.histogram_freq=1", "logging.weight_histograms=true", "logging.figure_freq=1",
             "logging.audio_freq=1", "logging.progress_bar=false"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--no-readme", action="store_true")
    args = parser.parse_args()
    if args.epochs <= BASELINE_EPOCH:
        parser.error(f"--epochs must be above {BASELINE_EPOCH}")

    process = psutil.Process()
    rss_mib: list[float] = []

    class MeasuredTrainer(Trainer):
        def _save_checkpoints(self, epoch, val_metrics):
            super()._save_checkpoints(epoch, val_metrics)
            rss_mib.append(process.memory_info().rss / 2**20)

    load = load_average()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="memory-") as tmp:
        data = write_synthetic_clips(Path(tmp) / "data", count=2, seconds=5.0)
        cfg = load_config(None, [f"data.root={data}", f"run.root={tmp}/runs", f"features.cache_dir={tmp}/cache",
                                 f"training.max_epochs={args.epochs}", *OVERRIDES])
        MeasuredTrainer(cfg).fit()
    wall = time.perf_counter() - started

    base = rss_mib[BASELINE_EPOCH - 1]
    final, peak = rss_mib[-1], max(rss_mib[BASELINE_EPOCH - 1:])
    growth_final, growth_peak = (final - base) / base, (peak - base) / base
    ok = growth_peak <= TARGET_GROWTH
    checkpoints = [1, BASELINE_EPOCH, 25, 50, 100, 150, args.epochs]
    command = f"python benchmarks/memory.py --epochs {args.epochs}"
    lines = ["## Memory over a long run", ""] + header_lines(command, load) + [
        f"Real Trainer, 2 synthetic 5 s clips (1 held out), {args.epochs} epochs in {wall:.0f} s, overrides: "
        f"{', '.join(OVERRIDES)}: every epoch writes pred/target, weight and gradient histograms, two "
        "figures, audio and a mel image. RSS (psutil) after each epoch's checkpoint.",
        "",
        "| epoch | " + " | ".join(str(e) for e in checkpoints if e <= args.epochs) + " |",
        "|---|" + "---|" * len([e for e in checkpoints if e <= args.epochs]),
        "| RSS (MiB) | " + " | ".join(f"{rss_mib[e - 1]:.1f}" for e in checkpoints if e <= args.epochs) + " |",
        "",
        f"Growth from epoch {BASELINE_EPOCH} ({base:.1f} MiB): to the end {100 * growth_final:+.2f} %, to the "
        f"peak ({peak:.1f} MiB) {100 * growth_peak:+.2f} %; target <= {100 * TARGET_GROWTH:.0f} %: {verdict(ok)}.",
    ]
    text = "\n".join(lines)
    print(text)
    if not args.no_readme:
        write_section("memory", text)


if __name__ == "__main__":
    main()
