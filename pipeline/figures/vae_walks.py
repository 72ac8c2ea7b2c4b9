"""Contrastive latent walks: the decoded strip between two instances with the
classifier's verdict under each step, the flip marked, and the difference image."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from pipeline.explain.parts.vae_walks import Walk
from pipeline.figures.common import to_display


def plot_walks(walks: Sequence[Walk], titles: Sequence[str], class_names: Sequence[str]) -> Figure:
    """One row per walk: every decoded step (predicted class and probability below; the
    first step of the new class framed in red), then the difference image across the
    flip (red: brighter after the flip, blue: darker)."""
    steps = max(len(w.predicted) for w in walks)
    fig, axes = plt.subplots(
        len(walks),
        steps + 1,
        figsize=(0.95 * (steps + 1) + 0.6, 1.35 * len(walks) + 0.8),
        squeeze=False,
    )
    mappable = None
    for r, (walk, title) in enumerate(zip(walks, titles, strict=True)):
        for c in range(steps + 1):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c < len(walk.predicted):
                array, cmap = to_display(walk.decoded[c])
                ax.imshow(array, cmap=cmap, vmin=0, vmax=1)
                k = int(walk.predicted[c])
                ax.set_xlabel(f"{class_names[k]} {walk.probabilities[c, k]:.2f}", fontsize=6)
                if c in walk.flips:
                    for spine in ax.spines.values():
                        spine.set_edgecolor("red")
                        spine.set_linewidth(2)
            elif c == steps:
                diff = walk.difference_at_flip()
                if diff is None:
                    ax.text(0.5, 0.5, "no flip", ha="center", va="center", fontsize=7)
                    ax.set_frame_on(False)
                else:
                    limit = float(np.abs(diff).max()) or 1.0
                    mappable = ax.imshow(diff.mean(0), cmap="RdBu_r", vmin=-limit, vmax=limit)
                    ax.set_xlabel("after − before flip", fontsize=6)
            else:
                ax.set_frame_on(False)
        axes[r, 0].set_ylabel(title, fontsize=7, rotation=0, ha="right", va="center")
    if mappable is not None:
        fig.colorbar(mappable, ax=axes[:, -1].tolist(), shrink=0.5).set_label("pixel change")
    fig.suptitle(
        "VAE latent walks between instances of two classes: classifier's class and probability "
        "under each step, first step of the new class in red"
    )
    return fig
