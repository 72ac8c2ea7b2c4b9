"""One figure comparing the attribution methods: mean deletion and insertion curves,
their AUCs against the random baseline, and the cascading randomization curves."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from pipeline.evaluate import RANDOM_BASELINE as RANDOM


def _colours(methods: Sequence[str]) -> dict[str, Any]:
    cmap = plt.get_cmap("tab10")
    colours = {m: cmap(i % 10) for i, m in enumerate(m for m in methods if m != RANDOM)}
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
    for ax, curves, name in (
        (axes[0, 0], deletion, "Deletion"),
        (axes[0, 1], insertion, "Insertion"),
    ):
        for m, curve in curves.items():
            ax.plot(fractions, curve, label=m, color=colours[m], ls="--" if m == RANDOM else "-")
        ax.set_xlabel(
            "fraction of pixels deleted" if name == "Deletion" else "fraction of pixels inserted"
        )
        ax.set_ylabel("probability of the predicted class (mean)")
        better = "lower" if name == "Deletion" else "higher"
        ax.set_title(f"{name} curves ({better} area is better)")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)

    ax = axes[1, 0]
    ranked = [m for m in methods if m != RANDOM]
    x = np.arange(len(ranked))
    dele = [scores[m]["deletion_auc"] for m in ranked]
    ins = [scores[m]["insertion_auc"] for m in ranked]
    ax.bar(x - 0.2, dele, 0.4, label="deletion AUC (lower is better)", color="tab:red")
    ax.bar(x + 0.2, ins, 0.4, label="insertion AUC (higher is better)", color="tab:green")
    ax.axhline(
        scores[RANDOM]["deletion_auc"], color="tab:red", ls="--", lw=1, label="random: deletion"
    )
    ax.axhline(
        scores[RANDOM]["insertion_auc"], color="tab:green", ls="--", lw=1, label="random: insertion"
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
