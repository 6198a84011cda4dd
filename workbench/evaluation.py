"""Lip-sync evaluation of whole clips given as numpy arrays.

Pooled numbers come from ``BlendshapeMetrics`` over all clips together. On top of them each
clip gets its own metrics and an audio-to-face lag estimated by cross-correlation, and the
pooled ``lag_frames`` is the median of the per-clip lags.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from workbench.atomic import atomic_write_text
from workbench.arkit import NUM_BLENDSHAPES
from workbench.errors import ConfigError, DataError
from workbench.metrics import CONSTANT_VARIANCE, BlendshapeMetrics

logger = logging.getLogger(__name__)

AUDIO_SAMPLE_RATE = 16_000

# Columns of ``format_table``: (result key, column title).
TABLE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("num_frames", "frames"),
    ("mae", "mae"),
    ("mse", "mse"),
    ("mean_correlation", "corr"),
    ("constant_channels", "const"),
    ("mae_jaw_mouth", "mae_mouth"),
    ("mae_eyes", "mae_eyes"),
    ("mae_brows", "mae_brows"),
    ("velocity_mae", "vel_mae"),
    ("silence_jaw_open", "sil_jaw"),
    ("lag_frames", "lag"),
)


def _validity_weights(mask: np.ndarray | None, shape: tuple[int, int]) -> np.ndarray:
    """Return a float [T, C] array that is 1 on valid entries; ``mask`` is [C] or [T, C]."""
    if mask is None:
        return np.ones(shape)
    mask = np.asarray(mask)
    if mask.dtype != bool:
        raise DataError(f"mask must be a bool array, got dtype {mask.dtype}")
    if mask.shape == shape[1:]:
        return np.broadcast_to(mask, shape).astype(float)
    if mask.shape == shape:
        return mask.astype(float)
    raise DataError(f"mask must have shape [{shape[1]}] or {list(shape)}, got {list(mask.shape)}")


def estimate_lag(
    pred: np.ndarray,
    target: np.ndarray,
    mask: np.ndarray | None = None,
    max_lag: int = 10,
) -> int:
    """Estimate by how many frames the prediction trails the target.

    Sign: a positive lag L means the prediction is late, so ``pred[t + L]`` matches
    ``target[t]`` (the face moves after the sound). A negative lag means the prediction
    anticipates the target.

    Each channel that is valid and whose target moves is z-scored over its valid frames,
    in pred and target separately. For every lag in [-max_lag, max_lag] the normalized
    cross-correlation of each such channel is taken over the overlapping valid frames, and
    the lag with the highest mean over channels wins. Averaging correlations, not signals,
    keeps channels that move in opposite directions (jawOpen, mouthClose) from cancelling.
    Ties go to the lag of smallest magnitude.

    ``pred`` and ``target`` are [T, C]; ``mask`` is bool [C] or [T, C] (True = valid).
    Raises DataError when no valid channel moves, since the lag is then undefined.
    """
    pred = np.asarray(pred, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    if pred.ndim != 2 or pred.shape != target.shape:
        raise DataError(
            f"pred and target must both have shape [frames, channels], got "
            f"{list(pred.shape)} and {list(target.shape)}"
        )
    if not isinstance(max_lag, int) or max_lag < 0:
        raise ConfigError(f"max_lag must be a non-negative int, got {max_lag!r}")
    weights = _validity_weights(mask, pred.shape)
    num_frames = pred.shape[0]
    max_lag = min(max_lag, max(num_frames - 2, 0))

    # A flat predicted channel has z-scores of 0 and adds 0 correlation at every lag.
    pred_z, _ = _zscore(pred, weights)
    target_z, target_std = _zscore(target, weights)
    moving = (weights.sum(axis=0) > 1) & (target_std**2 >= CONSTANT_VARIANCE)
    if not moving.any():
        raise DataError("cannot estimate the lag: no valid target channel moves in this clip")

    pred_z, target_z, weights = pred_z[:, moving], target_z[:, moving], weights[:, moving]
    best_lag, best_score = 0, -math.inf
    # Lags in order 0, -1, 1, -2, 2 ... so the strict ">" keeps the smallest |lag| on ties.
    for lag in sorted(range(-max_lag, max_lag + 1), key=lambda value: (abs(value), value)):
        score = _lagged_correlation(pred_z, target_z, weights, lag)
        if score > best_score + 1e-12:
            best_lag, best_score = lag, score
    return best_lag


def _zscore(values: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Z-score each column over its valid rows; invalid rows and flat columns become 0."""
    count = np.maximum(weights.sum(axis=0), 1.0)
    mean = (values * weights).sum(axis=0) / count
    centered = (values - mean) * weights
    std = np.sqrt((centered**2).sum(axis=0) / count)
    safe_std = np.where(std**2 >= CONSTANT_VARIANCE, std, np.inf)
    return centered / safe_std, std


