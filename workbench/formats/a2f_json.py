"""NVIDIA Audio2Face blendshape JSON export: reader and writer.

The export is one object with ``exportFps``, ``numPoses``, ``numFrames``, ``facsNames`` (pose
names, ARKit camelCase for an ARKit solve) and ``weightMat`` (``numFrames`` rows of
``numPoses`` weights). Poses that are not ARKit shapes are ignored; ARKit shapes the file
lacks are masked.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from workbench.arkit import ARKIT_INDEX, ARKIT_NAMES, NUM_BLENDSHAPES
from workbench.errors import DataError
from workbench.formats.common import atomic_text_writer, check_values_to_write, clip_unit_range
from workbench.targets import TargetTrack

log = logging.getLogger(__name__)

REQUIRED_KEYS = ("exportFps", "numPoses", "numFrames", "facsNames", "weightMat")
_ARKIT_BY_LOWER = {name.lower(): name for name in ARKIT_NAMES}


def read_a2f_json(path: str | Path, fps: float | None = None) -> TargetTrack:
    """Read an Audio2Face blendshape export; ``fps`` overrides its ``exportFps``."""
    path = Path(path)
    export = _load_export(path)
    names = export["facsNames"]
    num_poses, num_frames = export["numPoses"], export["numFrames"]

    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise DataError(f"{path}: facsNames must be a list of pose names")
    if num_poses != len(names):
        raise DataError(f"{path}: numPoses is {num_poses} but facsNames lists {len(names)} names")
    rows = export["weightMat"]
    if not isinstance(rows, list) or num_frames != len(rows):
        found = len(rows) if isinstance(rows, list) else type(rows).__name__
        raise DataError(f"{path}: numFrames is {num_frames} but weightMat has {found} rows")
    if num_frames == 0:
        raise DataError(f"{path}: the export has no frames")
    for i, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != num_poses:
            found = len(row) if isinstance(row, list) else type(row).__name__
            raise DataError(f"{path}: weightMat row {i} has {found} weights, numPoses is {num_poses}")
    try:
        weights = np.asarray(rows, dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(f"{path}: weightMat must contain only numbers") from None
    bad_rows = np.flatnonzero(~np.isfinite(weights).all(axis=1))
    if len(bad_rows):
        raise DataError(f"{path}: NaN or infinite weight in weightMat row {bad_rows[0]}")

    columns = _map_names(path, names)
    weights = clip_unit_range(path, weights, names=names)
    values = np.zeros((num_frames, NUM_BLENDSHAPES), dtype=np.float32)
    mask = np.zeros(NUM_BLENDSHAPES, dtype=bool)
    for source, target in columns.items():
        values[:, target] = weights[:, source]
        mask[target] = True

    if fps is None:
        fps = export["exportFps"]
        if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not fps > 0:
            raise DataError(f"{path}: exportFps must be a positive number, found {fps!r}")
    return TargetTrack(values=values, mask=mask, fps=float(fps), path=path)


def _load_export(path: Path) -> dict:
    try:
        with open(path, encoding="utf-8") as handle:
            export = json.load(handle)
    except json.JSONDecodeError as error:
        problem = "the file is empty" if error.doc.strip() == "" else f"invalid JSON ({error})"
        raise DataError(f"{path}: {problem}; expected an Audio2Face blendshape export") from None
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a UTF-8 text file; expected Audio2Face JSON") from None
    if not isinstance(export, dict):
        raise DataError(f"{path}: expected a JSON object with keys {', '.join(REQUIRED_KEYS)}")
    missing = [key for key in REQUIRED_KEYS if key not in export]
    if missing:
        raise DataError(
            f"{path}: missing Audio2Face key(s) {', '.join(missing)}; an Audio2Face blendshape "
            f"export has {', '.join(REQUIRED_KEYS)}"
        )
    return export


def _map_names(path: Path, names: list[str]) -> dict[int, int]:
    """Map pose positions to canonical indices, matching names without regard to case."""
    columns: dict[int, int] = {}
    ignored = []
    for position, name in enumerate(names):
        arkit = _ARKIT_BY_LOWER.get(name.strip().lower())
        if arkit is None:
            ignored.append(name)
            continue
        if ARKIT_INDEX[arkit] in columns.values():
            raise DataError(f"{path}: facsNames lists {arkit} twice")
        columns[position] = ARKIT_INDEX[arkit]
    if not columns:
        raise DataError(
            f"{path}: none of the {len(names)} facsNames is an ARKit blendshape name "
            f"(first: {names[:3]}); export the ARKit blendshape solve"
        )
    if ignored:
        log.warning("%s: ignoring %d non-ARKit poses: %s", path, len(ignored), ", ".join(ignored))
    return columns


def write_a2f_json(path: str | Path, values: np.ndarray, fps: float) -> None:
    """Write canonical-order ``values`` [frames, 52] as an Audio2Face JSON export, atomically.

    Values are clipped to [0, 1] and rounded to 7 decimals.
    """
    path = Path(path)
    values = check_values_to_write(path, values, fps)
    export = {
        "exportFps": float(fps),
        "numPoses": NUM_BLENDSHAPES,
        "numFrames": int(values.shape[0]),
        "facsNames": list(ARKIT_NAMES),
        "weightMat": np.round(values, 7).tolist(),
    }
    with atomic_text_writer(path) as handle:
        json.dump(export, handle)
