"""Shared pieces of the benchmark scripts: machine facts, statistics, README sections,
a tiny model on in-memory batches, a Trainer that trains it, and a host-read counter.

The scripts run from the repository root (`python benchmarks/<name>.py`); each one writes
its own section of `benchmarks/README.md` between `<!-- begin NAME -->` and `<!-- end NAME -->`.
"""

from __future__ import annotations

import datetime
import os
import platform
import re
import statistics
import subprocess
import sys
import time
import warnings
from collections import Counter
from pathlib import Path

import torch
from torch import nn

REPO_ROOT = Path(__file__).resolve().parents[1]
README = REPO_ROOT / "benchmarks" / "README.md"
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from workbench.arkit import NUM_BLENDSHAPES  # noqa: E402
from workbench.config import load_config  # noqa: E402
from workbench.features import FeatureCache, FeatureSettings  # noqa: E402
from workbench.trainer import Trainer, _seed_everything  # noqa: E402

N_MELS = 80


# -- machine, load, statistics ------------------------------------------------------------

def machine_info() -> dict[str, str]:
    """CPU model, core count, torch version, Python version and the current UTC time."""
    model = platform.processor() or "unknown"
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        match = re.search(r"^Model name:\s*(.+)$", out, re.MULTILINE)
        if match:
            model = match.group(1).strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return {
        "cpu": model,
        "cores": str(os.cpu_count()),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def load_average() -> float:
    """1-minute load average of the machine."""
    return os.getloadavg()[0]


def wait_for_quiet(max_load: float, max_wait_s: float, poll_s: float = 60.0) -> float:
    """Wait until the 1-minute load average drops below `max_load` or `max_wait_s` passes.

    Returns the load average when measurement starts; the caller records it.
    """
    deadline = time.monotonic() + max_wait_s
    load = load_average()
    while load >= max_load and time.monotonic() < deadline:
        print(f"load average {load:.2f} >= {max_load}; waiting {poll_s:.0f} s", flush=True)
        time.sleep(poll_s)
        load = load_average()
    return load


def spread(values: list[float]) -> tuple[float, float, float]:
    """(median, min, max) of a list of measurements."""
    return statistics.median(values), min(values), max(values)


def fmt_spread(values: list[float], digits: int = 3) -> str:
    median, low, high = spread(values)
    return f"{median:.{digits}f} ({low:.{digits}f}-{high:.{digits}f})"


def verdict(ok: bool) -> str:
    return "pass" if ok else "MISS"


def write_section(name: str, body: str) -> None:
    """Replace (or append) the section `name` of benchmarks/README.md with `body`."""
    begin, end = f"<!-- begin {name} -->", f"<!-- end {name} -->"
    block = f"{begin}\n{body.rstrip()}\n{end}\n"
    text = README.read_text(encoding="utf-8") if README.is_file() else "# Benchmarks\n\n"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end) + r"\n?", re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text)
    else:
        text = text.rstrip() + "\n\n" + block
    README.write_text(text, encoding="utf-8")


def header_lines(command: str, load: float) -> list[str]:
    info = machine_info()
    return [
        f"Command: `{command}`",
        "",
        f"Machine: {info['cpu']}, {info['cores']} cores; torch {info['torch']}, Python {info['python']}; "
        f"{info['date']}; 1-minute load average at start {load:.2f}.",
        "",
    ]


# -- tiny model on in-memory batches ------------------------------------------------------

class TinyModel(nn.Module):
    """Conv1d(80 -> 16, k=3) + Linear(16 -> 52) + sigmoid: 4,740 parameters.

    Small enough that the time per step is dominated by framework work, which is what the
    overhead benchmark measures. `hparams` matches what the Trainer stores in checkpoints.
    """

    def __init__(self, n_mels: int = N_MELS, channels: int = 16):
        super().__init__()
        self.hparams = {"kind": "tiny", "n_mels": n_mels, "channels": channels}
        self.conv = nn.Conv1d(n_mels, channels, kernel_size=3, padding=1)
        self.head = nn.Linear(channels, NUM_BLENDSHAPES)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv(mel.transpose(1, 2))).transpose(1, 2)
        return torch.sigmoid(self.head(x))


