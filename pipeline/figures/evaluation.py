"""One figure comparing the attribution methods: the mean deletion, insertion and ROAD
curves; every AUC with its bootstrap 95% interval against the random baseline's; the
cascading randomization curves and the sanity ρ with its interval on all pixels and on
the foreground."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from pipeline.evaluate import DELETION, INSERTION, ROAD_LERF, ROAD_MORF, SANITY
from pipeline.evaluate import RANDOM_BASELINE as RANDOM
from pipeline.explain.base import Score

# (curve kind, score, x-axis label)
CURVE_PANELS = (
    ("deletion", DELETION, "fraction of pixels deleted"),
    ("insertion", INSERTION, "fraction of pixels inserted"),
    ("road_morf", ROAD_MORF, "fraction removed and imputed, most relevant first"),
    ("road_lerf", ROAD_LERF, "fraction removed and imputed, least relevant first"),
)
FOREGROUND = "sanity_spearman_foreground"
HOW_TO_READ = (
    "How to read: dots are means over the evaluation images, bars their bootstrap 95% "
    "intervals; the grey band is the random baseline's interval. A method beats random only "
    "where its bar clears the band. Sanity: ρ near 1 after every layer is randomized means "
    "the map does not depend on the model; flagged when the whole bar lies above the line."
)


def _colours(methods: Sequence[str]) -> dict[str, Any]:
    cmap = plt.get_cmap("tab20")
    colours = {m: cmap(i % 20) for i, m in enumerate(m for m in methods if m != RANDOM)}
    colours[RANDOM] = "grey"
    return colours


def _interval(row: Mapping[str, Any], key: str) -> tuple[float, float, float]:
    return row[key], row[f"{key}_low"], row[f"{key}_high"]


def _dot_whisker(
    ax: Axes,
    methods: Sequence[str],
    scores: Mapping[str, Mapping[str, Any]],
    score: Score,
    colours: Mapping[str, Any],
    band: tuple[float, float] | None = None,
    threshold: float | None = None,
    label: str | None = None,
) -> None:
    """Means with 95% intervals, one row per method; the baseline as a grey band."""
    y = np.arange(len(methods))[::-1]
    for row, m in zip(y, methods, strict=True):
        mean, low, high = _interval(scores[m], score.key)
        if not np.isfinite(mean):
            continue
        ax.errorbar(
            mean,
            row,
            xerr=[[mean - low], [high - mean]],
            fmt="o",
            color=colours[m],
            capsize=3,
        )
    if band is not None:
        ax.axvspan(*band, color="grey", alpha=0.25, label="random: 95% interval")
    if threshold is not None:
        ax.axvline(threshold, color="black", ls=":", lw=1, label=f"flag above {threshold:g}")
    ax.set_yticks(y, methods, fontsize=8)
    ax.set_xlabel(f"{label or score.label} ({score.direction} is better)")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=7, loc="best")


def plot_evaluation(
    curves: Mapping[str, tuple[np.ndarray, Mapping[str, np.ndarray]]],
    scores: Mapping[str, Mapping[str, Any]],
    sanity: Mapping[str, Sequence[Mapping[str, Any]]],
    threshold: float,
    title: str,
) -> Figure:
    """`curves`: kind -> (x, method -> mean curve); `scores`: the evaluate metrics;
    `sanity`: method -> cascade rows (layer, spearman)."""
    methods = [m for m in scores if m != RANDOM]
    colours = _colours([RANDOM, *methods])
    fig, axes = plt.subplots(3, 4, figsize=(20, 14), layout="constrained")
    for ax, (kind, score, xlabel) in zip(axes[0], CURVE_PANELS, strict=True):
        x, by_method = curves[kind]
        for m, curve in by_method.items():
            ax.plot(x, curve, label=m, color=colours[m], ls="--" if m == RANDOM else "-")
        ax.set_xlabel(xlabel, fontsize=9)
        ax.set_ylabel("probability of the predicted class (mean)")
        ax.set_title(
            f"{score.label.removesuffix(' AUC')} curves ({score.direction} area is better)"
        )
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=7, ncols=2)

    for ax, (_, score, _) in zip(axes[1], CURVE_PANELS, strict=True):
        _, low, high = _interval(scores[RANDOM], score.key)
        _dot_whisker(ax, methods, scores, score, colours, band=(low, high))
        n = next((scores[m][f"{score.key}_n"] for m in methods), 0)
        ax.set_title(f"{score.label} with 95% intervals ({n} images)")

    ax = axes[2, 0]
    for m, rows in sanity.items():
        if not rows:
            continue
        steps = np.arange(1, len(rows) + 1)
        ax.plot(steps, [r["spearman"] for r in rows], marker="o", color=colours.get(m), label=m)
        ax.set_xticks(steps, [str(r["layer"]) for r in rows], rotation=30, ha="right", fontsize=8)
    ax.axhline(threshold, color="black", ls=":", lw=1, label=f"flag above {threshold:g}")
    ax.axhline(0, color="grey", lw=0.5)
    ax.set_ylim(-0.2, 1.05)
    ax.set_xlabel("randomized down to layer (top first; first seed)")
    ax.set_ylabel("Spearman ρ of |attribution| vs trained model")
    ax.set_title("Cascading randomization: should fall")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncols=2)

    with_sanity = [m for m in methods if f"{SANITY.key}_n" in scores[m]]
    for ax, key, label in (
        (axes[2, 1], SANITY.key, "ρ, all pixels"),
        (axes[2, 2], FOREGROUND, "ρ, foreground pixels"),
    ):
        _dot_whisker(
            ax,
            with_sanity,
            scores,
            Score(key, label, "lower"),
            colours,
            threshold=threshold,
            label=f"{label} (mean over seeds; 95% interval)",
        )
        ax.set_xlim(-0.2, 1.05)
        ax.set_title(f"Sanity: {label}, all layers random")
    ax = axes[2, 3]
    ax.axis("off")
    ax.text(0, 1, HOW_TO_READ, va="top", ha="left", wrap=True, fontsize=10)
    fig.suptitle(title)
    return fig
