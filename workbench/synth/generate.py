"""Generate the embedded default dataset: eSpeak NG speech with procedural ARKit targets.

Each clip is ``<name>.wav`` (16-bit PCM, mono) beside ``<name>.csv`` (Live Link Face CSV at
60 fps), so the dataset goes through the same readers as captured data. ``dataset.json``
records the settings and every clip's voice and text.

Output is byte-identical for equal arguments: every random choice comes from a NumPy
generator seeded with (seed, clip index), and each clip's speech is synthesized in a fresh
child process, because eSpeak keeps pitch-flutter state across calls in one process.
NOTE: byte equality is checked on one machine only. Another eSpeak NG version changes the
speech, and torch's resampling convolution may round differently on another CPU type.
"""

from __future__ import annotations

import concurrent.futures
import json
import logging
import math
import multiprocessing
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile

from workbench.errors import ConfigError, DataError
from workbench.synth.blinks import add_blinks
from workbench.synth.espeak import (
    EspeakSynthesizer, Phoneme, Utterance, VoiceSettings, resample_audio,
)
from workbench.synth.sentences import ENGLISH_SENTENCES, JAPANESE_SENTENCES
from workbench.synth.visemes import viseme_curves

log = logging.getLogger(__name__)

FPS = 60.0
CLIP_SECONDS = (3.0, 8.0)
SENTENCES: dict[str, tuple[str, ...]] = {"en": ENGLISH_SENTENCES, "ja": JAPANESE_SENTENCES}
VOICES: dict[str, tuple[str, ...]] = {
    "en": ("en-us", "en-gb-x-rp", "en"),
    "ja": ("ja",),
}
# eSpeak voice variants (files in espeak-ng-data/voices/!v); "" keeps the voice's own sound.
VARIANTS: tuple[str, ...] = ("", "m1", "m2", "m3", "m4", "m6", "f1", "f2", "f3", "f4")
RATE_WPM = (140, 200)
PITCH = (30, 70)
PITCH_RANGE = (35, 80)
# Silence (seconds) before the first sentence, after the last and between sentences.
LEAD_SILENCE_S = (0.15, 0.5)
TRAIL_SILENCE_S = (0.15, 0.4)
SENTENCE_GAP_S = (0.2, 0.6)
# Background noise standard deviation, linear full scale (about -80 to -60 dBFS).
NOISE_STD = (1e-4, 1e-3)
PEAK_LEVEL = (0.35, 0.9)
ARTICULATION = (0.85, 1.15)
# Sentences offered to one clip; it uses the first ones that fit its target length.
CANDIDATES_PER_CLIP = 6
# Clips synthesized per round of child processes; the result does not depend on it.
BATCH_CLIPS = 8
MAX_MINUTES = 600.0


@dataclass(frozen=True)
class ClipPlan:
    """Every random choice for one clip, drawn before any synthesis."""

    index: int
    name: str
    language: str
    settings: VoiceSettings
    candidates: tuple[str, ...]
    target_seconds: float
    lead_silence: float
    trail_silence: float
    gaps: tuple[float, ...]
    noise_std: float
    peak_level: float
    articulation: float
    seed: int


def _clip_rng(seed: int, index: int, purpose: int) -> np.random.Generator:
    return np.random.default_rng([seed, index, purpose])


