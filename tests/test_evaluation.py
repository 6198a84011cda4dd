"""Clip evaluation: lag estimation, silence detection, pooled results, table and JSON."""

import json
import math

import numpy as np
import pytest

from workbench.arkit import ARKIT_INDEX
from workbench.errors import ConfigError, DataError
from workbench.evaluation import (
    estimate_lag,
    evaluate_clips,
    format_table,
    silence_frames,
    write_results_json,
)

JAW = ARKIT_INDEX["jawOpen"]
CLOSE = ARKIT_INDEX["mouthClose"]


def smooth_noise(rng, frames, channels, width=5):
    """Random signals in [0, 1] smoothed like real blendshape curves."""
    raw = rng.normal(size=(frames + 4 * width, channels))
    kernel = np.hanning(4 * width + 1)
    smooth = np.stack([np.convolve(raw[:, c], kernel, mode="same") for c in range(channels)], axis=1)
    smooth = smooth[2 * width:2 * width + frames]
    return (smooth - smooth.min()) / (smooth.max() - smooth.min())


def shifted(signal, lag):
    """Delay the signal by ``lag`` frames (advance it when negative), padding with edge values."""
    if lag == 0:
        return signal.copy()
    if lag > 0:
        return np.concatenate([np.repeat(signal[:1], lag, axis=0), signal[:-lag]])
    return np.concatenate([signal[-lag:], np.repeat(signal[-1:], -lag, axis=0)])


def make_clip(seed, frames=200, lag=0, noise=0.02):
    rng = np.random.default_rng(seed)
    target = smooth_noise(rng, frames, 52)
    target[:, CLOSE] = 1 - target[:, JAW]  # moves opposite to jawOpen, as on real faces
    target[:, 0] = 0.25                    # a constant channel
    pred = np.clip(shifted(target, lag) + rng.normal(0, noise, target.shape), 0, 1)
    mask = np.ones(52, dtype=bool)
    return pred, target, mask


@pytest.mark.parametrize("lag", [-4, -1, 0, 3, 7])
def test_estimate_lag_recovers_shift(lag):
    pred, target, mask = make_clip(seed=lag + 10, lag=lag)
    assert estimate_lag(pred, target, mask) == lag


def test_estimate_lag_sign_is_prediction_late():
    # Prediction delayed by 5 frames: pred[t + 5] == target[t].
    target = np.zeros((100, 52))
    target[40:50, JAW] = 1.0
    pred = np.zeros_like(target)
    pred[45:55, JAW] = 1.0
    assert estimate_lag(pred, target) == 5
    assert estimate_lag(target, pred) == -5


def test_estimate_lag_beyond_window_is_clamped():
    pred, target, mask = make_clip(seed=3, lag=8)
    assert abs(estimate_lag(pred, target, mask, max_lag=4)) <= 4


def test_estimate_lag_ignores_masked_channels():
    pred, target, mask = make_clip(seed=4, lag=2)
    # Channels 1-20 claim a lag of -6; masking them out leaves the true lag.
    pred[:, 1:21] = shifted(target[:, 1:21], -6)
    mask[1:21] = False
    assert estimate_lag(pred, target, mask) == 2


def test_estimate_lag_frame_mask():
    pred, target, _ = make_clip(seed=5, lag=-3)
    frame_mask = np.ones(pred.shape, dtype=bool)
    frame_mask[150:] = False
    pred[150:] = 0.0  # padding garbage
    assert estimate_lag(pred, target, frame_mask) == -3


def test_estimate_lag_flat_target_raises():
    target = np.full((50, 52), 0.5)
    with pytest.raises(DataError, match="no valid target channel moves"):
        estimate_lag(np.random.default_rng(0).uniform(size=(50, 52)), target)


def test_estimate_lag_shape_mismatch():
    with pytest.raises(DataError, match="shape"):
        estimate_lag(np.zeros((10, 52)), np.zeros((11, 52)))


def test_silence_frames_finds_gap():
    rate = 16_000
    t = np.arange(rate) / rate
    audio = 0.5 * np.sin(2 * np.pi * 220 * t)
    audio[4000:8000] = 0.0005 * np.sin(2 * np.pi * 220 * t[4000:8000])  # -60 dB
    silent = silence_frames(audio, num_frames=100)
    assert silent.shape == (100,)
    assert silent.dtype == bool
    # Frames 25-50 cover samples 4000-8000 (frame i is centred at i * 160).
    assert silent[27:49].all()
    assert not silent[:24].any()
    assert not silent[52:].any()


def test_silence_frames_threshold_and_end():
    audio = np.full(16_000, 0.1)
    audio[8000:] = 0.02  # -14 dB relative to the loud half
    assert not silence_frames(audio, 100, threshold_db=-40.0)[:99].any()
    assert silence_frames(audio, 100, threshold_db=-10.0)[55:].all()
    # Frames past the end of the audio have no energy.
    assert silence_frames(audio, 120)[105:].all()


def test_silence_frames_other_rate():
    audio = np.zeros(16_000)
    audio[:8000] = 0.3
    silent = silence_frames(audio, 60, frame_rate=60.0)
    assert not silent[:29].any()
    assert silent[31:].all()


