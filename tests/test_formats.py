"""Label readers and writers on the real shared files and on hand-made bad inputs."""

import json
import logging

import numpy as np
import pandas as pd
import pytest
import soundfile

from workbench.arkit import ARKIT_INDEX, ARKIT_NAMES
from workbench.errors import DataError
from workbench.formats.a2f_json import read_a2f_json, write_a2f_json
from workbench.formats.facegood import ARKIT_FROM_FACEGOOD, FACEGOOD_NAMES
from workbench.formats.livelink import (
    LIVELINK_NAMES, format_timecode, read_livelink_csv, write_livelink_csv,
)
from workbench.targets import LABEL_SUFFIXES, TargetTrack, read_targets, resample_track

FACEGOOD_TAKES = ("2_01", "2_02", "2_03", "2_04", "2_05", "3_15")
# Shapes every FACEGOOD take animates; each take moves 10 to 16 of the 27 mapped shapes.
FACEGOOD_ALWAYS_MOVING = (
    "jawOpen", "mouthFunnel", "mouthRollLower", "mouthRollUpper",
    "mouthLowerDownLeft", "mouthLowerDownRight", "mouthUpperUpLeft", "mouthUpperUpRight",
)


@pytest.fixture(scope="module")
def calibrated_csv(shared_data):
    return shared_data / "neurosync_trainer_lite" / "data_20241204_MySlate_166" / "MySlate_166_iPhone_cal.csv"


@pytest.fixture(scope="module")
def generated_csv(shared_data):
    folders = sorted((shared_data / "neurosync_player_generated").glob("*/shapes.csv"))
    assert folders, "neurosync_player_generated/*/shapes.csv not found"
    return folders[0]


def write_text(path, text):
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def small_livelink(tmp_path):
    values = np.linspace(0.0, 1.0, 5 * 52).reshape(5, 52)
    path = tmp_path / "small.csv"
    write_livelink_csv(path, values)
    return path, values


# --- FACEGOOD -------------------------------------------------------------------------------

@pytest.mark.parametrize("take", FACEGOOD_TAKES)
def test_facegood_real_take(facegood_dir, take, recwarn):
    track = read_targets(facegood_dir / "bs_value" / f"bs_value_1114_{take}.npy")
    duration = soundfile.info(str(facegood_dir / "wav" / f"1114_{take}.wav")).duration

    assert track.fps == 30.0
    assert track.num_frames == int(duration * 30)
    assert track.values.dtype == np.float32
    assert track.mask.sum() == 27
    assert {ARKIT_NAMES[i] for i in np.flatnonzero(track.mask)} == set(ARKIT_FROM_FACEGOOD)
    assert np.all(track.values[:, ~track.mask] == 0)
    moving = {ARKIT_NAMES[i] for i in np.flatnonzero(track.values.std(axis=0) > 0)}
    assert moving <= set(ARKIT_FROM_FACEGOOD)
    assert set(FACEGOOD_ALWAYS_MOVING) <= moving
    assert track.values.min() >= 0
    assert track.values.max() <= 1
    # The Python 2 header warning from numpy is silenced.
    assert not [w for w in recwarn if "Python 2" in str(w.message)]


def test_facegood_max_over_sources(facegood_dir):
    path = facegood_dir / "bs_value" / "bs_value_1114_2_01.npy"
    with pytest.warns(UserWarning, match="Python 2"):
        raw = np.load(path, allow_pickle=False)
    track = read_targets(path)
    funnel = [FACEGOOD_NAMES.index(n) for n in ARKIT_FROM_FACEGOOD["mouthFunnel"]]
    np.testing.assert_allclose(track.values[:, ARKIT_INDEX["mouthFunnel"]], raw[:, funnel].max(axis=1), atol=1e-7)
    jaw = FACEGOOD_NAMES.index("mouth_stretch_c")
    np.testing.assert_allclose(track.values[:, ARKIT_INDEX["jawOpen"]], raw[:, jaw], atol=1e-7)


def test_facegood_wrong_channel_count(tmp_path):
    path = tmp_path / "rig.npy"
    np.save(path, np.zeros((10, 52)))
    with pytest.raises(DataError, match=r"rig\.npy.*\[frames, 116\].*\(10, 52\)"):
        read_targets(path)


