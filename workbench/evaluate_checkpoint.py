"""Evaluate a checkpoint on a labelled clip folder: lip-sync metrics, a table and a JSON file.

Clips are found, loaded and aligned by the dataset code, with features from the on-disk
cache configured in the checkpoint's training config (keyed by content and settings, so it is
safe to share). Each whole clip is predicted on the feature frame clock with the same chunking
as `workbench predict`, and compared to its labels by `workbench.evaluation.evaluate_clips`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from workbench.dataset import load_clips
from workbench.evaluation import evaluate_clips, format_table, write_results_json
from workbench.features import FeatureCache
from workbench.predict import DEFAULT_CHUNK_SECONDS, DEFAULT_CONTEXT_SECONDS, load_predictor, run_model_chunked

log = logging.getLogger(__name__)

DEFAULT_CACHE_DIR = ".cache/features"
DEFAULT_MAX_MISMATCH_SECONDS = 0.5


def default_results_path(checkpoint: Path, data_folder: Path) -> Path:
    """Return `<run>/evaluation/<data name>.json` for a run's `checkpoints/X.pt`, else `<X>.<data name>.json` beside it."""
    data_name = data_folder.parent.name if data_folder.name == "manifest.csv" else data_folder.name
    if checkpoint.parent.name == "checkpoints":
        return checkpoint.parent.parent / "evaluation" / f"{data_name}.json"
    return checkpoint.with_name(f"{checkpoint.stem}.{data_name}.json")


def _training_config(state: dict[str, Any]) -> Any:
    """Parse the checkpoint's resolved training config; return None when it has none or it is invalid."""
    text = state.get("config_yaml")
    if not isinstance(text, str):
        return None
    try:
        return OmegaConf.create(text)
    except OmegaConfBaseException as exc:
        log.warning("cannot parse the checkpoint's config_yaml (%s), so the default cache folder and length tolerance are used", exc)
        return None


def evaluate_checkpoint(checkpoint: str | Path, data_folder: str | Path, out: str | Path | None = None, *,
                        cache_dir: str | Path | None = None,
                        chunk_seconds: float | None = DEFAULT_CHUNK_SECONDS,
                        context_seconds: float = DEFAULT_CONTEXT_SECONDS) -> tuple[dict[str, Any], str, Path]:
    """Evaluate `checkpoint` on every clip of `data_folder`; return (results, table, JSON path).

    `results` is the `evaluate_clips` dictionary (pooled and per-clip metrics) plus
    `checkpoint`, `data_folder`, `epoch` and `frame_rate`. `cache_dir` defaults to the
    checkpoint's `features.cache_dir`.
    """
    checkpoint, data_folder = Path(checkpoint), Path(data_folder)
    predictor = load_predictor(checkpoint)
    settings = predictor.feature_settings
    config = _training_config(predictor.checkpoint)

    if cache_dir is None:
        cache_dir = OmegaConf.select(config, "features.cache_dir", default=DEFAULT_CACHE_DIR) if config else DEFAULT_CACHE_DIR
    max_mismatch = DEFAULT_MAX_MISMATCH_SECONDS
    if config is not None:
        max_mismatch = OmegaConf.select(config, "data.max_length_mismatch_seconds", default=max_mismatch)

    cache = FeatureCache(cache_dir, settings)
    clips = load_clips(data_folder, cache, max_mismatch_s=max_mismatch, on_bad_clip="error")
    log.info("evaluating %s on %d clips from %s (feature cache %d hits, %d misses)",
             checkpoint, len(clips), data_folder, cache.hits, cache.misses)

    evaluated = []
    for clip in clips:
        mel = torch.from_numpy(clip.mel)
        pred = run_model_chunked(predictor.model, lambda first, last: mel[first:last], clip.num_frames,
                                 settings.frame_rate, chunk_seconds, context_seconds)
        evaluated.append((pred, clip.targets, clip.channel_mask, clip.silence, clip.name))

    results: dict[str, Any] = {
        "checkpoint": str(checkpoint),
        "data_folder": str(data_folder),
        "epoch": predictor.checkpoint.get("epoch"),
        "frame_rate": settings.frame_rate,
        **evaluate_clips(evaluated),
    }
    table = format_table(results)

    json_path = Path(out) if out is not None else default_results_path(checkpoint, data_folder)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    write_results_json(results, json_path)
    log.info("evaluation results written to %s", json_path)
    return results, table, json_path
