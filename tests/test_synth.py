"""Tests of the synthetic dataset generator: eSpeak timing, viseme curves, blinks, files."""

import json
import logging

import numpy as np
import pytest
import soundfile

from workbench.arkit import ARKIT_INDEX, ARKIT_NAMES, REGIONS
from workbench.errors import ConfigError, DataError
from workbench.synth import generate as generate_module
from workbench.synth.blinks import blink_curve
from workbench.synth.espeak import EspeakSynthesizer, Phoneme, VoiceSettings
from workbench.synth.generate import (
    assemble_clip, clip_targets, generate_dataset, plan_clip, synthesize_clip_speech,
)
from workbench.synth.visemes import (
    is_silence, segment_weights, viseme_curves, viseme_segments, visemes_for,
)
from workbench.targets import read_targets

FRAME_S = 1.0 / 60.0
# Monophthong vowels of the en-us voice, which are voiced throughout their interval.
EN_VOWELS = {"a", "aa", "A:", "V", "E", "@", "3", "3:", "i", "i:", "I", "O:", "u:", "U", "0"}


@pytest.fixture(scope="module")
def engine() -> EspeakSynthesizer:
    return EspeakSynthesizer.shared()


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory):
    """A 0.25-minute dataset (several clips), generated once for the file tests."""
    out = tmp_path_factory.mktemp("synth") / "data"
    summary = generate_dataset(out, seed=7, minutes=0.25)
    return out, summary


def _rms(audio: np.ndarray, start: float, end: float, rate: int) -> float:
    # The middle 60 % of an interval, so edges blurred by the resampler do not count.
    margin = 0.2 * (end - start)
    piece = audio[int((start + margin) * rate): int((end - margin) * rate)]
    return float(np.sqrt(np.mean(piece.astype(np.float64) ** 2))) if len(piece) else 0.0


def test_phoneme_intervals_match_energy(engine):
    text = "Please pass me the blue paper, then wait by the window."
    utterance = engine.synthesize(text, VoiceSettings("en-us", rate=160), sample_rate=16000)
    overall = float(np.sqrt(np.mean(utterance.audio.astype(np.float64) ** 2)))

    vowels = [p for p in utterance.phonemes if p.name in EN_VOWELS]
    pauses = [p for p in utterance.phonemes if is_silence(p.name) and p.end - p.start > 0.05]
    assert len(vowels) >= 5
    assert pauses, "the comma should give a pause longer than 50 ms"
    for vowel in vowels:
        rms = _rms(utterance.audio, vowel.start, vowel.end, 16000)
        assert rms > 0.25 * overall, f"vowel {vowel} is nearly silent (rms {rms:.4f})"
    for pause in pauses:
        rms = _rms(utterance.audio, pause.start, pause.end, 16000)
        assert rms < 0.02 * overall, f"pause {pause} has audio energy (rms {rms:.4f})"


def test_phonemes_cover_audio_in_order(engine):
    utterance = engine.synthesize("Five violins played.", VoiceSettings("en-gb-x-rp+m3"), 16000)
    phonemes = utterance.phonemes
    assert phonemes[0].start == 0.0
    assert phonemes[-1].end == pytest.approx(utterance.duration, abs=1e-3)
    for before, after in zip(phonemes, phonemes[1:]):
        assert before.end == pytest.approx(after.start)
        assert after.end > after.start
    assert not any(p.name.startswith(("'", ",", "(")) for p in phonemes)
    assert any(p.stress == 2 for p in phonemes)


def test_japanese_kana_gives_japanese_phonemes(engine):
    utterance = engine.synthesize("ありがとう、とても たすかりました。", VoiceSettings("ja"), 16000)
    names = [p.name for p in utterance.phonemes]
    assert "a" in names
    assert "o" in names
    assert all(visemes_for(name, "ja") != ("neutral",) for name in names), names


def test_unknown_voice_rejected(engine):
    with pytest.raises(ConfigError, match="no voice 'xx-nowhere'"):
        engine.synthesize("hello", VoiceSettings("xx-nowhere"))
    with pytest.raises(ConfigError, match="speaking rate"):
        engine.synthesize("hello", VoiceSettings("en-us", rate=20))


