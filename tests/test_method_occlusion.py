"""Occlusion: known answers on a model whose decision depends on one known square."""

from __future__ import annotations

import numpy as np
import torch
from known_models import (
    SIZE,
    RegionModel,
    attribute,
    dilated,
    region_images,
    share,
)

from pipeline.explain.base import pixel_map
from pipeline.explain.registry import method_class


def test_occlusion_marks_the_evidence_and_only_windows_that_touch_it(region_case) -> None:
    """Each pixel gets the mean logit drop of the windows that cover it: a pixel further
    than window - 1 from the square shares no window with it, so the positive mass
    lies within that reach of the square; the square itself scores highest; occluding
    the distractor changes nothing."""
    model, images, evidence, targets = region_case
    maps = attribute("occlusion", model, images, targets, window=4, stride=2)
    assert maps.shape == (12, 1, SIZE, SIZE) and maps.dtype == np.float32
    assert method_class("occlusion").signed
    assert share(maps, dilated(evidence, 3)).min() >= 0.99
    flat = pixel_map(maps).reshape(12, -1)
    assert evidence.reshape(12, -1)[np.arange(12), flat.argmax(1)].all()
    distractor = (images[:, 0].numpy() > 0.9) & ~dilated(evidence, 3)
    assert np.abs(pixel_map(maps)[distractor]).max() == 0.0


def test_occlusion_of_the_evidence_is_the_logit_drop() -> None:
    """One window covering the whole region: every pixel in it carries f(x) - f(x
    with the region black)."""
    model = RegionModel().eval()
    images, _ = region_images(2, seed=1, distractor=False)
    maps = attribute(
        "occlusion", model, images, torch.ones(2, dtype=torch.long), window=16, stride=1
    )
    with torch.no_grad():
        drop = model(images)[:, 1] - model(torch.zeros_like(images))[:, 1]
    np.testing.assert_allclose(maps[:, 0, 0, 0], drop.numpy(), rtol=1e-5)
    assert np.allclose(maps, maps[:, :, :1, :1])
