"""Notebook viewers of a run folder: histograms per epoch and predicted vs target blendshapes.

Two layers:
- Selection functions (`histogram_tags`, `select_histograms`, `select_frame`, `select_series`,
  ...) map a run and the widget positions to numpy arrays. When the run lacks that data they
  raise DataError with a message meant for the user. Figure functions draw those arrays.
- `histogram_viewer` and `prediction_viewer` wire ipywidgets to them. Plots are shown as
  PNG `ipywidgets.Image`s, so a notebook saved with its widget state keeps the last view.

Both read only files in the run folder (see `workbench.run_reader`), so they work on runs
made by the CLI, by papermill, or still in progress.
"""

from __future__ import annotations

import html
import io
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from matplotlib.figure import Figure

from workbench import figures
from workbench.arkit import ARKIT_INDEX, ARKIT_NAMES
from workbench.curves import figure_png
from workbench.errors import DataError
from workbench.run_reader import Histogram, RunData

log = logging.getLogger(__name__)

PRED_TAG, TARGET_TAG = "pred_distribution", "target_distribution"
DEFAULT_BLENDSHAPE = "jawOpen"


def _as_run(run: RunData | str | Path) -> RunData:
    return run if isinstance(run, RunData) else RunData(run)


# -- histogram selection ------------------------------------------------------------------


def histogram_tags(run: RunData) -> list[str]:
    """Histogram tags of the run: the distributions first, then weights/* and gradients/*."""
    order = {PRED_TAG: 0, TARGET_TAG: 1}
    return sorted(run.histograms, key=lambda tag: (order.get(tag, 2), tag))


def histogram_epochs(run: RunData, tag: str) -> list[int]:
    """Epochs at which `tag` was logged, ascending."""
    if tag not in run.histograms:
        raise DataError(_missing_histograms_message(run, tag))
    return list(run.histograms[tag])


def select_histograms(run: RunData, tag: str, epoch: int) -> dict[str, Histogram]:
    """Return the histograms to draw for `tag` at `epoch`, keyed by tag.

    For the prediction or target distribution, both come back when both exist at that
    epoch, so the viewer overlays them. Any other tag comes back alone.
    """
    by_epoch = run.histograms.get(tag)
    if by_epoch is None:
        raise DataError(_missing_histograms_message(run, tag))
    if epoch not in by_epoch:
        present = ", ".join(str(e) for e in by_epoch)
        raise DataError(f"histogram {tag!r} was not logged at epoch {epoch}; epochs present: {present}")
    selection = {tag: by_epoch[epoch]}
    if tag in (PRED_TAG, TARGET_TAG):
        for other in (PRED_TAG, TARGET_TAG):
            histogram = run.histograms.get(other, {}).get(epoch)
            if histogram is not None:
                selection[other] = histogram
        selection = {t: selection[t] for t in (PRED_TAG, TARGET_TAG) if t in selection}
    return selection


def _missing_histograms_message(run: RunData, tag: str) -> str:
    if not run.histograms:
        notes = [n for n in run.missing_parts() if n.startswith("No histograms")]
        return f"{run.name} has no histograms. " + " ".join(notes)
    return f"{run.name} has no histogram {tag!r}; tags present: {', '.join(histogram_tags(run))}"


def histogram_figure(selection: dict[str, Histogram], title: str = "", log_y: bool = False) -> Figure:
    """Draw each histogram in `selection` as a step plot; several are overlaid as densities.

    `log_y` helps with blendshape weights, which pile up near 0 (a closed mouth).
    """
    fig = Figure(figsize=(9, 4), dpi=80)
    ax = fig.add_subplot()
    overlay = len(selection) > 1
    colors = {PRED_TAG: "tab:blue", TARGET_TAG: "tab:orange"}
    for tag, histogram in selection.items():
        widths = np.diff(histogram.edges)
        values = histogram.counts
        if overlay:
            # Densities, so distributions with different counts or bucket widths compare fairly.
            area = float((values * widths).sum())
            values = values / area if area > 0 else values
        ax.stairs(values, histogram.edges, color=colors.get(tag), linewidth=1.5,
                  label=f"{tag} (mean {histogram.mean:.4g}, n={histogram.total:.0f})")
    if log_y:
        ax.set_yscale("log")
    ax.set_xlabel("value")
    ax.set_ylabel("density" if overlay else "count")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


# -- prediction selection -----------------------------------------------------------------


@dataclass(frozen=True)
class FrameSelection:
    """The 52 predicted and target weights of one sample frame at one epoch."""

    sample: str
    epoch: int
    frame: int
    time_s: float
    pred: np.ndarray  # [52]
    target: np.ndarray  # [52], meaningful only where mask is True
    mask: np.ndarray  # [52] bool, False where the dataset has no such channel


@dataclass(frozen=True)
class SeriesSelection:
    """One blendshape over a whole sample, with the sample's audio on the same time axis."""

    sample: str
    epoch: int
    blendshape: str
    time_s: np.ndarray  # [frames]
    pred: np.ndarray  # [frames]
    target: np.ndarray | None  # [frames], None when the dataset has no such channel
    audio_time_s: np.ndarray  # [audio samples]
    audio: np.ndarray  # [audio samples]


def prediction_epochs(run: RunData) -> list[int]:
    """Epochs with saved sample predictions (`samples/epoch_NNNN.npz`), ascending."""
    return list(_samples(run).epochs)


def sample_names(run: RunData) -> list[str]:
    return list(_samples(run).names)


def sample_frame_count(run: RunData, sample: int) -> int:
    return int(_samples(run).targets[_sample_index(run, sample)].shape[0])


def default_frame(run: RunData, sample: int) -> int:
    """Return the sample frame with the most target activity (a wide-open mouth) as the start frame."""
    samples = _samples(run)
    i = _sample_index(run, sample)
    return figures.most_active_frame(samples.targets[i], samples.masks[i])


def select_frame(run: RunData, epoch: int, sample: int, frame: int) -> FrameSelection:
    """Predicted vs target weights of `sample` (index) at `frame` after `epoch`."""
    samples = _samples(run)
    i = _sample_index(run, sample)
    pred = _predictions(run, epoch)[i]
    frames = pred.shape[0]
    if not 0 <= frame < frames:
        raise DataError(f"frame {frame} is outside sample {samples.names[i]!r}, which has frames 0..{frames - 1}")
    return FrameSelection(sample=samples.names[i], epoch=epoch, frame=frame, time_s=frame / samples.frame_rate,
                          pred=pred[frame], target=samples.targets[i][frame], mask=samples.masks[i])


def select_series(run: RunData, epoch: int, sample: int, blendshape: str | int) -> SeriesSelection:
    """Predicted and target curves of one blendshape over `sample` after `epoch`, plus its audio."""
    samples = _samples(run)
    i = _sample_index(run, sample)
    channel = _blendshape_index(blendshape)
    pred = _predictions(run, epoch)[i]
    audio = samples.audio[i]
    target = samples.targets[i][:, channel] if samples.masks[i][channel] else None
    return SeriesSelection(sample=samples.names[i], epoch=epoch, blendshape=ARKIT_NAMES[channel],
                           time_s=np.arange(pred.shape[0]) / samples.frame_rate, pred=pred[:, channel],
                           target=target, audio_time_s=np.arange(audio.shape[0]) / samples.sample_rate,
                           audio=audio)


