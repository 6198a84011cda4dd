"""Blendshape targets read from label files, in canonical ARKit order, and their resampling.

Every label reader returns a ``TargetTrack``. Frame ``i`` of a track is the face at time
``i / fps`` seconds, the start of the frame and not its centre. ``resample_track`` samples its
output frames at their starts too, so a track and features at one rate line up frame by frame.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from workbench.arkit import NUM_BLENDSHAPES
from workbench.errors import DataError

log = logging.getLogger(__name__)

# Suffixes that dataset discovery treats as label files (lower case, with the dot).
LABEL_SUFFIXES: tuple[str, ...] = (".csv", ".json", ".npy")

_FORMAT_HELP = (
    "supported label formats: .csv (Live Link Face export, or a plain CSV with ARKit-named "
    "columns), .json (Audio2Face blendshape export), .npy (FACEGOOD 116-channel rig weights)"
)


@dataclass
class TargetTrack:
    """Per-frame blendshape weights of one clip.

    ``values`` is float32 ``[frames, 52]`` in ``ARKIT_NAMES`` order. ``mask`` is bool ``[52]``:
    False marks a channel the source file does not have. Such a channel contains 0 in ``values``
    but is unknown, not a zero target, so loss and metrics must skip it.
    """

    values: np.ndarray
    mask: np.ndarray
    fps: float
    path: Path

    def __post_init__(self) -> None:
        self.values = np.asarray(self.values, dtype=np.float32)
        self.mask = np.asarray(self.mask, dtype=bool)
        self.path = Path(self.path)
        if self.values.ndim != 2 or self.values.shape[1] != NUM_BLENDSHAPES:
            raise ValueError(f"values must be [frames, {NUM_BLENDSHAPES}], got {self.values.shape}")
        if self.mask.shape != (NUM_BLENDSHAPES,):
            raise ValueError(f"mask must be [{NUM_BLENDSHAPES}], got {self.mask.shape}")
        if not self.fps > 0:
            raise ValueError(f"fps must be positive, got {self.fps}")

    @property
    def num_frames(self) -> int:
        return int(self.values.shape[0])

    @property
    def duration(self) -> float:
        """Length in seconds: the number of frames times the frame period."""
        return self.num_frames / self.fps


def read_targets(path: str | Path, fps: float | None = None) -> TargetTrack:
    """Read a label file into a ``TargetTrack``, choosing the reader from suffix and header.

    ``fps`` overrides the frame rate stored in or measured from the file. FACEGOOD files
    have no rate of their own and default to 30 fps.
    """
    # The format modules import TargetTrack from here, so they are imported on use.
    from workbench.formats import a2f_json, facegood, livelink, plain_csv

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in LABEL_SUFFIXES:
        raise DataError(f"{path}: unknown label file suffix {path.suffix!r}; {_FORMAT_HELP}")
    if not path.is_file():
        raise DataError(f"{path}: label file not found")

    if suffix == ".npy":
        return facegood.read_facegood_npy(path, fps=fps)
    if suffix == ".json":
        return a2f_json.read_a2f_json(path, fps=fps)
    if livelink.is_livelink_csv(path):
        return livelink.read_livelink_csv(path, fps=fps)
    return plain_csv.read_plain_csv(path, fps=fps)


def resample_track(track: TargetTrack, num_frames: int, frame_rate: float) -> np.ndarray:
    """Interpolate ``track.values`` linearly at times ``j / frame_rate``, j < ``num_frames``.

    Returns float32 ``[num_frames, 52]``. Times past the last source frame hold its value.
    Masked channels stay 0 because they are 0 in every source frame.
    """
    if num_frames < 0 or not frame_rate > 0:
        raise ValueError(f"need num_frames >= 0 and frame_rate > 0, got {num_frames}, {frame_rate}")
    if track.num_frames == 0:
        raise DataError(f"{track.path}: label track has no frames, nothing to resample")

    # Position of each output frame on the source frame axis, in (fractional) source frames.
    position = np.arange(num_frames, dtype=np.float64) * (track.fps / frame_rate)
    last = track.num_frames - 1
    position = np.clip(position, 0.0, last)
    lower = np.floor(position).astype(np.int64)
    upper = np.minimum(lower + 1, last)
    weight = (position - lower)[:, None]

    values = track.values.astype(np.float64)
    resampled = values[lower] * (1.0 - weight) + values[upper] * weight
    return resampled.astype(np.float32)
