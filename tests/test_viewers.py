"""Run reader, viewer selection functions, widgets and curves on real tiny runs."""

import io
import shutil

import numpy as np
import pytest
import soundfile as sf

from workbench import viewers
from workbench.arkit import ARKIT_INDEX
from workbench.config import load_config
from workbench.curves import figure_png, training_curves
from workbench.errors import DataError
from workbench.run_reader import RunData, newest_run
from workbench.trainer import Trainer

PNG_MAGIC = b"\x89PNG"


def _train(root, facegood_dir, cache_dir, *extra):
    overrides = [
        f"data.root={facegood_dir}", "data.max_clips=2", "data.window_hop_seconds=4.0",
        "model.kind=conv", "model.hidden=16", f"run.root={root}", f"features.cache_dir={cache_dir}",
        "logging.progress_bar=false", *extra,
    ]
    return Trainer(load_config(None, overrides)).fit()


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("features")


@pytest.fixture(scope="module")
def run(tmp_path_factory, facegood_dir, cache_dir):
    # Histograms every epoch, sample predictions every second epoch: epochs 0, 1, 2 and 0, 2.
    root = tmp_path_factory.mktemp("runs")
    run_dir = _train(root, facegood_dir, cache_dir, "training.max_epochs=3", "logging.histogram_freq=1",
                     "logging.figure_freq=2", "logging.weight_histograms=true", "logging.audio_freq=0")
    return RunData(run_dir)


@pytest.fixture(scope="module")
def bare_run(tmp_path_factory, facegood_dir, cache_dir):
    root = tmp_path_factory.mktemp("bare")
    run_dir = _train(root, facegood_dir, cache_dir, "training.max_epochs=1", "logging.histogram_freq=0",
                     "logging.figure_freq=0", "logging.audio_freq=0")
    return RunData(run_dir)


def test_histogram_tags_and_epochs(run):
    tags = viewers.histogram_tags(run)
    assert tags[:2] == ["pred_distribution", "target_distribution"]
    assert any(t.startswith("weights/") for t in tags)
    assert any(t.startswith("gradients/") for t in tags)
    assert viewers.histogram_epochs(run, "pred_distribution") == [0, 1, 2]


def test_distribution_overlay_matches_sample(run):
    selection = viewers.select_histograms(run, "pred_distribution", 1)
    assert list(selection) == ["pred_distribution", "target_distribution"]

    samples = run.samples
    target_values = samples.targets[0][:, samples.masks[0]]
    target = selection["target_distribution"]
    assert target.total == target_values.size
    assert target.counts.sum() == pytest.approx(target_values.size)
    assert target.mean == pytest.approx(float(target_values.mean()), abs=1e-6)
    assert len(target.edges) == len(target.counts) + 1
    assert np.all(np.diff(target.edges) >= 0)


def test_weight_histogram_alone(run):
    tag = next(t for t in viewers.histogram_tags(run) if t.startswith("weights/"))
    selection = viewers.select_histograms(run, tag, 2)
    assert list(selection) == [tag]


def test_histogram_missing_epoch(run):
    with pytest.raises(DataError, match="epochs present: 0, 1, 2"):
        viewers.select_histograms(run, "pred_distribution", 7)
    with pytest.raises(DataError, match="no histogram 'weights/nothing'"):
        viewers.select_histograms(run, "weights/nothing", 0)


def test_select_frame_reads_epoch_file(run):
    assert viewers.prediction_epochs(run) == [0, 2]
    selection = viewers.select_frame(run, epoch=2, sample=1, frame=17)
    with np.load(run.path / "samples" / "epoch_0002.npz") as saved:
        expected = saved["pred_1"][17]
    np.testing.assert_array_equal(selection.pred, expected)
    np.testing.assert_array_equal(selection.target, run.samples.targets[1][17])
    assert selection.mask.dtype == bool
    assert selection.mask[ARKIT_INDEX["jawOpen"]]
    assert not selection.mask[ARKIT_INDEX["eyeBlinkLeft"]]  # FACEGOOD labels only mouth and jaw
    assert selection.time_s == pytest.approx(17 / run.samples.frame_rate)


def test_select_frame_rejects_bad_positions(run):
    frames = viewers.sample_frame_count(run, 0)
    with pytest.raises(DataError, match="outside sample"):
        viewers.select_frame(run, 0, 0, frames)
    with pytest.raises(DataError, match="no sample predictions for epoch 1"):
        viewers.select_frame(run, 1, 0, 0)
    with pytest.raises(DataError, match="samples 0..2"):
        viewers.select_frame(run, 0, 5, 0)


