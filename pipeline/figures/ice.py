"""ICE figures: where each concept lies in the images, which classes it goes with, the
images that show it most and least, and how many concepts the model needs. Each concept
figure says in its title how many of the model's predictions the concepts shown keep.

Concept maps are non-negative, so they use a sequential colour map, each concept scaled
by its own largest score among the images drawn (1 = the strongest occurrence shown);
class weights are signed and use a diverging map centred at 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from pipeline.figures.common import message_figure, to_display

CONCEPT_CMAP = "inferno"
WEIGHT_CMAP = "RdBu_r"


def _bare(ax: Axes) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_frame_on(False)


def _overlay(ax: Axes, image: np.ndarray, heat: np.ndarray | None) -> Any:
    """Draw the image, faded when a heat map (already scaled to [0, 1]) goes on top."""
    array, cmap = to_display(image)
    ax.imshow(array, cmap=cmap, vmin=0, vmax=1, alpha=1.0 if heat is None else 0.45)
    if heat is None:
        return None
    return ax.imshow(heat, cmap=CONCEPT_CMAP, vmin=0, vmax=1, alpha=0.7)


def _scale(values: np.ndarray) -> float:
    peak = float(np.max(values)) if np.size(values) else 0.0
    return peak if peak > 0 else 1.0


def kept_note(
    n_concepts: int, accuracy: float, agreement: float, original: float, predicted: bool = False
) -> str:
    """A title line: what the concepts shown keep of the model when their reconstruction
    replaces the layer's activations (so a reader knows how far to trust them).
    predicted: the classes are the model's predictions (no labels in its classes), so
    there is no accuracy to state."""
    if predicted:
        return (
            f"{n_concepts} concepts in place of the layer keep {agreement:.1%} of the "
            "predictions; classes = the model's predictions (no labels in its classes)"
        )
    return (
        f"{n_concepts} concepts in place of the layer keep {agreement:.1%} of the "
        f"predictions, accuracy {accuracy:.3f} (original {original:.3f})"
    )


MAX_CLASSES_DRAWN = 20
"""Classes the per-class figures draw at most: 1,000 ImageNet classes would make a figure
no one can read (and one Agg cannot allocate)."""


def drawn_classes(presence: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Sorted indices of the classes the per-class figures draw: every class up to
    MAX_CLASSES_DRAWN; beyond that the classes with images, and of those the ones the
    concepts move most (largest summed |weight|)."""
    n_classes = len(presence)
    if n_classes <= MAX_CLASSES_DRAWN:
        return np.arange(n_classes)
    with_images = np.flatnonzero(~np.isnan(presence).all(axis=1))
    strength = np.abs(np.asarray(weights, dtype=np.float64)[with_images]).sum(axis=1)
    keep = with_images[np.argsort(-strength, kind="stable")[:MAX_CLASSES_DRAWN]]
    return np.sort(keep)


def classes_note(presence: np.ndarray, shown: int) -> str | None:
    """A title line when the per-class figures draw `shown` of presence's classes (K×n),
    None when they draw them all."""
    total = len(presence)
    if shown == total:
        return None
    with_images = int((~np.isnan(presence).all(axis=1)).sum())
    most = f", the {shown} of {with_images} the concepts move most" if with_images > shown else ""
    return f"{shown} of the model's {total} classes: those with images here{most}"


def _title(fig: Figure, title: str, note: str | None) -> None:
    fig.suptitle(title if note is None else f"{title}\n{note}")


def plot_concept_heatmaps(
    images: np.ndarray, maps: np.ndarray, titles: Sequence[str], note: str | None = None
) -> Figure:
    """images: uint8 N×C×H×W; maps: N×n×H×W concept maps at image size; one row per image,
    the image first, then each concept's map over it. note: a second title line."""
    n_images, n_concepts = maps.shape[:2]
    fig, axes = plt.subplots(
        n_images,
        n_concepts + 1,
        figsize=(1.3 * (n_concepts + 1) + 1.2, 1.35 * n_images + 0.8),
        squeeze=False,
    )
    scales = [_scale(maps[:, k]) for k in range(n_concepts)]
    mappable = None
    for i in range(n_images):
        _bare(axes[i, 0])
        _overlay(axes[i, 0], images[i], None)
        axes[i, 0].set_ylabel(titles[i], fontsize=7)
        for k in range(n_concepts):
            ax = axes[i, k + 1]
            _bare(ax)
            mappable = _overlay(ax, images[i], maps[i, k] / scales[k])
    axes[0, 0].set_title("image", fontsize=8)
    for k in range(n_concepts):
        axes[0, k + 1].set_title(f"concept {k}", fontsize=8)
    if mappable is not None:
        bar = fig.colorbar(mappable, ax=axes.ravel().tolist(), shrink=0.6, pad=0.01)
        bar.set_label("concept score / concept's max over these images")
    _title(fig, "ICE concept maps: where each NMF concept of the layer is active", note)
    return fig