def sample_wav(run: RunData, sample: int) -> bytes:
    """Encode the sample's audio as 16-bit PCM WAV bytes for an audio player."""
    samples = _samples(run)
    buffer = io.BytesIO()
    sf.write(buffer, np.clip(samples.audio[_sample_index(run, sample)], -1, 1), samples.sample_rate,
             format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def frame_figure(selection: FrameSelection) -> Figure:
    title = (f"{selection.sample}, frame {selection.frame} ({selection.time_s:.2f} s), epoch {selection.epoch}; "
             f"targets for {int(selection.mask.sum())} of {selection.mask.size} blendshapes")
    return figures.blendshape_bars(selection.pred, selection.target, selection.mask, title=title)


def series_figure(selection: SeriesSelection, frame_time_s: float | None = None) -> Figure:
    """Draw the blendshape curve (top) over the audio waveform (bottom), with a line at the frame."""
    fig = Figure(figsize=(14, 4.5), dpi=80)
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [2, 1]})
    top.plot(selection.time_s, selection.pred, color="tab:blue", label="Predicted")
    if selection.target is not None:
        top.plot(selection.time_s, selection.target, "--", color="tab:orange", label="Target")
        note = ""
    else:
        note = " (no target: the dataset has no such channel)"
    top.set_ylim(0, 1)
    top.set_ylabel(selection.blendshape)
    top.set_title(f"{selection.blendshape}{note}, {selection.sample}, epoch {selection.epoch}", fontsize=10)
    top.legend(loc="upper right", fontsize=8)
    top.grid(alpha=0.3)
    bottom.plot(selection.audio_time_s, selection.audio, color="gray", linewidth=0.5)
    bottom.set_ylabel("audio")
    bottom.set_xlabel("time (s)")
    if frame_time_s is not None:
        for ax in (top, bottom):
            ax.axvline(frame_time_s, color="tab:red", linewidth=1)
    fig.tight_layout()
    return fig


def _samples(run: RunData):
    samples = run.samples
    if samples is None:
        notes = [n for n in run.missing_parts() if n.startswith("No prediction samples")]
        raise DataError(f"{run.name} has no prediction samples. " + " ".join(notes))
    if not samples.epochs:
        raise DataError(f"{run.name} has sample references but no epoch_NNNN.npz predictions yet; "
                        "wait for the first epoch with figures to finish")
    return samples


def _predictions(run: RunData, epoch: int) -> list[np.ndarray]:
    samples = _samples(run)
    if epoch not in samples.epochs:
        present = ", ".join(str(e) for e in samples.epochs)
        raise DataError(f"{run.name} has no sample predictions for epoch {epoch}; epochs present: {present}")
    return samples.predictions(epoch)


def _sample_index(run: RunData, sample: int) -> int:
    count = len(_samples(run).names)
    if not 0 <= sample < count:
        raise DataError(f"sample {sample} does not exist; {run.name} has samples 0..{count - 1}")
    return sample


def _blendshape_index(blendshape: str | int) -> int:
    if isinstance(blendshape, str):
        if blendshape not in ARKIT_INDEX:
            raise DataError(f"unknown blendshape {blendshape!r}; use an ARKit name such as {DEFAULT_BLENDSHAPE}")
        return ARKIT_INDEX[blendshape]
    if not 0 <= blendshape < len(ARKIT_NAMES):
        raise DataError(f"blendshape index {blendshape} is outside 0..{len(ARKIT_NAMES) - 1}")
    return int(blendshape)


# -- widgets ------------------------------------------------------------------------------


def _message(text: str):
    import ipywidgets as widgets

    return widgets.HTML(f"<p style='color:#a33'>{html.escape(text)}</p>")


def _set_image(image, fig: Figure) -> None:
    image.value = figure_png(fig)


