"""Data loading: feature extraction throughput with a cold cache, and the share of a
warm-cache epoch spent fetching batches.

1. Extraction: every FACEGOOD clip through `FeatureCache.load` into an empty cache folder
   (read, resample, log-mel, frame energy, cache write). Throughput = seconds of audio per
   wall second. The WAV files themselves may sit in the OS page cache after the first round.
2. Loading share: the real Trainer with the default config on the same clips; the training
   DataLoader is wrapped so the time spent in `next()` is summed. The share is that time
   over the wall time of the second epoch's batch loop (cache already warm, since setup
   loaded every clip). Target: <= 5 %.

    python benchmarks/data_loading.py [--rounds 3] [--data ../shared/data/facegood_audio2face]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import soundfile as sf  # noqa: E402

from benchmarks.common import fmt_spread, header_lines, load_average, spread, verdict, write_section  # noqa: E402
from workbench.audio import AUDIO_SUFFIXES  # noqa: E402
from workbench.config import load_config  # noqa: E402
from workbench.dataset import find_clips  # noqa: E402
from workbench.features import FeatureCache, FeatureSettings  # noqa: E402
from workbench.trainer import Trainer  # noqa: E402

TARGET_SHARE = 0.05


def extraction_throughput(data: Path, cache_dir: Path) -> tuple[float, float]:
    """(seconds of audio, wall seconds) to fill an empty cache with every clip under `data`."""
    paths = [p.audio for p in find_clips(data)[0]]
    audio_seconds = sum(sf.info(str(p)).duration for p in paths if p.suffix.lower() in AUDIO_SUFFIXES)
    cache = FeatureCache(cache_dir, FeatureSettings())
    started = time.perf_counter()
    for path in paths:
        cache.load(path)
    wall = time.perf_counter() - started
    if cache.misses != len(paths):
        raise SystemExit(f"expected {len(paths)} cache misses in an empty cache, got {cache.misses}")
    return audio_seconds, wall


class TimedLoader:
    """Wrap a DataLoader and sum the wall time spent in `next()` per epoch."""

    def __init__(self, loader):
        self.loader = loader
        self.generator = loader.generator
        self.fetch_seconds: list[float] = []
        self.epoch_seconds: list[float] = []

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        fetch = 0.0
        started = time.perf_counter()
        iterator = iter(self.loader)
        fetch += time.perf_counter() - started
        while True:
            before = time.perf_counter()
            try:
                batch = next(iterator)
            except StopIteration:
                break
            fetch += time.perf_counter() - before
            yield batch
        self.fetch_seconds.append(fetch)
        self.epoch_seconds.append(time.perf_counter() - started)


def loading_share(data: Path, workdir: Path, cache_dir: Path) -> dict:
    class TimedTrainer(Trainer):
        def setup_data(self):
            super().setup_data()
            self.train_loader = TimedLoader(self.train_loader)

    cfg = load_config(None, [f"data.root={data}", f"run.root={workdir}", f"features.cache_dir={cache_dir}",
                             "training.max_epochs=2", "logging.progress_bar=false"])
    trainer = TimedTrainer(cfg)
    trainer.fit()
    loader = trainer.train_loader
    return {"fetch_s": loader.fetch_seconds[1], "epoch_s": loader.epoch_seconds[1],
            "share": loader.fetch_seconds[1] / loader.epoch_seconds[1], "steps": len(loader)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/facegood_audio2face"))
    parser.add_argument("--no-readme", action="store_true")
    args = parser.parse_args()

    load = load_average()
    loads = [load]
    throughput, shares, fetches, epochs = [], [], [], []
    with tempfile.TemporaryDirectory(prefix="data-loading-") as tmp:
        for r in range(args.rounds):
            cache_dir = Path(tmp) / f"cache{r}"
            audio_s, wall = extraction_throughput(args.data, cache_dir)
            throughput.append(audio_s / wall)
            result = loading_share(args.data, Path(tmp) / f"runs{r}", cache_dir)
            shares.append(result["share"])
            fetches.append(1000 * result["fetch_s"] / result["steps"])
            epochs.append(1000 * result["epoch_s"] / result["steps"])
            loads.append(load_average())
            print(f"round {r + 1}: {audio_s:.1f} s of audio in {wall:.2f} s = {throughput[-1]:.0f} x real time; "
                  f"epoch 2 fetch share {100 * result['share']:.2f} %", flush=True)

    ok = spread(shares)[0] <= TARGET_SHARE
    command = f"python benchmarks/data_loading.py --rounds {args.rounds} --data {args.data}"
    lines = ["## Data loading", ""] + header_lines(command, load) + [
        f"FACEGOOD clips ({audio_s:.1f} s of audio in all), default feature settings (16 kHz, 80 mels, "
        f"10 ms hop), {args.rounds} rounds; each round extracts into a new empty cache and then "
        f"trains 2 epochs of the default config (GRU, batch 16, DataLoader with num_workers=0). "
        f"Load average over the rounds {min(loads):.2f}-{max(loads):.2f}.",
        "",
        "| measure | median (min-max) | target | result |",
        "|---|---|---|---|",
        f"| extraction, cold cache (s of audio per s) | {fmt_spread(throughput, 1)} | | |",
        f"| epoch 2 batch fetch, ms per step | {fmt_spread(fetches, 2)} | | |",
        f"| epoch 2 whole step, ms per step | {fmt_spread(epochs, 1)} | | |",
        f"| epoch 2 data-loading share (%) | {fmt_spread([100 * s for s in shares], 2)} | <= 5 | {verdict(ok)} |",
    ]
    text = "\n".join(lines)
    print(text)
    if not args.no_readme:
        write_section("data_loading", text)


if __name__ == "__main__":
    main()
