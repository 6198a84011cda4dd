"""Live Link Face CSV, as exported by Epic's iPhone app: reader and writer.

Layout: ``Timecode``, ``BlendshapeCount`` (older exports spell it ``BlendShapeCount``), the 52
blendshapes in PascalCase in Live Link order, then optionally 9 head and eye rotations and any
extra columns, which the reader ignores. Columns are looked up by name, never by position.

Timecodes are ``HH:MM:SS:FF.fff`` (``FF`` the frame within the second). They can repeat or skip
(generated files round them from milliseconds), so a row's time is its index divided by the
frame rate, and the timecodes only serve to measure that rate.
"""

from __future__ import annotations

import difflib
import logging
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd

from workbench.arkit import ARKIT_INDEX, ARKIT_NAMES, NUM_BLENDSHAPES, arkit_to_pascal
from workbench.errors import DataError
from workbench.formats.common import (
    atomic_text_writer, check_values_to_write, clip_unit_range, numeric_cells, read_csv_frame,
)
from workbench.targets import TargetTrack

log = logging.getLogger(__name__)


def _livelink_order() -> tuple[str, ...]:
    # Live Link Face lists jawRight before jawLeft and mouthRight before mouthLeft.
    names = list(ARKIT_NAMES)
    for left, right in (("jawLeft", "jawRight"), ("mouthLeft", "mouthRight")):
        i, j = names.index(left), names.index(right)
        names[i], names[j] = names[j], names[i]
    return tuple(arkit_to_pascal(name) for name in names)


LIVELINK_NAMES: tuple[str, ...] = _livelink_order()
ROTATION_NAMES: tuple[str, ...] = (
    "HeadYaw", "HeadPitch", "HeadRoll",
    "LeftEyeYaw", "LeftEyePitch", "LeftEyeRoll",
    "RightEyeYaw", "RightEyePitch", "RightEyeRoll",
)
# Canonical index of each Live Link column, so values[:, LIVELINK_TO_CANONICAL] reorders.
LIVELINK_TO_CANONICAL = np.array(
    [ARKIT_INDEX[name[:1].lower() + name[1:]] for name in LIVELINK_NAMES]
)
DEFAULT_FPS = 60.0
COMMON_RATES = (24.0, 25.0, 30.0, 50.0, 60.0)
# A measured rate within this relative distance of a common rate is snapped to it
# (59.94 and 29.97 fps captures become 60 and 30).
SNAP_TOLERANCE = 0.01

_TIMECODE = re.compile(r"^\s*(\d+):(\d{1,2}):(\d{1,2})[:;](\d+)(?:\.(\d+))?\s*$")


def is_livelink_csv(path: Path) -> bool:
    """Tell whether the CSV header has the Live Link ``Timecode`` or ``BlendshapeCount`` column."""
    with open(path, encoding="utf-8-sig", errors="replace") as handle:
        header = handle.readline()
    columns = {name.strip().lower() for name in header.split(",")}
    return "timecode" in columns or "blendshapecount" in columns


def read_livelink_csv(path: str | Path, fps: float | None = None) -> TargetTrack:
    """Read a Live Link Face CSV into canonical order; all 52 channels are present in the mask.

    The frame rate is ``fps`` if given, else measured from the timecodes, else 60.
    """
    path = Path(path)
    frame = read_csv_frame(path, "a Live Link Face CSV")
    columns = _find_blendshape_columns(path, frame)

    livelink_values = numeric_cells(path, frame, columns)
    livelink_values = clip_unit_range(path, livelink_values, names=columns)

    values = np.zeros((len(frame), NUM_BLENDSHAPES), dtype=np.float32)
    values[:, LIVELINK_TO_CANONICAL] = livelink_values
    if fps is None:
        fps = measure_frame_rate(path, frame)
    return TargetTrack(values=values, mask=np.ones(NUM_BLENDSHAPES, bool), fps=float(fps), path=path)


