"""A grid of example images per class: what the dataset looks like."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from pipeline.figures.common import to_display


def plot_class_samples(
    images: np.ndarray, labels: np.ndarray, class_names: Sequence[str], per_class: int, title: str
) -> Figure:
    """One row per class, the first `per_class` images of that class."""
    rows = len(class_names)
    fig, axes = plt.subplots(
        rows, per_class, figsize=(per_class * 0.9 + 1.2, rows * 0.9), squeeze=False
    )
    for row, name in enumerate(class_names):
        members = np.flatnonzero(labels == row)[:per_class]
        for col in range(per_class):
            ax = axes[row, col]
            ax.set_xticks([])
            ax.set_yticks([])
            if col < len(members):
                array, cmap = to_display(images[members[col]])
                ax.imshow(array, cmap=cmap, vmin=0, vmax=1)
            if col == 0:
                ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
    fig.suptitle(title)
    return fig
