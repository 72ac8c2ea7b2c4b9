"""ClaDec's alpha trade-off: each loss against alpha, one line per layer, the layer's
reference autoencoder as a dashed line of the same colour, and the reference's own MNIST
numbers (`pipeline/cladec_table.py`) as grey crosses."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from pipeline.cladec_table import REFERENCE
from pipeline.figures.common import message_figure

PANELS = (
    ("mse_per_pixel", "reconstruction MSE per pixel"),
    ("sse_per_image", "sum of squared errors per image"),
    ("classifier_ce", "classifier cross-entropy on decoded"),
    ("classifier_accuracy", "classifier accuracy on decoded"),
)

REFERENCE_INDEX = {"sse_per_image": 0, "classifier_ce": 1, "classifier_accuracy": 2}


def _reference_points(layer: str, column: int) -> list[tuple[float, float]]:
    """(alpha, value) of the reference's ClaDec rows of a layer, by alpha."""
    return sorted(
        (a, v[column])
        for a, v in REFERENCE[layer].items()
        if a is not None and v[column] is not None
    )


def plot_alpha_tradeoff(rows: Sequence[dict[str, Any]], title: str, skipped: str = "") -> Figure:
    """rows: one per model with kind ('cladec'/'refae'), layer, alpha and the metrics.
    The alphas are evenly spaced on the x axis (0, 0.01, 0.5, 0.99, 0.999 crowd together
    on any continuous scale); the reference's dense-layer numbers are drawn at the alphas
    this run has. No rows (every decoder's stage skipped): the `skipped` reason instead,
    as the stage's declared output must exist."""
    if not rows:
        return message_figure(textwrap.fill(f"Skipped: {skipped}", 100), title)
    fig, axes = plt.subplots(1, len(PANELS), figsize=(4.2 * len(PANELS), 3.8))
    layers = sorted({r["layer"] for r in rows})
    alphas = sorted({r["alpha"] for r in rows if r["kind"] == "cladec"})
    at = {alpha: i for i, alpha in enumerate(alphas)}
    colours = plt.get_cmap("tab10")
    for ax, (key, label) in zip(axes, PANELS, strict=True):
        for i, layer in enumerate(layers):
            points = sorted(
                (at[r["alpha"]], r[key])
                for r in rows
                if r["kind"] == "cladec" and r["layer"] == layer
            )
            if points:
                ax.plot(*zip(*points, strict=True), "-o", color=colours(i), label=f"ClaDec {layer}")
            for r in rows:
                if r["kind"] == "refae" and r["layer"] == layer:
                    ax.axhline(r[key], ls="--", color=colours(i), label=f"RefAE {layer}")
        if key in REFERENCE_INDEX:
            ref = [
                (at[a], v) for a, v in _reference_points("dense", REFERENCE_INDEX[key]) if a in at
            ]
            if ref:
                ax.plot(*zip(*ref, strict=True), "x:", color="grey", label="reference: MNIST dense")
        ax.set_xticks(range(len(alphas)), [f"{a:g}" for a in alphas])
        ax.set_xlabel("alpha (weight of the classification loss)")
        ax.set_title(label, fontsize=10)
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig
