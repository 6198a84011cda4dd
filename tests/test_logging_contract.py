"""The TensorBoard logging contract, read back from the event file of a real tiny run.

One run (5 epochs, 5 optimizer steps per epoch) is shared by the whole module. Its logging
frequencies differ from each other so that a tag written at the wrong cadence shows up.
"""

from __future__ import annotations

import csv
import gc
import io
import json
import shlex
import os
from pathlib import Path

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.plugins.hparams import metadata as hparams_metadata
from tensorboard.plugins.hparams import plugin_data_pb2

from tiny_run import make_tiny_dataset, one_torch_thread, tiny_overrides
from workbench import figures
from workbench.arkit import ARKIT_NAMES, MAIN_MOUTH_SHAPES
from workbench.config import load_config
from workbench.logging_mixin import LoggingMixin
from workbench.trainer import Trainer

EPOCHS = 5
LOG_FREQ = 3
VALIDATION_FREQ = 2
HISTOGRAM_FREQ = 2
FIGURE_FREQ = 3
AUDIO_FREQ = 4
ALL_EPOCHS = list(range(EPOCHS))

# figsize x dpi of the figures in workbench.figures, as (width, height) in pixels.
FIGURE_SIZES = {
    "blendshape_comparison": (1120, 360),
    "mouth_shapes_over_time": (800, 480),
    "mel_spectrogram": (800, 280),
}


def due(freq: int) -> list[int]:
    return [e for e in ALL_EPOCHS if e % freq == 0]


def validation_epochs() -> list[int]:
    return sorted(set(due(VALIDATION_FREQ)) | {EPOCHS - 1})


@pytest.fixture(scope="module")
def tiny_data(facegood_dir, tmp_path_factory) -> Path:
    return make_tiny_dataset(facegood_dir, tmp_path_factory.mktemp("tiny_data"))


@pytest.fixture(scope="module")
def run(tiny_data, tmp_path_factory):
    """Train once with every optional log on; returns (trainer, run folder, accumulator)."""
    root = tmp_path_factory.mktemp("contract")
    overrides = tiny_overrides(
        tiny_data, root / "runs", root / "cache",
        training__max_epochs=EPOCHS, training__validation_freq=VALIDATION_FREQ,
        logging__log_freq=LOG_FREQ, logging__log_grad_norm=True, logging__weight_histograms=True,
        logging__histogram_freq=HISTOGRAM_FREQ, logging__figure_freq=FIGURE_FREQ,
        logging__audio_freq=AUDIO_FREQ, debug=True,
    )
    trainer = Trainer(load_config(None, overrides))
    with one_torch_thread():
        run_dir = trainer.fit()
    return trainer, run_dir, read_events(run_dir / "logs")


def read_events(logdir: Path) -> event_accumulator.EventAccumulator:
    # size_guidance 0 keeps every event of every kind instead of a reservoir sample.
    keep_all = {kind: 0 for kind in (event_accumulator.SCALARS, event_accumulator.IMAGES,
                                     event_accumulator.AUDIO, event_accumulator.HISTOGRAMS,
                                     event_accumulator.COMPRESSED_HISTOGRAMS, event_accumulator.TENSORS)}
    accumulator = event_accumulator.EventAccumulator(str(logdir), size_guidance=keep_all)
    accumulator.Reload()
    return accumulator


def steps_of(events) -> list[int]:
    return [e.step for e in events]


# -- scalars ------------------------------------------------------------------------------


def test_run_has_expected_step_count(run):
    trainer, _, _ = run
    assert len(trainer.train_loader) == 5
    assert trainer.global_step == 5 * EPOCHS


@pytest.mark.parametrize("tag", ["train/loss", "train/learning_rate", "train/grad_norm"])
def test_step_scalars_every_log_freq(run, tag):
    trainer, _, acc = run
    expected = [s for s in range(1, trainer.global_step + 1) if s % LOG_FREQ == 0]
    assert steps_of(acc.Scalars(tag)) == expected


def test_step_scalars_are_finite(run):
    _, _, acc = run
    for tag in ("train/loss", "train/learning_rate", "train/grad_norm"):
        assert all(np.isfinite(e.value) for e in acc.Scalars(tag)), tag