def _find_blendshape_columns(path: Path, frame: pd.DataFrame) -> list[str]:
    """Return the file's column name for each Live Link blendshape, matched ignoring case."""
    by_lower = {name.lower(): name for name in frame.columns}
    found, missing = [], []
    for name in LIVELINK_NAMES:
        column = by_lower.get(name.lower())
        if column is None:
            missing.append(name)
        else:
            found.append(column)
    if missing:
        unused = [c for c in frame.columns if c not in found]
        hints = []
        for name in missing:
            close = difflib.get_close_matches(name, unused, n=1, cutoff=0.6)
            hints.append(f"{name} (closest column found: {close[0]!r})" if close else name)
        raise DataError(
            f"{path}: missing {len(missing)} Live Link blendshape column(s): {', '.join(hints)}. "
            "Rename the columns to the Live Link Face PascalCase names."
        )
    return found


def measure_frame_rate(path: Path, frame: pd.DataFrame) -> float:
    """Measure rows per second from the timecodes' whole seconds, snapped to a common rate.

    Counting rows between the first and last change of the ``HH:MM:SS`` part ignores the
    ``FF.fff`` part, which files disagree on (frame plus subframe in the iPhone app, rounded
    milliseconds in generated files). Needs at least two second changes, about 2 s of data;
    shorter or unparsable timecodes fall back to 60 fps with a log message.
    """
    column = next((c for c in frame.columns if c.lower() == "timecode"), None)
    if column is None:
        log.info("%s: no Timecode column; assuming %g fps", path, DEFAULT_FPS)
        return DEFAULT_FPS

    seconds = []
    for text in frame[column].fillna(""):
        match = _TIMECODE.match(text)
        if match is None:
            log.warning("%s: unparsable timecode %r; assuming %g fps", path, text, DEFAULT_FPS)
            return DEFAULT_FPS
        hours, minutes, secs = (int(match.group(i)) for i in (1, 2, 3))
        seconds.append(hours * 3600 + minutes * 60 + secs)

    seconds = np.asarray(seconds)
    changes = np.flatnonzero(np.diff(seconds) != 0) + 1
    if len(changes) < 2:
        log.info("%s: timecodes span under two whole seconds; assuming %g fps", path, DEFAULT_FPS)
        return DEFAULT_FPS
    first, last = changes[0], changes[-1]
    span = seconds[last] - seconds[first]
    if span <= 0:
        log.warning("%s: timecodes go backwards; assuming %g fps", path, DEFAULT_FPS)
        return DEFAULT_FPS

    measured = (last - first) / span
    for rate in COMMON_RATES:
        if abs(measured - rate) <= SNAP_TOLERANCE * rate:
            return rate
    log.info("%s: measured %.3f fps from timecodes, not near a common rate", path, measured)
    return float(measured)


def format_timecode(index: int, fps: float) -> str:
    """Return the Live Link timecode of row ``index`` of a take at ``fps`` that starts at zero.

    ``FF`` counts frames at the nominal integer rate and ``.fff`` is the subframe fraction.
    """
    nominal = max(1, round(fps))
    position = index * nominal / fps + 1e-9  # guards floor() against 59.999999 frames
    whole = math.floor(position)
    subframe = min(999, int((position - whole) * 1000))
    total_seconds, frame_in_second = divmod(whole, nominal)
    minutes, secs = divmod(total_seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}:{frame_in_second:02d}.{subframe:03d}"


def write_livelink_csv(path: str | Path, values: np.ndarray, fps: float = 60.0) -> None:
    """Write canonical-order ``values`` [frames, 52] as a Live Link Face CSV, atomically.

    Values are clipped to [0, 1] and written with 7 decimals; the 9 rotations are 0.
    """
    path = Path(path)
    values = check_values_to_write(path, values, fps)

    # One printf-style format per row: about 10x faster than DataFrame.to_csv with a
    # float_format, which matters for 10-minute predictions (36,000 rows at 60 fps).
    columns = values[:, LIVELINK_TO_CANONICAL]
    count = NUM_BLENDSHAPES + len(ROTATION_NAMES)
    row_format = ",".join(["%.7f"] * NUM_BLENDSHAPES) + "," + ",".join(["0.0000000"] * len(ROTATION_NAMES))
    header = ",".join(["Timecode", "BlendshapeCount", *LIVELINK_NAMES, *ROTATION_NAMES])
    with atomic_text_writer(path) as handle:
        handle.write(header + "\n")
        for i, row in enumerate(columns.tolist()):
            handle.write(f"{format_timecode(i, fps)},{count}," + row_format % tuple(row) + "\n")
