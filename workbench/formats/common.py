"""Helpers shared by the label readers and writers: atomic writes and value checks."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Iterator, TextIO

import numpy as np
import pandas as pd

from workbench.atomic import atomic_open
from workbench.arkit import NUM_BLENDSHAPES
from workbench.errors import DataError

log = logging.getLogger(__name__)

# Values up to this far outside [0, 1] are clipped with a warning. Values further out mean the
# file uses another scale (0-100 percent, for one), so the file is rejected.
CLIP_TOLERANCE = 0.05


@contextlib.contextmanager
def atomic_text_writer(path: str | Path) -> Iterator[TextIO]:
    """Open a temporary file next to ``path`` and move it onto ``path`` only on success.

    A reader never sees a half-written label file, even when the writer crashes.
    """
    # Label files are rewritten easily, so they skip the fsync that checkpoints pay for.
    with atomic_open(path, "w", fsync=False) as handle:
        yield handle


def check_values_to_write(path: str | Path, values: np.ndarray, fps: float) -> np.ndarray:
    """Validate ``[frames, 52]`` weights for a writer; return them as float64 clipped to [0, 1]."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2 or values.shape[1] != NUM_BLENDSHAPES:
        raise DataError(
            f"{path}: cannot write blendshapes of shape {values.shape}; "
            f"expected [frames, {NUM_BLENDSHAPES}] in canonical ARKit order"
        )
    if not np.isfinite(values).all():
        bad_row = int(np.flatnonzero(~np.isfinite(values).all(axis=1))[0])
        raise DataError(f"{path}: cannot write NaN or infinite blendshape values (row {bad_row})")
    if not (np.isfinite(fps) and fps > 0):
        raise DataError(f"{path}: frame rate must be a positive number, got {fps!r}")
    return np.clip(values, 0.0, 1.0)


def clip_unit_range(path: Path, values: np.ndarray, names: list[str] | None = None) -> np.ndarray:
    """Clip small excursions outside [0, 1] with one warning; reject values on another scale.

    ``names`` labels the columns of ``values`` in the error message.
    """
    low = values < -CLIP_TOLERANCE
    high = values > 1.0 + CLIP_TOLERANCE
    far = low | high
    if far.any():
        row, column = (int(i) for i in np.argwhere(far)[0])
        where = f"column {names[column]!r}" if names else f"channel {column}"
        raise DataError(
            f"{path}: blendshape value {values[row, column]:g} at row {row}, {where} is far "
            f"outside [0, 1] (range found {values.min():g} to {values.max():g}); weights must "
            "be fractions in [0, 1], so rescale the file (a 0-100 scale needs dividing by 100)"
        )
    outside = int(((values < 0.0) | (values > 1.0)).sum())
    if outside:
        log.warning(
            "%s: clipped %d blendshape values slightly outside [0, 1] (range %g to %g)",
            path, outside, values.min(), values.max(),
        )
        values = np.clip(values, 0.0, 1.0)
    return values


def read_csv_frame(path: Path, kind: str) -> pd.DataFrame:
    """Read a label CSV as strings with stripped column names; ``kind`` names the format."""
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""],
                            skipinitialspace=True)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the file is empty; expected {kind}") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: cannot parse as CSV ({error}); expected {kind}") from None
    frame.columns = [str(name).strip() for name in frame.columns]
    if frame.empty:
        raise DataError(f"{path}: the CSV has a header but no data rows")
    return frame


def numeric_cells(path: Path, frame: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """Convert ``frame[columns]`` to float64, rejecting empty and non-numeric cells by position."""
    raw = frame[columns]
    numeric = raw.apply(pd.to_numeric, errors="coerce")
    bad = numeric.isna().to_numpy()
    if bad.any():
        row, column = (int(i) for i in np.argwhere(bad)[0])
        cell = raw.iat[row, column]
        problem = "an empty (NaN) cell" if pd.isna(cell) else f"the non-numeric cell {cell!r}"
        raise DataError(
            f"{path}: {problem} in column {columns[column]!r} at data row {row} "
            f"(line {row + 2} of the file); every blendshape cell must hold a number"
        )
    return numeric.to_numpy(dtype=np.float64)
