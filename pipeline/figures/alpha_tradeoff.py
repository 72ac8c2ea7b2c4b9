"""ClaDec's alpha trade-off: each loss against alpha, one line per layer, the layer's
reference autoencoder as a dashed line of the same colour."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

PANELS = (
    ("mse_per_pixel", "reconstruction MSE per pixel"),
    ("sse_per_image", "sum of squared errors per image"),
    ("classifier_ce", "classifier cross-entropy on decoded"),
    ("classifier_accuracy", "classifier accuracy on decoded"),
)


def plot_alpha_tradeoff(rows: Sequence[dict[str, Any]], title: str) -> Figure:
    """rows: one per model with kind ('cladec'/'refae'), layer, alpha and the metrics."""
    fig, axes = plt.subplots(1, len(PANELS), figsize=(4.2 * len(PANELS), 3.8))
    layers = sorted({r["layer"] for r in rows})
    colours = plt.get_cmap("tab10")
    for ax, (key, label) in zip(axes, PANELS, strict=True):
        for i, layer in enumerate(layers):
            points = sorted(
                (r["alpha"], r[key]) for r in rows if r["kind"] == "cladec" and r["layer"] == layer
            )
            if points:
                ax.plot(*zip(*points, strict=True), "-o", color=colours(i), label=f"ClaDec {layer}")
            for r in rows:
                if r["kind"] == "refae" and r["layer"] == layer:
                    ax.axhline(r[key], ls="--", color=colours(i), label=f"RefAE {layer}")
        ax.set_xscale("symlog", linthresh=0.01)
        ax.set_xlim(0, 1.1)
        ax.set_xlabel("alpha (weight of the classification loss)")
        ax.set_title(label, fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig
