"""Execute each notebook with papermill on tiny parameters and check what the saved copy shows."""

import json
from pathlib import Path

import papermill as pm
import pytest
import yaml

from workbench.notebook_run import PROJECT_ROOT, execute_training_notebook

NOTEBOOKS = PROJECT_ROOT / "notebooks"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def _tiny_overrides(facegood_dir, root, cache):
    return [f"data.root={facegood_dir}", "data.max_clips=2", "data.window_hop_seconds=4.0",
            "training.max_epochs=2", "model.kind=conv", "model.hidden=16", "logging.audio_freq=0",
            f"run.root={root}", f"features.cache_dir={cache}"]


def _outputs(path: Path) -> list[dict]:
    notebook = json.loads(path.read_text(encoding="utf-8"))
    return [output for cell in notebook["cells"] if cell["cell_type"] == "code" for output in cell["outputs"]]


def _stdout(outputs: list[dict]) -> str:
    return "".join("".join(o["text"]) for o in outputs if o["output_type"] == "stream" and o["name"] == "stdout")


def _count(outputs: list[dict], mime: str) -> int:
    return sum(1 for o in outputs if mime in o.get("data", {}))


def _execute(notebook: str, output: Path, parameters: dict) -> list[dict]:
    pm.execute_notebook(str(NOTEBOOKS / notebook), str(output), parameters=parameters, cwd=str(PROJECT_ROOT),
                        progress_bar=False)
    return _outputs(output)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, facegood_dir):
    root = tmp_path_factory.mktemp("runs")
    cache = tmp_path_factory.mktemp("cache")
    run_dir = execute_training_notebook(overrides=_tiny_overrides(facegood_dir, root, cache), run_name="nb")
    return root, run_dir


def test_train_notebook_saved_record(trained):
    _, run_dir = trained
    outputs = _outputs(run_dir / "train.ipynb")
    stdout = _stdout(outputs)

    assert not [o for o in outputs if o["output_type"] == "error"]
    for epoch in (1, 2):
        assert f"Epoch {epoch:3d}/2\n" + "-" * 50 + "\nTrain Metrics:" in stdout
    assert stdout.count("Validation Metrics:") == 2
    assert "Starting training..." in stdout
    # Headless runs have no tqdm widgets, whose saved text would stay at 0%.
    assert not any("0%|" in "".join(o.get("data", {}).get("text/plain", "")) for o in outputs)
    assert "logging.progress_bar" not in stdout
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["logging"]["progress_bar"] is False
    assert _count(outputs, "image/png") == 1  # the static curves
    assert _count(outputs, WIDGET_VIEW) == 2  # histogram and prediction viewers
    assert "TensorBoard" in stdout or _count(outputs, "text/html") >= 1


def test_explore_notebook_on_newest_run(trained, tmp_path):
    root, run_dir = trained
    outputs = _execute("explore_run.ipynb", tmp_path / "explore.ipynb", {"runs_root": str(root)})
    stdout = _stdout(outputs)

    assert not [o for o in outputs if o["output_type"] == "error"]
    assert f"Run folder: {run_dir}" in stdout
    assert '"state": "completed"' in stdout
    assert "Diagnosis:" in stdout
    html = "".join("".join(o["data"]["text/html"]) for o in outputs if "text/html" in o.get("data", {}))
    assert "val_mean_correlation" in html  # the metrics table
    assert _count(outputs, "image/png") == 1
    assert _count(outputs, WIDGET_VIEW) == 2


def test_sweep_notebook_one_point(tmp_path, facegood_dir):
    sweep_file = tmp_path / "one.yaml"
    fixed = dict(item.split("=", 1) for item in _tiny_overrides(facegood_dir, tmp_path / "runs", tmp_path / "cache"))
    fixed["training.max_epochs"] = 1
    sweep_file.write_text(yaml.safe_dump({"name": "one", "fixed": fixed, "points": [{"training.lr": 0.002}]}))
    outputs = _execute("sweep.ipynb", tmp_path / "sweep.ipynb", {"sweep_file": str(sweep_file), "jobs": 1})

    assert not [o for o in outputs if o["output_type"] == "error"]
    sweep_dirs = list((tmp_path / "runs" / "sweeps").glob("*/*-one"))
    assert len(sweep_dirs) == 1
    assert f"Sweep folder: {sweep_dirs[0]}" in _stdout(outputs)
    tables = [o["data"]["text/html"] for o in outputs if "text/html" in o.get("data", {})]
    assert any("p00-lr=0.002" in "".join(t) and "completed" in "".join(t) for t in tables)
    assert _count(outputs, "image/png") == 1
