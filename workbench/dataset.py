"""Datasets: find clips in a folder, load and align them, split by clip, cut training windows.

A clip is one audio file plus one label file. Pairing rules, in order:
1. a `manifest.csv` in the root with `audio` and `labels` columns (paths relative to it);
2. otherwise every audio file under the root is paired with the label file whose stem is the
   same, with an optional `bs_value_` prefix (the FACEGOOD layout keeps `wav/X.wav` beside
   `bs_value/bs_value_X.npy`). Label files without audio are ignored.

Targets are resampled onto the feature frame clock (100 frames/s by default), so a window of
features and its targets always have the same number of frames.
"""

from __future__ import annotations

import csv
import logging
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from workbench.arkit import NUM_BLENDSHAPES
from workbench.audio import AUDIO_SUFFIXES
from workbench.errors import DataError, WorkbenchError
from workbench.features import FeatureCache, FeatureSettings
from workbench.targets import LABEL_SUFFIXES, read_targets, resample_track

log = logging.getLogger(__name__)

LABEL_PREFIXES = ("bs_value_",)
# Frames whose energy is this far below the clip's loudest frame count as silence.
SILENCE_DB = -40.0


@dataclass
class ClipPaths:
    name: str
    audio: Path
    labels: Path


@dataclass
class Clip:
    """One aligned clip held in memory; all arrays share the feature frame clock."""

    name: str
    audio_path: Path
    label_path: Path
    mel: np.ndarray  # [frames, n_mels] float32
    targets: np.ndarray  # [frames, 52] float32, 0 where masked
    channel_mask: np.ndarray  # [52] bool, True = channel present in the labels
    silence: np.ndarray  # [frames] bool

    @property
    def num_frames(self) -> int:
        return self.mel.shape[0]


def find_clips(root: str | Path) -> tuple[list[ClipPaths], list[Path]]:
    """Return (paired clips sorted by name, audio files that have no label file)."""
    root = Path(root)
    if not str(root) or str(root) == ".":
        raise DataError("data.root is not set; pass data.root=<folder of clips> (audio files with label files)")
    if not root.exists():
        raise DataError(f"data folder not found: {root}; check data.root")

    manifest = root / "manifest.csv" if root.is_dir() else root
    if manifest.is_file() and manifest.suffix == ".csv" and manifest.name == "manifest.csv":
        return _read_manifest(manifest), []
    if not root.is_dir():
        raise DataError(f"data.root {root} is neither a folder nor a manifest.csv")

    labels: dict[str, Path] = {}
    for path in sorted(p for p in root.rglob("*") if p.suffix.lower() in LABEL_SUFFIXES and p.is_file()):
        stem = path.stem
        for prefix in LABEL_PREFIXES:
            stem = stem.removeprefix(prefix)
        if stem in labels:
            raise DataError(f"two label files for clip {stem!r}: {labels[stem]} and {path}; keep one")
        labels[stem] = path

    clips, unlabeled = [], []
    for audio in sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file()):
        if audio.stem in labels:
            clips.append(ClipPaths(audio.stem, audio, labels[audio.stem]))
        else:
            unlabeled.append(audio)
    if not clips and not unlabeled:
        raise DataError(f"no audio files ({', '.join(AUDIO_SUFFIXES)}) found under {root}")
    if not clips:
        raise DataError(
            f"no audio file under {root} has a label file; expected e.g. clip.wav beside clip.csv "
            f"(labels: {', '.join(LABEL_SUFFIXES)}). Unlabeled: {', '.join(p.name for p in unlabeled[:5])}"
        )
    return clips, unlabeled


def _read_manifest(manifest: Path) -> list[ClipPaths]:
    with open(manifest, newline="") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or not {"audio", "labels"} <= set(reader.fieldnames):
            raise DataError(f"{manifest}: expected columns 'audio' and 'labels', found {reader.fieldnames}")
        rows = list(reader)
    clips = []
    for i, row in enumerate(rows, start=2):
        audio, labels = manifest.parent / row["audio"], manifest.parent / row["labels"]
        for p in (audio, labels):
            if not p.is_file():
                raise DataError(f"{manifest} line {i}: file not found: {p}")
        clips.append(ClipPaths(Path(row["audio"]).stem, audio, labels))
    if not clips:
        raise DataError(f"{manifest}: the manifest lists no clips")
    return clips


def load_clip(paths: ClipPaths, cache: FeatureCache, max_mismatch_s: float) -> Clip:
    """Read features and labels for one clip and put the labels on the feature frame clock."""
    track = read_targets(paths.labels)
    mel, energy_db = cache.load(paths.audio)
    frame_rate = cache.settings.frame_rate

    audio_s = mel.shape[0] / frame_rate
    label_s = track.duration
    mismatch = abs(audio_s - label_s)
    if mismatch > max_mismatch_s:
        raise DataError(
            f"clip {paths.name}: audio {paths.audio} lasts {audio_s:.2f} s but labels {paths.labels} "
            f"last {label_s:.2f} s; check that they belong together (tolerance "
            f"data.max_length_mismatch_seconds={max_mismatch_s})"
        )

    # Trim to the shorter of the two; a frame or two of difference is normal rounding.
    frames = min(mel.shape[0], int(round(label_s * frame_rate)))
    if mismatch > 2.0 / min(frame_rate, track.fps):
        log.warning(
            "clip %s: audio %.3f s vs labels %.3f s; trimmed to %d frames", paths.name, audio_s, label_s, frames
        )
    if frames < 1:
        raise DataError(f"clip {paths.name}: no frames left after aligning audio and labels")

    targets = resample_track(track, frames, frame_rate).astype(np.float32)
    targets[:, ~track.mask] = 0.0
    return Clip(
        name=paths.name,
        audio_path=paths.audio,
        label_path=paths.labels,
        mel=np.ascontiguousarray(mel[:frames]),
        targets=targets,
        channel_mask=track.mask.copy(),
        silence=energy_db[:frames] < SILENCE_DB,
    )


def load_clips(root: str | Path, cache: FeatureCache, *, max_mismatch_s: float, on_bad_clip: str = "error",
               max_clips: int = 0) -> list[Clip]:
    """Find and load every clip under `root`; bad clips raise or are skipped per `on_bad_clip`."""
    paths, unlabeled = find_clips(root)
    for audio in unlabeled:
        message = f"audio file {audio} has no label file (expected e.g. {audio.with_suffix('.csv').name})"
        if on_bad_clip == "error":
            raise DataError(message + "; add labels, remove it, or set data.on_bad_clip=skip")
        log.warning("skipping %s", message)
    if max_clips:
        paths = paths[:max_clips]

    clips = []
    for p in paths:
        try:
            clips.append(load_clip(p, cache, max_mismatch_s))
        except WorkbenchError as exc:
            if on_bad_clip == "error":
                raise DataError(f"{exc} (set data.on_bad_clip=skip to skip bad clips)") from None
            log.warning("skipping clip %s: %s", p.name, exc)
    if not clips:
        raise DataError(f"no usable clip under {root}; see the warnings above")
    return clips


def split_clips(clips: list[Clip], val_count: int, seed: int) -> tuple[list[Clip], list[Clip]]:
    """Split by whole clips (never by window), reproducibly for a seed."""
    if val_count >= len(clips):
        raise DataError(
            f"data.val_clips={val_count} but the dataset has only {len(clips)} clip(s); "
            "at least one clip must remain for training"
        )
    order = sorted(range(len(clips)), key=lambda i: clips[i].name)
    random.Random(seed).shuffle(order)
    val_idx = set(order[:val_count])
    train = [c for i, c in enumerate(clips) if i not in val_idx]
    val = [c for i, c in enumerate(clips) if i in val_idx]
    return train, val


class WindowDataset(Dataset):
    """Fixed-length training windows over clips; the last window of a clip is end-aligned.

    Clips shorter than a window give one zero-padded window whose padded frames are masked.
    Each item: mel [W, n_mels], targets [W, 52], mask [W, 52] bool, silence [W] bool.
    """

    def __init__(self, clips: list[Clip], window_frames: int, hop_frames: int):
        self.clips = clips
        self.window = window_frames
        self.index: list[tuple[int, int]] = []
        for ci, clip in enumerate(clips):
            last = max(clip.num_frames - window_frames, 0)
            starts = list(range(0, last + 1, hop_frames))
            if starts[-1] != last:
                starts.append(last)
            self.index.extend((ci, s) for s in starts)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        ci, start = self.index[i]
        return clip_tensors(self.clips[ci], start, self.window)


def clip_tensors(clip: Clip, start: int = 0, length: int | None = None) -> dict[str, torch.Tensor]:
    """Slice a clip into tensors, zero-padding to `length` frames with padded frames masked."""
    length = clip.num_frames - start if length is None else length
    end = min(start + length, clip.num_frames)
    n = end - start
    mel = np.zeros((length, clip.mel.shape[1]), np.float32)
    targets = np.zeros((length, NUM_BLENDSHAPES), np.float32)
    mask = np.zeros((length, NUM_BLENDSHAPES), bool)
    silence = np.zeros(length, bool)
    mel[:n] = clip.mel[start:end]
    targets[:n] = clip.targets[start:end]
    mask[:n] = clip.channel_mask
    silence[:n] = clip.silence[start:end]
    return {
        "mel": torch.from_numpy(mel),
        "targets": torch.from_numpy(targets),
        "mask": torch.from_numpy(mask),
        "silence": torch.from_numpy(silence),
    }


def feature_stats(clips: list[Clip]) -> tuple[np.ndarray, np.ndarray]:
    """Per-mel-bin mean and std over all training frames; stored in the model for inference."""
    stacked = np.concatenate([c.mel for c in clips], axis=0).astype(np.float64)
    return stacked.mean(axis=0).astype(np.float32), np.maximum(stacked.std(axis=0), 1e-3).astype(np.float32)


def build_cache(cfg) -> FeatureCache:
    return FeatureCache(cfg.features.cache_dir, FeatureSettings.from_config(cfg.features))
