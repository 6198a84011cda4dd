"""Helpers for tests that train a real, tiny run on cropped FACEGOOD clips.

The FACEGOOD takes are about 110 s long; the first seconds of two of them train in a few
seconds on one CPU thread, which keeps module-scoped training fixtures fast.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

FACEGOOD_STEMS = ("1114_2_01", "1114_2_02")
FACEGOOD_FPS = 30


def make_tiny_dataset(facegood_dir: Path, out: Path, seconds: float = 10.0) -> Path:
    """Write the first `seconds` of two FACEGOOD clips (wav + weights) in the FACEGOOD layout."""
    (out / "wav").mkdir(parents=True, exist_ok=True)
    (out / "bs_value").mkdir(exist_ok=True)
    for stem in FACEGOOD_STEMS:
        audio, rate = sf.read(facegood_dir / "wav" / f"{stem}.wav", dtype="int16")
        sf.write(out / "wav" / f"{stem}.wav", audio[: int(seconds * rate)], rate, subtype="PCM_16")
        weights = np.load(facegood_dir / "bs_value" / f"bs_value_{stem}.npy")
        np.save(out / "bs_value" / f"bs_value_{stem}.npy", weights[: int(seconds * FACEGOOD_FPS)])
    return out


def tiny_overrides(data_root: Path, run_root: Path, cache_dir: Path, **extra) -> list[str]:
    """Overrides for a tiny GRU run: 1 s windows, batch 4, no progress bar; `extra` wins."""
    values = {
        "data.root": data_root,
        "data.max_clips": 2,
        "data.window_seconds": 1.0,
        "data.window_hop_seconds": 0.5,
        "features.cache_dir": cache_dir,
        "model.kind": "gru",  # the recurrent model: the hard case for resume and chunked prediction
        "model.hidden": 16,
        "model.rnn_layers": 1,
        "training.batch_size": 4,
        "logging.progress_bar": False,
        "run.root": run_root,
    }
    values.update({key.replace("__", "."): value for key, value in extra.items()})
    return [f"{key}={value}" for key, value in values.items()]


@contextlib.contextmanager
def one_torch_thread():
    """Run torch on one thread: on a loaded 2-core machine, two threads make a GRU step ~10x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def trained_tiny_run(facegood_dir: Path, tmp_path_factory) -> Path:
    """Run folder of a tiny GRU trained for one epoch on two FACEGOOD clips.

    The run is shared by the test modules of one pytest session, so it is trained once.
    """
    root = tmp_path_factory.getbasetemp() / "tiny_facegood_run"
    done = root / "run_dir.txt"
    if done.is_file():
        return Path(done.read_text())
    from workbench.trainer import train

    run_dir = train(None, [
        f"data.root={facegood_dir}", "data.max_clips=2", "data.window_hop_seconds=4.0",
        "model.kind=gru", "model.hidden=16", "model.rnn_layers=1", "training.max_epochs=1",
        f"run.root={root / 'runs'}", f"features.cache_dir={root / 'cache'}",
        "logging.progress_bar=false", "logging.histogram_freq=0", "logging.figure_freq=0",
        "logging.audio_freq=0",
    ])
    done.write_text(str(run_dir))
    return run_dir
