"""Activation maximisation: the images that maximise each filter of a layer (a grid of
tiles) and each class logit (one row per optimisation, the class probability under each
image). Grey images share one grey scale, 0 = black to 1 = white, with its colour bar."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.transforms import ScaledTranslation

from pipeline.figures.common import to_display


def _show(ax: Axes, image: np.ndarray) -> object:
    """One C×H×W image in [0, 1], no ticks; the same 0..1 scale for every tile."""
    array, cmap = to_display(image)
    shown = ax.imshow(array, cmap=cmap, vmin=0, vmax=1)
    ax.set_xticks([])
    ax.set_yticks([])
    return shown


def _finish(fig: Figure, axes: np.ndarray, shown: object, grey: bool, caption: str) -> None:
    """The grey scale's colour bar (grey images only) and the caption under the tiles."""
    if grey:
        bar = fig.colorbar(shown, ax=list(axes.flat), fraction=0.02, pad=0.01, ticks=[0, 1])
        bar.ax.set_yticklabels(["0 black", "1 white"], fontsize=6)
    low = min(ax.get_position().y0 for ax in axes.flat)
    fig.text(
        0.5,
        low,
        textwrap.fill(caption, width=int(fig.get_figwidth() * 16)),
        ha="center",
        va="top",
        fontsize=7,
        transform=fig.transFigure
        + ScaledTranslation(0, -0.3, fig.dpi_scale_trans),  # below the tick labels
    )


def plot_tiles(images: np.ndarray, labels: Sequence[str], title: str, caption: str) -> Figure:
    """One tile per image (B×C×H×W in [0, 1]) with its label: the filter images."""
    count = len(images)
    cols = min(16, int(np.ceil(np.sqrt(count * 1.5))))
    rows = int(np.ceil(count / cols))
    fig, axes = plt.subplots(
        rows, cols, figsize=(cols * 0.95 + 0.9, rows * 1.05 + 0.9), squeeze=False
    )
    shown = None
    for i, ax in enumerate(axes.flat):
        if i >= count:
            ax.axis("off")
            continue
        shown = _show(ax, images[i])
        ax.set_title(labels[i], fontsize=6)
    _finish(fig, axes, shown, images.shape[1] == 1, caption)
    fig.suptitle(title)
    return fig


def plot_class_images(
    rows: Sequence[tuple[str, np.ndarray, np.ndarray]],
    class_names: Sequence[str],
    title: str,
    caption: str,
) -> Figure:
    """One row per (row label, B×C×H×W class images, B probabilities): class b's image in
    column b, the classifier's probability for class b under it."""
    cols = len(class_names)
    fig, axes = plt.subplots(
        len(rows), cols, figsize=(cols * 1.0 + 1.8, len(rows) * 1.2 + 1.0), squeeze=False
    )
    shown = None
    for r, (label, images, probability) in enumerate(rows):
        for b in range(cols):
            ax = axes[r, b]
            shown = _show(ax, images[b])
            ax.set_xlabel(f"p = {probability[b]:.3f}", fontsize=7)
            if r == 0:
                ax.set_title(class_names[b], fontsize=8)
        axes[r, 0].set_ylabel(label, fontsize=8, rotation=0, ha="right", va="center")
    _finish(fig, axes, shown, rows[0][1].shape[1] == 1, caption)
    fig.suptitle(title)
    return fig
