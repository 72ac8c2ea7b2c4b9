"""ClaDec explanations: per instance the original, the reference autoencoder's
reconstruction and the ClaDec reconstruction for each alpha; and the variational
ClaDec's latent grid next to the reference VAE's (the classifier's "prototypes")."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from pipeline.figures.common import to_display


def plot_cladec_rows(
    originals: np.ndarray,
    columns: Sequence[tuple[str, np.ndarray]],
    captions: Sequence[str],
    title: str,
) -> Figure:
    """Rows = instances; columns = original, then each named reconstruction set."""
    n, k = len(originals), len(columns) + 1
    fig, axes = plt.subplots(
        n, k, figsize=(1.25 * k + 1.6, 1.2 * n + 0.9), squeeze=False, layout="constrained"
    )
    for r in range(n):
        for c, (name, images) in enumerate([("original", originals), *columns]):
            ax = axes[r, c]
            array, cmap = to_display(images[r])
            ax.imshow(array, cmap=cmap, vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(name, fontsize=8)
        axes[r, 0].set_ylabel(captions[r], fontsize=7, rotation=0, ha="right", va="center")
    fig.suptitle(title)
    return fig


def plot_latent_grids(
    grids: Sequence[tuple[str, np.ndarray, np.ndarray | None]], axis: np.ndarray, title: str
) -> Figure:
    """Each entry: (name, decoded images size²×C×H×W, optional predicted class names per
    cell) drawn as one mosaic over the latent plane, side by side."""
    fig, axes = plt.subplots(1, len(grids), figsize=(6.2 * len(grids), 6.4), squeeze=False)
    size = len(axis)
    for ax, (name, images, labels) in zip(axes[0], grids, strict=True):
        rows = []
        for r in range(size):
            rows.append(
                np.concatenate([to_display(images[r * size + c])[0] for c in range(size)], 1)
            )
        mosaic = np.concatenate(rows, 0)
        cmap = "gray" if mosaic.ndim == 2 else None
        h = images.shape[-2]
        ax.imshow(mosaic, cmap=cmap, vmin=0, vmax=1, extent=(0, size * h, 0, size * h))
        ticks = (np.arange(size) + 0.5) * h
        ax.set_xticks(ticks[:: max(1, size // 5)], [f"{v:.1f}" for v in axis[:: max(1, size // 5)]])
        ax.set_yticks(ticks[:: max(1, size // 5)], [f"{v:.1f}" for v in axis[:: max(1, size // 5)]])
        ax.set_xlabel("latent z₁")
        ax.set_ylabel("latent z₂")
        ax.set_title(name)
        if labels is not None:
            for i, label in enumerate(labels):
                r, c = divmod(i, size)
                ax.text((c + 0.05) * h, (size - r - 0.2) * h, label, color="yellow", fontsize=6)
    fig.suptitle(title)
    return fig
