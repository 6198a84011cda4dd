"""Train real short runs on real speech and read every run artefact back."""

import csv
import json
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
import soundfile as sf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from workbench.errors import WorkbenchError
from workbench.trainer import train

from conftest import REPO_ROOT


def tiny_overrides(data_root, run_root, cache_dir, epochs=2):
    return [
        f"data.root={data_root}", "data.max_clips=2", "data.window_seconds=1.0", "data.window_hop_seconds=1.0",
        f"features.cache_dir={cache_dir}", "model.kind=gru", "model.hidden=32", "model.rnn_layers=1",
        f"training.max_epochs={epochs}", "training.batch_size=32", "logging.log_freq=2",
        "logging.audio_freq=1", f"run.root={run_root}", "run.name=e2e",
    ]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("features")


@pytest.fixture(scope="module")
def run_dir(facegood_dir, tmp_path_factory, cache_dir):
    root = tmp_path_factory.mktemp("runs")
    return train(REPO_ROOT / "configs" / "default.yaml", tiny_overrides(facegood_dir, root, cache_dir))


def read_events(run_dir):
    acc = EventAccumulator(str(run_dir / "logs"), size_guidance={"scalars": 0, "histograms": 0, "images": 0,
                                                                  "audio": 0, "tensors": 0})
    acc.Reload()
    return acc


def test_run_folder_layout(run_dir):
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", run_dir.parent.name)
    assert re.fullmatch(r"\d{2}-\d{2}-\d{2}-e2e", run_dir.name)
    for name in ("config.yaml", "train.log", "metrics.csv", "status.json", "checkpoints/last.pt", "checkpoints/best.pt"):
        assert (run_dir / name).is_file(), name
    assert json.loads((run_dir / "status.json").read_text())["state"] == "completed"


def test_step_scalars_on_global_step_axis(run_dir):
    acc = read_events(run_dir)
    steps_per_epoch = json.loads((run_dir / "status.json").read_text())["global_step"] // 2
    for tag in ("train/loss", "train/learning_rate", "train/grad_norm"):
        steps = [e.step for e in acc.Scalars(tag)]
        assert steps == list(range(2, 2 * steps_per_epoch + 1, 2)), tag


def test_epoch_scalars_on_epoch_axis(run_dir):
    acc = read_events(run_dir)
    for tag in ("train/mae", "train/mse", "train/mean_correlation", "val/mae", "val/mse", "val/mean_correlation",
                "val/loss"):
        assert [e.step for e in acc.Scalars(tag)] == [0, 1], tag


def test_metrics_csv(run_dir):
    with open(run_dir / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["epoch"] for r in rows] == ["0", "1"]
    header = list(rows[0].keys())
    assert header[:5] == ["epoch", "loss", "mae", "mse", "mean_correlation"]
    assert "val_mean_correlation" in header
    assert all(float(r["val_mae"]) > 0 for r in rows)


def test_train_log_format(run_dir):
    text = (run_dir / "train.log").read_text()
    line = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2},\d{3} - (INFO|WARNING|DEBUG|ERROR) - ")
    first_lines = [l for l in text.splitlines() if line.match(l)]
    assert any("Starting training..." in l for l in first_lines)
    assert "Epoch   1/2" in text
    assert "-" * 50 in text
    assert "Train Metrics:\n  loss: " in text
    assert "Validation Metrics:\n  loss: " in text
    assert "tensorboard --logdir" in text


def test_config_yaml_is_resolved(run_dir):
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(run_dir / "config.yaml")
    assert cfg.training.max_epochs == 2
    assert cfg.model.hidden == 32


