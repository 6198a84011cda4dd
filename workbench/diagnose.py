"""Diagnosis of a finished or running run folder from its logs.

``read_run`` loads ``metrics.csv`` (one row per epoch), the TensorBoard scalars under
``logs/`` and ``config.yaml``. ``diagnose_series`` looks for five problems in those series:

- ``nan_inf``: a NaN or Inf value in any epoch column or logged scalar.
- ``gradient_explosion``: ``train/loss`` or ``train/grad_norm`` above ``spike_factor`` times
  the median of the previous logged values.
- ``overfitting``: validation loss rising above its minimum while the training loss keeps
  falling.
- ``stagnation``: the best loss not improving by more than ``tolerance`` (relative) for
  ``patience`` epochs.
- ``constant_lr``: a learning-rate scheduler is configured but the logged rate never changes.

Run ``python -m workbench.diagnose RUN_DIR`` to print the findings of one run.
"""

from __future__ import annotations

import argparse
import csv
import logging
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from workbench.errors import DataError, WorkbenchError

logger = logging.getLogger(__name__)

KINDS = ("nan_inf", "gradient_explosion", "divergence", "collapse", "overfitting", "stagnation", "constant_lr")

# Divergence: the last epoch's train loss is this fraction above the run's lowest.
DIVERGENCE_RISE = 0.10
# Collapse: |mean_correlation| below this for COLLAPSE_EPOCHS trailing epochs.
COLLAPSE_CORRELATION = 0.01
COLLAPSE_EPOCHS = 2

# Spike detection compares each value with the median of up to SPIKE_WINDOW earlier values
# and needs at least SPIKE_MIN_HISTORY of them, so the first few noisy steps are not judged.
SPIKE_WINDOW = 20
SPIKE_MIN_HISTORY = 5
# The running median is floored at this fraction of the series' largest absolute value.
SPIKE_FLOOR = 1e-6
# Overfitting needs this many validations after the best one, all above the tolerance.
OVERFIT_MIN_VALIDATIONS = 2

_ADVICE = {
    "nan_inf": "Lower the learning rate, enable gradient clipping and check the inputs for NaN.",
    "gradient_explosion": "Lower the learning rate or enable gradient clipping (e.g. max norm 1.0).",
    "overfitting": "Use the best checkpoint, stop earlier, or add regularisation or data.",
    "divergence": "Lower the learning rate (a loss that rises under a fixed rate usually means it is too high).",
    "collapse": "Lower the learning rate; saturated sigmoid outputs no longer follow the audio.",
    "stagnation": "Raise or decay the learning rate, or stop early; the loss has plateaued.",
    "constant_lr": "Check that scheduler.step() is called and that the scheduler settings change the rate.",
}


@dataclass
class Finding:
    """One problem found in a run's logs.

    ``first_epoch`` and ``last_epoch`` bound the affected range, inclusive. They are
    global optimizer steps instead of epochs when ``axis`` is ``"step"``.
    """

    kind: str
    first_epoch: int
    last_epoch: int
    evidence: str
    advice: str
    axis: str = "epoch"


# ---------------------------------------------------------------------------------------
# Reading a run folder


