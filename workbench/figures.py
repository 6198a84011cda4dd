"""Figures and sample files for TensorBoard and the notebook viewers.

Figures are built as bare `matplotlib.figure.Figure` objects, never through pyplot, so no
global figure registry holds on to them: memory stays flat over hundreds of epochs even if
a caller forgets to close one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from workbench.atomic import atomic_open
from workbench.arkit import ARKIT_INDEX, ARKIT_NAMES, MAIN_MOUTH_SHAPES

SAMPLE_FILE = "epoch_{epoch:04d}.npz"


def most_active_frame(targets: np.ndarray, mask: np.ndarray) -> int:
    """Return the frame with the largest summed target over present channels (a wide-open mouth)."""
    return int(np.argmax(targets[:, mask].sum(axis=1))) if mask.any() else 0


def blendshape_bars(pred: np.ndarray, target: np.ndarray, mask: np.ndarray, title: str = "") -> Figure:
    """Bars of the 52 predicted vs target values of one frame; masked targets are not drawn."""
    fig = Figure(figsize=(14, 4.5), dpi=80)
    ax = fig.add_subplot()
    x = np.arange(len(ARKIT_NAMES))
    ax.bar(x - 0.2, pred, width=0.4, label="Predicted", color="tab:blue")
    ax.bar(x[mask] + 0.2, target[mask], width=0.4, label="Target", color="tab:orange")
    ax.set_xticks(x, ARKIT_NAMES, rotation=90, fontsize=7)
    ax.set_ylim(0, 1)
    ax.set_ylabel("weight")
    ax.set_title(title)
    ax.legend(loc="upper right")
    # Fixed margins (room for the rotated names) instead of tight_layout, which costs a
    # second full text layout pass per figure.
    fig.subplots_adjust(left=0.05, right=0.99, top=0.92, bottom=0.3)
    return fig


def mouth_time_series(pred: np.ndarray, target: np.ndarray, mask: np.ndarray, frame_rate: float,
                      title: str = "") -> Figure:
    """Predicted (solid) vs target (dashed) curves of the main mouth shapes over the sample."""
    fig = Figure(figsize=(10, 6), dpi=80)
    names = MAIN_MOUTH_SHAPES
    axes = fig.subplots(len(names), 1, sharex=True)
    t = np.arange(pred.shape[0]) / frame_rate
    for ax, name in zip(axes, names):
        i = ARKIT_INDEX[name]
        ax.plot(t, pred[:, i], label="Predicted", color="tab:blue")
        if mask[i]:
            ax.plot(t, target[:, i], "--", label="Target", color="tab:orange")
        ax.set_ylim(0, 1)
        ax.set_ylabel(name, rotation=0, ha="right", fontsize=8)
    axes[0].legend(loc="upper right", fontsize=8)
    axes[0].set_title(title)
    axes[-1].set_xlabel("time (s)")
    fig.subplots_adjust(left=0.16, right=0.98, top=0.94, bottom=0.09, hspace=0.15)
    return fig


def mel_figure(mel: np.ndarray, frame_rate: float, title: str = "") -> Figure:
    """Log-mel [frames, n_mels] as a spectrogram: time to the right, low mel bins at the bottom.

    The colour scale spans the 1st to 99.5th percentile of the values, so a few silent or
    clipped frames do not wash out the speech, and a colour bar labels it.
    """
    fig = Figure(figsize=(10, 3.5), dpi=80)
    ax = fig.add_subplot()
    lo, hi = np.percentile(mel, [1, 99.5])
    duration = mel.shape[0] / frame_rate
    image = ax.imshow(mel.T, origin="lower", aspect="auto", cmap="magma", vmin=lo, vmax=max(hi, lo + 1e-6),
                      extent=(0.0, duration, 0, mel.shape[1]), interpolation="nearest")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("mel bin")
    ax.set_title(title)
    fig.subplots_adjust(left=0.07, right=0.92, top=0.9, bottom=0.16)
    fig.colorbar(image, ax=ax, label="log power (ln)", fraction=0.05, pad=0.02)
    return fig


def save_sample_predictions(folder: Path, epoch: int, samples: list[dict[str, Any]],
                            predictions: list[np.ndarray]) -> Path:
    """Store the fixed samples' predictions and targets for offline viewers (atomic write).

    `samples/info.json` describes the samples once; `samples/epoch_NNNN.npz` contains arrays
    `pred_<i>` [T, 52] for that epoch. Targets, masks and audio do not change between epochs
    and live in `samples/reference.npz`.
    """
    folder.mkdir(parents=True, exist_ok=True)
    reference = folder / "reference.npz"
    if not reference.is_file():
        arrays = {}
        for i, s in enumerate(samples):
            arrays[f"target_{i}"] = s["targets"]
            arrays[f"mask_{i}"] = s["channel_mask"]
            arrays[f"audio_{i}"] = s["audio"].astype(np.float32)
            arrays[f"mel_{i}"] = s["mel"].astype(np.float16)
        _atomic_savez(reference, arrays)
        info = {
            "samples": [{"name": s["name"], "clip": s["clip"], "start_frame": s["start_frame"],
                         "num_frames": int(s["targets"].shape[0])} for s in samples],
            "frame_rate": samples[0]["frame_rate"],
            "sample_rate": samples[0]["sample_rate"],
            "blendshapes": list(ARKIT_NAMES),
        }
        (folder / "info.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")

    path = folder / SAMPLE_FILE.format(epoch=epoch)
    _atomic_savez(path, {f"pred_{i}": p.astype(np.float32) for i, p in enumerate(predictions)})
    return path


def _atomic_savez(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with atomic_open(path, "wb", fsync=False) as f:
        np.savez_compressed(f, **arrays)
