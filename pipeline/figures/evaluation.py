"""One figure comparing the attribution methods: mean deletion and insertion curves,
their AUCs against the random baseline, and the cascading randomization curves."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from pipeline.evaluate import DELETION, INSERTION
from pipeline.evaluate import RANDOM_BASELINE as RANDOM


def _colours(methods: Sequence[str]) -> dict[str, Any]:
    cmap = plt.get_cmap("tab20")
    colours = {m: cmap(i % 20) for i, m in enumerate(m for m in methods if m != RANDOM)}
    colours[RANDOM] = "grey"
    return colours


def plot_evaluation(
    fractions: np.ndarray,
    deletion: Mapping[str, np.ndarray],
    insertion: Mapping[str, np.ndarray],
    scores: Mapping[str, Mapping[str, Any]],
    sanity: Mapping[str, Sequence[Mapping[str, Any]]],
    threshold: float,
    title: str,
) -> Figure:
    methods = list(deletion)
    colours = _colours(methods)
    fig, axes = plt.subplots(2, 2, figsize=(12, 8.5), layout="constrained")
    for ax, curves, name, score in (
        (axes[0, 0], deletion, "Deletion", DELETION),
        (axes[0, 1], insertion, "Insertion", INSERTION),
    ):
        for m, curve in curves.items():
            ax.plot(fractions, curve, label=m, color=colours[m], ls="--" if m == RANDOM else "-")
        ax.set_xlabel(
            "fraction of pixels deleted" if name == "Deletion" else "fraction of pixels inserted"
        )
        ax.set_ylabel("probability of the predicted class (mean)")
        ax.set_title(f"{name} curves ({score.direction} area is better)")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)

    ax = axes[1, 0]
    ranked = [m for m in methods if m != RANDOM]
    x = np.arange(len(ranked))
    for offset, score, colour in ((-0.2, DELETION, "tab:red"), (0.2, INSERTION, "tab:green")):
        ax.bar(
            x + offset,
            [scores[m][score.key] for m in ranked],
            0.4,
            label=f"{score.label} ({score.direction} is better)",
            color=colour,
        )
        ax.axhline(
            scores[RANDOM][score.key], color=colour, ls="--", lw=1, label=f"random: {score.label}"
        )
    ax.set_xticks(x, ranked, rotation=20, ha="right")
    ax.set_ylabel("area under the curve")
    ax.set_title("Faithfulness against random attributions")
    ax.legend(fontsize=8)

    ax = axes[1, 1]
    for m, rows in sanity.items():
        if not rows:
            continue
        steps = np.arange(1, len(rows) + 1)
        ax.plot(steps, [r["spearman"] for r in rows], marker="o", color=colours.get(m), label=m)
        labels = [str(r["layer"]) for r in rows]
        ax.set_xticks(steps, labels, rotation=30, ha="right", fontsize=8)
    ax.axhline(threshold, color="black", ls=":", lw=1, label=f"flag above {threshold:g}")
    ax.axhline(0, color="grey", lw=0.5)
    ax.set_ylim(-0.2, 1.05)
    ax.set_xlabel("randomized down to layer (top first)")
    ax.set_ylabel("Spearman ρ of |attribution| vs trained model")
    ax.set_title("Cascading randomization (sanity check): should fall")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.suptitle(title)
    return fig
