"""Plain CSV labels: one column per ARKit shape, named as in ARKit, and an optional ``time``.

Column names match ARKit names without regard to case (``jawOpen``, ``JawOpen``, ``jawopen``).
ARKit shapes without a column are masked; other columns are ignored. The frame rate comes from
the ``fps`` argument or from the median spacing of the ``time`` column (seconds).
"""

from __future__ import annotations

import difflib
import logging
from pathlib import Path

import numpy as np

from workbench.arkit import ARKIT_INDEX, ARKIT_NAMES, NUM_BLENDSHAPES
from workbench.errors import DataError
from workbench.formats.common import clip_unit_range, numeric_cells, read_csv_frame
from workbench.targets import TargetTrack

log = logging.getLogger(__name__)

_ARKIT_BY_LOWER = {name.lower(): name for name in ARKIT_NAMES}
# Spacing that differs from the median by more than this fraction is reported, because rows
# are used as evenly spaced frames.
IRREGULAR_SPACING = 0.1


def read_plain_csv(path: str | Path, fps: float | None = None) -> TargetTrack:
    """Read a CSV with ARKit-named columns; ``fps`` overrides the rate from the ``time`` column."""
    path = Path(path)
    frame = read_csv_frame(path, "a CSV with ARKit-named columns (or a Live Link Face CSV)")

    columns: dict[str, str] = {}
    for column in frame.columns:
        arkit = _ARKIT_BY_LOWER.get(column.lower())
        if arkit is None:
            continue
        if arkit in columns:
            raise DataError(f"{path}: columns {columns[arkit]!r} and {column!r} both name {arkit}")
        columns[arkit] = column
    near_misses = _near_misses(frame.columns)
    if not columns:
        hint = f" ({near_misses})" if near_misses else ""
        raise DataError(
            f"{path}: no column is named after an ARKit blendshape (found "
            f"{', '.join(frame.columns[:8])}); name columns like jawOpen, mouthClose{hint}"
        )
    if near_misses:
        log.warning("%s: ignoring columns that are not ARKit names (%s); those shapes are masked", path, near_misses)

    file_columns = list(columns.values())
    weights = clip_unit_range(path, numeric_cells(path, frame, file_columns), names=file_columns)
    values = np.zeros((len(frame), NUM_BLENDSHAPES), dtype=np.float32)
    mask = np.zeros(NUM_BLENDSHAPES, dtype=bool)
    for position, arkit in enumerate(columns):
        values[:, ARKIT_INDEX[arkit]] = weights[:, position]
        mask[ARKIT_INDEX[arkit]] = True

    if fps is None:
        fps = _rate_from_time_column(path, frame)
    return TargetTrack(values=values, mask=mask, fps=float(fps), path=path)


def _near_misses(names) -> str:
    """Describe columns that look like misspelled ARKit names, e.g. "did you mean jawOpen for 'JawOpn'"."""
    hints = []
    for name in names:
        if name.lower() in _ARKIT_BY_LOWER or name.lower() == "time":
            continue
        match = difflib.get_close_matches(name.lower(), _ARKIT_BY_LOWER, n=1, cutoff=0.8)
        if match:
            hints.append(f"{_ARKIT_BY_LOWER[match[0]]} for {name!r}")
    return f"did you mean {', '.join(hints)}?" if hints else ""


def _rate_from_time_column(path: Path, frame) -> float:
    time_column = next((c for c in frame.columns if c.lower() == "time"), None)
    if time_column is None:
        raise DataError(
            f"{path}: no 'time' column, so the frame rate is unknown; add a time column in "
            "seconds or pass the frame rate (fps)"
        )
    times = numeric_cells(path, frame, [time_column])[:, 0]
    if len(times) < 2:
        raise DataError(f"{path}: one row is not enough to derive a frame rate; pass fps")
    steps = np.diff(times)
    if (steps <= 0).any():
        row = int(np.flatnonzero(steps <= 0)[0]) + 1
        raise DataError(
            f"{path}: the time column must increase, but data row {row} has {times[row]:g} s "
            f"after {times[row - 1]:g} s"
        )
    step = float(np.median(steps))
    irregular = np.abs(steps - step) > IRREGULAR_SPACING * step
    if irregular.any():
        # NOTE: rows are not resampled onto an even grid; irregular files are read as even.
        log.warning(
            "%s: %d time steps differ from the median %.4g s by over %d%%; rows are treated "
            "as evenly spaced frames", path, int(irregular.sum()), step, IRREGULAR_SPACING * 100,
        )
    return 1.0 / step