def plan_clip(seed: int, index: int, languages: tuple[str, ...]) -> ClipPlan:
    """Draw the voice, sentences and timing of clip ``index``; it depends on nothing else."""
    language = languages[index % len(languages)]
    rng = _clip_rng(seed, index, 0)

    voice = str(rng.choice(VOICES[language]))
    variant = str(rng.choice(VARIANTS))
    settings = VoiceSettings(
        voice=f"{voice}+{variant}" if variant else voice,
        rate=int(rng.integers(RATE_WPM[0], RATE_WPM[1] + 1)),
        pitch=int(rng.integers(PITCH[0], PITCH[1] + 1)),
        pitch_range=int(rng.integers(PITCH_RANGE[0], PITCH_RANGE[1] + 1)),
    )

    # Walk a per-language shuffled deck two sentences per clip, so consecutive clips of a
    # language use different sentences and the whole list comes round before repeats.
    deck_rng = np.random.default_rng([seed, languages.index(language), 1])
    sentences = SENTENCES[language]
    deck = deck_rng.permutation(len(sentences))
    position = 2 * (index // len(languages))
    candidates = tuple(sentences[deck[(position + k) % len(deck)]]
                       for k in range(CANDIDATES_PER_CLIP))

    return ClipPlan(
        index=index,
        name=f"{index:04d}_{language}",
        language=language,
        settings=settings,
        candidates=candidates,
        target_seconds=float(rng.uniform(CLIP_SECONDS[0] + 0.5, CLIP_SECONDS[1] - 0.5)),
        lead_silence=float(rng.uniform(*LEAD_SILENCE_S)),
        trail_silence=float(rng.uniform(*TRAIL_SILENCE_S)),
        gaps=tuple(float(g) for g in rng.uniform(*SENTENCE_GAP_S, size=CANDIDATES_PER_CLIP)),
        noise_std=float(rng.uniform(*NOISE_STD)),
        peak_level=float(rng.uniform(*PEAK_LEVEL)),
        articulation=float(rng.uniform(*ARTICULATION)),
        seed=int(rng.integers(2**31)),
    )


def synthesize_clip_speech(plan: ClipPlan) -> list[Utterance]:
    """Speak the plan's candidate sentences in order, keeping those that fit the clip length.

    Returns native-rate utterances. Run it in a fresh process for repeatable samples.
    """
    engine = EspeakSynthesizer.shared()
    silence = plan.lead_silence + plan.trail_silence
    max_speech = CLIP_SECONDS[1] - silence
    accepted: list[Utterance] = []
    total = 0.0
    for text in plan.candidates:
        utterance = engine.synthesize(text, plan.settings, noise_seed=plan.seed)
        gap = plan.gaps[len(accepted) - 1] if accepted else 0.0
        if total + gap + utterance.duration > max_speech:
            continue  # too long for what is left of this clip; try the next sentence
        accepted.append(utterance)
        total += gap + utterance.duration
        if total + silence >= plan.target_seconds:
            break
    if not accepted:
        raise RuntimeError(f"no sentence fits in {max_speech:.2f} s for clip {plan.name}")
    return accepted


def _silence(start: float, end: float) -> Phoneme:
    return Phoneme("_", start, end)


def assemble_clip(
    plan: ClipPlan, utterances: list[Utterance], sample_rate: int
) -> tuple[np.ndarray, list[Phoneme]]:
    """Join the utterances with silences, resample, and add noise.

    Returns (float32 samples at ``sample_rate`` in [-1, 1], phonemes timed on those samples).
    The clip is padded with silence to at least the minimum clip length.
    """
    native_rate = utterances[0].sample_rate
    pieces: list[np.ndarray] = []
    phonemes: list[Phoneme] = []
    cursor = 0  # native samples written so far

    def add_silence(seconds: float) -> None:
        nonlocal cursor
        count = int(round(seconds * native_rate))
        pieces.append(np.zeros(count, dtype=np.float32))
        phonemes.append(_silence(cursor / native_rate, (cursor + count) / native_rate))
        cursor += count

    add_silence(plan.lead_silence)
    for number, utterance in enumerate(utterances):
        if number > 0:
            add_silence(plan.gaps[number - 1])
        offset = cursor / native_rate
        pieces.append(utterance.audio)
        phonemes.extend(Phoneme(p.name, p.start + offset, p.end + offset, p.stress)
                        for p in utterance.phonemes)
        cursor += len(utterance.audio)
    add_silence(max(plan.trail_silence, CLIP_SECONDS[0] - cursor / native_rate))

    audio = resample_audio(np.concatenate(pieces), native_rate, sample_rate)
    peak = float(np.abs(audio).max())
    if peak > 0:
        audio = audio * (plan.peak_level / peak)
    noise = np.random.default_rng([plan.seed, 2]).normal(0.0, plan.noise_std, len(audio))
    audio = np.clip(audio + noise, -1.0, 1.0).astype(np.float32)
    return audio, phonemes


def clip_targets(plan: ClipPlan, phonemes: list[Phoneme], duration: float) -> np.ndarray:
    """Return the blendshape targets ``[frames, 52]`` of a clip, frames at i / FPS seconds."""
    num_frames = int(round(duration * FPS))
    values = viseme_curves(phonemes, num_frames, FPS, plan.language, plan.articulation)
    return add_blinks(values, FPS, np.random.default_rng([plan.seed, 3]))


def _check_arguments(out_dir: Path, seed: int, minutes: float, languages: tuple[str, ...],
                     sample_rate: int, overwrite: bool) -> None:
    if not (isinstance(seed, int) and seed >= 0):
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    if not (isinstance(minutes, (int, float)) and math.isfinite(minutes)
            and 0 < minutes <= MAX_MINUTES):
        raise ConfigError(
            f"minutes must be a number of minutes in (0, {MAX_MINUTES:g}], got {minutes!r}"
        )
    unknown = [lang for lang in languages if lang not in SENTENCES]
    if not languages or unknown or len(set(languages)) != len(languages):
        raise ConfigError(
            f"languages must be distinct codes from {sorted(SENTENCES)}, got {list(languages)}"
        )
    if not (isinstance(sample_rate, int) and 8000 <= sample_rate <= 48000):
        raise ConfigError(f"sample_rate must be an integer in 8000-48000 Hz, got {sample_rate!r}")
    if out_dir.exists() and not out_dir.is_dir():
        raise DataError(f"dataset output {out_dir} exists and is not a folder; choose another path")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise DataError(
            f"dataset folder {out_dir} already exists and is not empty; choose another folder "
            "or pass overwrite=True to replace it"
        )


def _child_context() -> multiprocessing.context.BaseContext:
    # forkserver forks children from a small server process that has imported this module
    # (without torch or pandas) but not started eSpeak: each child starts quickly, with a fresh
    # eSpeak, and forking is safe even when this process runs torch threads. Windows has only
    # spawn, which starts a new interpreter per child.
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["workbench.synth.generate"])
        return context
    return multiprocessing.get_context("spawn")