def _lagged_correlation(pred_z: np.ndarray, target_z: np.ndarray, weights: np.ndarray, lag: int) -> float:
    """Mean over channels of sum(pred_z[t + lag] * target_z[t]) / (valid pairs)."""
    num_frames = pred_z.shape[0]
    if lag >= 0:
        pred_part, target_part = slice(lag, num_frames), slice(0, num_frames - lag)
    else:
        pred_part, target_part = slice(0, num_frames + lag), slice(-lag, num_frames)
    pairs = weights[pred_part] * weights[target_part]
    pair_count = pairs.sum(axis=0)
    products = (pred_z[pred_part] * target_z[target_part] * pairs).sum(axis=0)
    usable = pair_count > 0
    if not usable.any():
        return -math.inf
    return float((products[usable] / pair_count[usable]).mean())


def silence_frames(
    audio_16k: np.ndarray,
    num_frames: int,
    frame_rate: float = 100.0,
    threshold_db: float = -40.0,
) -> np.ndarray:
    """Return a bool [num_frames] array that is True where the audio is silent.

    Frame i covers the samples within half a frame period of its time i / frame_rate, the
    centred framing of torchaudio's spectrogram with the same hop. A frame is silent when
    its RMS is more than ``-threshold_db`` dB below the loudest frame's RMS. Frames past
    the end of the audio and all frames of an all-zero clip count as silent.
    """
    audio = np.asarray(audio_16k)
    if audio.ndim != 1:
        raise DataError(
            f"audio must be mono with shape [samples], got shape {list(audio.shape)}; "
            "downmix it to mono first"
        )
    if not np.issubdtype(audio.dtype, np.floating):
        raise DataError(f"audio must be float samples in [-1, 1], got dtype {audio.dtype}")
    if not np.isfinite(audio).all():
        raise DataError("audio contains NaN or Inf samples")
    if not isinstance(num_frames, (int, np.integer)) or num_frames < 0:
        raise ConfigError(f"num_frames must be a non-negative int, got {num_frames!r}")
    if not frame_rate > 0:
        raise ConfigError(f"frame_rate must be positive (frames per second), got {frame_rate!r}")
    if not threshold_db < 0:
        raise ConfigError(f"threshold_db must be negative (dB below the peak frame), got {threshold_db!r}")

    samples_per_frame = AUDIO_SAMPLE_RATE / frame_rate
    centres = np.arange(num_frames) * samples_per_frame
    starts = np.clip(np.round(centres - samples_per_frame / 2), 0, audio.size).astype(np.int64)
    ends = np.clip(np.round(centres + samples_per_frame / 2), 0, audio.size).astype(np.int64)

    # Prefix sums of the squared samples give each frame's energy in O(1).
    energy_prefix = np.concatenate(([0.0], np.cumsum(audio.astype(np.float64) ** 2)))
    lengths = ends - starts
    energy = energy_prefix[ends] - energy_prefix[starts]
    rms = np.sqrt(np.maximum(energy, 0.0) / np.maximum(lengths, 1))

    peak = rms.max() if rms.size else 0.0
    if peak <= 0.0:
        return np.ones(num_frames, dtype=bool)
    threshold = peak * 10.0 ** (threshold_db / 20.0)
    return rms < threshold