def histogram_viewer(run: RunData | str | Path):
    """Tag dropdown and epoch slider over the run's histograms; returns the widget to display."""
    import ipywidgets as widgets

    run = _as_run(run)
    tags = histogram_tags(run)
    if not tags:
        return _message(_missing_histograms_message(run, PRED_TAG))

    tag_box = widgets.Dropdown(options=tags, value=tags[0], description="tag",
                               layout=widgets.Layout(width="520px"))
    first_epochs = histogram_epochs(run, tags[0])
    epoch_slider = widgets.SelectionSlider(options=first_epochs, value=first_epochs[-1], description="epoch",
                                           continuous_update=False)
    log_box = widgets.Checkbox(value=True, description="log y", indent=False, layout=widgets.Layout(width="80px"))
    image = widgets.Image(format="png")
    status = widgets.HTML()

    # Set while on_tag swaps the slider's options, so the intermediate values draw nothing.
    updating = False

    def redraw(_change=None) -> None:
        if updating:
            return
        tag, epoch = tag_box.value, epoch_slider.value
        try:
            selection = select_histograms(run, tag, epoch)
        except DataError as exc:
            status.value = html.escape(str(exc))
            return
        status.value = "" if len(selection) > 1 or tag not in (PRED_TAG, TARGET_TAG) else \
            html.escape(f"only {tag} was logged at epoch {epoch}, so there is no overlay")
        title = f"{run.name}: {' vs '.join(selection)} at epoch {epoch}"
        _set_image(image, histogram_figure(selection, title=title, log_y=log_box.value))

    def on_tag(_change) -> None:
        nonlocal updating
        epochs = histogram_epochs(run, tag_box.value)
        keep = epoch_slider.value if epoch_slider.value in epochs else epochs[-1]
        updating = True
        try:
            epoch_slider.options = epochs
            epoch_slider.value = keep
        finally:
            updating = False
        redraw()

    tag_box.observe(on_tag, names="value")
    epoch_slider.observe(redraw, names="value")
    log_box.observe(redraw, names="value")
    redraw()
    return widgets.VBox([widgets.HTML(f"<b>Histograms</b> of {html.escape(run.name)}"),
                         widgets.HBox([tag_box, epoch_slider, log_box]), status, image])


def prediction_viewer(run: RunData | str | Path):
    """Epoch, sample, frame and blendshape controls over predicted vs target; returns the widget."""
    import ipywidgets as widgets

    run = _as_run(run)
    try:
        epochs = prediction_epochs(run)
        names = sample_names(run)
    except DataError as exc:
        return _message(str(exc))

    epoch_slider = widgets.SelectionSlider(options=epochs, value=epochs[-1], description="epoch",
                                           continuous_update=False)
    sample_box = widgets.Dropdown(options=[(name, i) for i, name in enumerate(names)], value=0,
                                  description="sample")
    frame_slider = widgets.IntSlider(value=default_frame(run, 0), min=0, max=sample_frame_count(run, 0) - 1,
                                     description="frame", continuous_update=False,
                                     layout=widgets.Layout(width="520px"))
    blendshape_box = widgets.Dropdown(options=list(ARKIT_NAMES), value=DEFAULT_BLENDSHAPE, description="blendshape")
    bars = widgets.Image(format="png")
    series = widgets.Image(format="png")
    audio = widgets.Audio(value=sample_wav(run, 0), format="wav", autoplay=False, loop=False)

    # Set while on_sample moves the frame slider, so the intermediate values draw nothing.
    updating = False

    def draw_bars(_change=None) -> None:
        selection = select_frame(run, epoch_slider.value, sample_box.value, frame_slider.value)
        _set_image(bars, frame_figure(selection))

    def draw_series(_change=None) -> None:
        selection = select_series(run, epoch_slider.value, sample_box.value, blendshape_box.value)
        frame_time = frame_slider.value / run.samples.frame_rate
        _set_image(series, series_figure(selection, frame_time))

    def on_epoch_or_frame(_change) -> None:
        if updating:
            return
        draw_bars()
        draw_series()

    def on_sample(_change) -> None:
        nonlocal updating
        sample = sample_box.value
        updating = True
        try:
            frame_slider.value = 0  # first, so a smaller max never clamps a stale value
            frame_slider.max = sample_frame_count(run, sample) - 1
            frame_slider.value = default_frame(run, sample)
        finally:
            updating = False
        audio.value = sample_wav(run, sample)
        on_epoch_or_frame(None)

    epoch_slider.observe(on_epoch_or_frame, names="value")
    frame_slider.observe(on_epoch_or_frame, names="value")
    sample_box.observe(on_sample, names="value")
    blendshape_box.observe(draw_series, names="value")
    on_epoch_or_frame(None)
    return widgets.VBox([
        widgets.HTML(f"<b>Predicted vs target</b> of {html.escape(run.name)}"),
        widgets.HBox([epoch_slider, sample_box]),
        widgets.HBox([frame_slider, blendshape_box]),
        bars, series, audio,
    ])
