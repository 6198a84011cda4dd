"""Audio input: read any soundfile-supported file, downmix to mono, resample to 16 kHz."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

from workbench.errors import DataError

log = logging.getLogger(__name__)

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")


def check_audio_path(path: str | Path) -> Path:
    """Raise DataError for an unsupported suffix, a missing file or a 0-byte file; return the Path."""
    path = Path(path)
    if path.suffix.lower() not in AUDIO_SUFFIXES:
        raise DataError(f"{path}: unsupported audio format {path.suffix!r}; use one of {', '.join(AUDIO_SUFFIXES)}")
    if not path.is_file():
        raise DataError(f"{path}: audio file not found")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: audio file is empty (0 bytes); re-export or remove it")
    return path


def read_audio(path: str | Path, sample_rate: int = 16000) -> torch.Tensor:
    """Return the file as a mono float32 tensor of shape [samples] at `sample_rate` Hz.

    Raises DataError for a missing, empty, unreadable or non-finite file.
    """
    path = check_audio_path(path)

    try:
        data, source_rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        raise DataError(f"{path}: cannot read audio ({exc}); check that it is a valid WAV/FLAC/OGG file") from None

    if data.shape[0] == 0:
        raise DataError(f"{path}: audio file contains no samples")
    if not np.isfinite(data).all():
        bad = int(np.argmax(~np.isfinite(data).all(axis=1)))
        raise DataError(f"{path}: audio contains NaN or Inf samples (first at sample {bad}); re-export the file")

    # The mean over channels keeps the level of a centred source. A phase-inverted stereo
    # pair would cancel, which we accept because speech is not recorded that way.
    mono = torch.from_numpy(data.mean(axis=1))
    if source_rate != sample_rate:
        mono = AF.resample(mono, source_rate, sample_rate)
        log.debug("resampled %s from %d Hz to %d Hz", path, source_rate, sample_rate)
    return mono.contiguous()
