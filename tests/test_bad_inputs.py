"""Catalogue of bad input: each case raises a WorkbenchError naming the file or key, and the
CLI prints it as one `error: ...` line with exit status 2, before any run folder exists.

Decisions recorded here:
- Duplicated label rows in a CSV with a time column repeat a timestamp, which is rejected
  ("the time column must increase"); rows without timestamps (Audio2Face JSON) cannot be told
  from a held pose and are accepted.
- Labels up to data.max_length_mismatch_seconds (0.5 s) longer or shorter than the audio are
  trimmed with a warning; beyond that the clip is rejected, e.g. 6 s of labels on 5 s of audio.
- 8 kHz, 96 kHz and stereo audio, and a WAV whose header claims more data than it has, are
  valid input: they are resampled, downmixed, or read to their real end.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from workbench import cli
from workbench.audio import read_audio
from workbench.errors import WorkbenchError
from workbench.trainer import train

from conftest import REPO_ROOT

FPS = 30


def write_wav(path: Path, seconds: float = 2.0, rate: int = 16000, channels: int = 1, subtype: str = "PCM_16"):
    t = np.arange(int(seconds * rate)) / rate
    tone = (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t)) / 2).astype(np.float32)
    data = np.stack([tone] * channels, axis=1) if channels > 1 else tone
    sf.write(path, data, rate, subtype=subtype)


def write_labels(path: Path, seconds: float = 2.0, header: str = "time,jawOpen,mouthClose", rows=None):
    if rows is None:
        n = int(seconds * FPS)
        rows = [f"{i / FPS:.5f},{0.5 + 0.4 * np.sin(i / 5):.4f},{0.1:.4f}" for i in range(n)]
    path.write_text(header + "\n" + "\n".join(rows) + "\n")


def good_clip(folder: Path, name: str, seconds: float = 2.0):
    write_wav(folder / f"{name}.wav", seconds)
    write_labels(folder / f"{name}.csv", seconds)


def dataset(tmp: Path) -> Path:
    """A folder with the good clip `b`; each case adds its clip `a`."""
    root = tmp / "data"
    root.mkdir()
    good_clip(root, "b")
    return root


def a2f(root: Path, **changes) -> None:
    export = {"exportFps": 30.0, "numPoses": 1, "numFrames": 60, "facsNames": ["jawOpen"],
              "weightMat": [[0.2]] * 60}
    export.update(changes)
    for key in [k for k, v in changes.items() if v is None]:
        del export[key]
    (root / "a.json").write_text(json.dumps(export))
    write_wav(root / "a.wav")


def _audio_empty(root):
    (root / "a.wav").write_bytes(b"")
    write_labels(root / "a.csv")


def _audio_truncated_header(root):
    write_wav(root.parent / "full.wav")
    (root / "a.wav").write_bytes((root.parent / "full.wav").read_bytes()[:30])
    write_labels(root / "a.csv")


def _audio_csv_renamed(root):
    write_labels(root / "a.wav")
    write_labels(root / "a.csv")


def _audio_nan(root):
    data = np.full(32000, 0.1, np.float32)
    data[1000] = np.nan
    sf.write(root / "a.wav", data, 16000, subtype="FLOAT")
    write_labels(root / "a.csv")


def _labels(header=None, rows=None, seconds=2.0, audio_seconds=2.0):
    def build(root):
        write_wav(root / "a.wav", audio_seconds)
        write_labels(root / "a.csv", seconds, **({"header": header} if header else {}),
                     **({"rows": rows} if rows is not None else {}))
    return build


def _npy(array, **save_args):
    def build(root):
        write_wav(root / "a.wav")
        np.save(root / "a.npy", array, **save_args)
    return build


def _folder(builder):
    def build(root):
        for path in root.iterdir():
            path.unlink()
        builder(root)
    return build


def _unlabeled(root):
    for path in root.iterdir():
        path.unlink()
    write_wav(root / "a.wav")
    write_labels(root / "b.csv")


def _one_clip(root):
    pass  # the folder holds only clip b, but val_clips=1 needs a second clip


ROWS = [f"{i / FPS:.5f},0.5,0.1" for i in range(60)]

# id -> (build the folder, extra overrides, fragments the message must contain)
CASES = {
    "audio_zero_bytes": (_audio_empty, [], ["a.wav", "empty (0 bytes)"]),
    "audio_truncated_header": (_audio_truncated_header, [], ["a.wav", "cannot read audio"]),
    "audio_csv_renamed_wav": (_audio_csv_renamed, [], ["a.wav", "cannot read audio"]),
    "audio_nan_samples": (_audio_nan, [], ["a.wav", "NaN or Inf samples", "sample 1000"]),
    "labels_empty_file": (_labels(rows=[]), [], ["a.csv", "no data rows"]),
    "labels_missing_columns": (_labels(header="time,foo,bar"), [], ["a.csv", "no column is named after an ARKit"]),
    "labels_misspelled_names": (_labels(header="time,JawOpn,mouthClse"), [],
                                ["a.csv", "did you mean jawOpen for 'JawOpn'"]),
    "labels_nan_cell": (_labels(rows=ROWS[:5] + ["0.16667,,0.1"] + ROWS[6:]), [],
                        ["a.csv", "empty (NaN) cell in column 'jawOpen'", "line 7"]),
    "labels_value_above_one": (_labels(rows=ROWS[:3] + ["0.10000,5.0,0.1"] + ROWS[4:]), [],
                               ["a.csv", "value 5 at row 3", "far outside [0, 1]"]),
    "labels_value_below_zero": (_labels(rows=ROWS[:3] + ["0.10000,-0.5,0.1"] + ROWS[4:]), [],
                                ["a.csv", "value -0.5", "far outside [0, 1]"]),
    "labels_percent_scale": (_labels(rows=[f"{i / FPS:.5f},50,10" for i in range(60)]), [],
                             ["a.csv", "0-100 scale needs dividing by 100"]),
    "labels_time_decreasing": (_labels(rows=[f"{(60 - i) / FPS:.5f},0.5,0.1" for i in range(60)]), [],
                               ["a.csv", "the time column must increase"]),
    "labels_duplicated_rows": (_labels(rows=ROWS[:10] + ROWS[9:]), [], ["a.csv", "the time column must increase",
                                                                         "data row 10"]),
    "labels_20_percent_longer": (_labels(seconds=6.0, audio_seconds=5.0), [],
                                 ["a.wav", "a.csv", "lasts 5.01 s", "last 6.00 s"]),
    "a2f_negative_fps": (lambda root: a2f(root, exportFps=-30), [], ["a.json", "exportFps must be a positive number"]),
    "a2f_zero_fps": (lambda root: a2f(root, exportFps=0), [], ["a.json", "exportFps must be a positive number"]),
    "a2f_missing_key": (lambda root: a2f(root, weightMat=None), [], ["a.json", "missing Audio2Face key(s) weightMat"]),
    "a2f_frame_count_mismatch": (lambda root: a2f(root, numFrames=61), [],
                                 ["a.json", "numFrames is 61 but weightMat has 60 rows"]),
    "facegood_wrong_shape": (_npy(np.zeros((60, 10), np.float32)), [], ["a.npy", "[frames, 116]"]),
    "npy_pickled_objects": (_npy(np.array([{"x": 1}], dtype=object), allow_pickle=True), [],
                            ["a.npy", "not a plain numeric .npy array"]),
    "folder_missing": (lambda root: None, ["data.root={root}/missing"], ["data folder not found", "/missing"]),
    "folder_empty": (_folder(lambda root: None), [], ["no audio files", "/data"]),
    "folder_no_matching_pairs": (_unlabeled, [], ["has a label file", "a.wav"]),
    "folder_one_broken_clip": (_labels(header="time,foo"), ["data.on_bad_clip=error"],
                               ["a.csv", "set data.on_bad_clip=skip"]),
    "folder_single_clip": (_one_clip, [], ["data.val_clips=1", "only 1 clip"]),
    "data_root_unset": (lambda root: None, ["data.root=''"], ["data.root is not set"]),
    "config_unknown_key": (good_clip_a := (lambda root: good_clip(root, "a")), ["training.typo=1"],
                           ["unknown config key", "training.typo"]),
    "config_wrong_type": (good_clip_a, ["training.max_epochs=many"], ["training.max_epochs", "many"]),
    "config_negative_epochs": (good_clip_a, ["training.max_epochs=-1"], ["training.max_epochs", "-1"]),
    "config_zero_batch_size": (good_clip_a, ["training.batch_size=0"], ["training.batch_size", "integer >= 1"]),
    "config_log_freq_zero": (good_clip_a, ["logging.log_freq=0"], ["logging.log_freq"]),
    "config_validation_freq_too_large": (good_clip_a, ["training.validation_freq=5"],
                                         ["training.validation_freq=5", "training.max_epochs=1"]),
    "config_unknown_choice": (good_clip_a, ["model.kind=lstm"], ["model.kind", "lstm", "gru"]),
    "config_unknown_best_metric": (good_clip_a, ["training.best_metric=accuracy"],
                                   ["training.best_metric='accuracy'", "mean_correlation"]),
    "config_override_without_value": (good_clip_a, ["training.max_epochs"], ["'training.max_epochs'", "key=value"]),
    "run_root_under_a_file": (good_clip_a, ["run.root={root}/b.wav/runs"], ["run.root", "b.wav is a file"]),
}


def base_overrides(root: Path, tmp: Path) -> list[str]:
    return [f"data.root={root}", "data.window_seconds=1.0", f"features.cache_dir={tmp / 'cache'}",
            f"run.root={tmp / 'runs'}", "model.hidden=16", "model.rnn_layers=1", "training.max_epochs=1",
            "training.batch_size=4", "training.device=cpu", "logging.progress_bar=false",
            "logging.figure_freq=0", "logging.histogram_freq=0", "logging.audio_freq=0"]


@pytest.mark.parametrize("case", CASES)
def test_bad_input(case, tmp_path, capsys):
    build, extra, fragments = CASES[case]
    root = dataset(tmp_path)
    build(root)
    overrides = base_overrides(root, tmp_path) + [o.format(root=root) for o in extra]
    config = str(REPO_ROOT / "configs" / "default.yaml")

    with pytest.raises(WorkbenchError) as info:
        train(config, overrides)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    assert info.value.__cause__ is None, "a library exception leaks as the cause"

    capsys.readouterr()
    assert cli.main(["train", "-c", config, *overrides]) == 2
    err = capsys.readouterr().err
    assert err == f"error: {message}\n"
    assert "Traceback" not in err
    assert not list((tmp_path / "runs").rglob("config.yaml")), "a run folder was created"


def test_resume_of_missing_folder_is_one_line(tmp_path, capsys):
    assert cli.main(["train", "--resume", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot resume ")
    assert "nope" in err
    assert err.count("\n") == 1


def test_missing_config_file_is_one_line(tmp_path, capsys):
    assert cli.main(["train", "-c", str(tmp_path / "missing.yaml")]) == 2
    assert capsys.readouterr().err.startswith(f"error: config file not found: {tmp_path / 'missing.yaml'}")


def _header_claims_ten_hours(path: Path):
    write_wav(path, 2.0)
    data = bytearray(path.read_bytes())
    at = data.find(b"data")
    claimed = 10 * 3600 * 16000 * 2
    data[at + 4:at + 8] = struct.pack("<I", claimed)
    data[4:8] = struct.pack("<I", claimed + 36)
    path.write_bytes(bytes(data))


GOOD_AUDIO = {
    "8khz": lambda p: write_wav(p, rate=8000),
    "96khz": lambda p: write_wav(p, rate=96000, subtype="PCM_24"),
    "stereo": lambda p: write_wav(p, channels=2),
    "header_claims_10_hours": _header_claims_ten_hours,
}


@pytest.mark.parametrize("kind", GOOD_AUDIO)
def test_unusual_audio_trains(kind, tmp_path):
    root = dataset(tmp_path)
    GOOD_AUDIO[kind](root / "a.wav")
    write_labels(root / "a.csv")
    audio = read_audio(root / "a.wav")
    assert audio.shape == (32000,)
    assert float(audio.abs().max()) > 0.1

    run_dir = train(str(REPO_ROOT / "configs" / "default.yaml"), base_overrides(root, tmp_path) + ["data.val_clips=0"])
    assert json.loads((run_dir / "status.json").read_text())["state"] == "completed"


def test_broken_clip_skipped_with_warning(tmp_path, caplog):
    root = dataset(tmp_path)
    good_clip(root, "c")
    (root / "a.wav").write_bytes(b"")
    write_labels(root / "a.csv")
    run_dir = train(str(REPO_ROOT / "configs" / "default.yaml"),
                    base_overrides(root, tmp_path) + ["data.on_bad_clip=skip"])
    assert json.loads((run_dir / "status.json").read_text())["state"] == "completed"
    assert "skipping clip a:" in (run_dir / "train.log").read_text() or "skipping clip a:" in caplog.text
