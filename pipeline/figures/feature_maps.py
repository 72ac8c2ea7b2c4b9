"""Feature maps per conv layer (each row one image, its strongest channels side by side)
and the first conv layer's filters."""

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


def channel_mosaic(maps: np.ndarray, gap: int = 1) -> np.ndarray:
    """k×h×w maps side by side in one h×(k·(w+gap)−gap) array, NaN between them (drawn
    blank), so that a row of channels is one image rather than k axes."""
    k, h, w = maps.shape
    mosaic = np.full((h, k * (w + gap) - gap), np.nan, dtype=np.float64)
    for i in range(k):
        mosaic[:, i * (w + gap) : i * (w + gap) + w] = maps[i]
    return mosaic


def plot_feature_maps(
    images: np.ndarray,
    maps: np.ndarray,
    channels: Sequence[int],
    captions: Sequence[str],
    layer: str,
) -> Figure:
    """Rows = images (first column the image), then the given channels of one layer's
    activations (N×C×h×w), strongest first, each row scaled to its own maximum."""
    n, k = len(images), len(channels)
    w = maps.shape[-1]
    fig, axes = plt.subplots(
        n,
        2,
        figsize=(1.1 * (k + 1) + 2.4, 1.15 * n + 0.9),
        squeeze=False,
        gridspec_kw={"width_ratios": [1, k], "wspace": 0.03, "hspace": 0.12},
    )
    fig.subplots_adjust(left=0.12, right=0.88, top=1 - 0.6 / (1.15 * n + 0.9), bottom=0.03)
    cmap = plt.get_cmap(ACTIVATION_CMAP).with_extremes(bad="white")
    centres = [i * (w + 1) + (w - 1) / 2 for i in range(k)]
    mappable = None
    for r in range(n):
        array, grey = to_display(images[r])
        axes[r, 0].imshow(array, cmap=grey, vmin=0, vmax=1, aspect="auto")
        axes[r, 0].set_ylabel(captions[r], fontsize=7, rotation=0, ha="right", va="center")
        selected = maps[r, list(channels)]
        top = max(float(selected.max()), 1e-12)
        mappable = axes[r, 1].imshow(
            channel_mosaic(selected / top), cmap=cmap, vmin=0, vmax=1, aspect="auto"
        )
        for ax in axes[r]:
            _off(ax)
    axes[0, 1].xaxis.tick_top()
    axes[0, 1].set_xticks(centres, [f"ch {c}" for c in channels], fontsize=7)
    axes[0, 1].tick_params(axis="x", length=0)
    if mappable is not None:
        bar = fig.colorbar(mappable, ax=axes[:, 1].tolist(), shrink=0.6, pad=0.01)
        bar.set_label("activation / the row's strongest")
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