def test_facegood_percent_scale(tmp_path):
    weights = np.zeros((20, 116))
    weights[7, FACEGOOD_NAMES.index("mouth_stretch_c")] = 80.0
    path = tmp_path / "percent.npy"
    np.save(path, weights)
    with pytest.raises(DataError, match=r"percent\.npy.*80 at row 7.*mouth_stretch_c.*0-100"):
        read_targets(path)


def test_facegood_small_excursion_clipped(tmp_path, caplog):
    weights = np.zeros((20, 116))
    weights[3, FACEGOOD_NAMES.index("mouth_stretch_c")] = 1.01
    weights[4, FACEGOOD_NAMES.index("mouth_stretch_c")] = -0.01
    path = tmp_path / "over.npy"
    np.save(path, weights)
    with caplog.at_level(logging.WARNING):
        track = read_targets(path)
    assert track.values[3, ARKIT_INDEX["jawOpen"]] == 1.0
    assert track.values[4, ARKIT_INDEX["jawOpen"]] == 0.0
    assert "clipped 2 blendshape values" in caplog.text


def test_facegood_nan_row(tmp_path):
    weights = np.zeros((20, 116))
    weights[12, 5] = np.nan
    path = tmp_path / "nan.npy"
    np.save(path, weights)
    with pytest.raises(DataError, match=r"nan\.npy: NaN or infinite weight at row 12"):
        read_targets(path)


def test_facegood_pickled_array_rejected(tmp_path):
    path = tmp_path / "objects.npy"
    np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match=r"objects\.npy: not a plain numeric"):
        read_targets(path)


# --- Live Link Face CSV ---------------------------------------------------------------------

def test_livelink_order_matches_real_header(calibrated_csv, generated_csv):
    for path in (calibrated_csv, generated_csv):
        header = path.read_text().splitlines()[0].split(",")
        assert tuple(header[2:54]) == LIVELINK_NAMES


def test_livelink_calibrated_capture(calibrated_csv):
    track = read_targets(calibrated_csv)
    table = pd.read_csv(calibrated_csv)

    assert "BlendshapeCount" in table.columns
    assert track.num_frames == 1848
    assert track.fps == 60.0  # measured from timecodes (about 59.9 fps), snapped to 60
    assert track.mask.all()
    for name in ("JawOpen", "JawLeft", "JawRight", "MouthSmileLeft", "EyeBlinkRight", "TongueOut"):
        canonical = track.values[:, ARKIT_INDEX[name[0].lower() + name[1:]]]
        np.testing.assert_allclose(canonical, table[name].to_numpy(), atol=1e-7, err_msg=name)
    assert np.all(track.values[:, ARKIT_INDEX["mouthFunnel"]] == 0)


def test_livelink_generated_with_emotions(generated_csv, caplog):
    table = pd.read_csv(generated_csv)
    timecode_frames = table["Timecode"].str.slice(9, 11)
    assert len(table.columns) == 70
    assert timecode_frames.duplicated().any()  # repeating timecodes in the source

    with caplog.at_level(logging.WARNING):
        track = read_targets(generated_csv)
    assert track.num_frames == 610
    assert track.fps == 60.0
    assert track.duration == pytest.approx(610 / 60)
    assert "clipped 8846 blendshape values" in caplog.text

    # JawRight comes before JawLeft in the file and after it in canonical order.
    for name in ("JawLeft", "JawRight", "MouthLeft", "MouthRight", "JawOpen"):
        expected = table[name].clip(0, 1).to_numpy()
        canonical = track.values[:, ARKIT_INDEX[name[0].lower() + name[1:]]]
        np.testing.assert_allclose(canonical, expected, atol=1e-7, err_msg=name)
    assert not np.allclose(track.values[:, ARKIT_INDEX["jawLeft"]], track.values[:, ARKIT_INDEX["jawRight"]])


def test_livelink_blendshape_count_spelling(tmp_path, calibrated_csv):
    lines = calibrated_csv.read_text().splitlines()[:200]
    lines[0] = lines[0].replace("BlendshapeCount", "BlendShapeCount")
    path = write_text(tmp_path / "old.csv", "\n".join(lines) + "\n")
    track = read_targets(path)
    assert track.num_frames == 199
    assert track.fps == 60.0


