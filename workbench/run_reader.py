"""Read a run folder back: config, status, metrics table, scalars, histograms and samples.

Everything here reads only files inside the run folder, so it works on runs made by the CLI,
by papermill or by a notebook, and on runs that are still going or that stopped early. Parts
a run does not have yet come back empty (or None). `missing_parts` lists in words what is
absent and why, for the viewers to show.

Histogram buckets follow TensorBoard's HistogramProto: `bucket_limit[i]` is the right edge of
bucket `i`, and the left edge of bucket 0 is the recorded minimum.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from workbench import diagnose, run_folder
from workbench.errors import DataError
from workbench.figures import SAMPLE_FILE

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Histogram:
    """One logged histogram: `counts[i]` values fell in `[edges[i], edges[i + 1])`."""

    edges: np.ndarray  # [n + 1], ascending
    counts: np.ndarray  # [n]
    minimum: float
    maximum: float
    total: float  # number of values summarised
    mean: float


@dataclass(frozen=True)
class SampleSet:
    """The fixed validation samples of a run (`samples/`), without the per-epoch predictions.

    `targets[i]` is [frames, 52], `masks[i]` is [52] bool (False where the dataset has no
    such channel), `audio[i]` is mono float32 at `sample_rate`.
    """

    folder: Path
    names: list[str]
    frame_rate: float
    sample_rate: int
    blendshapes: list[str]
    targets: list[np.ndarray]
    masks: list[np.ndarray]
    audio: list[np.ndarray]
    epochs: list[int]  # epochs that have an `epoch_NNNN.npz` file, ascending

    def predictions(self, epoch: int) -> list[np.ndarray]:
        """Load the predictions [frames, 52] of every sample at `epoch`."""
        path = self.folder / SAMPLE_FILE.format(epoch=epoch)
        if not path.is_file():
            present = ", ".join(str(e) for e in self.epochs) or "none"
            raise DataError(f"no sample predictions for epoch {epoch} in {self.folder} (epochs present: {present})")
        with np.load(path) as arrays:
            return [arrays[f"pred_{i}"] for i in range(len(self.names))]


class RunData:
    """Lazy, cached view of one run folder; each part is read on first use."""

    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir).expanduser().resolve()
        if not self.path.is_dir():
            raise DataError(f"run folder {self.path} not found; pass a folder of the form runs/<date>/<time>[-<name>]")
        if not (self.path / "config.yaml").is_file() and not (self.path / "logs").is_dir():
            raise DataError(f"{self.path} is not a run folder: it has neither config.yaml nor logs/; "
                            "pass a folder of the form runs/<date>/<time>[-<name>]")

    def __repr__(self) -> str:
        return f"RunData({str(self.path)!r})"

    @property
    def name(self) -> str:
        return f"{self.path.parent.name}/{self.path.name}"

    # -- config and status ---------------------------------------------------------------

    @cached_property
    def config_text(self) -> str:
        path = self.path / "config.yaml"
        return path.read_text(encoding="utf-8") if path.is_file() else ""

    @cached_property
    def config(self) -> dict[str, Any]:
        return _read_yaml(self.path / "config.yaml")

    @property
    def status(self) -> dict[str, Any]:
        # Not cached: a run that is still training rewrites status.json every epoch.
        return run_folder.read_status(self.path)

    # -- scalars ------------------------------------------------------------------------

    @cached_property
    def _scalars(self) -> tuple[pd.DataFrame, dict[str, list[tuple[int, float]]]]:
        try:
            rows, step_scalars, _ = diagnose.read_run(self.path)
        except DataError as exc:
            log.info("%s: no metrics yet (%s)", self.path, exc)
            return pd.DataFrame({"epoch": pd.Series([], dtype="int64")}), {}
        return rows, step_scalars

    @property
    def metrics(self) -> pd.DataFrame:
        """`metrics.csv` as a table, one row per epoch; missing cells are NaN (float64)."""
        rows = self._scalars[0]
        return rows.astype({c: "float64" for c in rows.columns if c != "epoch"})

    def scalar(self, tag: str) -> pd.DataFrame:
        """TensorBoard scalar `tag` as a table with `step` and `value` columns (empty if absent)."""
        points = self._scalars[1].get(tag, [])
        return pd.DataFrame(points, columns=["step", "value"]).astype({"step": "int64", "value": "float64"})

    @property
    def scalar_tags(self) -> list[str]:
        return sorted(self._scalars[1])

    # -- histograms ---------------------------------------------------------------------

    @cached_property
    def histograms(self) -> dict[str, dict[int, Histogram]]:
        """Every histogram tag in `logs/` -> {epoch: Histogram}; a repeated epoch keeps the latest."""
        return _read_histograms(self.path / "logs")

    # -- samples ------------------------------------------------------------------------

    @cached_property
    def samples(self) -> SampleSet | None:
        """The run's fixed samples, or None when `samples/` lacks info.json or reference.npz."""
        return _read_samples(self.path / "samples")

    # -- what is absent -----------------------------------------------------------------

    def missing_parts(self) -> list[str]:
        """Sentences naming each part of the run folder that is absent, for display to a user."""
        config = self.config
        logging_cfg = config.get("logging", {}) if isinstance(config, dict) else {}
        notes = []
        if not (self.path / "config.yaml").is_file():
            notes.append("config.yaml is missing, so the run's settings are unknown.")
        if not (self.path / "metrics.csv").is_file():
            notes.append("metrics.csv is missing: no epoch finished yet, or the run failed during its first epoch.")
        if not self.histograms:
            reason = ("logging.histogram_freq is 0 in this run's config"
                      if logging_cfg.get("histogram_freq") == 0 else "no epoch with histograms finished")
            notes.append(f"No histograms in logs/: {reason}.")
        if self.samples is None:
            reason = ("logging.figure_freq is 0 in this run's config"
                      if logging_cfg.get("figure_freq") == 0
                      else "no epoch with figures finished, or the run predates sample files")
            notes.append(f"No prediction samples in samples/: {reason}.")
        elif not self.samples.epochs:
            notes.append("samples/ has reference data but no epoch_NNNN.npz predictions yet.")
        return notes


