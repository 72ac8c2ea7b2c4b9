"""Shared figure helpers: atomic PNG output and image display."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from pipeline.io import atomic_path


def save_figure(fig: Figure, path: str | Path, dpi: int = 130) -> Path:
    """Write a PNG atomically and release the figure's memory."""
    import matplotlib.pyplot as plt

    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format="png")
    plt.close(fig)
    return path


def to_display(image: np.ndarray) -> tuple[np.ndarray, str | None]:
    """C×H×W uint8/float image -> (array for imshow, colour map): grey for 1 channel."""
    array = np.asarray(image)
    if array.dtype == np.uint8:
        array = array.astype(np.float32) / 255.0
    if array.shape[0] == 1:
        return array[0], "gray"
    return np.clip(array.transpose(1, 2, 0), 0, 1), None


def message_figure(message: str, title: str) -> Figure:
    """A small figure that says why there is nothing to draw (a stage's declared output
    must exist even when, say, no test image was misclassified)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 1.6))
    ax.axis("off")
    ax.text(0.5, 0.5, message, ha="center", va="center", fontsize=11)
    fig.suptitle(title)
    return fig