def test_livelink_fps_argument_wins(small_livelink):
    path, _ = small_livelink
    assert read_targets(path, fps=30.0).fps == 30.0


def test_livelink_short_take_defaults_to_60(tmp_path):
    path = tmp_path / "short.csv"
    write_livelink_csv(path, np.zeros((5, 52)), fps=25.0)  # under 2 s: rate not measurable
    assert read_targets(path).fps == 60.0


@pytest.mark.parametrize("fps", [24.0, 25.0, 30.0, 50.0, 60.0])
def test_livelink_rate_measured(tmp_path, fps):
    path = tmp_path / "take.csv"
    write_livelink_csv(path, np.zeros((int(fps * 3.5), 52)), fps=fps)
    assert read_targets(path).fps == fps


def test_livelink_round_trip(tmp_path):
    values = np.random.default_rng(0).random((130, 52)).astype(np.float32)
    path = tmp_path / "take.csv"
    write_livelink_csv(path, values, fps=60.0)
    table = pd.read_csv(path, dtype={"Timecode": str})
    track = read_livelink_csv(path)

    assert list(table.columns[:2]) == ["Timecode", "BlendshapeCount"]
    assert list(table.columns[-9:]) == [
        "HeadYaw", "HeadPitch", "HeadRoll", "LeftEyeYaw", "LeftEyePitch", "LeftEyeRoll",
        "RightEyeYaw", "RightEyePitch", "RightEyeRoll",
    ]
    assert (table["BlendshapeCount"] == 61).all()
    assert table["Timecode"][0] == "00:00:00:00.000"
    assert table["Timecode"][61] == "00:00:01:01.000"
    assert (table.iloc[:, -9:] == 0).all().all()
    assert track.fps == 60.0
    np.testing.assert_allclose(track.values, values, atol=1e-7)
    assert not list(tmp_path.glob(".*.tmp"))


def test_livelink_writer_clips_and_validates(tmp_path):
    values = np.full((3, 52), 1.5)
    values[0] = -0.2
    path = tmp_path / "clip.csv"
    write_livelink_csv(path, values)
    track = read_livelink_csv(path)
    assert track.values.min() == 0.0
    assert track.values.max() == 1.0
    with pytest.raises(DataError, match=r"bad\.csv.*\(3, 50\)"):
        write_livelink_csv(tmp_path / "bad.csv", np.zeros((3, 50)))
    assert not (tmp_path / "bad.csv").exists()


def test_timecode_format():
    assert format_timecode(0, 60.0) == "00:00:00:00.000"
    assert format_timecode(59, 60.0) == "00:00:00:59.000"
    assert format_timecode(60 * 3661 + 7, 60.0) == "01:01:01:07.000"
    assert format_timecode(1, 59.94) == "00:00:00:01.001"


def test_livelink_missing_column(tmp_path, small_livelink):
    path, _ = small_livelink
    table = pd.read_csv(path, dtype=str).drop(columns=["MouthPucker", "TongueOut"])
    table.to_csv(tmp_path / "missing.csv", index=False)
    with pytest.raises(DataError, match=r"missing\.csv: missing 2 .*MouthPucker, TongueOut"):
        read_targets(tmp_path / "missing.csv")


def test_livelink_misspelled_column(tmp_path, small_livelink):
    path, _ = small_livelink
    table = pd.read_csv(path, dtype=str).rename(columns={"JawOpen": "JawOpne"})
    table.to_csv(tmp_path / "typo.csv", index=False)
    with pytest.raises(DataError, match=r"typo\.csv: missing 1 .*JawOpen \(closest column found: 'JawOpne'\)"):
        read_targets(tmp_path / "typo.csv")


def test_livelink_nan_cell(tmp_path, small_livelink):
    path, _ = small_livelink
    table = pd.read_csv(path, dtype=str)
    table.loc[3, "MouthClose"] = ""
    table.to_csv(tmp_path / "hole.csv", index=False)
    with pytest.raises(DataError, match=r"hole\.csv: an empty \(NaN\) cell in column 'MouthClose' at data row 3 \(line 5"):
        read_targets(tmp_path / "hole.csv")


