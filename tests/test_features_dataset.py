"""Audio reading, log-mel features and their cache, clip discovery, alignment and splitting."""

import numpy as np
import pytest
import soundfile as sf
import torch

from workbench.audio import read_audio
from workbench.dataset import WindowDataset, find_clips, load_clips, split_clips
from workbench.errors import DataError
from workbench.features import FeatureCache, FeatureSettings
from workbench.formats.livelink import write_livelink_csv


def _tone(seconds, rate, channels=1):
    t = np.arange(int(seconds * rate)) / rate
    wave = 0.3 * np.sin(2 * np.pi * 220 * t).astype(np.float32)
    return np.stack([wave] * channels, axis=1) if channels > 1 else wave


def test_read_audio_resamples_and_downmixes(tmp_path):
    path = tmp_path / "stereo44k.wav"
    sf.write(path, _tone(1.0, 44100, channels=2), 44100)
    audio = read_audio(path, 16000)
    assert audio.dtype == torch.float32
    assert audio.ndim == 1
    assert abs(audio.numel() - 16000) <= 1


def test_read_audio_real_88k_file(shared_data):
    path = next((shared_data / "neurosync_player_generated").glob("*/audio.wav"))
    audio = read_audio(path)
    assert abs(audio.numel() / 16000 - 10.162) < 0.01


@pytest.mark.parametrize("content, fragment", [(b"", "empty"), (b"RIFF\x00\x00", "cannot read")])
def test_read_audio_bad_files(tmp_path, content, fragment):
    path = tmp_path / "bad.wav"
    path.write_bytes(content)
    with pytest.raises(DataError) as info:
        read_audio(path)
    assert str(path) in str(info.value)
    assert fragment in str(info.value)


def test_read_audio_unsupported_suffix(tmp_path):
    path = tmp_path / "clip.mp3"
    path.write_bytes(b"ID3")
    with pytest.raises(DataError, match="unsupported audio format"):
        read_audio(path)