def make_batches(count: int, batch_size: int, frames: int, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    """Random training batches in the Trainer's batch format (mel, targets, mask, silence, window)."""
    generator = torch.Generator().manual_seed(seed)
    batches = []
    for i in range(count):
        mask = torch.ones(batch_size, frames, NUM_BLENDSHAPES, dtype=torch.bool)
        mask[..., :8] = False  # a few absent channels, as in FACEGOOD labels
        batches.append({
            "mel": torch.randn(batch_size, frames, N_MELS, generator=generator),
            "targets": torch.rand(batch_size, frames, NUM_BLENDSHAPES, generator=generator),
            "mask": mask,
            "silence": torch.rand(batch_size, frames, generator=generator) < 0.2,
            "window": torch.arange(i * batch_size, (i + 1) * batch_size),  # window ids, named in NaN errors
        })
    return batches


class BatchList:
    """DataLoader stand-in: yields pre-built batches in a shuffled order, no collation.

    Exposes `generator` because the Trainer stores the loader's RNG state in checkpoints.
    """

    def __init__(self, batches: list[dict[str, torch.Tensor]], seed: int = 0):
        self.batches = batches
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        for i in torch.randperm(len(self.batches), generator=self.generator).tolist():
            yield self.batches[i]


class InMemoryTrainer(Trainer):
    """The real Trainer loop, logging and checkpoints, fed the tiny model and in-memory batches.

    Only data and model setup are replaced; there are no validation clips and no media
    samples, so per-epoch validation and media logging are skipped.
    """

    def __init__(self, cfg, batches: list[dict[str, torch.Tensor]]):
        super().__init__(cfg)
        self._batches = batches

    def setup_data(self) -> None:
        _seed_everything(self.cfg.training.seed)
        settings = FeatureSettings.from_config(self.cfg.features)
        self.cache = FeatureCache(self.cfg.features.cache_dir, settings)
        self.frame_rate = settings.frame_rate
        self.train_clips, self.val_clips = [], []
        self.channel_mask = self._batches[0]["mask"].any(dim=(0, 1)).numpy()  # channels present in the labels
        self.train_loader = BatchList(self._batches, self.cfg.training.seed)
        self.samples = []

    def setup_model(self) -> None:
        self.model = TinyModel().to(self.device)
        self.channel_weight = None  # plain masked MSE, as in the baselines


def tiny_config(run_root: Path, epochs: int, extra: list[str] = (), device: str = "cpu"):
    """Default config with media logging and augmentation off, for InMemoryTrainer runs.

    Augmentation is off because it is data work that the baselines do not do, and because it
    reads the model's feature statistics, which TinyModel lacks.
    """
    return load_config(None, [
        f"run.root={run_root}", f"training.max_epochs={epochs}", f"training.device={device}",
        f"features.cache_dir={run_root}/cache", "training.augment=false",
        "logging.histogram_freq=0", "logging.figure_freq=0", "logging.audio_freq=0",
        *extra,
    ])


# -- host-read counter --------------------------------------------------------------------

# Tensor methods that copy a value to the host. On CUDA each one waits for the device queue
# to drain, which is a host sync. On CPU they are cheap, but counting them shows what a GPU run pays.
HOST_READ_METHODS = ("item", "cpu", "tolist", "numpy", "__float__", "__int__", "__bool__",
                     "__index__", "__format__", "__repr__")


# Library code whose reads are of tensors kept on the CPU on every device, so they are not
# syncs: torch.optim's `step` counters (CPU unless capturable or fused, torch 2.x) and the
# DataLoader samplers' `randperm(...).tolist()` on a CPU generator.
HOST_RESIDENT_CALLERS = ("/torch/optim/", "/torch/utils/data/")


class SyncCounter:
    """Count calls to the host-reading methods of `torch.Tensor` while active.

    Nested calls (for example `__format__` calling `item`) count once, at the outermost
    method. `by_site` groups counts by the first caller frame inside `workbench/`. Reads
    made directly by code in HOST_RESIDENT_CALLERS are kept apart in `host_resident`.
    """

    def __init__(self):
        self.total = 0
        self.by_method: Counter[str] = Counter()
        self.by_site: Counter[str] = Counter()
        self.by_phase: Counter[str] = Counter()
        self.phase = "other"  # set by phased_trainer
        self.host_resident: Counter[str] = Counter()  # reads by HOST_RESIDENT_CALLERS, not in total
        # On CUDA, torch's own sync detector (set_sync_debug_mode) also reports, per phase.
        self.cuda_syncs_by_phase: Counter[str] = Counter()
        self._saved_showwarning = None
        self._depth = 0
        self._originals: dict[str, object] = {}

    def _wrap(self, name: str, original):
        counter = self

        def wrapper(tensor, *args, **kwargs):
            if counter._depth == 0:
                caller = sys._getframe(1)
                if any(part in caller.f_code.co_filename for part in HOST_RESIDENT_CALLERS):
                    counter.host_resident[_describe(caller)] += 1
                else:
                    counter.total += 1
                    counter.by_method[name] += 1
                    counter.by_site[_workbench_caller(caller)] += 1
                    counter.by_phase[counter.phase] += 1
            counter._depth += 1
            try:
                return original(tensor, *args, **kwargs)
            finally:
                counter._depth -= 1

        return wrapper

    def reset(self) -> None:
        self.total = 0
        self.by_method.clear()
        self.by_site.clear()
        self.by_phase.clear()
        self.host_resident.clear()

    def _on_warning(self, message, category, filename, lineno, file=None, line=None):
        if "synchronizing CUDA operation" in str(message):
            self.cuda_syncs_by_phase[self.phase] += 1
        else:
            self._saved_showwarning(message, category, filename, lineno, file, line)

    def __enter__(self) -> "SyncCounter":
        for name in HOST_READ_METHODS:
            original = getattr(torch.Tensor, name)
            self._originals[name] = original
            setattr(torch.Tensor, name, self._wrap(name, original))
        if torch.cuda.is_available():
            torch.cuda.set_sync_debug_mode("warn")
            warnings.filterwarnings("always", message=".*synchronizing CUDA operation.*")
            self._saved_showwarning, warnings.showwarning = warnings.showwarning, self._on_warning
        return self

    def __exit__(self, *exc) -> None:
        for name, original in self._originals.items():
            setattr(torch.Tensor, name, original)
        self._originals.clear()
        if self._saved_showwarning is not None:
            torch.cuda.set_sync_debug_mode("default")
            warnings.showwarning, self._saved_showwarning = self._saved_showwarning, None


def _describe(frame) -> str:
    return f"{Path(frame.f_code.co_filename).name}:{frame.f_lineno} {frame.f_code.co_name}"


def _workbench_caller(frame) -> str:
    while frame is not None:
        if "/workbench/" in frame.f_code.co_filename:
            return _describe(frame)
        frame = frame.f_back
    return "outside workbench"


# -- phases of a Trainer run --------------------------------------------------------------

def phased_trainer(base: type[Trainer], counter: "SyncCounter") -> type[Trainer]:
    """Subclass `base` so that `counter.phase` names the part of the run being executed.

    Phases: setup, steps (the batch loop of train_epoch), epoch_end (after the loop:
    epoch loss, NaN record, metric compute), validation, epoch_log, media, checkpoint,
    finish. Anything else is `other`.
    """

    def wrap(name: str, phase_name: str):
        method = getattr(base, name)

        def wrapper(self, *args, **kwargs):
            previous, counter.phase = counter.phase, phase_name
            try:
                return method(self, *args, **kwargs)
            finally:
                counter.phase = previous

        return wrapper

    def close_progress(self):
        counter.phase = "epoch_end"  # the batch loop of train_epoch ends here
        return base.close_progress(self)

    methods = {
        "setup_data": wrap("setup_data", "setup"), "setup_model": wrap("setup_model", "setup"),
        "setup_run": wrap("setup_run", "setup"), "train_epoch": wrap("train_epoch", "steps"),
        "validate": wrap("validate", "validation"), "log_epoch": wrap("log_epoch", "epoch_log"),
        "_log_media": wrap("_log_media", "media"), "_save_checkpoints": wrap("_save_checkpoints", "checkpoint"),
        "_finish": wrap("_finish", "finish"), "close_progress": close_progress,
    }
    return type(f"Phased{base.__name__}", (base,), methods)


# -- small synthetic clips ----------------------------------------------------------------

def write_synthetic_clips(folder: Path, count: int, seconds: float, seed: int = 0) -> Path:
    """Write `count` clips of noise bursts (16 kHz WAV) with Live Link CSV labels (60 fps).

    The mouth shapes follow the audio envelope, so a model has something to learn; the
    content is otherwise meaningless. Returns `folder`.
    """
    import numpy as np
    import soundfile as sf

    from workbench.arkit import ARKIT_INDEX
    from workbench.formats.livelink import write_livelink_csv

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rate, fps = 16000, 60.0
    for i in range(count):
        samples = int(seconds * rate)
        t = np.arange(samples) / rate
        envelope = np.clip(np.sin(2 * np.pi * rng.uniform(1.5, 3.0) * t + rng.uniform(0, 6)), 0, None)
        audio = (0.3 * envelope * rng.standard_normal(samples)).astype(np.float32)
        sf.write(folder / f"clip{i:02d}.wav", audio, rate)

        frames = int(seconds * fps)
        frame_env = envelope[(np.arange(frames) / fps * rate).astype(int)]
        values = np.full((frames, NUM_BLENDSHAPES), 0.05, np.float32)
        values[:, ARKIT_INDEX["jawOpen"]] = 0.7 * frame_env
        values[:, ARKIT_INDEX["mouthClose"]] = 0.3 * (1 - frame_env)
        values[:, ARKIT_INDEX["eyeBlinkLeft"]] = rng.uniform(0, 0.2, frames)
        write_livelink_csv(folder / f"clip{i:02d}.csv", values, fps)
    return folder