def test_livelink_text_cell(tmp_path, small_livelink):
    path, _ = small_livelink
    table = pd.read_csv(path, dtype=str)
    table.loc[1, "CheekPuff"] = "abc"
    table.to_csv(tmp_path / "text.csv", index=False)
    with pytest.raises(DataError, match=r"text\.csv: the non-numeric cell 'abc' in column 'CheekPuff' at data row 1"):
        read_targets(tmp_path / "text.csv")


def test_livelink_percent_scale(tmp_path, small_livelink):
    path, values = small_livelink
    table = pd.read_csv(path)
    table[list(LIVELINK_NAMES)] *= 100
    table.to_csv(tmp_path / "percent.csv", index=False)
    with pytest.raises(DataError, match=r"percent\.csv: blendshape value .* far outside \[0, 1\].*0-100"):
        read_targets(tmp_path / "percent.csv")


# --- Audio2Face JSON ------------------------------------------------------------------------

def test_a2f_round_trip(tmp_path):
    values = np.random.default_rng(1).random((40, 52))
    path = tmp_path / "export.json"
    write_a2f_json(path, values, fps=30.0)
    export = json.loads(path.read_text())
    track = read_targets(path)

    assert export["numPoses"] == 52
    assert export["numFrames"] == 40
    assert export["facsNames"] == list(ARKIT_NAMES)
    assert track.fps == 30.0
    assert track.mask.all()
    np.testing.assert_allclose(track.values, values, atol=1e-6)
    assert read_targets(path, fps=25.0).fps == 25.0


def a2f_export(names, rows, fps=30):
    return {"exportFps": fps, "numPoses": len(names), "numFrames": len(rows),
            "facsNames": names, "weightMat": rows}


def test_a2f_subset_and_pascal_names(tmp_path, caplog):
    export = a2f_export(["JawOpen", "mouthClose", "customPose"], [[0.5, 0.1, 0.9], [0.25, 0.2, 0.9]])
    path = write_text(tmp_path / "subset.json", json.dumps(export))
    with caplog.at_level(logging.WARNING):
        track = read_a2f_json(path)
    assert track.mask.sum() == 2
    assert track.mask[ARKIT_INDEX["jawOpen"]]
    assert track.mask[ARKIT_INDEX["mouthClose"]]
    np.testing.assert_allclose(track.values[:, ARKIT_INDEX["jawOpen"]], [0.5, 0.25])
    assert "customPose" in caplog.text


def test_a2f_frame_count_mismatch(tmp_path):
    export = a2f_export(["jawOpen"], [[0.1], [0.2]])
    export["numFrames"] = 5
    path = write_text(tmp_path / "frames.json", json.dumps(export))
    with pytest.raises(DataError, match=r"frames\.json: numFrames is 5 but weightMat has 2 rows"):
        read_targets(path)


def test_a2f_pose_count_mismatch(tmp_path):
    export = a2f_export(["jawOpen", "mouthClose"], [[0.1, 0.2]])
    export["numPoses"] = 52
    path = write_text(tmp_path / "poses.json", json.dumps(export))
    with pytest.raises(DataError, match=r"poses\.json: numPoses is 52 but facsNames lists 2 names"):
        read_targets(path)


def test_a2f_short_row(tmp_path):
    export = a2f_export(["jawOpen", "mouthClose"], [[0.1, 0.2], [0.3]])
    path = write_text(tmp_path / "row.json", json.dumps(export))
    with pytest.raises(DataError, match=r"row\.json: weightMat row 1 has 1 weights, numPoses is 2"):
        read_targets(path)


def test_a2f_missing_key(tmp_path):
    export = a2f_export(["jawOpen"], [[0.1]])
    del export["facsNames"]
    path = write_text(tmp_path / "keys.json", json.dumps(export))
    with pytest.raises(DataError, match=r"keys\.json: missing Audio2Face key\(s\) facsNames"):
        read_targets(path)


def test_a2f_empty_file(tmp_path):
    path = write_text(tmp_path / "empty.json", "")
    with pytest.raises(DataError, match=r"empty\.json: the file is empty"):
        read_targets(path)


# --- plain CSV ------------------------------------------------------------------------------

