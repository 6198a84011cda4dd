"""The default audio-to-blendshape model and its loss.

Log-mel frames [B, T, n_mels] -> normalisation -> Conv1d front end (local context, about
+-kernel_size//2 frames per layer) -> sequence encoder (GRU, Transformer, or none for a
convolution-only model) -> one sigmoid output per blendshape per frame [B, T, 52].
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from workbench.arkit import NUM_BLENDSHAPES


class BlendshapeModel(nn.Module):
    """Sequence model over log-mel frames with 52 sigmoid outputs per frame.

    The feature mean/std and the output bias are set from the training data (see
    `init_from_data`), so a fresh model already predicts each channel's mean pose. This
    matters for mostly-closed-mouth targets: a zero-initialised sigmoid outputs 0.5, far
    from the data, and the first epochs would only pull every output down.
    """

    def __init__(self, n_mels: int = 80, kind: str = "gru", hidden: int = 128, conv_layers: int = 2,
                 kernel_size: int = 5, rnn_layers: int = 2, bidirectional: bool = True, heads: int = 4,
                 dropout: float = 0.1, num_outputs: int = NUM_BLENDSHAPES):
        super().__init__()
        self.hparams = dict(n_mels=n_mels, kind=kind, hidden=hidden, conv_layers=conv_layers,
                            kernel_size=kernel_size, rnn_layers=rnn_layers, bidirectional=bidirectional,
                            heads=heads, dropout=dropout, num_outputs=num_outputs)
        self.register_buffer("feature_mean", torch.zeros(n_mels))
        self.register_buffer("feature_std", torch.ones(n_mels))

        layers: list[nn.Module] = []
        channels = n_mels
        for _ in range(conv_layers):
            layers += [nn.Conv1d(channels, hidden, kernel_size, padding=kernel_size // 2), nn.GELU(),
                       nn.Dropout(dropout)]
            channels = hidden
        self.frontend = nn.Sequential(*layers)

        self.kind = kind
        if kind == "gru":
            per_direction = hidden // 2 if bidirectional else hidden
            self.encoder = nn.GRU(channels, per_direction, num_layers=rnn_layers, batch_first=True,
                                  bidirectional=bidirectional, dropout=dropout if rnn_layers > 1 else 0.0)
        elif kind == "transformer":
            layer = nn.TransformerEncoderLayer(channels, heads, dim_feedforward=2 * channels, dropout=dropout,
                                               batch_first=True, norm_first=True)
            self.encoder = nn.TransformerEncoder(layer, num_layers=rnn_layers, enable_nested_tensor=False)
        elif kind == "conv":
            # Convolution-only: more dilated conv layers instead of a recurrent encoder.
            self.encoder = nn.Sequential(*[
                m for d in (2, 4)
                for m in (nn.Conv1d(channels, channels, kernel_size, padding=d * (kernel_size // 2), dilation=d),
                          nn.GELU())
            ])
        else:
            raise ValueError(f"unknown model kind {kind!r}")
        self.head = nn.Linear(channels, num_outputs)

    @classmethod
    def from_config(cls, cfg) -> "BlendshapeModel":
        m = cfg.model
        return cls(n_mels=cfg.features.n_mels, kind=m.kind, hidden=m.hidden, conv_layers=m.conv_layers,
                   kernel_size=m.kernel_size, rnn_layers=m.rnn_layers, bidirectional=m.bidirectional,
                   heads=m.heads, dropout=m.dropout)

    def init_from_data(self, feature_mean, feature_std, target_mean) -> None:
        """Set input normalisation and start each output at its training-set mean."""
        self.feature_mean.copy_(torch.as_tensor(feature_mean))
        self.feature_std.copy_(torch.as_tensor(feature_std))
        p = torch.as_tensor(target_mean, dtype=torch.float32).clamp(1e-3, 1 - 1e-3)
        with torch.no_grad():
            self.head.bias.copy_(torch.log(p / (1 - p)))

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = (mel - self.feature_mean) / self.feature_std
        x = self.frontend(x.transpose(1, 2))  # Conv1d wants [B, C, T]
        if self.kind == "conv":
            x = x + self.encoder(x)
            x = x.transpose(1, 2)
        elif self.kind == "gru":
            x, _ = self.encoder(x.transpose(1, 2))
        else:
            x = x.transpose(1, 2)
            x = self.encoder(x + sinusoidal_positions(x.shape[1], x.shape[2], x.device, x.dtype))
        return torch.sigmoid(self.head(x))


def sinusoidal_positions(length: int, dim: int, device, dtype) -> torch.Tensor:
    position = torch.arange(length, device=device, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim, device=device)
    table[:, 0::2] = torch.sin(position * freq)
    table[:, 1::2] = torch.cos(position * freq[: dim // 2])
    return table.to(dtype)


def blendshape_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
                    velocity_weight: float = 0.0, channel_weight: torch.Tensor | None = None) -> torch.Tensor:
    """Masked MSE plus `velocity_weight` times the masked MSE of frame-to-frame differences.

    `mask` is bool [B, T, C]; masked entries (absent channels, padded frames) add nothing.
    The velocity term uses a difference only where both of its frames are valid.
    `channel_weight` [C] scales each channel's squared errors (see `inverse_variance_weights`);
    the normaliser still counts valid entries, so weights averaging 1 keep the loss scale.
    """
    valid = mask.to(pred.dtype)
    weight = valid if channel_weight is None else valid * channel_weight
    loss = ((pred - target).pow(2) * weight).sum() / valid.sum().clamp_min(1.0)
    if velocity_weight > 0:
        dvalid = valid[:, 1:] * valid[:, :-1]
        dweight = dvalid if channel_weight is None else dvalid * channel_weight
        dpred = pred[:, 1:] - pred[:, :-1]
        dtarget = target[:, 1:] - target[:, :-1]
        velocity = ((dpred - dtarget).pow(2) * dweight).sum() / dvalid.sum().clamp_min(1.0)
        loss = loss + velocity_weight * velocity
    return loss


def inverse_variance_weights(targets: np.ndarray, mask: np.ndarray, floor: float = 1e-4) -> np.ndarray:
    """Per-channel loss weights 1 / max(variance, floor), scaled to mean 1 over present channels.

    Lip-sync targets are dominated by jawOpen: a channel such as mouthRollUpper with a tenth
    of jawOpen's standard deviation contributes a hundredth of its squared error, so plain
    MSE barely trains it. Equalising by variance trains every channel's shape; the floor
    (a standard deviation of 0.01) keeps near-constant channels from dominating instead.
    """
    variance = targets.astype(np.float64).var(axis=0)
    weights = 1.0 / np.maximum(variance, floor)
    weights[~mask] = 0.0
    if mask.any():
        weights /= weights[mask].mean()
    return weights.astype(np.float32)