def test_validation_freq_leaves_val_cells_empty(facegood_dir, tmp_path, cache_dir):
    overrides = tiny_overrides(facegood_dir, tmp_path, cache_dir, epochs=3) + [
        "training.validation_freq=2", "logging.histogram_freq=0", "logging.figure_freq=0", "logging.audio_freq=0"]
    run_dir = train(REPO_ROOT / "configs" / "default.yaml", overrides)
    with open(run_dir / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    # Validation runs when epoch % 2 == 0 and at the last epoch: 0 and 2.
    assert [r["val_mae"] != "" for r in rows] == [True, False, True]
    assert [e.step for e in read_events(run_dir).Scalars("val/mae")] == [0, 2]


def test_cli_train_prints_run_folder(facegood_dir, tmp_path, cache_dir):
    overrides = tiny_overrides(facegood_dir, tmp_path, cache_dir, epochs=1)
    result = subprocess.run([sys.executable, "-m", "workbench", "train", *overrides],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert re.search(r"^Run folder: .*e2e$", result.stdout, re.M)


def test_run_notebook_files_executed_notebook(facegood_dir, tmp_path, cache_dir):
    import nbformat

    overrides = tiny_overrides(facegood_dir, tmp_path, cache_dir, epochs=1)
    result = subprocess.run([sys.executable, "-m", "workbench", "run-notebook", *overrides],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    run_dir = tmp_path / re.search(r"^Run folder: (.*)$", result.stdout, re.M).group(1).split(str(tmp_path) + "/")[1]
    nb = nbformat.read(run_dir / "train.ipynb", as_version=4)
    outputs = [o for c in nb.cells for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "Epoch   1/1" in text
    assert (run_dir / "checkpoints" / "best.pt").is_file()


def _bad_input_cases(tmp_path, facegood_dir):
    wav_only = tmp_path / "wav_only"
    wav_only.mkdir()
    sf.write(wav_only / "a.wav", np.zeros(16000, np.float32), 16000)

    bad_columns = tmp_path / "bad_columns"
    bad_columns.mkdir()
    sf.write(bad_columns / "a.wav", np.zeros(16000, np.float32), 16000)
    (bad_columns / "a.csv").write_text("Timecode,BlendShapeCount,JawOpn\n00:00:00:00.000,1,0.1\n")

    empty_audio = tmp_path / "empty_audio"
    empty_audio.mkdir()
    (empty_audio / "a.wav").write_bytes(b"")
    (empty_audio / "a.csv").write_text("time,jawOpen\n0.0,0.1\n0.1,0.2\n")

    return [
        (["data.root=" + str(tmp_path / "missing")], "data folder not found"),
        (["data.root=" + str(wav_only)], "a.wav"),
        (["data.root=" + str(bad_columns)], "a.csv"),
        (["data.root=" + str(empty_audio)], "a.wav"),
        ([f"data.root={facegood_dir}", "training.typo=1"], "training.typo"),
    ]


def test_bad_input_stops_before_run_folder(tmp_path, facegood_dir):
    runs = tmp_path / "runs"
    for overrides, fragment in _bad_input_cases(tmp_path, facegood_dir):
        with pytest.raises(WorkbenchError) as info:
            train(REPO_ROOT / "configs" / "default.yaml", overrides + [f"run.root={runs}"])
        assert fragment in str(info.value), (overrides, str(info.value))
        assert not runs.exists() or not any(runs.rglob("config.yaml")), overrides


def test_cli_bad_input_is_one_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "workbench", "train", f"data.root={tmp_path / 'missing'}"],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.startswith("error: data folder not found")
    assert "Traceback" not in result.stderr


def test_checkpoint_records_trained_channels(run_dir):
    from workbench.checkpoint import load_checkpoint

    state = load_checkpoint(run_dir / "checkpoints" / "best.pt")
    # FACEGOOD labels map to the 27 ARKit jaw and mouth shapes only.
    assert state["channel_mask"].dtype == torch.bool
    assert int(state["channel_mask"].sum()) == 27


def test_train_log_names_data_split(run_dir):
    text = (run_dir / "train.log").read_text()
    assert re.search(r" - INFO - data: 1 train clips \(\d+ windows of 100 frames\), 1 val clips \(1114_2_0\d\)", text)
    assert " - INFO - model: gru, " in text
