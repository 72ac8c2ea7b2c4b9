"""Attribution figures: for each selected instance the image, the map for the
predicted class and, when the prediction is wrong, the map for the true class.

Signed methods use a diverging colour map centred at 0 (red = evidence for the class,
blue = against); non-negative ones a sequential map. Each map is scaled by its own
largest absolute value, so the colour bar reads "share of this image's strongest
attribution". LIME is drawn as in its image tutorial: superpixel boundaries, the
strongest superpixels for the class in green and against it in red.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from pipeline.explain.base import Instance
from pipeline.figures.common import to_display

SIGNED_CMAP = "RdBu_r"
POSITIVE_CMAP = "inferno"


PANEL = 112  # pixels per panel side in the mosaic (small images are enlarged to it)


def _rgb(image: np.ndarray) -> np.ndarray:
    """C×H×W image -> H×W×3 floats in [0, 1]."""
    array, _ = to_display(image)
    return np.repeat(array[..., None], 3, axis=2) if array.ndim == 2 else array


def _enlarged(rgb: np.ndarray, side: int = PANEL) -> np.ndarray:
    """Nearest-neighbour enlargement by a whole factor, so pixels stay sharp squares."""
    scale = max(1, side // max(rgb.shape[:2]))
    return rgb.repeat(scale, 0).repeat(scale, 1)


def _caption(instance: Instance, names: Sequence[str], cls: int) -> str:
    return f"{names[cls]} ({instance.probabilities[cls]:.2f})"


def _mosaic_figure(
    instances: Sequence[Instance],
    class_names: Sequence[str],
    panels: Callable[[int, Instance], list[np.ndarray]],
    per_row: int,
    title: str,
) -> tuple[Figure, Axes]:
    """One figure, one axes: per instance three panels (the image, the predicted class's
    panel, the true class's when wrong) pasted into a single RGB mosaic with a caption
    above each. Drawing ~150 separate axes took a second per figure; one image with
    text on it takes a tenth of that and looks the same."""
    import matplotlib.pyplot as plt

    rows = max(1, -(-len(instances) // per_row))
    first = _enlarged(_rgb(instances[0].image)) if instances else np.ones((PANEL, PANEL, 3))
    h, w = first.shape[:2]
    gap, head = max(2, w // 14), max(6, h // 5)  # between panels; room for a caption
    cell_w, cell_h = w + gap, h + head
    mosaic = np.ones((rows * cell_h, per_row * 3 * cell_w, 3), dtype=np.float32)
    captions: list[tuple[float, float, str, str]] = []
    for i, inst in enumerate(instances):
        row, col = divmod(i, per_row)
        y = row * cell_h + head
        wrong = inst.predicted != inst.label
        texts = [
            (f"true: {class_names[inst.label]}", "black"),
            (
                f"pred: {_caption(inst, class_names, inst.predicted)}",
                "tab:red" if wrong else "black",
            ),
            (f"true: {_caption(inst, class_names, inst.label)}", "black"),
        ]
        for k, panel in enumerate([_enlarged(_rgb(inst.image)), *panels(i, inst)]):
            x = (col * 3 + k) * cell_w
            mosaic[y : y + h, x : x + w] = np.clip(panel[:h, :w], 0, 1)
            captions.append((x + w / 2, y - head * 0.15, *texts[k]))
    fig_w = per_row * 3 * 1.35 + 1.2
    fig, ax = plt.subplots(figsize=(fig_w, fig_w * mosaic.shape[0] / mosaic.shape[1] + 0.7))
    ax.imshow(mosaic, interpolation="nearest")
    for x, y, text, colour in captions:
        ax.text(x, y, text, ha="center", va="bottom", fontsize=7, color=colour)
    ax.set_axis_off()
    ax.set_title(title, fontsize=11, pad=12)  # on the axes: the saved PNG crops tightly to it
    return fig, ax


def heat_panel(image: np.ndarray, heat: np.ndarray, signed: bool) -> np.ndarray:
    """The map over the faded image, as the figures show it: the image at 45% over
    white, then the map scaled by its largest |value| at 75% in the colour map."""
    import matplotlib

    cmap = matplotlib.colormaps[SIGNED_CMAP if signed else POSITIVE_CMAP]
    scale = np.abs(heat).max() or 1.0
    values = heat / scale
    normed = (values + 1) / 2 if signed else np.clip(values, 0, 1)
    faded = 0.45 * _rgb(image) + 0.55
    return _enlarged(0.75 * cmap(normed)[..., :3] + 0.25 * faded)


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
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    def panels(i: int, inst: Instance) -> list[np.ndarray]:
        maps = [predicted_maps[i]] + ([true_maps[i]] if i in true_maps else [])
        return [heat_panel(inst.image, m, signed) for m in maps]

    fig, ax = _mosaic_figure(
        instances,
        class_names,
        panels,
        per_row,
        f"{method}: image, map for the predicted class, and for the true class when wrong "
        "(class and probability above each map)",
    )
    mappable = ScalarMappable(
        Normalize(-1.0 if signed else 0.0, 1.0), SIGNED_CMAP if signed else POSITIVE_CMAP
    )
    bar = fig.colorbar(mappable, ax=ax, shrink=0.6, pad=0.01)
    bar.set_label("attribution / image's max |attribution|")
    return fig


def lime_overlay(
    image: np.ndarray, segments: np.ndarray, weights: np.ndarray, features: int
) -> np.ndarray:
    """H×W×3 picture: the image with superpixel boundaries, the `features` superpixels
    with the largest |weight| tinted green (for the class) or red (against)."""
    from skimage.segmentation import mark_boundaries

    rgb = _rgb(image).copy()
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

    def panels(i: int, inst: Instance) -> list[np.ndarray]:
        chosen = [weights[i]] + ([true_weights[i]] if i in true_weights else [])
        return [_enlarged(lime_overlay(inst.image, segments[i], w, features)) for w in chosen]

    fig, _ = _mosaic_figure(
        instances,
        class_names,
        panels,
        per_row,
        f"LIME: the {features} strongest superpixels, green for the class and red against it "
        "(predicted class; true class when wrong)",
    )
    return fig
