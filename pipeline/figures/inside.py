"""Inside the classifier: feature maps per conv layer, the first layer's filters, and
the images that maximise each filter or class (gradient ascent)."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from pipeline.figures.common import to_display

ACTIVATION_CMAP = "viridis"


def _off(ax: plt.Axes) -> None:
    ax.set_xticks([])
    ax.set_yticks([])


def plot_feature_maps(
    images: np.ndarray,
    maps: np.ndarray,
    channels: Sequence[int],
    captions: Sequence[str],
    layer: str,
) -> Figure:
    """Rows = images (first column the image), columns = the given channels of one
    layer's activations (N×C×h×w), strongest first; one colour scale per row."""
    n, k = len(images), len(channels)
    fig, axes = plt.subplots(
        n, k + 1, figsize=(1.1 * (k + 1) + 1, 1.15 * n + 0.8), squeeze=False, layout="constrained"
    )
    mappable = None
    for r in range(n):
        array, cmap = to_display(images[r])
        axes[r, 0].imshow(array, cmap=cmap, vmin=0, vmax=1)
        axes[r, 0].set_ylabel(captions[r], fontsize=7, rotation=0, ha="right", va="center")
        top = max(float(maps[r, list(channels)].max()), 1e-12)
        for c, channel in enumerate(channels):
            mappable = axes[r, c + 1].imshow(
                maps[r, channel], cmap=ACTIVATION_CMAP, vmin=0, vmax=top
            )
            if r == 0:
                axes[r, c + 1].set_title(f"ch {channel}", fontsize=7)
        for ax in axes[r]:
            _off(ax)
    if mappable is not None:
        bar = fig.colorbar(mappable, ax=axes[:, -1].tolist(), shrink=0.6)
        bar.set_label("activation (scale of the row's strongest)")
    fig.suptitle(f"Feature maps of {layer}: the {k} strongest channels (by mean activation)")
    return fig


def plot_filters(weights: np.ndarray, title: str) -> Figure:
    """One tile per filter of a conv layer (out×in×k×k); the input channels are averaged
    for grey display, unless there are exactly three (shown as RGB)."""
    out = weights.shape[0]
    cols = int(np.ceil(np.sqrt(out)))
    rows = int(np.ceil(out / cols))
    fig, axes = plt.subplots(
        rows, cols, figsize=(cols * 0.9 + 1.2, rows * 0.9 + 0.8), squeeze=False
    )
    limit = float(np.abs(weights).max()) or 1.0
    mappable = None
    for i, ax in enumerate(axes.flat):
        _off(ax)
        if i >= out:
            ax.set_frame_on(False)
            continue
        w = weights[i]
        if w.shape[0] == 3:
            ax.imshow(np.clip((w.transpose(1, 2, 0) / limit + 1) / 2, 0, 1))
        else:
            mappable = ax.imshow(w.mean(0), cmap="RdBu_r", vmin=-limit, vmax=limit)
        ax.set_title(str(i), fontsize=6)
    if mappable is not None:
        fig.colorbar(mappable, ax=axes.ravel().tolist(), shrink=0.6).set_label("weight")
    fig.suptitle(title)
    return fig


def plot_tiles(images: np.ndarray, labels: Sequence[str], title: str) -> Figure:
    """One tile per image (B×C×H×W in [0, 1]) with its label: activation maximisation."""
    count = len(images)
    cols = min(16, int(np.ceil(np.sqrt(count * 1.5))))
    rows = int(np.ceil(count / cols))
    fig, axes = plt.subplots(
        rows, cols, figsize=(cols * 0.95 + 0.4, rows * 1.05 + 0.7), squeeze=False
    )
    for i, ax in enumerate(axes.flat):
        _off(ax)
        if i >= count:
            ax.set_frame_on(False)
            continue
        array, cmap = to_display(images[i])
        ax.imshow(array, cmap=cmap, vmin=0, vmax=1)
        ax.set_title(labels[i], fontsize=6)
    fig.suptitle(title)
    return fig
