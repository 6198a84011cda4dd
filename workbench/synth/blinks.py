"""Procedural eye blinks for synthetic clips: random onsets, a fast close and a slower open."""

from __future__ import annotations

import numpy as np

from workbench.arkit import ARKIT_INDEX

# Time between blink onsets, seconds (drawn uniformly).
BLINK_INTERVAL_S = (2.0, 6.0)
# Length of one blink from first movement to fully open again, seconds.
BLINK_DURATION_S = (0.12, 0.18)
# The lid closes in this fraction of the blink and reopens in the rest.
CLOSING_FRACTION = 0.4


def blink_curve(num_frames: int, fps: float, rng: np.random.Generator) -> np.ndarray:
    """Return one eyelid's closure ``[num_frames]`` in [0, 1] at frame times i / fps."""
    times = np.arange(num_frames, dtype=np.float64) / fps
    curve = np.zeros(num_frames)
    duration_s = num_frames / fps
    # The first blink comes sooner than a full interval, as a clip starts mid-conversation.
    onset = rng.uniform(0.2, BLINK_INTERVAL_S[0])
    while onset < duration_s:
        length = rng.uniform(*BLINK_DURATION_S)
        depth = rng.uniform(0.85, 1.0)
        peak = onset + CLOSING_FRACTION * length
        closing = np.clip((times - onset) / (peak - onset), 0.0, 1.0)
        opening = np.clip((times - peak) / (onset + length - peak), 0.0, 1.0)
        shape = np.where(times < peak, 0.5 - 0.5 * np.cos(np.pi * closing),
                         0.5 + 0.5 * np.cos(np.pi * opening))
        shape[(times <= onset) | (times >= onset + length)] = 0.0
        curve = np.maximum(curve, depth * shape)
        onset += rng.uniform(*BLINK_INTERVAL_S)
    return curve


def add_blinks(values: np.ndarray, fps: float, rng: np.random.Generator) -> np.ndarray:
    """Write blinks into eyeBlinkLeft and eyeBlinkRight of ``values`` ``[frames, 52]`` in place.

    Both eyes blink together; the right lid closes 0-5 % less, as real blinks are not
    perfectly symmetric.
    """
    curve = blink_curve(values.shape[0], fps, rng)
    values[:, ARKIT_INDEX["eyeBlinkLeft"]] = curve
    values[:, ARKIT_INDEX["eyeBlinkRight"]] = curve * rng.uniform(0.95, 1.0)
    return values