def test_silence_frames_all_zero():
    assert silence_frames(np.zeros(1600), 10).all()


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"audio_16k": np.zeros((2, 100))}, DataError, "mono"),
        ({"audio_16k": np.array([0.0, np.nan])}, DataError, "NaN"),
        ({"audio_16k": np.zeros(100, dtype=np.int16)}, DataError, "float"),
        ({"frame_rate": 0.0}, ConfigError, "frame_rate"),
        ({"threshold_db": 3.0}, ConfigError, "threshold_db"),
    ],
)
def test_silence_frames_rejects_bad_input(kwargs, error, message):
    arguments = {"audio_16k": np.zeros(1600), "num_frames": 10, **kwargs}
    with pytest.raises(error, match=message):
        silence_frames(**arguments)


def make_results():
    clips = []
    for seed, lag in ((1, 2), (2, 3), (3, 4)):
        pred, target, mask = make_clip(seed, frames=120, lag=lag)
        silence = np.zeros(len(pred), dtype=bool)
        silence[:10] = True
        clips.append((pred, target, mask, silence, f"clip{seed}"))
    pred, target, mask = make_clip(4, frames=80)
    mask[20:] = False  # a dataset with only some channels
    clips.append((pred, target, mask, None))
    return clips, evaluate_clips(clips)


def test_evaluate_clips_pooled_and_per_clip():
    clips, results = make_results()
    assert results["num_clips"] == 4
    assert results["num_frames"] == 3 * 120 + 80
    assert [clip["name"] for clip in results["clips"]] == ["clip1", "clip2", "clip3", "clip_3"]
    assert [clip["lag_frames"] for clip in results["clips"]] == [2, 3, 4, 0]
    assert results["pooled"]["lag_frames"] == 2.5

    # Pooled MAE weights every valid entry equally.
    errors = np.concatenate([np.abs(pred - target)[:, mask].ravel() for pred, target, mask, *_ in clips])
    assert results["pooled"]["mae"] == pytest.approx(errors.mean())
    assert results["clips"][0]["constant_channels"] == 1
    assert math.isnan(results["clips"][3]["silence_jaw_open"])
    assert math.isnan(results["clips"][3]["mae_brows"])
    expected_jaw = np.mean([clip[0][:10, JAW].mean() for clip in clips[:3]])
    assert results["pooled"]["silence_jaw_open"] == pytest.approx(expected_jaw)


def test_evaluate_clips_flat_clip_gets_nan_lag():
    pred, target, mask = make_clip(seed=7, lag=1)
    flat = np.full((50, 52), 0.2)
    results = evaluate_clips([(pred, target, mask, None), (flat, flat, mask, None)])
    assert math.isnan(results["clips"][1]["lag_frames"])
    assert results["pooled"]["lag_frames"] == 1


@pytest.mark.parametrize(
    "clip, message",
    [
        ((np.zeros((10, 51)), np.zeros((10, 51)), np.ones(51, bool), None), "pred must have shape"),
        ((np.zeros((10, 52)), np.zeros((9, 52)), np.ones(52, bool), None), "target shape"),
        ((np.zeros((10, 52)), np.zeros((10, 52)), np.ones(52), None), "mask"),
        ((np.zeros((10, 52)), np.zeros((10, 52)), np.ones(52, bool), np.ones(9, bool)), "silence"),
        ((np.full((10, 52), np.nan), np.zeros((10, 52)), np.ones(52, bool), None), "NaN"),
        ((np.zeros((10, 52)),), "expected a tuple"),
    ],
)
def test_evaluate_clips_rejects_bad_clip(clip, message):
    with pytest.raises(DataError, match=message):
        evaluate_clips([clip])


def test_evaluate_clips_empty():
    with pytest.raises(DataError, match="no clips"):
        evaluate_clips([])


def test_format_table_aligned():
    _, results = make_results()
    table = format_table(results)
    lines = table.splitlines()
    assert lines[0].split()[:4] == ["clip", "frames", "mae", "mse"]
    assert lines[-1].startswith("pooled")
    assert len({len(line) for line in lines}) == 1  # every row has the same width
    assert f"{results['pooled']['mae']:.4f}" in lines[-1]
    assert lines[-1].split()[-1] == "2.5"
    clip_3 = next(line for line in lines if line.startswith("clip_3"))
    assert " - " in clip_3  # NaN silence value shown as "-"


def test_write_results_json(tmp_path):
    _, results = make_results()
    path = write_results_json(results, tmp_path / "eval.json")
    loaded = json.loads(path.read_text())
    assert loaded["num_clips"] == 4
    assert loaded["pooled"]["mae"] == pytest.approx(results["pooled"]["mae"])
    assert loaded["clips"][3]["silence_jaw_open"] is None  # NaN becomes null
    assert [p.name for p in tmp_path.iterdir()] == ["eval.json"]  # no temp file left


def test_write_results_json_replaces_and_fails_cleanly(tmp_path):
    path = tmp_path / "eval.json"
    path.write_text("old")
    write_results_json({"a": 1.0}, path)
    assert json.loads(path.read_text()) == {"a": 1.0}

    with pytest.raises(TypeError):
        write_results_json({"a": object()}, path)
    assert json.loads(path.read_text()) == {"a": 1.0}
    assert [p.name for p in tmp_path.iterdir()] == ["eval.json"]

    with pytest.raises(DataError, match="does not exist"):
        write_results_json({}, tmp_path / "missing" / "eval.json")
