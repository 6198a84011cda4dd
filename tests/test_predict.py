"""Prediction: frame counts, chunking, writers round trip, bad audio and foreign checkpoints."""

import math

import numpy as np
import pytest
import soundfile as sf
import torch

from workbench.arkit import ARKIT_INDEX
from workbench.cli import main as cli_main
from workbench.errors import CheckpointError, ConfigError, DataError
from workbench.features import FeatureSettings
from workbench.model import BlendshapeModel
from workbench.predict import (
    gaussian_smooth,
    load_predictor,
    output_frame_count,
    predict_file,
    predict_files,
    predict_waveform,
)
from workbench.targets import read_targets
from tiny_run import trained_tiny_run


@pytest.fixture(scope="module")
def checkpoint(facegood_dir, tmp_path_factory):
    return trained_tiny_run(facegood_dir, tmp_path_factory) / "checkpoints" / "best.pt"


@pytest.fixture(scope="module")
def predictor(checkpoint):
    return load_predictor(checkpoint)


@pytest.fixture(scope="module")
def nvidia_wavs(shared_data):
    paths = sorted((shared_data / "nvidia_a2f3d_samples_audio").glob("*.wav"))
    assert len(paths) >= 3
    return paths


@pytest.fixture(scope="module")
def speech_60s(nvidia_wavs):
    """60 s of real speech at 16 kHz, made by repeating the NVIDIA sample clips."""
    pieces = [sf.read(str(p), dtype="float32")[0] for p in nvidia_wavs]
    joined = np.concatenate(pieces)
    while joined.size < 60 * 16000:
        joined = np.concatenate([joined, joined])
    return torch.from_numpy(joined[:60 * 16000].copy())


@pytest.fixture(scope="module")
def whole_60s(predictor, speech_60s):
    """Prediction for `speech_60s` at 100 fps in one pass, without chunking."""
    return predict_waveform(predictor.model, speech_60s, predictor.feature_settings, fps=100.0, chunk_seconds=None)


def expected_frames(path, fps):
    info = sf.info(str(path))
    return math.floor(info.frames / info.samplerate * fps + 1e-9) + 1


def test_output_frame_count_exact_products():
    assert output_frame_count(10.0, 60.0) == 601
    assert output_frame_count(1.0, 30.0) == 31
    assert output_frame_count(0.999, 30.0) == 30
    assert output_frame_count(0.025, 60.0) == 2


@pytest.mark.parametrize("num_samples", [400, 1601, 16000, 12345, 16000 * 3 + 3])
def test_predict_waveform_frame_counts(predictor, num_samples):
    waveform = torch.from_numpy(np.random.default_rng(num_samples).normal(0, 0.1, num_samples).astype(np.float32))
    for fps in (24.0, 25.0, 29.97, 30.0, 60.0, 100.0):
        values = predict_waveform(predictor.model, waveform, predictor.feature_settings, fps=fps)
        assert values.shape == (math.floor(num_samples / 16000 * fps + 1e-9) + 1, 52), fps
        assert values.dtype == np.float32


@pytest.mark.parametrize("fps", [60.0, 30.0])
def test_predict_files_nvidia_frame_counts(checkpoint, nvidia_wavs, tmp_path, fps):
    outputs = predict_files(checkpoint, nvidia_wavs, tmp_path / "out", fmt="livelink", fps=fps)

    assert [p.name for p in outputs] == [p.stem + ".csv" for p in nvidia_wavs]
    for wav, csv_path in zip(nvidia_wavs, outputs):
        track = read_targets(csv_path)
        assert track.values.shape == (expected_frames(wav, fps), 52), wav.name
        assert track.fps == pytest.approx(fps)
        assert track.values.min() >= 0.0
        assert track.values.max() <= 1.0


def test_predict_file_88k_audio(predictor, shared_data):
    wav = next((shared_data / "neurosync_player_generated").glob("*/audio.wav"))
    assert sf.info(str(wav)).samplerate == 88200

    at_60 = predict_file(predictor, wav, fps=60.0)
    at_30 = predict_file(predictor, wav, fps=30.0)

    assert at_60.shape == (expected_frames(wav, 60.0), 52) == (610, 52)
    assert at_30.shape == (expected_frames(wav, 30.0), 52)
    # Frame 2k at 60 fps and frame k at 30 fps lie at the same time.
    np.testing.assert_allclose(at_60[::2][: len(at_30)], at_30, atol=1e-6)