def test_log_mel_shape_and_frame_rate(facegood_dir, tmp_path):
    settings = FeatureSettings()
    cache = FeatureCache(tmp_path / "cache", settings)
    mel, energy = cache.load(facegood_dir / "wav" / "1114_3_15.wav")
    # 49.071 s at 16 kHz with a 160-sample hop, centred frames: n // 160 + 1.
    assert mel.shape == (int(49.071 * 16000) // 160 + 1, 80)
    assert energy.shape == (mel.shape[0],)
    assert settings.frame_rate == 100.0
    assert np.isfinite(mel).all()


def test_feature_cache_hits_by_content(facegood_dir, tmp_path):
    cache = FeatureCache(tmp_path / "cache", FeatureSettings())
    source = facegood_dir / "wav" / "1114_3_15.wav"
    first, _ = cache.load(source)
    copy = tmp_path / "renamed.wav"
    copy.write_bytes(source.read_bytes())
    second, _ = cache.load(copy)
    assert cache.misses == 1
    assert cache.hits == 1
    np.testing.assert_array_equal(first, second)

    other = FeatureCache(tmp_path / "cache", FeatureSettings(n_mels=40))
    third, _ = other.load(source)
    assert other.misses == 1
    assert third.shape[1] == 40


def test_find_clips_facegood_layout(facegood_dir):
    clips, unlabeled = find_clips(facegood_dir)
    assert [c.name for c in clips] == ["1114_2_01", "1114_2_02", "1114_2_03", "1114_2_04", "1114_2_05", "1114_3_15"]
    assert unlabeled == []
    assert clips[0].labels.name == "bs_value_1114_2_01.npy"


def test_load_clips_aligns_to_feature_frames(facegood_dir, tmp_path):
    cache = FeatureCache(tmp_path / "cache", FeatureSettings())
    clips = load_clips(facegood_dir, cache, max_mismatch_s=0.5, max_clips=1)
    clip = clips[0]
    assert clip.targets.shape == (clip.num_frames, 52)
    assert clip.mel.shape[0] == clip.num_frames
    assert clip.channel_mask.sum() == 27
    assert (clip.targets[:, ~clip.channel_mask] == 0).all()
    assert 0 < clip.silence.mean() < 1


def test_split_is_by_clip_and_seeded(facegood_dir, tmp_path):
    cache = FeatureCache(tmp_path / "cache", FeatureSettings())
    clips = load_clips(facegood_dir, cache, max_mismatch_s=0.5)
    train_a, val_a = split_clips(clips, 1, seed=0)
    train_b, val_b = split_clips(clips, 1, seed=0)
    assert [c.name for c in val_a] == [c.name for c in val_b]
    assert len(train_a) == 5
    assert not {c.name for c in train_a} & {c.name for c in val_a}
    names = {split_clips(clips, 1, seed=s)[1][0].name for s in range(10)}
    assert len(names) > 1


def test_window_dataset_covers_clip(facegood_dir, tmp_path):
    cache = FeatureCache(tmp_path / "cache", FeatureSettings())
    clip = load_clips(facegood_dir, cache, max_mismatch_s=0.5, max_clips=1)[0]
    dataset = WindowDataset([clip], window_frames=200, hop_frames=100)
    item = dataset[len(dataset) - 1]
    assert item["mel"].shape == (200, 80)
    assert item["targets"].shape == (200, 52)
    assert item["mask"].shape == (200, 52)
    # The last window ends exactly at the clip end.
    assert dataset.index[-1][1] + 200 == clip.num_frames


def test_short_clip_is_padded_and_masked(tmp_path):
    sf.write(tmp_path / "short.wav", _tone(0.5, 16000), 16000)
    write_livelink_csv(tmp_path / "short.csv", np.full((30, 52), 0.2, np.float32), fps=60.0)
    cache = FeatureCache(tmp_path / "cache", FeatureSettings())
    clip = load_clips(tmp_path, cache, max_mismatch_s=0.5)[0]
    item = WindowDataset([clip], window_frames=200, hop_frames=100)[0]
    valid_frames = item["mask"].any(dim=1)
    assert valid_frames[: clip.num_frames].all()
    assert not valid_frames[clip.num_frames:].any()


def test_large_length_mismatch_names_both_durations(tmp_path):
    sf.write(tmp_path / "clip.wav", _tone(2.0, 16000), 16000)
    write_livelink_csv(tmp_path / "clip.csv", np.zeros((60 * 5, 52), np.float32), fps=60.0)
    cache = FeatureCache(tmp_path / "cache", FeatureSettings())
    with pytest.raises(DataError) as info:
        load_clips(tmp_path, cache, max_mismatch_s=0.5)
    assert "2.0" in str(info.value)
    assert "5.0" in str(info.value)


def test_wav_without_labels(tmp_path):
    sf.write(tmp_path / "a.wav", _tone(1.0, 16000), 16000)
    sf.write(tmp_path / "b.wav", _tone(1.0, 16000), 16000)
    write_livelink_csv(tmp_path / "a.csv", np.zeros((60, 52), np.float32), fps=60.0)
    cache = FeatureCache(tmp_path / "cache", FeatureSettings())
    with pytest.raises(DataError) as info:
        load_clips(tmp_path, cache, max_mismatch_s=0.5)
    assert "b.wav" in str(info.value)
    assert "no label file" in str(info.value)
    clips = load_clips(tmp_path, cache, max_mismatch_s=0.5, on_bad_clip="skip")
    assert [c.name for c in clips] == ["a"]


def test_missing_and_empty_data_folder(tmp_path):
    with pytest.raises(DataError, match="data folder not found"):
        find_clips(tmp_path / "missing")
    with pytest.raises(DataError, match="no audio files"):
        find_clips(tmp_path)
    with pytest.raises(DataError, match="data.root is not set"):
        find_clips("")