def _write_clip(folder: Path, plan: ClipPlan, utterances: list[Utterance],
                sample_rate: int) -> dict:
    # Imported here so that child processes, which import this module but only synthesize,
    # do not load pandas through the Live Link writer.
    from workbench.formats.livelink import write_livelink_csv

    audio, phonemes = assemble_clip(plan, utterances, sample_rate)
    duration = len(audio) / sample_rate
    values = clip_targets(plan, phonemes, duration)
    soundfile.write(folder / f"{plan.name}.wav", audio, sample_rate, subtype="PCM_16")
    write_livelink_csv(folder / f"{plan.name}.csv", values, fps=FPS)
    return {
        "name": plan.name,
        "language": plan.language,
        "voice": plan.settings.voice,
        "rate_wpm": plan.settings.rate,
        "pitch": plan.settings.pitch,
        "pitch_range": plan.settings.pitch_range,
        "seconds": round(duration, 4),
        "frames": int(values.shape[0]),
        "text": " ".join(u.text for u in utterances),
    }


def generate_dataset(
    out_dir: Path,
    *,
    seed: int = 0,
    minutes: float = 3.0,
    languages: tuple[str, ...] | list[str] | str = ("en", "ja"),
    sample_rate: int = 16000,
    overwrite: bool = False,
) -> dict:
    """Write a synthetic speech dataset of about ``minutes`` minutes into ``out_dir``.

    Clips are added until their total length reaches ``minutes``; clip i alternates through
    ``languages``. The dataset is built in a temporary folder beside ``out_dir`` and renamed
    into place only when complete. ``overwrite`` replaces an existing non-empty folder.

    Returns a summary: ``clips``, ``total_seconds``, ``voices`` (sorted), ``languages``,
    ``generation_seconds`` and ``path``. Generation time is left out of ``dataset.json`` so
    that equal arguments give byte-identical folders.
    """
    started = time.perf_counter()
    out_dir = Path(out_dir)
    languages = (languages,) if isinstance(languages, str) else tuple(languages)
    _check_arguments(out_dir, seed, minutes, languages, sample_rate, overwrite)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    engine_version = EspeakSynthesizer.shared().version
    target_total = minutes * 60.0

    temp_dir = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
    try:
        clips = _generate_clips(temp_dir, seed, languages, sample_rate, target_total)
        summary_file = {
            "generator": "workbench.synth",
            "espeak_ng_version": engine_version,
            "seed": seed,
            "minutes_requested": minutes,
            "languages": list(languages),
            "sample_rate": sample_rate,
            "fps": FPS,
            "clip_count": len(clips),
            "total_seconds": round(sum(c["seconds"] for c in clips), 3),
            "voices": sorted({c["voice"] for c in clips}),
            "clips": clips,
        }
        (temp_dir / "dataset.json").write_text(
            json.dumps(summary_file, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )
        _move_into_place(temp_dir, out_dir)
    except BaseException:
        shutil.rmtree(temp_dir, ignore_errors=True)
        raise

    elapsed = time.perf_counter() - started
    log.info("wrote %d synthetic clips (%.1f s of audio) to %s in %.1f s",
             len(clips), summary_file["total_seconds"], out_dir, elapsed)
    return {
        "path": str(out_dir),
        "clips": len(clips),
        "total_seconds": summary_file["total_seconds"],
        "voices": summary_file["voices"],
        "languages": list(languages),
        "generation_seconds": round(elapsed, 3),
    }


def _generate_clips(folder: Path, seed: int, languages: tuple[str, ...], sample_rate: int,
                    target_total: float) -> list[dict]:
    clips: list[dict] = []
    total = 0.0
    workers = max(1, min(2, os.cpu_count() or 1))
    with concurrent.futures.ProcessPoolExecutor(
        max_workers=workers, mp_context=_child_context(), max_tasks_per_child=1
    ) as pool:
        index = 0
        while total < target_total:
            plans = [plan_clip(seed, i, languages) for i in range(index, index + BATCH_CLIPS)]
            for plan, utterances in zip(plans, pool.map(synthesize_clip_speech, plans)):
                if total >= target_total:
                    break
                record = _write_clip(folder, plan, utterances, sample_rate)
                clips.append(record)
                total += record["seconds"]
            index += BATCH_CLIPS
    return clips


def _move_into_place(temp_dir: Path, out_dir: Path) -> None:
    """Rename the finished dataset onto ``out_dir``, replacing an existing folder there."""
    if not out_dir.exists():
        os.replace(temp_dir, out_dir)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
    os.replace(out_dir, old / out_dir.name)
    os.replace(temp_dir, out_dir)
    shutil.rmtree(old, ignore_errors=True)
