"""Log-mel features and their on-disk cache.

Frames are centred (torchaudio's default), so frame i covers time i * hop seconds and a
clip of n samples gives n // hop + 1 frames. Everything downstream (targets, predictions)
uses this frame clock: 100 frames per second at the default 10 ms hop.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torchaudio

from workbench.audio import read_audio

log = logging.getLogger(__name__)

# Bumped whenever the feature code changes in a way that alters its output.
FEATURE_VERSION = 1


@dataclass(frozen=True)
class FeatureSettings:
    sample_rate: int = 16000
    n_mels: int = 80
    win_ms: float = 25.0
    hop_ms: float = 10.0
    n_fft: int = 512
    f_min: float = 20.0
    f_max: float = 8000.0

    @classmethod
    def from_config(cls, cfg) -> "FeatureSettings":
        return cls(**{k: cfg[k] for k in cls.__dataclass_fields__})

    @property
    def hop_length(self) -> int:
        return round(self.sample_rate * self.hop_ms / 1000)

    @property
    def win_length(self) -> int:
        return round(self.sample_rate * self.win_ms / 1000)

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop_length

    def num_frames(self, num_samples: int) -> int:
        return num_samples // self.hop_length + 1


class LogMel(torch.nn.Module):
    """Waveform [..., samples] -> log-mel [..., frames, n_mels] (natural log, floor 1e-5)."""

    def __init__(self, settings: FeatureSettings):
        super().__init__()
        self.settings = settings
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=settings.sample_rate,
            n_fft=settings.n_fft,
            win_length=settings.win_length,
            hop_length=settings.hop_length,
            f_min=settings.f_min,
            f_max=settings.f_max,
            n_mels=settings.n_mels,
            power=2.0,
        )

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        mel = self.mel(waveform)
        return torch.log(mel.clamp_min(1e-5)).transpose(-1, -2)


def frame_energy_db(waveform: torch.Tensor, settings: FeatureSettings) -> torch.Tensor:
    """RMS energy per feature frame in dB relative to the clip's loudest frame, shape [frames]."""
    hop, win = settings.hop_length, settings.win_length
    padded = torch.nn.functional.pad(waveform[None, None], (win // 2, win // 2), mode="constant")[0, 0]
    frames = padded.unfold(0, win, hop)[: settings.num_frames(waveform.numel())]
    rms = frames.pow(2).mean(dim=1).sqrt()
    if rms.numel() < settings.num_frames(waveform.numel()):
        rms = torch.nn.functional.pad(rms, (0, settings.num_frames(waveform.numel()) - rms.numel()))
    return 20 * torch.log10(rms.clamp_min(1e-8) / rms.max().clamp_min(1e-8))


class FeatureCache:
    """Log-mel features and frame energies cached as .npz files keyed by content and settings.

    The key is a SHA-256 of the audio file's bytes plus the feature settings, so a renamed
    file still hits the cache and an edited file or a changed setting misses it.
    """

    def __init__(self, cache_dir: str | Path, settings: FeatureSettings):
        self.cache_dir = Path(cache_dir)
        self.settings = settings
        self.extractor = LogMel(settings)
        self.hits = 0
        self.misses = 0

    def key(self, audio_path: Path) -> str:
        digest = hashlib.sha256()
        with open(audio_path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        digest.update(json.dumps({**asdict(self.settings), "version": FEATURE_VERSION}, sort_keys=True).encode())
        return digest.hexdigest()[:32]

    def load(self, audio_path: str | Path) -> tuple[np.ndarray, np.ndarray]:
        """Return (log-mel [frames, n_mels] float32, energy_db [frames] float32) for a file."""
        audio_path = Path(audio_path)
        cache_file = self.cache_dir / f"{self.key(audio_path)}.npz"
        if cache_file.is_file():
            try:
                with np.load(cache_file, allow_pickle=False) as data:
                    self.hits += 1
                    return data["mel"], data["energy_db"]
            except (OSError, ValueError, KeyError):
                log.warning("feature cache file %s is unreadable; recomputing it", cache_file)

        self.misses += 1
        mel, energy = self.compute(read_audio(audio_path, self.settings.sample_rate))
        self._store(cache_file, mel, energy)
        return mel, energy

    def compute(self, waveform: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        with torch.no_grad():
            mel = self.extractor(waveform).numpy().astype(np.float32)
            energy = frame_energy_db(waveform, self.settings).numpy().astype(np.float32)
        return mel, energy

    def _store(self, cache_file: Path, mel: np.ndarray, energy: np.ndarray) -> None:
        try:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            # Write to a temp file and rename, so a concurrent reader never sees half a file.
            fd, tmp = tempfile.mkstemp(dir=self.cache_dir, suffix=".npz.tmp")
            with os.fdopen(fd, "wb") as f:
                np.savez(f, mel=mel, energy_db=energy)
            os.replace(tmp, cache_file)
        except OSError as exc:
            log.warning("cannot write feature cache %s (%s); features will be recomputed next time", cache_file, exc)