def test_viseme_weight_peaks_inside_segment():
    # Assembled clips have silence before, between and after sentences, as in the dataset.
    checked = 0
    for index in range(4):
        plan = plan_clip(11, index, ("en", "ja"))
        audio, phonemes = assemble_clip(plan, synthesize_clip_speech(plan), 16000)
        segments = viseme_segments(phonemes, plan.language)
        times = np.arange(0.0, len(audio) / 16000, 0.0005)
        peaks = times[np.argmax(segment_weights(segments, times), axis=0)]
        for segment, peak in zip(segments, peaks):
            # Segments of 30 ms or more peak within 5 ms of their interval. eSpeak's shortest
            # pauses (under 20 ms) can move by up to one 60 fps frame.
            slack = 0.005 if segment.end - segment.start >= 0.03 else FRAME_S
            assert segment.start - slack <= peak <= segment.end + slack, (segment, peak)
            checked += 1
    assert checked > 100


def test_viseme_curves_smooth_and_bounded():
    phonemes = [Phoneme("_", 0.0, 0.3), Phoneme("m", 0.3, 0.38), Phoneme("a", 0.38, 0.6, 2),
                Phoneme("p", 0.6, 0.66), Phoneme("u:", 0.66, 0.9, 2), Phoneme("_", 0.9, 1.4)]
    values = viseme_curves(phonemes, num_frames=84, fps=60.0)
    jaw = values[:, ARKIT_INDEX["jawOpen"]]
    pucker = values[:, ARKIT_INDEX["mouthPucker"]]

    assert values.min() >= 0.0
    assert values.max() <= 1.0
    assert jaw[:6].max() < 0.01, "jaw should be closed in the leading silence"
    assert jaw[-6:].max() < 0.01, "jaw should be closed in the trailing silence"
    assert jaw[int(0.49 * 60)] > 0.4, "jaw should open for /a/"
    assert pucker[int(0.8 * 60)] > 0.4, "lips should round for /u:/"
    # Sampled every millisecond, a smooth blend changes little per step (a step from /a/ to
    # silence would jump by 0.6) and its slope changes little too (no kinks).
    dense = viseme_curves(phonemes, num_frames=1400, fps=1000.0)
    assert np.abs(np.diff(dense, axis=0)).max() < 0.02
    assert np.abs(np.diff(dense, n=2, axis=0)).max() < 0.002
    mouth = set(REGIONS["jaw_mouth"]) | set(REGIONS["tongue"])
    untouched = [i for i in range(len(ARKIT_NAMES)) if i not in mouth]
    assert np.all(values[:, untouched] == 0.0)


def test_unknown_phoneme_logs_once(caplog):
    caplog.set_level(logging.DEBUG, logger="workbench.synth.visemes")
    assert visemes_for("Q~test") == ("neutral",)
    assert visemes_for("Q~test") == ("neutral",)
    messages = [r for r in caplog.records if "Q~test" in r.getMessage()]
    assert len(messages) == 1
    assert messages[0].levelno == logging.DEBUG


def test_variant_mnemonic_falls_back_to_base():
    assert visemes_for("@2") == visemes_for("@")
    assert visemes_for("t#") == visemes_for("t")
    assert visemes_for("aI3") == ("aa", "ih")
    assert visemes_for("u", "ja") == ("uu",)


def test_blinks_spacing_and_length():
    fps = 60.0
    curve = blink_curve(num_frames=int(60 * fps), fps=fps, rng=np.random.default_rng(5))
    closed = curve > 0.5
    starts = np.flatnonzero(closed[1:] & ~closed[:-1]) + 1
    ends = np.flatnonzero(~closed[1:] & closed[:-1]) + 1
    assert 9 <= len(starts) <= 31, "60 s should hold one blink every 2-6 s"
    gaps = np.diff(starts) / fps
    assert gaps.min() > 1.8
    assert gaps.max() < 6.2
    half_closed_s = (ends - starts[: len(ends)]) / fps
    assert half_closed_s.max() < 0.15
    assert curve.min() >= 0.0
    assert curve.max() <= 1.0