@pytest.mark.parametrize("fmt, suffix", [("livelink", ".csv"), ("a2f-json", ".json")])
def test_written_file_round_trip(checkpoint, predictor, nvidia_wavs, tmp_path, fmt, suffix):
    wav = nvidia_wavs[0]
    expected = predict_file(predictor, wav, fps=60.0, smooth=1.5)

    (written,) = predict_files(checkpoint, [wav], tmp_path / "nested" / "out", fmt=fmt, fps=60.0, smooth=1.5)

    assert written == tmp_path / "nested" / "out" / (wav.stem + suffix)
    track = read_targets(written)
    assert track.fps == pytest.approx(60.0)
    assert track.mask.all()
    np.testing.assert_allclose(track.values, expected, atol=1e-6)


def test_chunked_matches_whole_file(predictor, speech_60s, whole_60s):
    settings = predictor.feature_settings
    default_chunks = predict_waveform(predictor.model, speech_60s, settings, fps=100.0)
    small_chunks = predict_waveform(predictor.model, speech_60s, settings, fps=100.0, chunk_seconds=7.0,
                                    context_seconds=3.0)

    assert whole_60s.shape == (6001, 52)
    assert np.abs(default_chunks - whole_60s).max() < 1e-4
    assert np.abs(small_chunks - whole_60s).max() < 1e-4


def test_chunk_without_context_differs(predictor, speech_60s, whole_60s):
    # Guards the test above: cutting a bidirectional GRU with no context must change the output.
    settings = predictor.feature_settings
    no_context = predict_waveform(predictor.model, speech_60s, settings, fps=100.0, chunk_seconds=7.0,
                                  context_seconds=0.0)
    assert np.abs(no_context - whole_60s).max() > 1e-4


def test_silence_gives_rest_pose(checkpoint, tmp_path):
    silent = tmp_path / "silent.wav"
    sf.write(str(silent), np.zeros(3 * 48000, dtype=np.float32), 48000)

    (written,) = predict_files(checkpoint, [silent], tmp_path / "out", fps=60.0)

    values = read_targets(written).values
    assert values.shape == (181, 52)
    assert np.isfinite(values).all()
    # All-zero input gives identical feature frames, so the pose can only vary near the ends.
    middle = values[30:-30]
    assert np.abs(middle - middle[0]).max() < 1e-3


def test_smoothing_lowers_velocity(predictor, nvidia_wavs):
    raw = predict_file(predictor, nvidia_wavs[0], fps=60.0)
    smoothed = predict_file(predictor, nvidia_wavs[0], fps=60.0, smooth=3.0)

    assert smoothed.shape == raw.shape
    jaw = ARKIT_INDEX["jawOpen"]
    assert np.abs(np.diff(smoothed[:, jaw])).mean() < np.abs(np.diff(raw[:, jaw])).mean()
    assert abs(smoothed[:, jaw].mean() - raw[:, jaw].mean()) < 0.01


def test_gaussian_smooth_properties():
    constant = np.full((50, 3), 0.3, dtype=np.float32)
    np.testing.assert_allclose(gaussian_smooth(constant, 2.0), constant, atol=1e-7)

    step = np.zeros((41, 1), dtype=np.float32)
    step[20:] = 1.0
    smoothed = gaussian_smooth(step, 2.0)[:, 0]
    assert smoothed[0] == pytest.approx(0.0, abs=1e-7)
    assert smoothed[-1] == pytest.approx(1.0, abs=1e-7)
    assert 0.0 < smoothed[19] < 0.5 < smoothed[20] < 1.0
    np.testing.assert_array_equal(gaussian_smooth(step, 0.0), step)


def test_channel_mask_zeroes_untrained(checkpoint, nvidia_wavs, tmp_path):
    state = torch.load(checkpoint, weights_only=True)
    mask = torch.zeros(52, dtype=torch.bool)
    mask[ARKIT_INDEX["jawOpen"]] = True
    state["channel_mask"] = mask
    masked_checkpoint = tmp_path / "masked.pt"
    torch.save(state, masked_checkpoint)

    values = predict_file(load_predictor(masked_checkpoint), nvidia_wavs[0], fps=30.0)

    assert (values[:, ~mask.numpy()] == 0).all()
    assert values[:, ARKIT_INDEX["jawOpen"]].max() > 0


def test_empty_file_rejected(checkpoint, tmp_path):
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match="empty.wav.*0 bytes"):
        predict_files(checkpoint, [empty], tmp_path / "out")


def test_unsupported_format_rejected(checkpoint, tmp_path):
    mp3 = tmp_path / "speech.mp3"
    mp3.write_bytes(b"ID3" + bytes(100))
    with pytest.raises(DataError, match="unsupported audio format '.mp3'"):
        predict_files(checkpoint, [mp3], tmp_path / "out")


def test_corrupt_wav_rejected(checkpoint, tmp_path):
    fake = tmp_path / "fake.wav"
    fake.write_text("not audio at all\n")
    with pytest.raises(DataError, match="fake.wav: cannot read audio"):
        predict_files(checkpoint, [fake], tmp_path / "out")


def test_clip_shorter_than_window_rejected(checkpoint, predictor, tmp_path):
    tiny = tmp_path / "tiny.wav"
    sf.write(str(tiny), np.full(100, 0.1, dtype=np.float32), 16000)
    with pytest.raises(DataError, match="tiny.wav.*6.2 ms.*feature window"):
        predict_files(checkpoint, [tiny], tmp_path / "out")
    with pytest.raises(DataError, match="100 samples.*feature window"):
        predict_waveform(predictor.model, torch.zeros(100), predictor.feature_settings)


def test_bad_file_fails_before_any_output(checkpoint, nvidia_wavs, tmp_path):
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    out = tmp_path / "out"
    with pytest.raises(DataError):
        predict_files(checkpoint, [nvidia_wavs[0], empty], out)
    assert not out.exists()


def test_duplicate_output_names_rejected(checkpoint, nvidia_wavs, tmp_path):
    copy = tmp_path / "other" / nvidia_wavs[0].name
    copy.parent.mkdir()
    copy.symlink_to(nvidia_wavs[0])
    with pytest.raises(DataError, match="would both be written"):
        predict_files(checkpoint, [nvidia_wavs[0], copy], tmp_path / "out")


def test_bad_options_rejected(checkpoint, nvidia_wavs, tmp_path):
    with pytest.raises(ConfigError, match="unknown output format 'bvh'"):
        predict_files(checkpoint, nvidia_wavs[:1], tmp_path / "out", fmt="bvh")
    with pytest.raises(ConfigError, match="fps must be a positive"):
        predict_files(checkpoint, nvidia_wavs[:1], tmp_path / "out", fps=0.0)
    with pytest.raises(ConfigError, match="smooth must be"):
        predict_files(checkpoint, nvidia_wavs[:1], tmp_path / "out", smooth=-1.0)


def test_foreign_pickle_checkpoint_rejected(tmp_path):
    foreign = tmp_path / "foreign.pt"
    torch.save({"a": 1}, foreign)
    with pytest.raises(CheckpointError, match="foreign.pt is not a workbench checkpoint"):
        load_predictor(foreign)


def test_text_file_checkpoint_rejected(tmp_path):
    text = tmp_path / "notes.pt"
    text.write_text("hello\n")
    with pytest.raises(CheckpointError, match="notes.pt is not a readable workbench checkpoint"):
        load_predictor(text)


def test_missing_checkpoint_rejected(tmp_path):
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_predictor(tmp_path / "nothing.pt")


def test_other_hidden_size_rejected(checkpoint, tmp_path):
    state = torch.load(checkpoint, weights_only=True)
    state["model"] = BlendshapeModel(hidden=8, rnn_layers=1).state_dict()
    mismatched = tmp_path / "mismatched.pt"
    torch.save(state, mismatched)
    with pytest.raises(CheckpointError, match="do not fit the stored model shape"):
        load_predictor(mismatched)


def test_checkpoint_without_feature_settings_rejected(checkpoint, tmp_path):
    state = torch.load(checkpoint, weights_only=True)
    del state["feature_settings"]
    stripped = tmp_path / "stripped.pt"
    torch.save(state, stripped)
    with pytest.raises(CheckpointError, match="no feature_settings"):
        load_predictor(stripped)


def test_predictor_reads_feature_settings(predictor):
    assert predictor.feature_settings == FeatureSettings()
    # The checkpoint records the channels the FACEGOOD labels cover: the 27 jaw and mouth shapes.
    assert predictor.channel_mask.sum() == 27
    assert not predictor.model.training


def test_cli_predict(checkpoint, nvidia_wavs, tmp_path, capsys):
    status = cli_main(["predict", str(checkpoint), str(nvidia_wavs[0]), "-o", str(tmp_path / "cli"),
                       "--format", "a2f-json", "--fps", "30"])
    assert status == 0
    written = tmp_path / "cli" / (nvidia_wavs[0].stem + ".json")
    assert str(written) in capsys.readouterr().out
    assert read_targets(written).values.shape == (expected_frames(nvidia_wavs[0], 30.0), 52)


def test_cli_predict_bad_checkpoint(nvidia_wavs, tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    bad.write_text("x")
    status = cli_main(["predict", str(bad), str(nvidia_wavs[0]), "-o", str(tmp_path / "cli")])
    assert status == 2
    assert "bad.pt" in capsys.readouterr().err