def read_run(run_dir: str | Path) -> tuple[pd.DataFrame, dict[str, list[tuple[int, float]]], dict[str, Any]]:
    """Load a run folder's epoch table, TensorBoard scalars and config.

    Returns ``(epoch_rows, step_scalars, config)``:

    - ``epoch_rows``: one row per epoch from ``metrics.csv``, with an int ``epoch`` column and
      nullable ``Float64`` columns in which an empty cell (validation did not run) is
      ``<NA>`` and a written ``nan``/``inf`` stays NaN/Inf.
    - ``step_scalars``: every scalar tag under ``logs/`` mapped to ``[(step, value), ...]``
      sorted by step. A step that was written twice keeps the later value.
    - ``config``: ``config.yaml`` as a plain dict, or ``{}`` when the file is missing.

    Raises DataError when the folder does not exist, has neither ``metrics.csv`` nor event
    files, or when one of its files cannot be parsed.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise DataError(f"run folder {run_dir} not found")
    metrics_path = run_dir / "metrics.csv"
    logs_dir = run_dir / "logs"
    event_files = sorted(logs_dir.rglob("events.out.tfevents.*")) if logs_dir.is_dir() else []
    if not metrics_path.is_file() and not event_files:
        raise DataError(
            f"{run_dir} is not a run folder: it contains neither metrics.csv nor TensorBoard "
            "event files under logs/; pass a folder of the form runs/<date>/<time>[-<name>]"
        )

    if metrics_path.is_file():
        epoch_rows = _read_metrics_csv(metrics_path)
    else:
        logger.info("%s has no metrics.csv yet; epoch checks are skipped", run_dir)
        epoch_rows = pd.DataFrame({"epoch": pd.Series([], dtype="int64")})

    step_scalars = _read_event_scalars(sorted({path.parent for path in event_files}))
    config = _read_config(run_dir / "config.yaml")
    return epoch_rows, step_scalars, config


def _read_metrics_csv(path: Path) -> pd.DataFrame:
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    if lines and not text.endswith("\n"):
        # A running trainer may be in the middle of writing the last row.
        logger.warning("%s: ignoring the unterminated last line %r", path, lines[-1])
        lines = lines[:-1]
    records = [row for row in csv.reader(lines) if row]
    if not records or "epoch" not in records[0]:
        raise DataError(f"{path}: the header has no 'epoch' column; this is not a workbench metrics.csv")
    header = records[0]

    columns: dict[str, list[float]] = {name: [] for name in header}
    missing: dict[str, list[bool]] = {name: [] for name in header}
    for line_number, row in enumerate(records[1:], start=2):
        if len(row) > len(header):
            raise DataError(f"{path}, line {line_number}: {len(row)} cells but the header has {len(header)}")
        row = row + [""] * (len(header) - len(row))
        for name, cell in zip(header, row):
            cell = cell.strip()
            try:
                # float() accepts "nan", "inf" and "-inf", which must stay visible as such.
                columns[name].append(float(cell) if cell else math.nan)
            except ValueError:
                raise DataError(f"{path}, line {line_number}: column {name!r} has non-numeric value {cell!r}") from None
            missing[name].append(not cell)

    if any(missing["epoch"]) or any(not math.isfinite(value) for value in columns["epoch"]):
        raise DataError(f"{path}: every row needs a finite epoch number")
    data = {"epoch": pd.Series(np.asarray(columns["epoch"], dtype=np.int64))}
    for name in header:
        if name == "epoch":
            continue
        values = np.asarray(columns[name], dtype=np.float64)
        data[name] = pd.Series(pd.arrays.FloatingArray(values, np.asarray(missing[name], dtype=bool)))
    frame = pd.DataFrame(data, columns=header)

    duplicated = frame["epoch"].duplicated(keep="last")
    if duplicated.any():
        logger.warning(
            "%s: epochs %s appear more than once; keeping the last row of each",
            path, sorted(set(frame.loc[duplicated, "epoch"].tolist())),
        )
        frame = frame.loc[~duplicated]
    return frame.sort_values("epoch").reset_index(drop=True)


def _read_event_scalars(event_dirs: Sequence[Path]) -> dict[str, list[tuple[int, float]]]:
    # Imported here because loading TensorBoard takes about a second.
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    # tag -> step -> (wall_time, value); the latest wall time wins for a repeated step.
    merged: dict[str, dict[int, tuple[float, float]]] = {}
    for directory in event_dirs:
        # size_guidance 0 keeps every scalar; the default would sample down to 10,000 per tag.
        accumulator = EventAccumulator(str(directory), size_guidance={"scalars": 0})
        accumulator.Reload()
        for tag in accumulator.Tags()["scalars"]:
            by_step = merged.setdefault(tag, {})
            for event in accumulator.Scalars(tag):
                previous = by_step.get(event.step)
                if previous is None or event.wall_time >= previous[0]:
                    by_step[event.step] = (event.wall_time, float(event.value))
    return {tag: [(step, value) for step, (_, value) in sorted(by_step.items())] for tag, by_step in merged.items()}


def _read_config(path: Path) -> dict[str, Any]:
    if not path.is_file():
        logger.warning("%s not found; assuming no learning-rate scheduler", path)
        return {}
    import yaml  # PyYAML, which OmegaConf uses to parse
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        config = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    except (OmegaConfBaseException, yaml.YAMLError, ValueError) as error:
        raise DataError(f"{path} is not a readable OmegaConf YAML file: {error}") from error
    if not isinstance(config, dict):
        raise DataError(f"{path} must contain a mapping at the top level, got {type(config).__name__}")
    return config


# ---------------------------------------------------------------------------------------
# Detection


def _column(rows: pd.DataFrame, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (epochs, values, present) for one column.

    A nullable column marks missing cells with <NA> and keeps NaN as a value. In a plain
    float column NaN is ambiguous, so it counts as missing in ``val_*`` columns (validation
    did not run) and as a value everywhere else (train columns are filled every epoch).
    """
    series = rows[name]
    epochs = rows["epoch"].to_numpy(dtype=np.int64)
    values = series.to_numpy(dtype=np.float64, na_value=np.nan)
    if isinstance(series.dtype, pd.api.extensions.ExtensionDtype):
        present = ~series.isna().to_numpy(dtype=bool)
    elif name.startswith("val_"):
        present = ~np.isnan(values)
    else:
        present = np.ones(len(values), dtype=bool)
    return epochs, values, present