def plot_class_concepts(
    presence: np.ndarray,
    weights: np.ndarray,
    class_names: Sequence[str],
    note: str | None = None,
) -> Figure:
    """presence, weights: K×n (from class_presence and class_weights); left the share of
    each class's images showing each concept, right each concept's effect on each logit.
    note: a second title line."""
    n_classes, n_concepts = presence.shape
    bar_width = max(4.5, 0.15 * n_classes * n_concepts + 1.5)
    heat_width = max(3.5, 0.4 * n_concepts + 2.0)
    fig, (ax_bar, ax_heat) = plt.subplots(
        1,
        2,
        figsize=(bar_width + heat_width, max(4.2, 0.3 * n_classes + 2.5)),
        gridspec_kw={"width_ratios": [bar_width, heat_width]},
    )
    x = np.arange(n_classes)
    width = 0.8 / n_concepts
    colours = plt.get_cmap("tab10" if n_concepts <= 10 else "tab20")
    for k in range(n_concepts):
        ax_bar.bar(
            x - 0.4 + (k + 0.5) * width,
            np.nan_to_num(presence[:, k]),
            width,
            color=colours(k % colours.N),
            label=f"concept {k}",
        )
    for k in np.flatnonzero(np.isnan(presence).all(axis=1)):
        ax_bar.text(k, 0.02, "no images", ha="center", va="bottom", fontsize=7, rotation=90)
    ax_bar.set_xticks(x, class_names, rotation=45 if n_classes > 5 else 0, ha="right")
    ax_bar.set_ylim(0, 1.05)
    ax_bar.set_xlabel("class")
    ax_bar.set_ylabel("share of the class's images with the concept")
    ax_bar.set_title("concept presence per class", fontsize=10)
    ax_bar.legend(fontsize=7, ncol=max(1, n_concepts // 8), loc="upper right")
    ax_bar.grid(axis="y", alpha=0.3)

    finite = np.abs(weights[np.isfinite(weights)])
    limit = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
    image = ax_heat.imshow(weights, cmap=WEIGHT_CMAP, vmin=-limit, vmax=limit, aspect="auto")
    ax_heat.set_xticks(np.arange(n_concepts), [str(k) for k in range(n_concepts)])
    ax_heat.set_yticks(np.arange(n_classes), class_names)
    ax_heat.set_xlabel("concept")
    ax_heat.set_ylabel("class")
    ax_heat.set_title("class logit change per unit move along concept", fontsize=10)
    if n_classes * n_concepts <= 120:
        for (r, c), value in np.ndenumerate(weights):
            colour = "white" if abs(value) > 0.6 * limit else "black"
            ax_heat.text(c, r, f"{value:.2g}", ha="center", va="center", fontsize=6, color=colour)
    bar = fig.colorbar(image, ax=ax_heat, shrink=0.85)
    bar.set_label("Δ logit / Δ activation along unit concept direction")
    _title(fig, "ICE: which concepts each class shows, and how they move its logit", note)
    fig.tight_layout()
    return fig


def plot_concept_examples(
    images: np.ndarray,
    top: np.ndarray,
    bottom: np.ndarray,
    maps: np.ndarray,
    note: str | None = None,
) -> Figure:
    """top, bottom: n×count image indices (from top_images); maps: N×n×H×W at image size.
    Per concept a row: the images scoring highest with its map over them, then the lowest.
    note: a second title line."""
    n_concepts, count = top.shape
    columns = 2 * count + 1  # a blank column between the two groups
    fig, axes = plt.subplots(
        n_concepts,
        columns,
        figsize=(1.25 * columns + 1.4, 1.4 * n_concepts + 0.9),
        squeeze=False,
        gridspec_kw={"width_ratios": [1.0] * count + [0.3] + [1.0] * count},
    )
    mappable = None
    for k in range(n_concepts):
        scale = _scale(maps[top[k], k])
        for j in range(columns):
            _bare(axes[k, j])
        for j, index in enumerate(top[k]):
            ax = axes[k, j]
            mappable = _overlay(ax, images[index], maps[index, k] / scale)
            ax.set_title(f"#{index}: {maps[index, k].mean():.2g}", fontsize=6)
        for j, index in enumerate(bottom[k]):
            ax = axes[k, count + 1 + j]
            _overlay(ax, images[index], None)
            ax.set_title(f"#{index}: {maps[index, k].mean():.2g}", fontsize=6)
        axes[k, 0].set_ylabel(f"concept {k}", fontsize=8)
    axes[0, 0].annotate(
        "highest mean score (map over image)",
        (0, 1.35),
        xycoords="axes fraction",
        fontsize=8,
        annotation_clip=False,
    )
    axes[0, count + 1].annotate(
        "lowest mean score",
        (0, 1.35),
        xycoords="axes fraction",
        fontsize=8,
        annotation_clip=False,
    )
    if mappable is not None:
        bar = fig.colorbar(mappable, ax=axes.ravel().tolist(), shrink=0.6, pad=0.01)
        bar.set_label("concept score / max over the row's top images")
    _title(fig, "ICE: images that show each concept most and least (image #: mean score)", note)
    return fig


OURS = "ours: ‖Δ logits‖ / ‖logits‖"
REFERENCE = "reference ICE fidelity: per class, its own logit"


def plot_fidelity(
    rows: list[dict[str, Any]],
    per_class: np.ndarray | None = None,
    class_names: Sequence[str] | None = None,
    shown: int | None = None,
    layer: str | None = None,
    note: str | None = None,
) -> Figure:
    """rows: one per number of concepts, as returned by ice.fidelity; per_class: the
    reference fidelity, rows × K in the same order. How well the model run on the concept
    reconstruction matches the original as concepts are added: kept predictions, our
    logit error, the reference's fidelity (per class and its mean), and a table of the
    numbers. shown: the concept count of the other figures, marked. note: a second title
    line."""
    if not rows:
        return message_figure("no fidelity results to draw", "ICE fidelity")
    order = np.argsort([r["n_concepts"] for r in rows], kind="stable")
    rows = [rows[i] for i in order]
    n = [r["n_concepts"] for r in rows]
    fig = plt.figure(figsize=(14.0, 4.4 + 0.24 * (len(rows) + 1)))
    grid = fig.add_gridspec(2, 3, height_ratios=[4.0, 0.3 * (len(rows) + 1)])
    ax_acc, ax_err, ax_ref = (fig.add_subplot(grid[0, i]) for i in range(3))
    ax_acc.plot(n, [r["accuracy"] for r in rows], "-o", label="accuracy, reconstructed layer")
    if all("agreement" in r for r in rows):
        ax_acc.plot(n, [r["agreement"] for r in rows], "-s", label="agreement with original")
    original = float(np.mean([r["accuracy_original"] for r in rows]))
    ax_acc.axhline(original, ls="--", color="black", label=f"original accuracy ({original:.3f})")
    ax_acc.set_ylabel("share of images")
    ax_acc.set_ylim(0, 1.02)
    ax_acc.set_title("predictions kept with the layer rebuilt", fontsize=10)
    ax_acc.legend(fontsize=7, loc="lower right")
    ax_err.plot(n, [r["relative_logit_error"] for r in rows], "-o", color="tab:red")
    ax_err.set_ylabel("‖logits_rec − logits‖ / ‖logits‖ (all logits)")
    ax_err.set_title(OURS, fontsize=10)
    if per_class is not None:
        _plot_per_class(ax_ref, n, np.asarray(per_class, dtype=float)[order], class_names)
    if all("fidelity_reference" in r for r in rows):
        ax_ref.plot(
            n,
            [r["fidelity_reference"] for r in rows],
            "-o",
            color="black",
            lw=2,
            label="mean over classes",
        )
    ax_ref.set_ylabel("mean |Δ logit k| / (|mean logit k| + 1e-4)")
    ax_ref.set_title(REFERENCE, fontsize=9)
    if ax_ref.lines:
        ax_ref.legend(fontsize=6, ncol=2, loc="upper right")
    for ax in (ax_acc, ax_err, ax_ref):
        ax.set_xlabel("number of concepts")
        ax.set_xticks(n)
        ax.grid(alpha=0.3)
        if shown is not None:
            ax.axvline(shown, ls=":", color="grey")
    for ax in (ax_err, ax_ref):
        ax.set_ylim(bottom=0)
    _fidelity_table(fig.add_subplot(grid[1, :]), rows, shown)
    where = f" at layer {layer}" if layer else ""
    marked = f"; dotted: the {shown} concepts shown" if shown is not None else ""
    _title(fig, f"ICE fidelity{where}: how much of the model the concepts keep{marked}", note)
    fig.tight_layout()
    return fig


def _plot_per_class(
    ax: Axes, n: list[int], per_class: np.ndarray, class_names: Sequence[str] | None
) -> None:
    """The reference's fidelity error of each class (counts × K) as thin lines."""
    names = list(class_names) if class_names is not None else []
    names += [str(k) for k in range(len(names), per_class.shape[1])]
    colours = plt.get_cmap("tab10" if per_class.shape[1] <= 10 else "tab20")
    for k in np.flatnonzero(np.isfinite(per_class).all(axis=0)):
        ax.plot(n, per_class[:, k], lw=0.8, alpha=0.6, color=colours(k % colours.N), label=names[k])


def _fidelity_table(ax: Axes, rows: list[dict[str, Any]], shown: int | None) -> None:
    """The plotted numbers as a table, the shown concept count in bold."""
    ax.axis("off")
    columns = [
        "concepts",
        "accuracy (labels)",
        "agreement (original predictions)",
        OURS,
        "reference fidelity, mean over classes",
    ]
    cells = [
        [
            str(r["n_concepts"]),
            f"{r['accuracy']:.3f}",
            f"{r.get('agreement', float('nan')):.3f}",
            f"{r['relative_logit_error']:.3f}",
            f"{r.get('fidelity_reference', float('nan')):.3f}",
        ]
        for r in rows
    ]
    table = ax.table(cellText=cells, colLabels=columns, loc="center", cellLoc="center")
    table.auto_set_font_size(False)
    table.set_fontsize(8)
    for i, r in enumerate(rows, start=1):
        if r["n_concepts"] == shown:
            for j in range(len(columns)):
                table[i, j].set_text_props(fontweight="bold")
