"""Training-time augmentation of log-mel batches: random gain plus time and frequency masks.

Applied to whole batches on the training device, after the DataLoader, so it costs a few
vectorised ops per step and no host sync. Validation and prediction never augment.
Randomness comes from torch's default generator, which checkpoints save and resume restores.
"""

from __future__ import annotations

import math

import torch


def augment_log_mel(mel: torch.Tensor, fill: torch.Tensor, *, gain_db: float = 6.0, time_masks: int = 2,
                    max_time_frames: int = 20, freq_masks: int = 2, max_freq_bins: int = 8) -> torch.Tensor:
    """Return an augmented copy of `mel` [B, T, n_mels] (natural-log power).

    - gain: one uniform offset in [-gain_db, +gain_db] dB per example; in natural-log power
      a gain of g dB adds g * ln(10) / 10.
    - masks: `time_masks` spans of up to `max_time_frames` frames and `freq_masks` bands of
      up to `max_freq_bins` bins per example, set to `fill` [n_mels] (the training mean, so a
      masked region normalises to zero).
    """
    batch, frames, bins = mel.shape
    device = mel.device
    out = mel + (torch.rand(batch, 1, 1, device=device) * 2 - 1) * (gain_db * math.log(10) / 10)

    keep = torch.ones(batch, frames, bins, dtype=torch.bool, device=device)
    time_index = torch.arange(frames, device=device)[None, :]
    for _ in range(time_masks):
        width = torch.randint(0, max_time_frames + 1, (batch, 1), device=device)
        start = (torch.rand(batch, 1, device=device) * (frames - width).clamp_min(1)).long()
        keep &= ~((time_index >= start) & (time_index < start + width))[:, :, None]
    bin_index = torch.arange(bins, device=device)[None, :]
    for _ in range(freq_masks):
        width = torch.randint(0, max_freq_bins + 1, (batch, 1), device=device)
        start = (torch.rand(batch, 1, device=device) * (bins - width).clamp_min(1)).long()
        keep &= ~((bin_index >= start) & (bin_index < start + width))[:, None, :]
    return torch.where(keep, out, fill.to(out.dtype))