def _finite_points(rows: pd.DataFrame, name: str) -> tuple[np.ndarray, np.ndarray]:
    epochs, values, present = _column(rows, name)
    keep = present & np.isfinite(values)
    return epochs[keep], values[keep]


def _find_nan_inf(rows: pd.DataFrame, step_scalars: dict[str, list[tuple[int, float]]]) -> list[Finding]:
    findings = []
    series: list[tuple[str, str, np.ndarray, np.ndarray]] = []
    for name in rows.columns:
        if name == "epoch":
            continue
        epochs, values, present = _column(rows, name)
        series.append((f"metrics.csv column {name!r}", "epoch", epochs[present], values[present]))
    for tag, points in step_scalars.items():
        steps = np.asarray([step for step, _ in points], dtype=np.int64)
        values = np.asarray([value for _, value in points], dtype=np.float64)
        series.append((f"TensorBoard scalar {tag!r}", "step", steps, values))

    for label, axis, positions, values in series:
        bad = ~np.isfinite(values)
        if not bad.any():
            continue
        # A metric that is NaN in every epoch is undefined for this data (for example
        # mae_eyes on mouth-only labels), not a training failure. Losses are always checked.
        if np.isnan(values).all() and "loss" not in label and "grad_norm" not in label:
            continue
        kinds = sorted({"NaN" if math.isnan(value) else "Inf" for value in values[bad]})
        first, last = int(positions[bad][0]), int(positions[bad][-1])
        findings.append(Finding(
            kind="nan_inf",
            first_epoch=first,
            last_epoch=last,
            evidence=f"{label} has {int(bad.sum())} {'/'.join(kinds)} value(s) out of {len(values)}, "
                     f"first at {axis} {first}, last at {axis} {last}.",
            advice=_ADVICE["nan_inf"],
            axis=axis,
        ))
    return findings


def _find_spikes(
    label: str, axis: str, positions: np.ndarray, values: np.ndarray, factor: float
) -> list[Finding]:
    """Report clusters of values above ``factor`` times the running median of earlier values."""
    finite = np.isfinite(values)
    positions, values = positions[finite], values[finite]
    # medians[i] is the median of the up to SPIKE_WINDOW values before index i.
    medians = np.full(len(values), np.nan)
    for i in range(SPIKE_MIN_HISTORY, min(SPIKE_WINDOW, len(values))):
        medians[i] = np.median(values[:i])
    if len(values) > SPIKE_WINDOW:
        windows = np.lib.stride_tricks.sliding_window_view(values[:-1], SPIKE_WINDOW)
        medians[SPIKE_WINDOW:] = np.median(windows, axis=1)
    history_lengths = np.minimum(np.arange(len(values)), SPIKE_WINDOW)
    # A series that collapsed to rounding noise (gradient norms of 1e-15 behind saturated
    # sigmoids) has huge ratios between noise values. The floor keeps those from counting.
    floor = SPIKE_FLOOR * np.abs(values).max() if len(values) else 0.0

    spikes: list[tuple[int, float, float, int]] = []  # (index, value, median, history length)
    with np.errstate(invalid="ignore"):
        spike_indices = np.flatnonzero((medians > 0) & (values > factor * np.maximum(medians, floor)))
    for i in spike_indices.tolist():
        spikes.append((i, float(values[i]), float(medians[i]), int(history_lengths[i])))

    # Spikes closer than a window apart belong to one episode.
    clusters: list[list[tuple[int, float, float, int]]] = []
    for spike in spikes:
        if clusters and spike[0] - clusters[-1][-1][0] <= SPIKE_WINDOW:
            clusters[-1].append(spike)
        else:
            clusters.append([spike])

    findings = []
    for cluster in clusters:
        worst = max(cluster, key=lambda spike: spike[1] / spike[2])
        first, last = int(positions[cluster[0][0]]), int(positions[cluster[-1][0]])
        episode = f" ({len(cluster)} spikes in {axis}s {first}-{last})" if len(cluster) > 1 else ""
        findings.append(Finding(
            kind="gradient_explosion",
            first_epoch=first,
            last_epoch=last,
            evidence=f"{label} reached {worst[1]:.4g} at {axis} {int(positions[worst[0]])}, "
                     f"{worst[1] / worst[2]:.0f}x the median {worst[2]:.4g} of the previous "
                     f"{worst[3]} values{episode}.",
            advice=_ADVICE["gradient_explosion"],
            axis=axis,
        ))
    return findings


