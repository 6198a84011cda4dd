"""Sweep files and a real sweep through the training notebook, including failed points."""

import json
import os

import pytest
import yaml

from workbench.errors import ConfigError
from workbench.run_reader import RunData
from workbench.sweep import load_sweep, point_label, point_overrides, read_results, run_sweep


def _tiny_fixed(facegood_dir, tmp_path):
    return {
        "data.root": str(facegood_dir), "data.max_clips": 2, "data.window_hop_seconds": 4.0,
        "training.max_epochs": 1, "model.kind": "conv", "model.hidden": 16, "logging.audio_freq": 0,
        "run.root": str(tmp_path / "runs"), "features.cache_dir": str(tmp_path / "cache"),
    }


def _write(tmp_path, content, name="sweep.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(content, sort_keys=False), encoding="utf-8")
    return path


def test_grid_expands_to_product(tmp_path):
    path = _write(tmp_path, {"fixed": {"run.root": str(tmp_path)},
                             "grid": {"training": {"lr": [0.001, 0.003]}, "model.hidden": [32, 64]}})
    spec = load_sweep(path)
    assert spec.name == "sweep"
    assert spec.jobs == 1
    assert spec.varied_keys == ["training.lr", "model.hidden"]
    assert spec.points == [{"training.lr": 0.001, "model.hidden": 32}, {"training.lr": 0.001, "model.hidden": 64},
                           {"training.lr": 0.003, "model.hidden": 32}, {"training.lr": 0.003, "model.hidden": 64}]
    labels = [point_label(i, p) for i, p in enumerate(spec.points)]
    assert labels[1] == "p01-lr=0.001,hidden=64"
    assert len(set(labels)) == 4
    overrides = point_overrides(spec, spec.points[3], tmp_path / "sweep")
    assert overrides == ["training.lr=0.003", "model.hidden=64", f"run.root={tmp_path / 'sweep'}"]


@pytest.mark.parametrize("content, message", [
    ({"grid": {"training.lr": [1]}, "points": [{"training.lr": 1}]}, "exactly one of grid"),
    ({}, "exactly one of grid"),
    ({"grid": {"training.lr": 0.001}}, "needs a non-empty list"),
    ({"grid": {"training.lr": []}}, "needs a non-empty list"),
    ({"points": []}, "non-empty list"),
    ({"points": [3]}, "point 0 .* must be a mapping"),
    ({"grid": {"training.lr": [1]}, "jobs": 0}, "invalid jobs 0"),
    ({"grid": {"training.lr": [1]}, "gird": {}}, "unknown key"),
    ({"grid": {"training.lr": [1]}, "fixed": {"run.name": "x"}}, "run.name"),
    ({"points": [{"run.root": "/tmp"}]}, "run.root"),
    ({"grid": {"training.lr": [1]}, "base_config": "configs/missing.yaml"}, "base_config .* not found"),
    ({"grid": {"training.lr": [1]}, "name": "a b"}, "invalid sweep name"),
])
def test_invalid_sweep_file(tmp_path, content, message):
    with pytest.raises(ConfigError, match=message):
        load_sweep(_write(tmp_path, content))


def test_missing_sweep_file(tmp_path):
    with pytest.raises(ConfigError, match="sweep file not found"):
        load_sweep(tmp_path / "nothing.yaml")


def test_all_points_invalid_stops_early(tmp_path, facegood_dir):
    path = _write(tmp_path, {"fixed": _tiny_fixed(facegood_dir, tmp_path),
                             "grid": {"model.hidden": [-1, 0]}})
    with pytest.raises(ConfigError, match="no point .* valid config.*model.hidden"):
        run_sweep(path)
    assert not (tmp_path / "runs").exists()


def test_sweep_records_failed_points(tmp_path, facegood_dir):
    path = _write(tmp_path, {
        "name": "mixed",
        "jobs": 2,
        "fixed": _tiny_fixed(facegood_dir, tmp_path),
        "points": [
            {"training.lr": 0.001},
            {"training.lr": 0.003},
            {"model.hidden": -1},  # rejected by the config check, never started
            {"data.root": str(tmp_path / "no-such-data")},  # fails inside the notebook
        ],
    })
    sweep_dir = run_sweep(path)

    assert sweep_dir.parent.parent == tmp_path / "runs" / "sweeps"
    assert sweep_dir.name.endswith("-mixed")
    assert (sweep_dir / "sweep.yaml").is_file()
    results = read_results(sweep_dir)
    assert len(results) == 4
    assert list(results["status"]) == ["completed", "completed", "failed", "failed"]
    assert "model.hidden" in results.loc[2, "error"]
    assert "data folder not found" in results.loc[3, "error"]
    assert list(results["training.lr"].iloc[:2]) == [0.001, 0.003]

    for row in results.iloc[:2].itertuples():
        run = RunData(row.run_dir)
        assert run.path.parent.parent == sweep_dir
        assert (run.path / "train.ipynb").is_file()
        assert run.status["state"] == "completed"
        assert row.epochs == 1
        assert row.final_val_loss == pytest.approx(run.metrics["val_loss"].iloc[-1], rel=1e-5)
        assert "hparam/val_loss" in run.scalar_tags  # the HPARAMS tab's metrics
        notebook = (run.path / "train.ipynb").read_text(encoding="utf-8")
        if "OMP_NUM_THREADS" not in os.environ:
            threads = max(1, (os.cpu_count() or 1) // 2)
            assert f"torch uses {threads} CPU threads" in notebook

    summary = json.loads((sweep_dir / "sweep.json").read_text())
    assert (summary["points"], summary["completed"], summary["failed"], summary["jobs"]) == (4, 2, 2, 2)
    assert summary["wall_s"] > 0
    assert (sweep_dir / "results.png").read_bytes().startswith(b"\x89PNG")
