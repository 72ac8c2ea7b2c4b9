"""Running one attribution method over the selected instances, and its arrays on disk.

For every selected image the method explains the predicted class; for misclassified
ones it also explains the true class, so a figure can show why the model chose one
over the other. LIME also keeps its superpixels and their weights (the pros/cons
figure needs them)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from pipeline.explain.registry import attribute
from pipeline.explain.stored import Explanations


def _padded(rows: list[np.ndarray]) -> np.ndarray:
    width = max((len(r) for r in rows), default=0)
    out = np.full((len(rows), width), np.nan, dtype=np.float32)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out


def method_kwargs(
    method: str, method_params: dict[str, Any], seed: int, background: Tensor | None = None
) -> dict[str, Any]:
    """The keyword arguments a method's `attribute` takes, from its params.yaml group:
    the seed for sampling methods, the background sample for SHAP; display-only
    settings (LIME's number of superpixels shown) stay out."""
    kwargs = dict(method_params)
    if method == "lime":
        kwargs.pop("features", None)
        kwargs["seed"] = seed
    if method == "shap":
        if background is None:
            raise ValueError("SHAP needs a background sample of training images")
        kwargs["seed"] = seed
        kwargs["background"] = background
    return kwargs


def background_sample(images: np.ndarray, count: int, seed: int) -> Tensor:
    """A seeded sample of `count` uint8 training images, as floats in [0, 1]."""
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(images), size=min(count, len(images)), replace=False))
    return torch.as_tensor(images[rows]).float() / 255.0


def explain_selection(
    method: str,
    model: nn.Module,
    images: Tensor,
    predicted: np.ndarray,
    labels: np.ndarray,
    params: dict[str, Any],
) -> Explanations:
    """Attributions of `images` (float N×C×H×W) for their predicted classes, and for the
    true classes where those differ. `params` go to the method unchanged."""
    model.eval()
    wrong = np.flatnonzero(predicted != labels)
    if method == "lime":
        from pipeline.explain.lime_image import explain as lime_explain

        pred = lime_explain(model, images, torch.as_tensor(predicted), **params)
        true = lime_explain(model, images[wrong], torch.as_tensor(labels[wrong]), **params)
        # (an empty `wrong` gives empty arrays: LIME loops over the images it is given)
        extras = {
            "segments": pred.segments.astype(np.int16),
            "weights": _padded(pred.weights),
            "weights_true": _padded(true.weights),
            "r2": pred.scores,
        }
        return Explanations(method, pred.attributions, true.attributions, wrong, extras)
    pred_attr = attribute(method, model, images, torch.as_tensor(predicted), **params)
    if len(wrong):
        true_attr = attribute(
            method, model, images[wrong], torch.as_tensor(labels[wrong]), **params
        )
    else:
        true_attr = np.zeros((0, *pred_attr.shape[1:]), dtype=np.float32)
    return Explanations(method, pred_attr.astype(np.float32), true_attr.astype(np.float32), wrong)