def _find_explosions(
    rows: pd.DataFrame, step_scalars: dict[str, list[tuple[int, float]]], factor: float
) -> list[Finding]:
    findings = []
    for tag in ("train/loss", "train/grad_norm"):
        points = step_scalars.get(tag, [])
        steps = np.asarray([step for step, _ in points], dtype=np.int64)
        values = np.asarray([value for _, value in points], dtype=np.float64)
        findings += _find_spikes(f"{tag!r}", "step", steps, values, factor)
    # Without per-step losses, fall back to the epoch losses of metrics.csv.
    if "train/loss" not in step_scalars and "loss" in rows.columns:
        epochs, values = _finite_points(rows, "loss")
        findings += _find_spikes("train loss in metrics.csv", "epoch", epochs, values, factor)
    return findings


def _find_overfitting(rows: pd.DataFrame, tolerance: float) -> list[Finding]:
    """Report validation loss above its minimum at the end while the train loss still falls.

    The best validation epoch must be followed by at least OVERFIT_MIN_VALIDATIONS
    validations, the last OVERFIT_MIN_VALIDATIONS of which are all more than ``tolerance``
    (relative) above the minimum. Over the same range the train loss must have fallen by
    more than ``tolerance``.
    """
    if "loss" not in rows.columns or "val_loss" not in rows.columns:
        return []
    val_epochs, val_values = _finite_points(rows, "val_loss")
    train_epochs, train_values = _finite_points(rows, "loss")
    train_by_epoch = dict(zip(train_epochs.tolist(), train_values.tolist()))
    if len(val_values) < OVERFIT_MIN_VALIDATIONS + 1:
        return []

    best = int(np.argmin(val_values))
    best_value, best_epoch = float(val_values[best]), int(val_epochs[best])
    after = val_values[best + 1:]
    threshold = best_value + tolerance * abs(best_value)
    if len(after) < OVERFIT_MIN_VALIDATIONS or not (after[-OVERFIT_MIN_VALIDATIONS:] > threshold).all():
        return []

    last_epoch = int(val_epochs[-1])
    train_start = train_by_epoch.get(best_epoch)
    train_end = train_by_epoch.get(last_epoch)
    if train_start is None or train_end is None:
        return []
    if not train_end < train_start - tolerance * abs(train_start):
        return []

    last_value = float(val_values[-1])
    rise = (last_value - best_value) / abs(best_value) if best_value else math.inf
    return [Finding(
        kind="overfitting",
        first_epoch=best_epoch,
        last_epoch=last_epoch,
        evidence=f"val_loss rose from its minimum {best_value:.4g} at epoch {best_epoch} to "
                 f"{last_value:.4g} at epoch {last_epoch} ({rise:+.0%}) while the train loss fell "
                 f"from {train_start:.4g} to {train_end:.4g}.",
        advice=_ADVICE["overfitting"],
    )]


