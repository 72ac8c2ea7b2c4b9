"""Attribution figures: for each selected instance the image, the map for the
predicted class and, when the prediction is wrong, the map for the true class.

Signed methods use a diverging colour map centred at 0 (red = evidence for the class,
blue = against); non-negative ones a sequential map. Each map is scaled by its own
largest absolute value, so the colour bar reads "share of this image's strongest
attribution". LIME is drawn as in its image tutorial: superpixel boundaries, the
strongest superpixels for the class in green and against it in red.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from pipeline.explain.base import Instance
from pipeline.figures.common import to_display

SIGNED_CMAP = "RdBu_r"
POSITIVE_CMAP = "inferno"


def _grid(count: int, per_row: int) -> tuple[Figure, np.ndarray]:
    rows = max(1, -(-count // per_row))
    fig, axes = plt.subplots(
        rows, per_row * 3, figsize=(per_row * 3 * 1.35 + 1.2, rows * 1.55 + 0.9), squeeze=False
    )
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_frame_on(False)
    return fig, axes


def _show_image(ax: Axes, image: np.ndarray, alpha: float = 1.0) -> None:
    array, cmap = to_display(image)
    ax.imshow(array, cmap=cmap or None, vmin=0, vmax=1, alpha=alpha)


def _caption(instance: Instance, names: Sequence[str], cls: int) -> str:
    return f"{names[cls]} ({instance.probabilities[cls]:.2f})"


def _instance_panels(
    axes: np.ndarray,
    i: int,
    per_row: int,
    inst: Instance,
    class_names: Sequence[str],
    predicted: np.ndarray,
    true: np.ndarray | None,
) -> list[tuple[Axes, np.ndarray]]:
    """Draw instance i's image in its slot of the grid, title its map panels (class and
    probability; a wrong prediction in red) and return (axes, values) to draw into: the
    predicted class's, and the true class's when given."""
    row, col = divmod(i, per_row)
    ax_img, ax_pred, ax_true = axes[row, col * 3 : col * 3 + 3]
    _show_image(ax_img, inst.image)
    ax_img.set_title(f"true: {class_names[inst.label]}", fontsize=7)
    panels = [(ax_pred, predicted, "pred", inst.predicted)]
    if true is not None:
        panels.append((ax_true, true, "true", inst.label))
    for ax, _, kind, cls in panels:
        ax.set_title(
            f"{kind}: {_caption(inst, class_names, cls)}",
            fontsize=7,
            color="tab:red" if kind == "pred" and inst.predicted != inst.label else "black",
        )
    return [(ax, values) for ax, values, _, _ in panels]


def plot_attribution_grid(
    instances: Sequence[Instance],
    predicted_maps: np.ndarray,
    true_maps: dict[int, np.ndarray],
    class_names: Sequence[str],
    method: str,
    signed: bool,
    per_row: int = 4,
) -> Figure:
    """predicted_maps: N×H×W; true_maps: instance row -> H×W for misclassified rows."""
    fig, axes = _grid(len(instances), per_row)
    cmap = SIGNED_CMAP if signed else POSITIVE_CMAP
    vmin = -1.0 if signed else 0.0
    mappable = None
    for i, inst in enumerate(instances):
        panels = _instance_panels(
            axes, i, per_row, inst, class_names, predicted_maps[i], true_maps.get(i)
        )
        for ax, heat in panels:
            scale = np.abs(heat).max() or 1.0
            _show_image(ax, inst.image, alpha=0.45)
            mappable = ax.imshow(heat / scale, cmap=cmap, vmin=vmin, vmax=1.0, alpha=0.75)
    if mappable is not None:
        bar = fig.colorbar(mappable, ax=axes.ravel().tolist(), shrink=0.6, pad=0.01)
        bar.set_label("attribution / image's max |attribution|")
    fig.suptitle(
        f"{method}: image, map for the predicted class, and for the true class when wrong "
        "(class and probability above each map)"
    )
    return fig


def lime_overlay(
    image: np.ndarray, segments: np.ndarray, weights: np.ndarray, features: int
) -> np.ndarray:
    """H×W×3 picture: the image with superpixel boundaries, the `features` superpixels
    with the largest |weight| tinted green (for the class) or red (against)."""
    from skimage.segmentation import mark_boundaries

    array, _ = to_display(image)
    rgb = np.repeat(array[..., None], 3, axis=2) if array.ndim == 2 else array.copy()
    # small images are enlarged first, so the one-pixel boundaries stay thin lines
    scale = max(1, 112 // max(segments.shape))
    rgb = rgb.repeat(scale, 0).repeat(scale, 1)
    segments = segments.repeat(scale, 0).repeat(scale, 1)
    finite = np.where(np.isfinite(weights), weights, 0.0)
    top = np.argsort(-np.abs(finite))[:features]
    for k in top:
        if finite[k] == 0:
            continue
        colour = np.array([0.0, 0.8, 0.0]) if finite[k] > 0 else np.array([0.9, 0.0, 0.0])
        mask = segments == k
        rgb[mask] = 0.45 * rgb[mask] + 0.55 * colour
    return mark_boundaries(rgb, segments, color=(0.95, 0.85, 0.1), mode="inner")


def plot_lime_grid(
    instances: Sequence[Instance],
    segments: np.ndarray,
    weights: np.ndarray,
    true_weights: dict[int, np.ndarray],
    class_names: Sequence[str],
    features: int,
    per_row: int = 4,
) -> Figure:
    """LIME pros (green) and cons (red) for the predicted class and, when wrong, the
    true class; weights: N×K (NaN-padded), true_weights: row -> K."""
    fig, axes = _grid(len(instances), per_row)
    for i, inst in enumerate(instances):
        panels = _instance_panels(
            axes, i, per_row, inst, class_names, weights[i], true_weights.get(i)
        )
        for ax, w in panels:
            ax.imshow(lime_overlay(inst.image, segments[i], w, features))
    fig.suptitle(
        f"LIME: the {features} strongest superpixels, green for the class and red against it "
        "(predicted class; true class when wrong)"
    )
    return fig