def test_plain_csv_time_column(tmp_path):
    rows = ["time,jawOpen,MouthSmileLeft,note"]
    rows += [f"{i / 25:.4f},{i / 10},0.5,x" for i in range(10)]
    path = write_text(tmp_path / "plain.csv", "\n".join(rows) + "\n")
    track = read_targets(path)

    assert track.fps == pytest.approx(25.0)
    assert track.num_frames == 10
    assert {ARKIT_NAMES[i] for i in np.flatnonzero(track.mask)} == {"jawOpen", "mouthSmileLeft"}
    np.testing.assert_allclose(track.values[:, ARKIT_INDEX["jawOpen"]], np.arange(10) / 10, atol=1e-7)
    assert np.all(track.values[:, ARKIT_INDEX["mouthSmileLeft"]] == 0.5)


def test_plain_csv_fps_argument(tmp_path):
    path = write_text(tmp_path / "nofps.csv", "jawopen,mouthClose\n0.1,0.2\n0.3,0.4\n")
    track = read_targets(path, fps=50.0)
    assert track.fps == 50.0
    assert track.mask.sum() == 2
    with pytest.raises(DataError, match=r"nofps\.csv: no 'time' column.*pass the frame rate"):
        read_targets(path)


def test_plain_csv_time_not_increasing(tmp_path):
    path = write_text(tmp_path / "back.csv", "time,jawOpen\n0,0\n0.1,0\n0.05,0\n")
    with pytest.raises(DataError, match=r"back\.csv: the time column must increase.*row 2"):
        read_targets(path)


def test_plain_csv_without_arkit_columns(tmp_path):
    path = write_text(tmp_path / "other.csv", "time,a,b\n0,1,2\n")
    with pytest.raises(DataError, match=r"other\.csv: no column is named after an ARKit blendshape"):
        read_targets(path)


def test_csv_empty_file(tmp_path):
    path = write_text(tmp_path / "empty.csv", "")
    with pytest.raises(DataError, match=r"empty\.csv: the file is empty"):
        read_targets(path)


def test_csv_header_only(tmp_path):
    path = write_text(tmp_path / "header.csv", ",".join(("Timecode", "BlendshapeCount") + LIVELINK_NAMES) + "\n")
    with pytest.raises(DataError, match=r"header\.csv: the CSV has a header but no data rows"):
        read_targets(path)


# --- dispatch and resampling ----------------------------------------------------------------

def test_unknown_suffix(tmp_path):
    path = write_text(tmp_path / "take.txt", "jawOpen\n0.1\n")
    with pytest.raises(DataError, match=r"take\.txt: unknown label file suffix '\.txt'.*\.csv.*\.json.*\.npy"):
        read_targets(path)
    assert set(LABEL_SUFFIXES) == {".csv", ".json", ".npy"}


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"nothere\.csv: label file not found"):
        read_targets(tmp_path / "nothere.csv")


def make_track(values, fps):
    values = np.asarray(values, dtype=np.float32)
    full = np.zeros((len(values), 52), dtype=np.float32)
    full[:, 0] = values
    return TargetTrack(values=full, mask=np.ones(52, bool), fps=fps, path="hand-made")


def test_resample_upsample_and_hold():
    track = make_track([0.0, 1.0, 0.5], fps=30.0)
    out = resample_track(track, num_frames=8, frame_rate=60.0)
    assert out.shape == (8, 52)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out[:, 0], [0.0, 0.5, 1.0, 0.75, 0.5, 0.5, 0.5, 0.5])


def test_resample_downsample_and_identity():
    track = make_track(np.arange(12) / 12, fps=60.0)
    np.testing.assert_allclose(resample_track(track, 12, 60.0), track.values)
    np.testing.assert_allclose(resample_track(track, 4, 20.0)[:, 0], [0, 3 / 12, 6 / 12, 9 / 12])


def test_resample_real_facegood_to_feature_rate(facegood_dir):
    track = read_targets(facegood_dir / "bs_value" / "bs_value_1114_3_15.npy")
    frames = int(track.duration * 50)
    out = resample_track(track, frames, 50.0)
    assert out.shape == (frames, 52)
    jaw = ARKIT_INDEX["jawOpen"]
    # Every third 30 fps frame lands exactly on every fifth 50 fps frame.
    np.testing.assert_allclose(out[::5, jaw], track.values[: len(out[::5]) * 3 : 3, jaw], atol=1e-6)
    assert np.all(out[:, ~track.mask] == 0)
