"""Prediction: audio files -> blendshape weights at a chosen frame rate -> Live Link CSV or A2F JSON.

Each file is read and resampled to the checkpoint's sample rate. Log-mel features and the
model then run chunk by chunk on the feature frame clock (100 frames/s by default). The 52
output channels are resampled to the output rate, smoothed, clipped to [0, 1] and written.

Chunking keeps memory bounded for long files. Each chunk of `chunk_seconds` of output frames
is computed from a window that adds `context_seconds` of features on each side, and only the
centre of that window is kept. A bidirectional GRU then sees enough past and future for its
state to have forgotten the cut, so chunked output stays close to a single whole-file pass
(the test suite checks the difference on a 60 s input). Features are computed per window too,
from the exact samples each frame covers, so they equal the whole-file features.

Output frames: frame k lies at time k / fps, and a clip of D seconds gives floor(D * fps) + 1
frames, so the first frame is at 0 s and the last at or before the end of the audio. This is
the same convention the log-mel features use (n samples give n // hop + 1 frames).

The on-disk feature cache is not used: user files are usually predicted once, so caching
them would only fill the cache folder, and it would mean holding a whole file's features.

Channels that the training data lacked (FACEGOOD labels have only the 27 jaw and mouth
shapes) are predicted but untrained. When the checkpoint stores a `channel_mask` (bool [52]),
those channels are written as 0; otherwise all 52 predictions are written as they are.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch

from workbench.arkit import NUM_BLENDSHAPES
from workbench.audio import check_audio_path, read_audio
from workbench.checkpoint import load_model
from workbench.errors import CheckpointError, ConfigError, DataError
from workbench.features import FeatureSettings, LogMel

log = logging.getLogger(__name__)

FORMATS = {"livelink": ".csv", "a2f-json": ".json"}
DEFAULT_CHUNK_SECONDS = 30.0
DEFAULT_CONTEXT_SECONDS = 5.0


@dataclass
class Predictor:
    """A model loaded from a checkpoint, with what is needed to run it on audio."""

    model: torch.nn.Module
    feature_settings: FeatureSettings
    # Bool [52], True where the training labels have the channel. None when the checkpoint
    # does not record it.
    channel_mask: np.ndarray | None
    checkpoint: dict[str, Any]
    path: Path


def load_predictor(checkpoint: str | Path, device: str | torch.device = "cpu") -> Predictor:
    """Load a checkpoint for prediction, raising CheckpointError for foreign or broken files."""
    path = Path(checkpoint)
    model, state = load_model(path, map_location=device)
    settings = _feature_settings_from_state(path, state)
    if settings.n_mels != model.hparams["n_mels"]:
        raise CheckpointError(
            f"{path}: feature_settings has n_mels={settings.n_mels} but the model expects "
            f"{model.hparams['n_mels']} mel bins; the checkpoint is inconsistent, use another one"
        )
    if model.hparams["num_outputs"] != NUM_BLENDSHAPES:
        raise CheckpointError(
            f"{path}: the model has {model.hparams['num_outputs']} outputs, expected {NUM_BLENDSHAPES} ARKit blendshapes"
        )

    channel_mask = None
    if state.get("channel_mask") is not None:
        channel_mask = np.asarray(state["channel_mask"], dtype=bool).reshape(-1)
        if channel_mask.shape != (NUM_BLENDSHAPES,):
            raise CheckpointError(f"{path}: channel_mask has shape {list(channel_mask.shape)}, expected [{NUM_BLENDSHAPES}]")
    return Predictor(model.to(device), settings, channel_mask, state, path)


def _feature_settings_from_state(path: Path, state: dict[str, Any]) -> FeatureSettings:
    stored = state.get("feature_settings")
    if not isinstance(stored, dict):
        raise CheckpointError(f"{path}: the checkpoint has no feature_settings, so it was not written by the workbench trainer; "
                              "pass checkpoints/best.pt of a run")
    try:
        return FeatureSettings(**stored)
    except TypeError as exc:
        raise CheckpointError(f"{path}: invalid feature_settings {stored!r} ({exc}); use a checkpoint of this workbench version") from None


# -- core computation ---------------------------------------------------------------------


# Windows run together in one forward pass; bounds memory at CHUNK_BATCH windows of features.
CHUNK_BATCH = 8


def run_model_chunked(
    model: torch.nn.Module,
    features_for: Callable[[int, int], torch.Tensor],
    num_frames: int,
    frame_rate: float,
    chunk_seconds: float | None = DEFAULT_CHUNK_SECONDS,
    context_seconds: float = DEFAULT_CONTEXT_SECONDS,
) -> np.ndarray:
    """Run the model over `num_frames` feature frames and return float32 [num_frames, 52].

    `features_for(first, last)` returns the log-mel frames [last - first, n_mels] of that
    range. With `chunk_seconds` None or 0 the whole clip is one pass. Otherwise each chunk of
    `chunk_seconds` is run with up to `context_seconds` of extra frames on each side, and the
    extra frames' outputs are dropped.
    """
    if chunk_seconds is not None and chunk_seconds < 0:
        raise ConfigError(f"chunk_seconds must be >= 0 (0 = whole file in one pass), got {chunk_seconds}")
    if context_seconds < 0:
        raise ConfigError(f"context_seconds must be >= 0, got {context_seconds}")
    chunk = num_frames if not chunk_seconds else max(1, round(chunk_seconds * frame_rate))
    context = round(context_seconds * frame_rate)

    # Every window has the same length: chunk plus context on both sides. Windows at the clip
    # ends are shifted inward, so they carry more context on one side. Equal lengths let
    # CHUNK_BATCH windows run as one batch, so a recurrent model walks about one window of
    # frames instead of the whole file, which is what makes long files fast.
    length = min(chunk + 2 * context, num_frames)
    windows = []
    for start in range(0, num_frames, chunk):
        end = min(start + chunk, num_frames)
        first = min(max(start - context, 0), num_frames - length)
        windows.append((start, end, first, first + length))

    device = next(model.parameters()).device
    output = np.empty((num_frames, NUM_BLENDSHAPES), dtype=np.float32)
    with torch.inference_mode():
        for group in range(0, len(windows), CHUNK_BATCH):
            batch = windows[group:group + CHUNK_BATCH]
            mel = torch.stack([features_for(first, last) for _, _, first, last in batch]).to(device)
            pred = model(mel).float().cpu().numpy()
            for row, (start, end, first, _) in enumerate(batch):
                output[start:end] = pred[row, start - first:end - first]
    return output


def log_mel_range(waveform: torch.Tensor, extractor: LogMel, first: int, last: int) -> torch.Tensor:
    """Log-mel frames [first, last) of `waveform`, equal to those of a whole-waveform pass.

    With centred framing, frame i covers samples [i*hop - n_fft/2, i*hop + n_fft/2), and
    frames within n_fft/2 samples of either end of the input are padded by reflection. The
    segment taken here starts `margin` frames early and ends n_fft/2 samples after the last
    frame's centre. Every kept frame therefore covers the same samples as in a whole-waveform
    pass, with reflection padding only at the clip's true ends.
    """
    settings = extractor.settings
    hop, half = settings.hop_length, settings.n_fft // 2
    margin = math.ceil(half / hop)
    segment_first = max(first - margin, 0)
    start_sample = segment_first * hop
    end_sample = min((last - 1) * hop + half + 1, waveform.numel())
    mel = extractor(waveform[start_sample:end_sample])
    return mel[first - segment_first:last - segment_first]


def predict_waveform(
    model: torch.nn.Module,
    waveform_16k: torch.Tensor,
    feature_settings: FeatureSettings | dict,
    fps: float = 60.0,
    smooth: float = 0.0,
    chunk_seconds: float | None = DEFAULT_CHUNK_SECONDS,
    context_seconds: float = DEFAULT_CONTEXT_SECONDS,
    channel_mask: np.ndarray | None = None,
) -> np.ndarray:
    """Predict blendshapes for a mono waveform at the feature sample rate (16 kHz by default).

    Returns float32 [floor(duration * fps) + 1, 52] in canonical ARKit order, values in
    [0, 1]. `smooth` is a Gaussian sigma in output frames (0 = none). Channels where
    `channel_mask` is False are set to 0.
    """
    settings = feature_settings if isinstance(feature_settings, FeatureSettings) else FeatureSettings(**feature_settings)
    _check_output_options(fps, smooth)
    waveform = torch.as_tensor(waveform_16k, dtype=torch.float32)
    if waveform.ndim != 1:
        raise DataError(f"waveform must be mono with shape [samples], got shape {list(waveform.shape)}")
    if waveform.numel() < settings.win_length:
        raise DataError(
            f"audio is {waveform.numel()} samples long ({1000 * waveform.numel() / settings.sample_rate:.1f} ms); "
            f"at least one feature window ({settings.win_length} samples, {settings.win_ms:g} ms) is needed"
        )
    if not torch.isfinite(waveform).all():
        raise DataError("waveform contains NaN or Inf samples")

    extractor = LogMel(settings)
    num_frames = settings.num_frames(waveform.numel())
    frames = run_model_chunked(
        model, lambda first, last: log_mel_range(waveform, extractor, first, last), num_frames,
        settings.frame_rate, chunk_seconds, context_seconds,
    )
    duration = waveform.numel() / settings.sample_rate
    return finish_track(frames, settings.frame_rate, duration, fps, smooth, channel_mask)


def finish_track(frames: np.ndarray, frame_rate: float, duration: float, fps: float, smooth: float,
                 channel_mask: np.ndarray | None = None) -> np.ndarray:
    """Resample model frames to `fps`, smooth, zero untrained channels and clip to [0, 1]."""
    values = resample_frames(frames, frame_rate, output_frame_count(duration, fps), fps)
    values = gaussian_smooth(values, smooth)
    if channel_mask is not None:
        values[:, ~np.asarray(channel_mask, dtype=bool)] = 0.0
    return np.clip(values, 0.0, 1.0).astype(np.float32)


def output_frame_count(duration: float, fps: float) -> int:
    """Frames at times k / fps within [0, duration]: floor(duration * fps) + 1."""
    # The small epsilon keeps an exact product such as 10 s * 60 fps from flooring to 599
    # through rounding error.
    return math.floor(duration * fps + 1e-9) + 1


def resample_frames(frames: np.ndarray, frame_rate: float, count: int, fps: float) -> np.ndarray:
    """Linearly interpolate [N, C] frames at times i / frame_rate onto times k / fps, k < count.

    Output times past the last input frame hold its value.
    """
    source_times = np.arange(frames.shape[0]) / frame_rate
    target_times = np.arange(count) / fps
    out = np.empty((count, frames.shape[1]), dtype=np.float32)
    for channel in range(frames.shape[1]):
        out[:, channel] = np.interp(target_times, source_times, frames[:, channel])
    return out


def gaussian_smooth(values: np.ndarray, sigma: float) -> np.ndarray:
    """Smooth each column of [T, C] with a Gaussian of `sigma` frames, padding by repeating the end values."""
    if sigma <= 0:
        return values.copy()
    radius = max(1, math.ceil(4 * sigma))
    offsets = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * (offsets / sigma) ** 2)
    kernel /= kernel.sum()
    padded = np.pad(values.astype(np.float64), ((radius, radius), (0, 0)), mode="edge")
    out = np.empty(values.shape, dtype=np.float64)
    for channel in range(values.shape[1]):
        out[:, channel] = np.convolve(padded[:, channel], kernel, mode="valid")
    return out.astype(np.float32)


def _check_output_options(fps: float, smooth: float) -> None:
    if not (isinstance(fps, (int, float)) and math.isfinite(fps) and fps > 0):
        raise ConfigError(f"fps must be a positive number of frames per second, got {fps!r}")
    if not (isinstance(smooth, (int, float)) and math.isfinite(smooth) and smooth >= 0):
        raise ConfigError(f"smooth must be a Gaussian sigma >= 0 in output frames (0 = none), got {smooth!r}")


# -- files --------------------------------------------------------------------------------


def check_audio_file(path: str | Path, min_seconds: float = 0.0) -> float:
    """Check that a file is readable audio of at least `min_seconds` and return its duration in seconds.

    Reads only the header, so a batch can be checked before any prediction starts.
    """
    path = check_audio_path(path)
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise DataError(f"{path}: cannot read audio ({exc}); check that it is a valid WAV/FLAC/OGG file") from None
    duration = info.frames / info.samplerate
    if duration < min_seconds:
        raise DataError(
            f"{path}: audio lasts {1000 * duration:.1f} ms ({info.frames} samples at {info.samplerate} Hz); "
            f"at least one feature window ({1000 * min_seconds:g} ms) is needed"
        )
    return duration


def predict_file(predictor: Predictor, audio_path: str | Path, fps: float = 60.0, smooth: float = 0.0,
                 chunk_seconds: float | None = DEFAULT_CHUNK_SECONDS,
                 context_seconds: float = DEFAULT_CONTEXT_SECONDS) -> np.ndarray:
    """Predict blendshapes for one audio file as float32 [floor(duration * fps) + 1, 52]."""
    settings = predictor.feature_settings
    check_audio_file(audio_path, min_seconds=settings.win_ms / 1000)
    # NOTE: the whole file is decoded and resampled at once (about 4 bytes per source sample and
    # channel), so only the feature and model steps have bounded memory.
    waveform = read_audio(audio_path, settings.sample_rate)
    return predict_waveform(predictor.model, waveform, settings, fps=fps, smooth=smooth,
                            chunk_seconds=chunk_seconds, context_seconds=context_seconds,
                            channel_mask=predictor.channel_mask)


def write_prediction(path: str | Path, values: np.ndarray, fps: float, fmt: str) -> Path:
    """Write [frames, 52] weights as `fmt` ("livelink" CSV or "a2f-json") and return the path."""
    from workbench.formats.a2f_json import write_a2f_json
    from workbench.formats.livelink import write_livelink_csv

    _check_format(fmt)
    path = Path(path)
    if fmt == "livelink":
        write_livelink_csv(path, values, fps)
    else:
        write_a2f_json(path, values, fps)
    return path


def _check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise ConfigError(f"unknown output format {fmt!r}; use one of {', '.join(FORMATS)}")


def predict_files(checkpoint: str | Path, audio_paths: Sequence[str | Path], out_dir: str | Path,
                  fmt: str = "livelink", fps: float = 60.0, smooth: float = 0.0,
                  chunk_seconds: float | None = DEFAULT_CHUNK_SECONDS) -> list[Path]:
    """Predict every audio file, write `<out_dir>/<audio stem>.csv` (or `.json`) and return the paths.

    All inputs are checked (format, size, length, distinct names) and the checkpoint is
    loaded before the first prediction, so a bad file in a batch fails before any work.
    """
    _check_format(fmt)
    _check_output_options(fps, smooth)
    audio_paths = [Path(p) for p in audio_paths]
    if not audio_paths:
        raise DataError("no audio files given; pass one or more WAV/FLAC/OGG files")

    predictor = load_predictor(checkpoint)
    min_seconds = predictor.feature_settings.win_ms / 1000
    durations = [check_audio_file(p, min_seconds) for p in audio_paths]
    out_dir = Path(out_dir)
    outputs = [out_dir / (p.stem + FORMATS[fmt]) for p in audio_paths]
    seen: dict[Path, Path] = {}
    for audio, output in zip(audio_paths, outputs):
        if output in seen:
            raise DataError(f"{seen[output]} and {audio} would both be written to {output}; rename one of them")
        seen[output] = audio

    if predictor.channel_mask is None:
        log.info("%s records no channel_mask; channels absent from its training labels are written untrained",
                 predictor.path)
    out_dir.mkdir(parents=True, exist_ok=True)
    for audio, output, duration in zip(audio_paths, outputs, durations):
        started = time.perf_counter()
        values = predict_file(predictor, audio, fps=fps, smooth=smooth, chunk_seconds=chunk_seconds)
        write_prediction(output, values, fps, fmt)
        elapsed = time.perf_counter() - started
        log.info("%s -> %s (%d frames at %g fps, %.2f s for %.1f s of audio)",
                 audio, output, len(values), fps, elapsed, duration)
    return outputs