def _find_stagnation(rows: pd.DataFrame, patience: int, tolerance: float) -> list[Finding]:
    """Report stretches of at least ``patience`` epochs without a relative improvement.

    The loss must drop more than ``tolerance`` (relative) below the value at the last
    improvement, so slow but steady progress adds up and does not count as a plateau.
    Uses val_loss when at least two validations exist, otherwise the train loss.
    """
    name = None
    for candidate in ("val_loss", "loss"):
        if candidate in rows.columns and len(_finite_points(rows, candidate)[1]) >= 2:
            name = candidate
            break
    if name is None:
        return []
    epochs, values = _finite_points(rows, name)

    findings = []

    def report(reference_epoch: int, reference: float, end_epoch: int, recovered_at: int | None) -> None:
        stalled = end_epoch - reference_epoch
        if stalled < patience:
            return
        outcome = f"; it improved again at epoch {recovered_at}" if recovered_at is not None else ""
        findings.append(Finding(
            kind="stagnation",
            first_epoch=reference_epoch,
            last_epoch=end_epoch,
            evidence=f"best {name} {reference:.4g} at epoch {reference_epoch} did not improve by more "
                     f"than {tolerance:.1%} for {stalled} epochs (through epoch {end_epoch}){outcome}.",
            advice=_ADVICE["stagnation"],
        ))

    reference, reference_epoch = float(values[0]), int(epochs[0])
    previous_epoch = reference_epoch
    for epoch, value in zip(epochs[1:].tolist(), values[1:].tolist()):
        if value < reference - tolerance * abs(reference):
            report(reference_epoch, reference, previous_epoch, recovered_at=epoch)
            reference, reference_epoch = value, epoch
        previous_epoch = epoch
    report(reference_epoch, reference, previous_epoch, recovered_at=None)
    return findings


def _find_constant_lr(
    step_scalars: dict[str, list[tuple[int, float]]], scheduler: str, stagnating: bool
) -> list[Finding]:
    if scheduler.strip().lower() in ("", "none", "null"):
        return []
    points = [(step, value) for step, value in step_scalars.get("train/learning_rate", []) if math.isfinite(value)]
    if len(points) < 2:
        return []
    values = np.asarray([value for _, value in points])
    if values.max() - values.min() > 1e-12 * max(abs(values.max()), 1e-30):
        return []
    # A plateau scheduler keeps the rate while the loss improves; that is only a problem
    # when the loss has stopped improving.
    if "plateau" in scheduler.lower() and not stagnating:
        return []
    first, last = points[0][0], points[-1][0]
    return [Finding(
        kind="constant_lr",
        first_epoch=first,
        last_epoch=last,
        evidence=f"scheduler {scheduler!r} is configured but train/learning_rate stayed at "
                 f"{values[0]:.2e} for all {len(points)} logged steps ({first}-{last}). This is "
                 "expected only if the schedule's first change lies beyond the logged steps.",
        advice=_ADVICE["constant_lr"],
        axis="step",
    )]


def diagnose_series(
    epoch_rows: pd.DataFrame,
    step_scalars: dict[str, list[tuple[int, float]]],
    scheduler: str = "none",
    patience: int = 5,
    tolerance: float = 0.01,
    spike_factor: float = 10.0,
) -> list[Finding]:
    """Return the problems found in a run's epoch table and step scalars.

    ``epoch_rows`` has an ``epoch`` column plus ``loss`` and ``val_loss`` (others are only
    checked for NaN/Inf); ``read_run`` documents how missing cells differ from NaN.
    ``step_scalars`` maps TensorBoard tags to ``[(step, value), ...]``. ``tolerance`` is
    relative, for example 0.01 = 1 % of the loss. Findings come grouped in the order of
    ``KINDS``.
    """
    if not isinstance(patience, int) or patience < 1:
        raise ValueError(f"patience must be a positive int (epochs), got {patience!r}")
    if not tolerance >= 0:
        raise ValueError(f"tolerance must be a non-negative fraction, got {tolerance!r}")
    if len(epoch_rows.columns) and "epoch" not in epoch_rows.columns:
        raise DataError(f"epoch_rows needs an 'epoch' column, got columns {list(epoch_rows.columns)}")
    if "epoch" not in epoch_rows.columns:
        epoch_rows = pd.DataFrame({"epoch": pd.Series([], dtype="int64")})
    epoch_rows = epoch_rows.sort_values("epoch").reset_index(drop=True)

    stagnation = _find_stagnation(epoch_rows, patience, tolerance)
    findings = (
        _find_nan_inf(epoch_rows, step_scalars)
        + _find_explosions(epoch_rows, step_scalars, spike_factor)
        + _find_divergence(epoch_rows)
        + _find_collapse(epoch_rows)
        + _find_overfitting(epoch_rows, tolerance)
        + stagnation
        + _find_constant_lr(step_scalars, scheduler or "none", stagnating=bool(stagnation))
    )
    for finding in findings:
        logger.debug("finding: %s", finding)
    return findings