def test_both_languages_produce_clips(small_dataset):
    out, summary = small_dataset
    info = json.loads((out / "dataset.json").read_text(encoding="utf-8"))
    languages = {clip["language"] for clip in info["clips"]}
    assert languages == {"en", "ja"}
    assert summary["clips"] == info["clip_count"] == len(info["clips"])
    assert summary["total_seconds"] >= 15.0
    assert summary["generation_seconds"] > 0
    assert "generation_seconds" not in info
    for clip in info["clips"]:
        assert 3.0 <= clip["seconds"] <= 8.0, clip


def test_clip_files_read_back(small_dataset):
    out, _ = small_dataset
    info = json.loads((out / "dataset.json").read_text(encoding="utf-8"))
    for clip in info["clips"]:
        audio_info = soundfile.info(str(out / f"{clip['name']}.wav"))
        assert audio_info.samplerate == 16000
        assert audio_info.channels == 1
        assert audio_info.subtype == "PCM_16"

        track = read_targets(out / f"{clip['name']}.csv")
        assert track.fps == pytest.approx(60.0)
        assert abs(track.num_frames - audio_info.duration * 60.0) <= 1
        assert track.mask.all()
        jaw = track.values[:, ARKIT_INDEX["jawOpen"]]
        assert jaw.max() > 0.3
        assert jaw[0] < 0.01
        assert jaw[-1] < 0.01
        assert track.values[:, ARKIT_INDEX["eyeBlinkLeft"]].max() > 0.5 or clip["seconds"] < 6


def test_same_seed_gives_same_bytes(tmp_path, small_dataset):
    first, _ = small_dataset
    second = tmp_path / "again"
    generate_dataset(second, seed=7, minutes=0.25)
    names = sorted(p.name for p in first.iterdir())
    assert names == sorted(p.name for p in second.iterdir())
    for name in names:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


def test_other_seed_differs(tmp_path, small_dataset):
    first, _ = small_dataset
    other = tmp_path / "other"
    generate_dataset(other, seed=8, minutes=0.1, languages=("en",))
    assert (first / "0000_en.wav").read_bytes() != (other / "0000_en.wav").read_bytes()
    info = json.loads((other / "dataset.json").read_text(encoding="utf-8"))
    assert {clip["language"] for clip in info["clips"]} == {"en"}


def test_bad_arguments_rejected(tmp_path):
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "keep.txt").write_text("user file")
    with pytest.raises(DataError, match="not empty"):
        generate_dataset(occupied, minutes=0.1)
    assert (occupied / "keep.txt").read_text() == "user file"
    with pytest.raises(ConfigError, match="languages"):
        generate_dataset(tmp_path / "a", languages=("fr",))
    with pytest.raises(ConfigError, match="minutes"):
        generate_dataset(tmp_path / "b", minutes=0)
    with pytest.raises(ConfigError, match="sample_rate"):
        generate_dataset(tmp_path / "c", sample_rate=100)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["occupied"]


def test_failed_generation_leaves_nothing(tmp_path, monkeypatch):
    calls = []

    def write_one_then_fail(folder, plan, utterances, sample_rate):
        if calls:
            raise RuntimeError("simulated crash while writing a clip")
        calls.append(plan.name)
        return real_write(folder, plan, utterances, sample_rate)

    real_write = generate_module._write_clip
    monkeypatch.setattr(generate_module, "_write_clip", write_one_then_fail)
    with pytest.raises(RuntimeError, match="simulated crash"):
        generate_dataset(tmp_path / "data", minutes=0.2)
    assert calls, "the first clip should have been written before the crash"
    assert list(tmp_path.iterdir()) == []


def test_overwrite_replaces_folder(tmp_path):
    out = tmp_path / "data"
    out.mkdir()
    (out / "stale.wav").write_bytes(b"old")
    generate_dataset(out, minutes=0.05, languages=("ja",), overwrite=True)
    assert not (out / "stale.wav").exists()
    assert (out / "dataset.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


def test_targets_frame_count_matches_audio():
    plan = plan_clip(0, 1, ("en", "ja"))
    audio, phonemes = assemble_clip(plan, synthesize_clip_speech(plan), 16000)
    duration = len(audio) / 16000
    values = clip_targets(plan, phonemes, duration)
    assert values.shape == (round(duration * 60), 52)
    assert phonemes[-1].end == pytest.approx(duration, abs=2e-3)
