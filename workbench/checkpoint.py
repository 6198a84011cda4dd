"""Checkpoints: atomic save, and `weights_only=True` load with a shape check.

A checkpoint holds only tensors and plain Python containers, so `torch.load` never needs
to unpickle arbitrary objects.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from workbench.atomic import atomic_open
from workbench.errors import CheckpointError

FORMAT_VERSION = 1


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write `state` to `path` atomically; a failure keeps the previous file intact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path, "wb") as f:
        torch.save({"format_version": FORMAT_VERSION, **state}, f)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for foreign or corrupt files
        raise CheckpointError(
            f"{path} is not a readable workbench checkpoint ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); "
            "pass a checkpoints/last.pt or best.pt from a run folder"
        ) from None
    if not isinstance(state, dict) or "model" not in state or "model_hparams" not in state:
        raise CheckpointError(f"{path} is not a workbench checkpoint (no model state); pass checkpoints/best.pt of a run")
    return state


def load_model(path: str | Path, map_location: str | torch.device = "cpu"):
    """Rebuild the model stored in a checkpoint; returns (model in eval mode, checkpoint dict)."""
    from workbench.model import BlendshapeModel

    state = load_checkpoint(path, map_location)
    try:
        model = BlendshapeModel(**state["model_hparams"])
        model.load_state_dict(state["model"])
    except (TypeError, RuntimeError) as exc:
        raise CheckpointError(
            f"{path}: the stored weights do not fit the stored model shape ({str(exc).splitlines()[0][:200]})"
        ) from None
    return model.eval(), state