def test_learning_rate_follows_cosine_schedule(run):
    trainer, _, acc = run
    steps_per_epoch = len(trainer.train_loader)
    cfg = trainer.cfg.training
    for event in acc.Scalars("train/learning_rate"):
        epoch = (event.step - 1) // steps_per_epoch
        eta_min = cfg.lr * 0.05
        expected = eta_min + (cfg.lr - eta_min) * (1 + np.cos(np.pi * epoch / EPOCHS)) / 2
        assert event.value == pytest.approx(expected, rel=1e-5), event.step


@pytest.mark.parametrize("tag", ["train/epoch_loss", "train/mae", "train/mse", "train/mean_correlation"])
def test_train_epoch_scalars_every_epoch(run, tag):
    _, _, acc = run
    assert steps_of(acc.Scalars(tag)) == ALL_EPOCHS


def test_val_scalars_every_validation_freq(run):
    trainer, _, acc = run
    val_tags = sorted(t for t in acc.Tags()["scalars"] if t.startswith("val/"))
    assert val_tags == sorted(f"val/{name}" for name in trainer.val_metric_names)
    for tag in val_tags:
        assert steps_of(acc.Scalars(tag)) == validation_epochs(), tag


def test_val_scalars_match_metrics_csv(run):
    _, run_dir, acc = run
    with open(run_dir / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == ALL_EPOCHS
    for event in acc.Scalars("val/loss"):
        assert float(rows[event.step]["val_loss"]) == pytest.approx(event.value, rel=1e-4)
    for row in rows:
        has_val = int(row["epoch"]) in validation_epochs()
        assert (row["val_loss"] != "") == has_val, row["epoch"]


def test_no_unexpected_scalar_tags(run):
    trainer, _, acc = run
    expected = {"train/loss", "train/learning_rate", "train/grad_norm", "train/epoch_loss",
                "train/mae", "train/mse", "train/mean_correlation",
                *(f"val/{name}" for name in trainer.val_metric_names)}
    tags = set(acc.Tags()["scalars"])
    assert {t for t in tags if not t.startswith("hparam/")} == expected


# -- histograms ---------------------------------------------------------------------------


@pytest.mark.parametrize("tag", ["pred_distribution", "target_distribution"])
def test_distributions_every_histogram_freq(run, tag):
    trainer, _, acc = run
    events = acc.Histograms(tag)
    assert steps_of(events) == due(HISTOGRAM_FREQ)
    sample = trainer.samples[0]
    # Masked channels are left out: FACEGOOD labels fill 27 of the 52 channels.
    present = int(sample["channel_mask"].sum())
    assert present == 27
    for event in events:
        assert event.histogram_value.num == sample["targets"].shape[0] * present


def test_target_distribution_matches_sample(run):
    trainer, _, acc = run
    sample = trainer.samples[0]
    values = sample["targets"][:, sample["channel_mask"]]
    histogram = acc.Histograms("target_distribution")[0].histogram_value
    assert histogram.sum == pytest.approx(float(values.sum()), rel=1e-4)
    assert histogram.max == pytest.approx(float(values.max()), rel=1e-6)


def test_weight_and_gradient_histograms_for_every_parameter(run):
    trainer, _, acc = run
    names = [n for n, p in trainer.model.named_parameters() if p.requires_grad]
    assert names
    tags = set(acc.Tags()["histograms"])
    assert {t for t in tags if t.startswith("weights/")} == {f"weights/{n}" for n in names}
    assert {t for t in tags if t.startswith("gradients/")} == {f"gradients/{n}" for n in names}
    for name in names:
        assert steps_of(acc.Histograms(f"weights/{name}")) == due(HISTOGRAM_FREQ), name
        assert steps_of(acc.Histograms(f"gradients/{name}")) == due(HISTOGRAM_FREQ), name


def test_last_histograms_match_final_parameters(run):
    # After fit, .grad still contains the final epoch's last step, which was logged at that epoch.
    trainer, _, acc = run
    assert EPOCHS - 1 in due(HISTOGRAM_FREQ)
    for name, param in trainer.model.named_parameters():
        weights = acc.Histograms(f"weights/{name}")[-1].histogram_value
        grads = acc.Histograms(f"gradients/{name}")[-1].histogram_value
        assert weights.num == param.numel()
        assert weights.sum == pytest.approx(param.detach().double().sum().item(), rel=1e-4, abs=1e-6)
        assert grads.sum == pytest.approx(param.grad.double().sum().item(), rel=1e-4, abs=1e-9)


# -- images and audio ---------------------------------------------------------------------


@pytest.mark.parametrize("tag,freq", [("blendshape_comparison", FIGURE_FREQ),
                                      ("mouth_shapes_over_time", FIGURE_FREQ),
                                      ("mel_spectrogram", AUDIO_FREQ)])
def test_images_decodable_at_expected_epochs(run, tag, freq):
    _, _, acc = run
    events = acc.Images(tag)
    assert steps_of(events) == due(freq)
    for event in events:
        image = Image.open(io.BytesIO(event.encoded_image_string))
        image.load()
        assert image.format == "PNG"
        assert image.size == FIGURE_SIZES[tag]
        assert (event.width, event.height) == FIGURE_SIZES[tag]
        # A blank canvas would be a single colour.
        assert len(image.convert("RGB").getcolors(maxcolors=1 << 20)) > 20


def test_input_audio_at_16khz(run):
    trainer, _, acc = run
    events = acc.Audio("input_audio")
    assert steps_of(events) == due(AUDIO_FREQ)
    sample = trainer.samples[0]
    for event in events:
        assert event.sample_rate == 16000
        assert event.content_type == "audio/wav"
        audio, rate = sf.read(io.BytesIO(event.encoded_audio_string), dtype="float32")
        assert rate == 16000
        assert audio.shape == sample["audio"].shape
        assert np.abs(audio - sample["audio"]).max() < 1e-3  # 16-bit PCM quantisation


def test_no_unexpected_media_tags(run):
    _, _, acc = run
    tags = acc.Tags()
    assert set(tags["images"]) == set(FIGURE_SIZES)
    assert set(tags["audio"]) == {"input_audio"}


# -- hparams ------------------------------------------------------------------------------


def test_single_event_file_and_no_subruns(run):
    _, run_dir, _ = run
    entries = list((run_dir / "logs").iterdir())
    assert [e.is_file() for e in entries] == [True]
    assert entries[0].name.startswith("events.out.tfevents.")


def test_hparams_plugin_data_in_run_event_file(run):
    trainer, _, acc = run
    content = acc.PluginTagToContent(hparams_metadata.PLUGIN_NAME)
    assert set(content) == {hparams_metadata.EXPERIMENT_TAG, hparams_metadata.SESSION_START_INFO_TAG,
                            hparams_metadata.SESSION_END_INFO_TAG}

    experiment = plugin_data_pb2.HParamsPluginData.FromString(content[hparams_metadata.EXPERIMENT_TAG])
    metric_tags = {m.name.tag for m in experiment.experiment.metric_infos}
    assert "hparam/val_loss" in metric_tags
    assert f"hparam/best_val_{trainer.cfg.training.best_metric}" in metric_tags

    start = plugin_data_pb2.HParamsPluginData.FromString(content[hparams_metadata.SESSION_START_INFO_TAG])
    hparams = start.session_start_info.hparams
    assert hparams["training.lr"].number_value == pytest.approx(trainer.cfg.training.lr)
    assert hparams["training.max_epochs"].number_value == EPOCHS
    assert hparams["model.kind"].string_value == "gru"
    assert hparams["logging.weight_histograms"].string_value == "true"
    assert hparams["data.root"].string_value == str(trainer.cfg.data.root)

    end = plugin_data_pb2.HParamsPluginData.FromString(content[hparams_metadata.SESSION_END_INFO_TAG])
    assert end.session_end_info.status == 1  # STATUS_SUCCESS


def test_hparam_metric_scalars(run):
    trainer, run_dir, acc = run
    status = json.loads((run_dir / "status.json").read_text())
    tags = [t for t in acc.Tags()["scalars"] if t.startswith("hparam/")]
    assert "hparam/val_loss" in tags
    for tag in tags:
        events = acc.Scalars(tag)
        assert steps_of(events) == [EPOCHS - 1], tag
        assert events[0].value == pytest.approx(status["final_metrics"][tag.removeprefix("hparam/")], rel=1e-5)


# -- samples, debug log, TensorBoard command ---------------------------------------------


def test_samples_written_at_figure_epochs(run):
    trainer, run_dir, _ = run
    folder = run_dir / "samples"
    assert sorted(p.name for p in folder.glob("epoch_*.npz")) == [f"epoch_{e:04d}.npz" for e in due(FIGURE_FREQ)]
    info = json.loads((folder / "info.json").read_text())
    assert info["blendshapes"] == list(ARKIT_NAMES)
    assert info["frame_rate"] == pytest.approx(100.0)
    assert info["sample_rate"] == 16000
    assert len(info["samples"]) == len(trainer.samples)

    reference = np.load(folder / "reference.npz")
    for i, described in enumerate(info["samples"]):
        assert reference[f"target_{i}"].shape == (described["num_frames"], 52)
        assert reference[f"mask_{i}"].shape == (52,)
        assert reference[f"mel_{i}"].shape == (described["num_frames"], 80)
        assert reference[f"audio_{i}"].shape == (described["num_frames"] * 160,)
    for epoch in due(FIGURE_FREQ):
        predictions = np.load(folder / f"epoch_{epoch:04d}.npz")
        assert sorted(predictions.files) == [f"pred_{i}" for i in range(len(trainer.samples))]
        for i, described in enumerate(info["samples"]):
            pred = predictions[f"pred_{i}"]
            assert pred.shape == (described["num_frames"], 52)
            assert np.all((pred >= 0) & (pred <= 1))


def test_samples_track_training(run):
    _, run_dir, _ = run
    first, last = (np.load(run_dir / "samples" / f"epoch_{e:04d}.npz")["pred_0"] for e in due(FIGURE_FREQ)[:2])
    assert not np.allclose(first, last)


def test_debug_mode_logs_batch_shapes(run):
    trainer, run_dir, _ = run
    lines = [line for line in (run_dir / "train.log").read_text().splitlines() if " - DEBUG - " in line]
    shape_lines = [line for line in lines if ": mel (" in line]
    assert len(shape_lines) == trainer.global_step
    assert "epoch 0 batch 0: mel (4, 100, 80) targets (4, 100, 52) mask (4, 100, 52)" in shape_lines[0]


def test_train_log_tensorboard_command_is_runnable(run):
    _, run_dir, _ = run
    lines = [line for line in (run_dir / "train.log").read_text().splitlines() if " - INFO - TensorBoard: " in line]
    assert len(lines) == 1
    argv = shlex.split(lines[0].split(" - INFO - TensorBoard: ", 1)[1])
    assert Path(argv[0]).name == "tensorboard" or argv[1:3] == ["-m", "tensorboard.main"]
    assert os.access(argv[0], os.X_OK)
    assert argv[argv.index("--logdir") + 1] == str(run_dir / "logs")
    assert argv[argv.index("--host") + 1] == "127.0.0.1"


def test_train_log_has_starting_line(run):
    _, run_dir, _ = run
    assert " - INFO - Starting training..." in (run_dir / "train.log").read_text()


# -- a run with the optional logs off -----------------------------------------------------


def test_optional_logs_off(tiny_data, tmp_path):
    overrides = tiny_overrides(
        tiny_data, tmp_path / "runs", tmp_path / "cache", training__max_epochs=1,
        logging__log_freq=2, logging__log_grad_norm=False, logging__weight_histograms=False,
        logging__histogram_freq=0, logging__figure_freq=0, logging__audio_freq=0,
    )
    with one_torch_thread():
        run_dir = Trainer(load_config(None, overrides)).fit()
    acc = read_events(run_dir / "logs")
    tags = acc.Tags()
    assert "train/grad_norm" not in tags["scalars"]
    assert steps_of(acc.Scalars("train/loss")) == [2, 4]
    assert tags["histograms"] == []
    assert tags["images"] == []
    assert tags["audio"] == []
    assert not (run_dir / "samples").exists()
    assert " - DEBUG - " not in (run_dir / "train.log").read_text()


# -- figures ------------------------------------------------------------------------------


def frame_with_mask():
    rng = np.random.default_rng(0)
    mask = np.zeros(52, bool)
    mask[17:44] = True
    return rng.random(52), rng.random(52) * mask, mask


def test_blendshape_bars_axis_and_legend():
    pred, target, mask = frame_with_mask()
    fig = figures.blendshape_bars(pred, target, mask)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == list(ARKIT_NAMES)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["Predicted", "Target"]
    predicted, target_bars = ax.containers
    assert len(predicted) == 52
    assert len(target_bars) == int(mask.sum())  # masked targets are not drawn


def test_mouth_time_series_panels():
    rng = np.random.default_rng(1)
    pred, target = rng.random((200, 52)), rng.random((200, 52))
    fig = figures.mouth_time_series(pred, target, np.ones(52, bool), frame_rate=100.0)
    assert len(fig.axes) == len(MAIN_MOUTH_SHAPES)
    assert [ax.get_ylabel() for ax in fig.axes] == list(MAIN_MOUTH_SHAPES)
    assert fig.axes[-1].get_xlim()[1] == pytest.approx(1.99, abs=0.1)


def test_mel_figure_orientation_and_colour_bar():
    mel = np.full((300, 80), -10.0, np.float32)
    mel[:, 60:] = 2.0  # energy only in the high mel bins
    fig = figures.mel_figure(mel, frame_rate=100.0)
    ax, colour_bar = fig.axes
    image = ax.images[0]
    assert image.origin == "lower"  # bin 0 at the bottom
    assert image.get_extent() == [0.0, 3.0, 0, 80]  # seconds to the right, bins up
    assert ax.get_xlabel() == "time (s)"
    assert ax.get_ylabel() == "mel bin"
    assert colour_bar.get_ylabel() == "log power (ln)"

    # Rendered: the top rows of the plot area (high bins) are brighter than the bottom rows.
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    pixels = np.asarray(canvas.buffer_rgba())[..., :3].astype(float)
    x0, y0, x1, y1 = (ax.get_window_extent().extents).astype(int)
    height = pixels.shape[0]
    plot = pixels[height - y1 + 2:height - y0 - 2, x0 + 2:x1 - 2]
    top, bottom = plot[: plot.shape[0] // 5].mean(), plot[-plot.shape[0] // 5:].mean()
    assert top > bottom + 50


# -- memory -------------------------------------------------------------------------------


# 20 figures take about 5 s on one busy CPU core; more would add time, not evidence.
MEMORY_EPOCHS = 10


class _MediaLogger(LoggingMixin):
    frame_rate = 100.0

    def __init__(self, cfg):
        self.cfg = cfg


def count_figures() -> int:
    gc.collect()
    return sum(isinstance(o, matplotlib.figure.Figure) for o in gc.get_objects())


def test_logged_figures_are_not_retained(tmp_path):
    cfg = load_config(None, ["logging.histogram_freq=0", "logging.figure_freq=1", "logging.audio_freq=0"])
    host = _MediaLogger(cfg)
    host.setup_logging(tmp_path)
    rng = np.random.default_rng(2)
    sample = {"name": "s", "clip": "c", "start_frame": 0, "targets": rng.random((100, 52)).astype(np.float32),
              "channel_mask": np.ones(52, bool), "mel": rng.random((100, 80)).astype(np.float32),
              "audio": np.zeros(16000, np.float32), "frame_rate": 100.0, "sample_rate": 16000}
    model = torch.nn.Linear(2, 2)
    before = count_figures()
    try:
        for epoch in range(MEMORY_EPOCHS):  # two figures per epoch
            host.log_epoch_media(epoch, model, [sample], [rng.random((100, 52)).astype(np.float32)])
            assert len(matplotlib._pylab_helpers.Gcf.figs) == 0
    finally:
        host.teardown_logging()
    assert count_figures() <= before
    acc = read_events(tmp_path / "logs")
    assert len(acc.Images("blendshape_comparison")) == MEMORY_EPOCHS
    assert len(acc.Images("mouth_shapes_over_time")) == MEMORY_EPOCHS
