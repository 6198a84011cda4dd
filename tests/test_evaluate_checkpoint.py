"""Checkpoint evaluation on a labelled FACEGOOD subset: results, table, JSON and its location."""

import json
import shutil

import numpy as np
import pytest
import torch

from workbench.cli import main as cli_main
from workbench.dataset import load_clips
from workbench.errors import CheckpointError, DataError
from workbench.evaluate_checkpoint import default_results_path, evaluate_checkpoint
from workbench.features import FeatureCache, FeatureSettings
from tiny_run import trained_tiny_run

CLIPS = ("1114_3_15", "1114_2_01")
POOLED_KEYS = {"mae", "mse", "mean_correlation", "constant_channels", "mae_jaw_mouth", "velocity_mae",
               "silence_jaw_open", "lag_frames"}


@pytest.fixture(scope="module")
def run_dir(facegood_dir, tmp_path_factory):
    return trained_tiny_run(facegood_dir, tmp_path_factory)


@pytest.fixture(scope="module")
def checkpoint(run_dir):
    return run_dir / "checkpoints" / "best.pt"


@pytest.fixture(scope="module")
def subset(facegood_dir, tmp_path_factory):
    """A FACEGOOD-layout folder with two clips, linked to the shared files."""
    folder = tmp_path_factory.mktemp("subset") / "facegood_pair"
    (folder / "wav").mkdir(parents=True)
    (folder / "bs_value").mkdir()
    for name in CLIPS:
        (folder / "wav" / f"{name}.wav").symlink_to(facegood_dir / "wav" / f"{name}.wav")
        (folder / "bs_value" / f"bs_value_{name}.npy").symlink_to(facegood_dir / "bs_value" / f"bs_value_{name}.npy")
    return folder


@pytest.fixture(scope="module")
def evaluated(checkpoint, subset):
    return evaluate_checkpoint(checkpoint, subset)


def test_results_have_all_keys(evaluated, checkpoint, subset):
    results, _, _ = evaluated

    assert results["num_clips"] == 2
    assert results["checkpoint"] == str(checkpoint)
    assert results["data_folder"] == str(subset)
    assert results["epoch"] == 0
    assert results["frame_rate"] == 100.0
    assert POOLED_KEYS <= set(results["pooled"])
    assert sorted(clip["name"] for clip in results["clips"]) == sorted(CLIPS)
    for clip in results["clips"]:
        assert POOLED_KEYS - {"constant_channels"} <= set(clip)
    assert results["num_frames"] == sum(clip["num_frames"] for clip in results["clips"])


def test_results_are_plausible(evaluated):
    pooled = evaluated[0]["pooled"]
    assert 0.0 < pooled["mae"] < 0.5
    assert 0.0 < pooled["mse"] < pooled["mae"]
    assert -1.0 <= pooled["mean_correlation"] <= 1.0
    assert 0.0 <= pooled["silence_jaw_open"] <= 1.0
    assert abs(pooled["lag_frames"]) <= 10


def test_mae_matches_direct_computation(evaluated, checkpoint, subset):
    # Recompute each clip's MAE from a whole-clip forward pass, independently of the chunking.
    from workbench.checkpoint import load_model

    model, state = load_model(checkpoint)
    cache = FeatureCache(state_cache_dir(state), FeatureSettings(**state["feature_settings"]))
    clips = load_clips(subset, cache, max_mismatch_s=0.5)
    by_name = {clip["name"]: clip for clip in evaluated[0]["clips"]}
    for clip in clips:
        with torch.no_grad():
            pred = model(torch.from_numpy(clip.mel)[None])[0].numpy()
        error = np.abs(pred - clip.targets)[:, clip.channel_mask]
        assert by_name[clip.name]["mae"] == pytest.approx(error.mean(), abs=1e-5)
        assert by_name[clip.name]["num_frames"] == clip.num_frames


def state_cache_dir(state):
    from omegaconf import OmegaConf

    return OmegaConf.create(state["config_yaml"]).features.cache_dir


def test_table_lists_clips_and_pooled(evaluated):
    table = evaluated[1]
    lines = table.splitlines()
    assert lines[0].split()[:4] == ["clip", "frames", "mae", "mse"]
    for name in CLIPS:
        assert any(line.startswith(name) for line in lines)
    assert lines[-1].startswith("pooled")


def test_json_written_in_run_folder(evaluated, run_dir, subset):
    results, _, json_path = evaluated
    assert json_path == run_dir / "evaluation" / "facegood_pair.json"

    stored = json.loads(json_path.read_text())
    assert stored["num_clips"] == 2
    assert POOLED_KEYS <= set(stored["pooled"])
    assert stored["pooled"]["mae"] == pytest.approx(results["pooled"]["mae"])
    assert len(stored["clips"]) == 2


def test_default_path_outside_run_folder(tmp_path):
    checkpoint = tmp_path / "models" / "model.pt"
    assert default_results_path(checkpoint, tmp_path / "data") == tmp_path / "models" / "model.data.json"
    assert default_results_path(checkpoint, tmp_path / "set" / "manifest.csv") == tmp_path / "models" / "model.set.json"


def test_explicit_out_path(checkpoint, subset, tmp_path):
    shutil.copy(checkpoint, tmp_path / "copy.pt")
    out = tmp_path / "results" / "eval.json"

    results, _, json_path = evaluate_checkpoint(tmp_path / "copy.pt", subset, out=out)

    assert json_path == out
    assert json.loads(out.read_text())["num_clips"] == results["num_clips"]


def test_unlabelled_folder_rejected(checkpoint, shared_data, tmp_path):
    with pytest.raises(DataError, match="no audio file .* has a label file"):
        evaluate_checkpoint(checkpoint, shared_data / "nvidia_a2f3d_samples_audio", out=tmp_path / "x.json")


def test_foreign_checkpoint_rejected(subset, tmp_path):
    foreign = tmp_path / "foreign.pt"
    torch.save({"a": 1}, foreign)
    with pytest.raises(CheckpointError, match="foreign.pt"):
        evaluate_checkpoint(foreign, subset, out=tmp_path / "x.json")


def test_cli_evaluate(checkpoint, subset, tmp_path, capsys):
    out = tmp_path / "cli.json"
    status = cli_main(["evaluate", str(checkpoint), str(subset), "-o", str(out)])

    printed = capsys.readouterr().out
    assert status == 0
    assert "pooled" in printed
    assert f"Results: {out}" in printed
    assert out.is_file()
