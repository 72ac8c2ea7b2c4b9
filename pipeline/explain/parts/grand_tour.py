"""The Grand Tour (Li, Zhao & Scheidegger, Distill 2020): a smoothly rotating linear
projection of a layer's activations.

Unlike t-SNE or UMAP, every frame is a plain orthogonal projection, so what moves on
screen is the data, not an artefact of the embedding: distances never grow, and a
cluster that looks separated in some frame is separated in activation space. As in the
paper, the rotation at time t is the product over all planes (i, j), i < j, of a Givens
rotation by velocity_ij * t, with fixed random angular velocities; it is continuous in t
and equal to the identity at t = 0.

Conventions: activations are N×D (one row per instance); a rotation R is D×D and acts
on column vectors, so the rotated rows are X Rᵀ and a frame keeps their first two
coordinates.

A rotation costs D²/2 plane updates (measured on a 2-core CPU: 1 s a frame at D = 512,
4.4 s at 1,000, about 18 s at ImageNet's 2,048-d resnet50 features), so a layer wider
than MAX_TOUR_DIMENSIONS is toured in its leading principal components (fitted on the
final model's activations; the epochs are projected on the same axes). N points span at
most N - 1 dimensions, so up to 513 instances this keeps their geometry exactly; beyond,
the metrics say what share of the variance the toured components hold.

torch is imported inside `compute` only, so the figure stage does not load it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any, Protocol

import numpy as np
from pydantic import Field

from pipeline.explain.base import Computed, InsidePart, MethodParams
from pipeline.skips import Skipped

if TYPE_CHECKING:
    from collections.abc import Iterator

    from torch import nn

    from pipeline.data import Splits

    class Inputs(Protocol):
        seed: int
        splits: Splits
        net: nn.Module
        class_names: list[str]
        model_labels: np.ndarray | None

        def epoch_classifiers(self) -> Iterator[tuple[int, nn.Module]]: ...


log = logging.getLogger(__name__)
SOFTMAX = "softmax"  # the layer name for the model's softmax output
PREDICTED_COLOURS = "colours_are_predictions"  # stored only when the labels are unknown
PREDICTED_COLOURS_NOTE = "colour = the model's predicted class (no labels in its classes)"
MAX_TOUR_DIMENSIONS = 512  # wider layers are toured in this many principal components
TOUR_LENGTH = 3.0  # the rotation parameter t runs from 0 to this over the animation


class GrandTourParams(MethodParams):
    layers: list[Annotated[str, Field(min_length=1)]] = Field(
        ["softmax", "dense"],
        min_length=1,
        description="softmax = the softmax output; or layer names / module paths",
    )
    instances: int = Field(1000, ge=10, description="test instances projected")
    frames: int = Field(36, ge=2, description="frames of the rotation animation")


def _check_dim(dim: int) -> int:
    if isinstance(dim, bool) or not isinstance(dim, int | np.integer):
        raise ValueError(f"dim must be an integer, got {dim!r}")
    if dim < 2:
        raise ValueError(f"the Grand Tour needs at least 2 dimensions to project onto, got {dim}")
    return int(dim)


def givens(dim: int, i: int, j: int, theta: float) -> np.ndarray:
    """The D×D rotation by `theta` in the plane of axes i and j, turning e_i toward e_j
    (the building block of the tour: one plane at a time keeps every product orthonormal)."""
    dim = _check_dim(dim)
    if not (0 <= i < dim and 0 <= j < dim):
        raise ValueError(f"plane ({i}, {j}) is outside {dim} dimensions")
    if i == j:
        raise ValueError(f"a rotation plane needs two different axes, got ({i}, {j})")
    c, s = math.cos(theta), math.sin(theta)
    rotation = np.eye(dim)
    rotation[i, i] = c
    rotation[j, j] = c
    rotation[j, i] = s  # column i = R e_i = cos e_i + sin e_j
    rotation[i, j] = -s
    return rotation


class GrandTour:
    """Rotations of R^dim that wander smoothly through all orientations.

    Each plane (i, j), i < j, gets a fixed angular velocity drawn uniformly from
    [-speed, speed] (radians per unit of t) by a generator seeded with `seed`, so the
    same (dim, seed, speed) always gives the same tour.
    """

    def __init__(self, dim: int, seed: int, speed: float = 1.0) -> None:
        self.dim = _check_dim(dim)
        if not math.isfinite(speed) or speed <= 0:
            raise ValueError(f"speed must be a positive finite number, got {speed!r}")
        self.seed = seed
        self.speed = float(speed)
        rows, cols = np.triu_indices(self.dim, k=1)
        self.planes: list[tuple[int, int]] = list(zip(rows.tolist(), cols.tolist(), strict=True))
        rng = np.random.default_rng(seed)
        self.velocities: np.ndarray = rng.uniform(-self.speed, self.speed, size=len(self.planes))

    def rotation(self, t: float) -> np.ndarray:
        """The D×D orthonormal matrix G_01(w_01 t) G_02(w_02 t) ... G_(D-2)(D-1)(w t)."""
        if not math.isfinite(t):
            raise ValueError(f"t must be finite, got {t!r}")
        angles = self.velocities * t
        cosines, sines = np.cos(angles), np.sin(angles)
        # Build Rᵀ row by row: right-multiplying R by G(i, j) only mixes columns i and j of
        # R, i.e. rows i and j of Rᵀ, so each plane costs O(D) instead of a D×D product.
        transposed = np.eye(self.dim)
        for (i, j), c, s in zip(self.planes, cosines.tolist(), sines.tolist(), strict=True):
            row_i = transposed[i].copy()
            row_j = transposed[j]
            transposed[i] = c * row_i + s * row_j
            transposed[j] = c * row_j - s * row_i
        return np.ascontiguousarray(transposed.T)

    def frames(self, n_frames: int, step: float) -> list[np.ndarray]:
        """Rotations at t = 0, step, 2·step, ...: the key frames of an animation."""
        if n_frames < 1:
            raise ValueError(f"n_frames must be at least 1, got {n_frames}")
        if not math.isfinite(step):
            raise ValueError(f"step must be finite, got {step!r}")
        return [self.rotation(k * step) for k in range(n_frames)]


def project(activations: np.ndarray, rotation: np.ndarray) -> np.ndarray:
    """N×2 view of N×D activations: centre on the instances' mean (so the tour turns
    around the data, not around the origin), rotate, keep the first two coordinates."""
    data = np.asarray(activations, dtype=np.float64)
    if data.ndim != 2 or data.shape[0] == 0:
        raise ValueError(f"activations must be a non-empty N×D array, got shape {data.shape}")
    _check_dim(data.shape[1])
    if not np.isfinite(data).all():
        raise ValueError("activations contain NaN or infinite values")
    matrix = np.asarray(rotation, dtype=np.float64)
    if matrix.shape != (data.shape[1], data.shape[1]):
        raise ValueError(
            f"rotation must be {data.shape[1]}×{data.shape[1]} to match the activations, "
            f"got shape {matrix.shape}"
        )
    centred = data - data.mean(axis=0)
    # first two coordinates of R x for every row x: rows 0 and 1 of R only
    return centred @ matrix[:2].T


def principal_basis(
    activations: np.ndarray, dimensions: int
) -> tuple[np.ndarray | None, np.ndarray, float | None]:
    """(D×k basis, activations on it, share of the variance kept) with k = `dimensions`
    leading principal components, or (None, activations, None) when D is within it."""
    data = np.asarray(activations, dtype=np.float64)
    if data.shape[1] <= dimensions:
        return None, activations, None
    _, values, rows = np.linalg.svd(data - data.mean(axis=0), full_matrices=False)
    basis = rows[:dimensions].T
    total = float((values**2).sum())
    kept = float((values[:dimensions] ** 2).sum()) / total if total > 0 else 1.0
    return basis, data @ basis, kept


def normalise(points_list: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Scale every frame by one common factor so the largest |coordinate| over all frames
    is 1: the axes can then stay fixed and motion between frames is not hidden by zoom."""
    if len(points_list) == 0:
        raise ValueError("normalise needs at least one frame")
    frames = [np.asarray(points, dtype=np.float64) for points in points_list]
    for points in frames:
        if points.ndim != 2 or points.shape[1] != 2 or points.shape[0] == 0:
            raise ValueError(f"each frame must be a non-empty N×2 array, got shape {points.shape}")
    largest = max(float(np.abs(points).max()) for points in frames)
    scale = 1.0 / largest if largest > 0 else 1.0
    return [points * scale for points in frames]


