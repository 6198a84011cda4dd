"""TensorBoard event-file size per 100 epochs at the default logging cadence.

The real Trainer with the default config (log_freq 10, histograms and figures every epoch,
audio every 5 epochs, no weight histograms) trains a small GRU on synthetic clips; the
script then sums the bytes of `logs/` and splits them by summary kind with tensorboard's
event-file reader.

    python benchmarks/event_size.py [--epochs 100]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tensorboard.backend.event_processing.event_file_loader import EventFileLoader  # noqa: E402

from benchmarks.common import header_lines, load_average, write_section, write_synthetic_clips  # noqa: E402
from workbench.config import load_config  # noqa: E402
from workbench.trainer import Trainer  # noqa: E402

OVERRIDES = ["model.kind=gru", "model.hidden=16", "model.rnn_layers=1", "data.window_seconds=1.0", "data.window_hop_seconds=0.1",
             "training.batch_size=4", "logging.progress_bar=false"]


def bytes_by_kind(logs: Path) -> Counter:
    """Serialized event bytes per summary kind (scalar, histogram, image, audio, other)."""
    sizes: Counter[str] = Counter()
    for path in sorted(logs.glob("events.out.tfevents.*")):
        for event in EventFileLoader(str(path)).Load():
            if not event.HasField("summary"):
                sizes["file header and other"] += event.ByteSize()
                continue
            for value in event.summary.value:
                kind = value.WhichOneof("value") or "other"
                if kind == "tensor":
                    kind = value.metadata.plugin_data.plugin_name or "tensor"
                sizes[kind] += value.ByteSize()
    return sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--no-readme", action="store_true")
    args = parser.parse_args()

    load = load_average()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="event-size-") as tmp:
        data = write_synthetic_clips(Path(tmp) / "data", count=3, seconds=6.0)
        cfg = load_config(None, [f"data.root={data}", f"run.root={tmp}/runs", f"features.cache_dir={tmp}/cache",
                                 f"training.max_epochs={args.epochs}", *OVERRIDES])
        trainer = Trainer(cfg)
        run_dir = trainer.fit()
        logs = run_dir / "logs"
        total = sum(p.stat().st_size for p in logs.rglob("*") if p.is_file())
        kinds = bytes_by_kind(logs)
        steps = trainer.global_step
    wall = time.perf_counter() - started

    per_100 = total * 100 / args.epochs
    command = f"python benchmarks/event_size.py --epochs {args.epochs}"
    lines = ["## Event-file size", ""] + header_lines(command, load) + [
        f"Default logging config; 3 synthetic 6 s clips (1 held out), overrides {', '.join(OVERRIDES)}; "
        f"{args.epochs} epochs, {steps} optimizer steps ({steps // args.epochs} per epoch), {wall:.0f} s.",
        "",
        f"Event files: {total / 2**20:.2f} MiB in all, {per_100 / 2**20:.2f} MiB per 100 epochs, "
        f"{total / args.epochs / 1024:.1f} KiB per epoch.",
        "",
        "| summary kind | MiB | share |",
        "|---|---|---|",
    ]
    counted = sum(kinds.values())
    for kind, size in kinds.most_common():
        lines.append(f"| {kind} | {size / 2**20:.3f} | {100 * size / counted:.1f} % |")
    lines += ["", "Scalars grow with steps (3 tags every log_freq steps) and epochs; histograms, figures and "
              "audio grow with epochs only, so this per-100-epoch size holds for larger datasets apart "
              "from the scalar rows."]
    text = "\n".join(lines)
    print(text)
    if not args.no_readme:
        write_section("event_size", text)


if __name__ == "__main__":
    main()