def _find_divergence(rows: pd.DataFrame) -> list[Finding]:
    """Train loss that ends well above its lowest value: the optimizer is making things worse."""
    if "loss" not in rows.columns:
        return []
    epochs, values, present = _column(rows, "loss")
    epochs, values = epochs[present], values[present]
    finite = np.isfinite(values)
    epochs, values = epochs[finite], values[finite]
    if len(values) < 2:
        return []
    best = int(np.argmin(values))
    if best == len(values) - 1 or values[-1] <= values[best] * (1 + DIVERGENCE_RISE):
        return []
    return [Finding(
        kind="divergence",
        first_epoch=int(epochs[best]),
        last_epoch=int(epochs[-1]),
        evidence=f"train loss rose from {values[best]:.4g} at epoch {int(epochs[best])} to {values[-1]:.4g} "
                 f"at epoch {int(epochs[-1])} (+{(values[-1] / values[best] - 1) * 100:.0f}%).",
        advice=_ADVICE["divergence"],
    )]


def _find_collapse(rows: pd.DataFrame) -> list[Finding]:
    """Predictions that no longer move with the targets: correlation stuck at zero."""
    for name in ("val_mean_correlation", "mean_correlation"):
        if name not in rows.columns:
            continue
        epochs, values, present = _column(rows, name)
        epochs, values = epochs[present], values[present]
        if len(values) < COLLAPSE_EPOCHS:
            continue
        tail = values[-COLLAPSE_EPOCHS:]
        if np.isfinite(tail).all() and (np.abs(tail) < COLLAPSE_CORRELATION).all():
            stuck = len(values) - COLLAPSE_EPOCHS
            while stuck > 0 and np.isfinite(values[stuck - 1]) and abs(values[stuck - 1]) < COLLAPSE_CORRELATION:
                stuck -= 1
            return [Finding(
                kind="collapse",
                first_epoch=int(epochs[stuck]),
                last_epoch=int(epochs[-1]),
                evidence=f"{name} stayed within +-{COLLAPSE_CORRELATION} (last {values[-1]:.4g}) from epoch "
                         f"{int(epochs[stuck])} to {int(epochs[-1])}: the outputs no longer vary with the input.",
                advice=_ADVICE["collapse"],
            )]
    return []


def diagnose_run(run_dir: str | Path, patience: int = 5, tolerance: float = 0.01) -> list[Finding]:
    """Read a run folder and return its findings; the scheduler comes from ``training.scheduler``."""
    epoch_rows, step_scalars, config = read_run(run_dir)
    training = config.get("training") or {}
    scheduler = training.get("scheduler", "none") if isinstance(training, dict) else "none"
    return diagnose_series(
        epoch_rows, step_scalars, scheduler=str(scheduler or "none"), patience=patience, tolerance=tolerance
    )


def format_findings(findings: Sequence[Finding]) -> str:
    """Render findings as text, one block per finding, or a "no problems found" line."""
    if not findings:
        return "Diagnosis: no problems found."
    lines = [f"Diagnosis: {len(findings)} finding(s)."]
    for finding in findings:
        span = (
            f"{finding.axis} {finding.first_epoch}"
            if finding.first_epoch == finding.last_epoch
            else f"{finding.axis}s {finding.first_epoch}-{finding.last_epoch}"
        )
        lines.append(f"[{finding.kind}] {span}: {finding.evidence}")
        lines.append(f"    advice: {finding.advice}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Report training problems found in a run folder's logs.")
    parser.add_argument("run_dir", help="run folder, e.g. runs/2024-05-01/12-00-00-baseline")
    parser.add_argument("--patience", type=int, default=5, help="epochs without improvement that count as stagnation")
    parser.add_argument("--tolerance", type=float, default=0.01, help="relative change that counts, e.g. 0.01 = 1%%")
    args = parser.parse_args(argv)
    try:
        findings = diagnose_run(args.run_dir, patience=args.patience, tolerance=args.tolerance)
    except WorkbenchError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(format_findings(findings))
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