def layer_activations(
    net: nn.Module, layer: str, images: np.ndarray, probabilities: np.ndarray | None = None
) -> np.ndarray:
    """N×D activations of a layer for uint8 images; `softmax` is the softmax output
    (`probabilities`, when already computed, so it is not run twice)."""
    from pipeline.inference import layer_codes, predict_proba

    if layer == SOFTMAX:
        return predict_proba(net, images) if probabilities is None else probabilities
    return layer_codes(net, layer, images).flatten(1).numpy()


def _predict(net: nn.Module, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Softmax probabilities and the predicted class (int16: the pages mark the wrong ones)."""
    from pipeline.inference import predict_proba

    probabilities = predict_proba(net, images)
    return probabilities, probabilities.argmax(axis=1).astype(np.int16)


class GrandTourPart(InsidePart):
    name = "grand_tour"
    Params = GrandTourParams
    title = "Grand Tour"
    reference = (
        "Li, Zhao & Scheidegger, Visualizing Neural Networks with the Grand Tour, Distill 2020"
    )
    seeded = True  # the projected instances and the tour's angular velocities
    extra_layer_names = (SOFTMAX,)

    def compute(self, inputs: Inputs, p: GrandTourParams) -> Computed:  # type: ignore[override]
        """`tour`: per layer the normalised N×2 frames of the rotation (`<layer>/rotation`,
        at `<layer>/times`) and, with one fixed projection, after every saved epoch
        (`<layer>/epochs`); the instances' labels and test rows, and the predicted classes
        of the final model (`predictions`, N) and after every epoch (`epoch_predictions`,
        E×N), so the pages can mark misclassified points."""
        import torch

        splits, net = inputs.splits, inputs.net
        try:
            epoch_nets = inputs.epoch_classifiers()  # checked now, loaded one at a time later
        except Skipped as no_epochs:
            # a model explained as it is: its one state is epoch 0, as in the classifier's
            # epoch_predictions.npz
            log.info("Grand Tour across epochs: the final model only (%s)", no_epochs)
            epoch_nets = iter([(0, net)])
        rng = np.random.default_rng(inputs.seed)
        count = min(p.instances, len(splits.x_test))
        rows = np.sort(rng.choice(len(splits.x_test), count, replace=False))
        images, known = splits.x_test[rows], inputs.model_labels
        with torch.inference_mode():
            probabilities, predictions = _predict(net, images)
        # colours: the labels, or the model's predictions when the test labels are not its
        # classes (a model explained as it is on a folder of other classes)
        arrays: dict[str, np.ndarray] = {
            "labels": known[rows] if known is not None else predictions,
            "test_indices": rows,
            "layers": np.array(p.layers),
            "class_names": np.array(inputs.class_names),
            "predictions": predictions,
        }
        if known is None:
            arrays[PREDICTED_COLOURS] = np.array(True)
            log.info("Grand Tour colours: %s", PREDICTED_COLOURS_NOTE)
        metrics: dict[str, float] = {"instances": count}
        step = TOUR_LENGTH / (p.frames - 1)
        fixed: dict[str, np.ndarray] = {}
        bases: dict[str, np.ndarray | None] = {}
        with torch.inference_mode():
            for layer in p.layers:
                final = layer_activations(net, layer, images, probabilities)
                metrics[f"{layer}/dimensions"] = float(final.shape[1])
                bases[layer], final, kept = principal_basis(final, MAX_TOUR_DIMENSIONS)
                if kept is not None:
                    metrics[f"{layer}/toured_dimensions"] = float(final.shape[1])
                    metrics[f"{layer}/variance_toured"] = kept
                rotations = GrandTour(final.shape[1], inputs.seed).frames(p.frames, step)
                arrays[f"{layer}/rotation"] = np.stack(
                    normalise([project(final, r) for r in rotations])
                )
                arrays[f"{layer}/times"] = step * np.arange(p.frames)
                # one fixed projection for every epoch, so only the model changes between frames
                fixed[layer] = rotations[len(rotations) // 3]
            epochs, predicted, per_epoch = [], [], {layer: [] for layer in p.layers}
            for epoch, epoch_net in epoch_nets:
                epochs.append(epoch)
                probabilities, classes = _predict(epoch_net, images)
                predicted.append(classes)
                for layer in p.layers:
                    codes = layer_activations(epoch_net, layer, images, probabilities)
                    codes = codes if bases[layer] is None else codes @ bases[layer]
                    per_epoch[layer].append(project(codes, fixed[layer]))
        for layer, frames in per_epoch.items():
            arrays[f"{layer}/epochs"] = np.stack(normalise(frames))
        arrays["epochs"] = np.array(epochs)
        arrays["epoch_predictions"] = np.array(predicted, dtype=np.int16).reshape(
            len(epochs), count
        )
        metrics["epochs"] = len(epochs)
        return Computed({"tour": arrays}, metrics)

    def draw(self, stored: dict[str, dict[str, np.ndarray]], p: GrandTourParams) -> dict[str, Any]:  # type: ignore[override]
        """Per layer `<layer>_rotation.gif` / `.html` (interactive, offline) / `.png` (eight
        frames), `<layer>_epochs.gif` / `.html` (dots in module paths become `_`)."""
        from pipeline.figures.grand_tour import (
            figure_page,
            plot_tour_frames,
            stored_tours,
            tour_gif,
        )

        z = stored["tour"]
        labels, names = z["labels"], [str(n) for n in z["class_names"]]
        colours = f"; {PREDICTED_COLOURS_NOTE}" if PREDICTED_COLOURS in z else ""
        pages = stored_tours(z)
        drawn: dict[str, Any] = {}
        for layer in z["layers"]:
            slug = str(layer).replace(".", "_")
            frames = list(z[f"{layer}/rotation"])
            titles = [f"Grand Tour of {layer}, t = {t:.2f}" for t in z[f"{layer}/times"]]
            drawn[f"{slug}_rotation.gif"] = tour_gif(frames, labels, names, titles)
            drawn[f"{slug}_rotation.html"] = figure_page(pages[slug]["rotation"])
            picks = np.linspace(0, len(frames) - 1, min(8, len(frames))).astype(int)
            drawn[f"{slug}_rotation.png"] = plot_tour_frames(
                [frames[i] for i in picks],
                labels,
                names,
                [titles[i] for i in picks],
                title=f"Grand Tour of {layer}: rotating projections{colours}",
            )
            frames = list(z[f"{layer}/epochs"])
            titles = [f"{layer} after epoch {int(e)}" for e in z["epochs"]]
            drawn[f"{slug}_epochs.gif"] = tour_gif(frames, labels, names, titles, fps=2)
            drawn[f"{slug}_epochs.html"] = figure_page(pages[slug]["epochs"])
        return drawn