def _check_clip(index: int, clip: Sequence[Any]) -> tuple[str, np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    if len(clip) not in (4, 5):
        raise DataError(
            f"clip {index}: expected a tuple (pred, target, mask, silence) or "
            f"(pred, target, mask, silence, name), got {len(clip)} items"
        )
    pred, target, mask, silence = (np.asarray(item) if item is not None else None for item in clip[:4])
    name = str(clip[4]) if len(clip) == 5 else f"clip_{index}"
    expected = f"[frames, {NUM_BLENDSHAPES}]"
    if pred.ndim != 2 or pred.shape[1] != NUM_BLENDSHAPES:
        raise DataError(f"{name}: pred must have shape {expected}, got {list(pred.shape)}")
    if target.shape != pred.shape:
        raise DataError(f"{name}: target shape {list(target.shape)} does not match pred shape {list(pred.shape)}")
    if mask.shape != (NUM_BLENDSHAPES,) or mask.dtype != bool:
        raise DataError(f"{name}: mask must be a bool array of shape [{NUM_BLENDSHAPES}], got {mask.dtype} {list(mask.shape)}")
    if silence is not None and (silence.shape != (pred.shape[0],) or silence.dtype != bool):
        raise DataError(
            f"{name}: silence must be a bool array of shape [{pred.shape[0]}], "
            f"got {silence.dtype} {list(silence.shape)}"
        )
    if pred.shape[0] == 0:
        raise DataError(f"{name}: the clip has no frames")
    for label, values in (("pred", pred), ("target", target)):
        if not np.isfinite(values[:, mask]).all():
            raise DataError(f"{name}: {label} contains NaN or Inf in valid channels")
    return name, pred, target, mask, silence


def evaluate_clips(
    clips: Iterable[Sequence[Any]],
    max_lag: int = 10,
) -> dict[str, Any]:
    """Evaluate clips and return pooled and per-clip results.

    Each clip is ``(pred [T, 52], target [T, 52], mask [52] bool, silence [T] bool or None)``,
    optionally followed by a name. The result is
    ``{"num_clips", "num_frames", "pooled": {metric: value, ..., "lag_frames"}, "clips": [...]}``
    where each clip entry contains ``name``, ``num_frames``, its own metrics and ``lag_frames``.
    A clip whose target does not move gets a NaN lag and is left out of the median.
    """
    pooled = BlendshapeMetrics()
    per_clip: list[dict[str, Any]] = []
    lags: list[int] = []

    for index, clip in enumerate(clips):
        name, pred, target, mask, silence = _check_clip(index, clip)
        num_frames = pred.shape[0]
        pred_t = torch.from_numpy(np.ascontiguousarray(pred, dtype=np.float64))[None]
        target_t = torch.from_numpy(np.ascontiguousarray(target, dtype=np.float64))[None]
        mask_t = torch.from_numpy(np.broadcast_to(mask, pred.shape).copy())[None]
        silence_t = None if silence is None else torch.from_numpy(silence.copy())[None]

        clip_metrics = BlendshapeMetrics()
        clip_metrics.update(pred_t, target_t, mask_t, silence_t)
        pooled.update(pred_t, target_t, mask_t, silence_t)

        try:
            lag: float = estimate_lag(pred, target, mask, max_lag=max_lag)
            lags.append(int(lag))
        except DataError as error:
            logger.info("%s: no lag estimate (%s)", name, error)
            lag = math.nan

        per_clip.append({"name": name, "num_frames": num_frames, **clip_metrics.compute(), "lag_frames": lag})

    if not per_clip:
        raise DataError("no clips to evaluate")
    pooled_results: dict[str, Any] = pooled.compute()
    pooled_results["lag_frames"] = float(np.median(lags)) if lags else math.nan
    return {
        "num_clips": len(per_clip),
        "num_frames": sum(clip["num_frames"] for clip in per_clip),
        "pooled": pooled_results,
        "clips": per_clip,
    }


# Columns that hold counts or frame lags and are printed without 4 decimals.
_COUNT_COLUMNS = {"num_frames", "constant_channels", "lag_frames"}


def _format_cell(key: str, value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if key in _COUNT_COLUMNS:
        # %g prints 3.0 as "3" and keeps the .5 of a median over an even number of clips.
        return f"{float(value):g}"
    return f"{value:.4f}"


def format_table(results: dict[str, Any]) -> str:
    """Render ``evaluate_clips`` results as an aligned text table, one row per clip plus a pooled row.

    NaN cells (no data) show as ``-``.
    """
    pooled_row = {"name": "pooled", "num_frames": results["num_frames"], **results["pooled"]}
    rows = [*results["clips"], pooled_row]
    header = ["clip"] + [title for _, title in TABLE_COLUMNS]
    body = [[str(row["name"])] + [_format_cell(key, row.get(key)) for key, _ in TABLE_COLUMNS] for row in rows]

    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]

    def render(cells: list[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = [cell.rjust(width) for cell, width in zip(cells[1:], widths[1:])]
        return "  ".join([first, *rest])

    rule = "-" * len(render(header))
    lines = [render(header), rule, *(render(cells) for cells in body[:-1]), rule, render(body[-1])]
    return "\n".join(lines)


def _json_ready(value: Any) -> Any:
    """Convert NaN to None (JSON null) and numpy scalars to Python numbers."""
    if isinstance(value, dict):
        return {str(key): _json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(item) for item in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_results_json(results: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write results as JSON atomically and return the path.

    The file is written to a temporary file in the same folder and moved into place with
    ``os.replace``, so readers never see a half-written file. NaN is written as null, since
    strict JSON has no NaN.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise DataError(f"cannot write {path}: folder {path.parent} does not exist")
    text = json.dumps(_json_ready(results), indent=2, allow_nan=False)
    atomic_write_text(path, text + "\n")
    return path
