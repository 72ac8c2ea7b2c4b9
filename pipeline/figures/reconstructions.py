"""Originals above their reconstructions: what a decoder keeps of each image."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from pipeline.figures.common import to_display


def one_per_class(labels: np.ndarray, count: int) -> np.ndarray:
    """Indices of up to `count` images, cycling through the classes so each appears."""
    classes = np.unique(labels)
    picks: list[int] = []
    rank = 0
    while len(picks) < min(count, len(labels)):
        for c in classes:
            members = np.flatnonzero(labels == c)
            if rank < len(members) and len(picks) < count:
                picks.append(int(members[rank]))
        rank += 1
    return np.asarray(picks)


def plot_reconstructions(
    originals: np.ndarray,
    rows: Sequence[tuple[str, np.ndarray]],
    captions: Sequence[str],
    title: str,
) -> Figure:
    """First row the originals, then one row per named reconstruction (same images)."""
    n = len(originals)
    all_rows = [("original", originals), *rows]
    fig, axes = plt.subplots(
        len(all_rows),
        n,
        figsize=(n * 1.0 + 1.5, len(all_rows) * 1.2 + 0.6),
        squeeze=False,
        layout="constrained",
    )
    for r, (name, images) in enumerate(all_rows):
        for c in range(n):
            ax = axes[r, c]
            array, cmap = to_display(images[c])
            ax.imshow(array, cmap=cmap, vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(captions[c], fontsize=8)
            if c == 0:
                ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=9)
    fig.suptitle(title)
    return fig