def newest_run(root: str | Path = "runs") -> Path:
    """Return the most recently modified run folder under `root` (searched recursively)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"runs folder {root.resolve()} not found; train a model first or pass run_dir explicitly")
    runs = run_folder.find_runs(root)
    if not runs:
        raise DataError(f"no run folders under {root.resolve()}; train a model first or pass run_dir explicitly")
    return runs[-1]


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    import yaml  # PyYAML, installed with OmegaConf

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise DataError(f"{path} is not valid YAML: {exc}") from None
    return data if isinstance(data, dict) else {}


def _read_histograms(logs_dir: Path) -> dict[str, dict[int, Histogram]]:
    if not logs_dir.is_dir():
        return {}
    # Imported here because loading TensorBoard takes about a second.
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    found: dict[str, dict[int, tuple[float, Histogram]]] = {}
    for directory in sorted({p.parent for p in logs_dir.rglob("events.out.tfevents.*")}):
        # size_guidance 0 keeps every histogram; the default samples them down to 500 per tag.
        accumulator = EventAccumulator(str(directory), size_guidance={"histograms": 0, "scalars": 1,
                                                                        "images": 1, "audio": 1, "tensors": 1})
        accumulator.Reload()
        for tag in accumulator.Tags()["histograms"]:
            by_epoch = found.setdefault(tag, {})
            for event in accumulator.Histograms(tag):
                previous = by_epoch.get(event.step)
                if previous is None or event.wall_time >= previous[0]:
                    by_epoch[event.step] = (event.wall_time, _to_histogram(event.histogram_value))
    return {tag: {epoch: h for epoch, (_, h) in sorted(by_epoch.items())} for tag, by_epoch in sorted(found.items())}


def _to_histogram(value) -> Histogram:
    limits = np.asarray(value.bucket_limit, dtype=np.float64)
    counts = np.asarray(value.bucket, dtype=np.float64)
    if limits.size == 0:
        edges = np.array([value.min, value.max], dtype=np.float64)
        counts = np.array([value.num], dtype=np.float64)
    else:
        left = min(float(value.min), float(limits[0]))
        edges = np.concatenate([[left], limits])
        # Writers prepend an empty bucket only to carry the leftmost edge; drop it when it is empty.
        if counts.size > 1 and counts[0] == 0:
            edges, counts = edges[1:], counts[1:]
    mean = float(value.sum / value.num) if value.num else float("nan")
    return Histogram(edges=edges, counts=counts, minimum=float(value.min), maximum=float(value.max),
                     total=float(value.num), mean=mean)


def _read_samples(folder: Path) -> SampleSet | None:
    info_path, reference_path = folder / "info.json", folder / "reference.npz"
    if not info_path.is_file() or not reference_path.is_file():
        return None
    try:
        info = json.loads(info_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"{info_path} is not valid JSON: {exc}") from None
    names = [s["name"] for s in info["samples"]]
    with np.load(reference_path) as ref:
        targets = [ref[f"target_{i}"].astype(np.float32) for i in range(len(names))]
        masks = [ref[f"mask_{i}"].astype(bool) for i in range(len(names))]
        audio = [ref[f"audio_{i}"].astype(np.float32) for i in range(len(names))]
    epochs = sorted(int(p.stem.split("_")[1]) for p in folder.glob("epoch_[0-9]*.npz"))
    return SampleSet(folder=folder, names=names, frame_rate=float(info["frame_rate"]),
                     sample_rate=int(info["sample_rate"]), blendshapes=list(info["blendshapes"]),
                     targets=targets, masks=masks, audio=audio, epochs=epochs)
