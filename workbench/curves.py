"""Static matplotlib curves of a run and of a sweep, for executed notebooks read offline.

Figures are bare `matplotlib.figure.Figure` objects (no pyplot), so nothing keeps them alive
after display. `figure_png` turns one into PNG bytes, which notebooks and widgets show as an
image that stays in the saved notebook.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Mapping

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from workbench.run_reader import RunData

log = logging.getLogger(__name__)

# Epoch metrics drawn as train (solid) and validation (dashed) pairs, one panel each.
EPOCH_PANELS = (("loss", "Loss per epoch"), ("mae", "MAE per epoch"), ("mean_correlation", "Mean correlation per epoch"))


def figure_png(fig: Figure, dpi: int = 80) -> bytes:
    """Render `fig` to PNG bytes."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def show_figure(fig: Figure) -> None:
    """Display `fig` as a PNG image in the running notebook (the image is saved with it)."""
    from IPython.display import Image, display

    display(Image(data=figure_png(fig)))


def training_curves(run: RunData) -> Figure:
    """Loss, learning rate and gradient norm per step, and loss/MAE/correlation per epoch."""
    fig = Figure(figsize=(13, 7.5), dpi=80)
    axes = fig.subplots(2, 3)
    _step_panel(axes[0, 0], run, "train/loss", "Training loss per step", log_scale=True)
    _step_panel(axes[0, 1], run, "train/learning_rate", "Learning rate per step", log_scale=False)
    _step_panel(axes[0, 2], run, "train/grad_norm", "Gradient norm per step (before clipping)", log_scale=True)
    metrics = run.metrics
    for ax, (name, title) in zip(axes[1], EPOCH_PANELS):
        _epoch_panel(ax, metrics, name, title)
    fig.suptitle(run.name)
    fig.tight_layout()
    return fig


def _step_panel(ax: Axes, run: RunData, tag: str, title: str, log_scale: bool) -> None:
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("global step")
    points = run.scalar(tag)
    if points.empty:
        _no_data(ax, f"no {tag} scalars")
        return
    ax.plot(points["step"], points["value"], marker="." if len(points) < 30 else None)
    if log_scale and (points["value"] > 0).all():
        ax.set_yscale("log")
    ax.grid(alpha=0.3)


def _epoch_panel(ax: Axes, metrics: pd.DataFrame, name: str, title: str) -> None:
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("epoch")
    drawn = False
    for column, label, style in ((name, "train", "-"), (f"val_{name}", "validation", "--")):
        if column not in metrics:
            continue
        rows = metrics[["epoch", column]].dropna()
        if rows.empty:
            continue
        ax.plot(rows["epoch"], rows[column], style, marker="o", markersize=4, label=label)
        drawn = True
    if not drawn:
        _no_data(ax, f"no {name} in metrics.csv")
        return
    _integer_epoch_axis(ax, metrics["epoch"])
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)


def sweep_figure(results: pd.DataFrame, metric_tables: Mapping[str, pd.DataFrame],
                 metric: str = "val_loss") -> Figure:
    """Per-epoch `metric` of every sweep point (left) and each point's best value (right).

    `results` is the sweep table (columns `point`, `status` and `best_<metric>`); each entry
    of `metric_tables` is one point's metrics table, keyed by its `point` label.
    """
    fig = Figure(figsize=(13, 4.8), dpi=80)
    left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": [3, 2]})
    left.set_title(f"{metric} per epoch", fontsize=10)
    left.set_xlabel("epoch")
    epochs: list[int] = []
    for label, table in metric_tables.items():
        if metric not in table:
            continue
        rows = table[["epoch", metric]].dropna()
        if not rows.empty:
            left.plot(rows["epoch"], rows[metric], marker="o", markersize=3, label=label)
            epochs.extend(rows["epoch"].astype(int))
    if epochs:
        _integer_epoch_axis(left, pd.Series(epochs))
        left.legend(fontsize=7)
        left.grid(alpha=0.3)
    else:
        _no_data(left, f"no {metric} values in any run")

    best_column = f"best_{metric}"
    right.set_title(f"best {metric} per point", fontsize=10)
    if best_column in results and results[best_column].notna().any():
        values = results[best_column].to_numpy(dtype=np.float64)
        colors = ["tab:red" if state != "completed" else "tab:blue" for state in results["status"]]
        y = np.arange(len(results))
        right.barh(y, np.nan_to_num(values, nan=0.0), color=colors)
        right.set_yticks(y, results["point"], fontsize=7)
        right.invert_yaxis()
        right.xaxis.set_major_locator(MaxNLocator(4))
        right.ticklabel_format(axis="x", style="sci", scilimits=(-3, 4))
        for i, (value, state) in enumerate(zip(values, results["status"])):
            text = state if np.isnan(value) else f"{value:.4g}"
            right.annotate(text, (0, i), xytext=(3, 0), textcoords="offset points", va="center", fontsize=7)
    else:
        _no_data(right, "no completed points")
    fig.tight_layout()
    return fig


def _integer_epoch_axis(ax: Axes, epochs: pd.Series) -> None:
    """Whole-number epoch ticks; with a single epoch the axis is widened around it."""
    if epochs.empty:
        return
    first, last = int(epochs.min()), int(epochs.max())
    if first == last:
        ax.set_xlim(first - 1, last + 1)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _no_data(ax: Axes, message: str) -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, color="gray")
    ax.set_xticks([])
    ax.set_yticks([])
