"""An explanation of the same images at every saved epoch: how the model's attention
settles during training."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from pipeline.figures.common import to_display


def plot_across_epochs(
    images: np.ndarray,
    maps: np.ndarray,
    predicted: np.ndarray,
    epochs: Sequence[int],
    captions: Sequence[str],
    class_names: Sequence[str],
    method: str,
) -> Figure:
    """images N×C×H×W; maps E×N×H×W, drawn as |map| (signed methods too); predicted E×N.
    Rows = images, columns = the image, then the map at each epoch with the class
    predicted at that epoch."""
    n, e = len(images), len(epochs)
    fig, axes = plt.subplots(
        n, e + 1, figsize=(1.05 * (e + 1) + 1.4, 1.2 * n + 0.9), squeeze=False, layout="constrained"
    )
    mappable = None
    for r in range(n):
        array, cmap = to_display(images[r])
        axes[r, 0].imshow(array, cmap=cmap, vmin=0, vmax=1)
        axes[r, 0].set_ylabel(captions[r], fontsize=7, rotation=0, ha="right", va="center")
        for c in range(e):
            ax = axes[r, c + 1]
            heat = np.abs(maps[c, r])
            scale = float(heat.max()) or 1.0
            ax.imshow(array, cmap=cmap, vmin=0, vmax=1, alpha=0.5)
            mappable = ax.imshow(heat / scale, cmap="inferno", vmin=0, vmax=1, alpha=0.7)
            ax.set_xlabel(class_names[int(predicted[c, r])], fontsize=6)
            if r == 0:
                ax.set_title(f"epoch {epochs[c]}", fontsize=7)
        for ax in axes[r]:
            ax.set_xticks([])
            ax.set_yticks([])
    if mappable is not None:
        fig.colorbar(mappable, ax=axes[:, -1].tolist(), shrink=0.6).set_label(
            f"|{method}| / its max (per map)"
        )
    fig.suptitle(f"{method} of the same images at every saved epoch (class predicted then below)")
    return fig
