"""Deletion and insertion curves (Petsiuk et al. 2018, RISE).

Pixels are ranked by their attribution, most important first. Deletion replaces them,
step by step, with a constant; insertion starts from a blurred image and puts the
original pixels back. The score at each step is the model's probability of the class
it originally predicted; the area under the curve (trapezoid rule over the fraction of
pixels, 0..1) summarises it: low is good for deletion, high for insertion.

Pixels of equal attribution are ranked in a seeded random order: ranking them by
position (raster order) would delete the top rows first wherever a map is flat, which
moves the AUC of maps with many ties (LIME's superpixels, Grad-CAM's zeros). A map that
is constant carries no ranking at all; `constant_maps` finds them so that the scores
leave them out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pipeline.explain.perturb import gaussian_blur
from pipeline.inference import channels_last, inference_copy


@dataclass
class Curves:
    fractions: np.ndarray  # steps+1 values from 0 to 1
    deletion: np.ndarray  # N×(steps+1) probabilities
    insertion: np.ndarray

    @property
    def deletion_auc(self) -> np.ndarray:
        return auc(self.fractions, self.deletion)

    @property
    def insertion_auc(self) -> np.ndarray:
        return auc(self.fractions, self.insertion)


def auc(x: np.ndarray, curves: np.ndarray) -> np.ndarray:
    """Trapezoid-rule area of each row of `curves` over x."""
    return np.trapezoid(curves, x, axis=-1)


def constant_maps(maps: np.ndarray) -> np.ndarray:
    """One bool per map (N×...): True where every value is the same (no ranking)."""
    flat = maps.reshape(len(maps), -1)
    return flat.max(axis=1) == flat.min(axis=1)


def pixel_ranks(maps: np.ndarray, seed: int) -> np.ndarray:
    """N×(H·W) ranks, 0 for the most important pixel of each map; equal values are
    ordered by a seeded random key, so every order of tied pixels is equally likely."""
    n = len(maps)
    flat = maps.reshape(n, -1)
    tie_key = np.random.default_rng(seed).random(flat.shape)
    order = np.lexsort((tie_key, -flat), axis=1)
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(flat.shape[1])[None, :].repeat(n, 0), axis=1)
    return rank


def reveal_masks(maps: np.ndarray, steps: int, seed: int = 0) -> Tensor:
    """(steps+1)×N×H×W booleans: at step k the k/steps most important pixels of each
    map are True (ties broken at random, seeded, so the count per step is exact)."""
    n, h, w = maps.shape
    rank = pixel_ranks(maps, seed)
    counts = np.round(np.linspace(0, h * w, steps + 1)).astype(np.int64)
    masks = rank[None, :, :] < counts[:, None, None]
    return torch.as_tensor(masks.reshape(steps + 1, n, h, w))


@torch.inference_mode()
def class_probabilities(
    model: nn.Module, images: Tensor, classes: Tensor, batch_size: int
) -> Tensor:
    """Softmax probability of each image's class, in batches (deletion, insertion, ROAD)."""
    probs = [
        F.softmax(model(channels_last(images[i : i + batch_size])), dim=1).gather(
            1, classes[i : i + batch_size, None]
        )
        for i in range(0, len(images), batch_size)
    ]
    return torch.cat(probs).flatten()


@torch.inference_mode()
def deletion_insertion(
    model: nn.Module,
    images: Tensor,
    maps: np.ndarray,
    classes: Tensor,
    *,
    steps: int = 28,
    deletion_value: float = 0.0,
    blur_sigma: float = 4.0,
    batch_size: int = 1024,
    seed: int = 0,
) -> Curves:
    """Both curves for N images (float, N×C×H×W) and their N×H×W attribution maps;
    `classes` are the classes whose probability is tracked (the original predictions);
    `seed` orders pixels of equal attribution."""
    model = inference_copy(model)
    masks = reveal_masks(maps, steps, seed).unsqueeze(2).to(images.dtype)  # S×N×1×H×W
    s, n = masks.shape[:2]
    blurred = gaussian_blur(images, blur_sigma)
    deleted = images * (1 - masks) + deletion_value * masks
    inserted = blurred * (1 - masks) + images * masks
    repeated = classes.repeat(s)
    shape = (s * n, *images.shape[1:])
    deletion = (
        class_probabilities(model, deleted.reshape(shape), repeated, batch_size).reshape(s, n).T
    )
    insertion = (
        class_probabilities(model, inserted.reshape(shape), repeated, batch_size).reshape(s, n).T
    )
    return Curves(np.linspace(0, 1, steps + 1), deletion.numpy(), insertion.numpy())


def random_maps(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """The random-attribution baseline: i.i.d. uniform pixel importances."""
    return np.random.default_rng(seed).random(shape).astype(np.float32)
