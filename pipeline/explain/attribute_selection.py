"""Running one attribution method over the selected instances.

For every selected image the method explains the predicted class; for misclassified
ones it also explains the true class, so a figure can show why the model chose one
over the other. Extras the method returns (LIME's superpixels and weights) are kept
beside the maps, the true-class ones under `true_<key>`."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from pipeline.explain.base import AttributionMethod, Attributions, MethodParams
from pipeline.explain.stored import StoredAttributions

if TYPE_CHECKING:
    from torch import Tensor, nn


def background_sample(images: np.ndarray, count: int, seed: int) -> Tensor:
    """A seeded sample of `count` uint8 training images, as floats in [0, 1]."""
    import torch

    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(images), size=min(count, len(images)), replace=False))
    return torch.as_tensor(images[rows]).float() / 255.0


def _empty_like(result: Attributions) -> Attributions:
    """Zero instances, with the shapes of `result` (no misclassified instance)."""
    return Attributions(
        np.zeros((0, *result.maps.shape[1:]), dtype=np.float32),
        {k: np.zeros((0, *v.shape[1:]), dtype=v.dtype) for k, v in result.extras.items()},
        {k: np.zeros(0, dtype=np.float32) for k in result.metrics},
    )


def attribute_selection(
    method: AttributionMethod,
    model: nn.Module,
    images: Tensor,
    predicted: np.ndarray,
    labels: np.ndarray,
    p: MethodParams,
) -> tuple[StoredAttributions, dict[str, np.ndarray]]:
    """Attributions of `images` (float N×C×H×W) for their predicted classes, and for the
    true classes where those differ; and the method's per-image metrics (predicted
    class)."""
    import torch

    model.eval()
    wrong = np.flatnonzero(predicted != labels)
    pred = method.attribute(model, images, torch.as_tensor(predicted), p)
    if len(wrong):
        true = method.attribute(model, images[wrong], torch.as_tensor(labels[wrong]), p)
    else:
        true = _empty_like(pred)
    extras = {**pred.extras, **{f"true_{k}": v for k, v in true.extras.items()}}
    stored = StoredAttributions(
        method.name,
        pred.maps.astype(np.float32),
        true.maps.astype(np.float32),
        wrong,
        extras,
    )
    return stored, pred.metrics