def test_select_series_and_audio(run):
    series = viewers.select_series(run, 0, 0, "jawOpen")
    frames = viewers.sample_frame_count(run, 0)
    assert series.pred.shape == (frames,)
    np.testing.assert_array_equal(series.target, run.samples.targets[0][:, ARKIT_INDEX["jawOpen"]])
    assert series.audio.shape == series.audio_time_s.shape
    # The audio covers the same span as the frames (10 ms hop at 16 kHz).
    assert series.audio_time_s[-1] == pytest.approx(series.time_s[-1], abs=0.011)

    absent = viewers.select_series(run, 0, 0, "eyeBlinkLeft")
    assert absent.target is None
    with pytest.raises(DataError, match="unknown blendshape"):
        viewers.select_series(run, 0, 0, "jawOpn")


def test_sample_wav_round_trip(run):
    audio, rate = sf.read(io.BytesIO(viewers.sample_wav(run, 2)))
    assert rate == 16000
    assert len(audio) == len(run.samples.audio[2])


def test_figures_render_png(run):
    frame = viewers.frame_figure(viewers.select_frame(run, 0, 0, viewers.default_frame(run, 0)))
    series = viewers.series_figure(viewers.select_series(run, 0, 0, "mouthFunnel"), frame_time_s=1.0)
    histogram = viewers.histogram_figure(viewers.select_histograms(run, "pred_distribution", 0), log_y=True)
    for fig in (frame, series, histogram, training_curves(run)):
        assert figure_png(fig).startswith(PNG_MAGIC)


def test_histogram_widget_follows_dropdown(run):
    widget = viewers.histogram_viewer(run)
    tag_box, epoch_slider, _log_box = widget.children[1].children
    image = widget.children[3]
    first = bytes(image.value)  # widgets store bytes as a memoryview
    assert first.startswith(PNG_MAGIC)
    tag_box.value = next(t for t in tag_box.options if t.startswith("gradients/"))
    assert bytes(image.value) != first
    assert list(epoch_slider.options) == [0, 1, 2]


def test_prediction_widget_follows_sample(run):
    widget = viewers.prediction_viewer(run)
    epoch_slider, sample_box = widget.children[1].children
    frame_slider, blendshape_box = widget.children[2].children
    bars, series, audio = widget.children[3:6]
    assert list(epoch_slider.options) == [0, 2]
    before = (bytes(bars.value), bytes(series.value))
    sample_box.value = 2
    assert frame_slider.value == viewers.default_frame(run, 2)
    assert frame_slider.max == viewers.sample_frame_count(run, 2) - 1
    assert bytes(audio.value) == viewers.sample_wav(run, 2)
    assert (bytes(bars.value), bytes(series.value)) != before
    blendshape_box.value = "mouthPucker"
    assert bytes(series.value).startswith(PNG_MAGIC)


def test_bare_run_reports_missing_data(bare_run):
    notes = bare_run.missing_parts()
    assert any("logging.histogram_freq is 0" in n for n in notes)
    assert any("logging.figure_freq is 0" in n for n in notes)
    assert viewers.histogram_tags(bare_run) == []
    with pytest.raises(DataError, match="has no histograms.*histogram_freq is 0"):
        viewers.select_histograms(bare_run, "pred_distribution", 0)
    with pytest.raises(DataError, match="has no prediction samples.*figure_freq is 0"):
        viewers.prediction_epochs(bare_run)
    assert "histogram_freq is 0" in viewers.histogram_viewer(bare_run).value
    assert "figure_freq is 0" in viewers.prediction_viewer(bare_run).value


def test_partial_run_folder(run, tmp_path):
    # A run that failed in its first epoch: config and an empty logs/ folder, nothing else.
    partial = tmp_path / "2025-01-01" / "00-00-00"
    (partial / "logs").mkdir(parents=True)
    shutil.copy(run.path / "config.yaml", partial / "config.yaml")
    data = RunData(partial)
    assert data.metrics.empty
    assert data.histograms == {}
    assert data.samples is None
    assert any("metrics.csv is missing" in n for n in data.missing_parts())
    assert figure_png(training_curves(data)).startswith(PNG_MAGIC)
    assert newest_run(tmp_path) == partial


def test_not_a_run_folder(tmp_path):
    with pytest.raises(DataError, match="not a run folder"):
        RunData(tmp_path)
    with pytest.raises(DataError, match="not found"):
        RunData(tmp_path / "missing")
    with pytest.raises(DataError, match="no run folders"):
        newest_run(tmp_path)
