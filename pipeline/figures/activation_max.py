"""Activation maximisation: the images that maximise each filter of a layer or each
class logit, one tile each."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from pipeline.figures.common import to_display


def plot_tiles(images: np.ndarray, labels: Sequence[str], title: str) -> Figure:
    """One tile per image (B×C×H×W in [0, 1]) with its label: activation maximisation."""
    count = len(images)
    cols = min(16, int(np.ceil(np.sqrt(count * 1.5))))
    rows = int(np.ceil(count / cols))
    fig, axes = plt.subplots(
        rows, cols, figsize=(cols * 0.95 + 0.4, rows * 1.05 + 0.7), squeeze=False
    )
    for i, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        if i >= count:
            ax.set_frame_on(False)
            continue
        array, cmap = to_display(images[i])
        ax.imshow(array, cmap=cmap, vmin=0, vmax=1)
        ax.set_title(labels[i], fontsize=6)
    fig.suptitle(title)
    return fig
