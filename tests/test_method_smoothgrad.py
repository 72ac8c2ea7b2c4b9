"""SmoothGrad: known answers on a model whose decision depends on one known square,
and seeded noise."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from known_models import (
    attribute,
    region_mask,
    share,
)

from pipeline.explain.registry import method_class


@pytest.mark.parametrize("params", [{}, {"absolute": False}])
def test_smoothgrad_puts_its_mass_on_the_evidence(region_case, params) -> None:
    """With noise of std 0.15, dark pixels inside REGION (below 0.3) now and then cross
    the model's 0.5 threshold and get a gradient: a few per cent leave the square, none
    leaves REGION (measured: square >= 0.93, REGION 1.0)."""
    model, images, evidence, targets = region_case
    maps = attribute("smoothgrad", model, images, targets, seed=1, **params)
    assert maps.shape == tuple(images.shape) and maps.dtype == np.float32
    assert share(maps, evidence).min() >= 0.9
    assert share(maps, region_mask()).min() >= 0.99
    cls = method_class("smoothgrad")
    assert cls.seeded and cls.is_signed(cls.Params(**params)) == ("absolute" in params)


def test_smoothgrad_is_seeded_and_leaves_the_global_generator_alone(region_case) -> None:
    model, images, _, targets = region_case
    x, t = images[:4], targets[:4]
    torch.manual_seed(123)
    first = attribute("smoothgrad", model, x, t, seed=7, samples=10)
    after = torch.rand(3)
    torch.manual_seed(123)
    assert torch.equal(after, torch.rand(3))  # the method drew nothing from it
    np.testing.assert_array_equal(first, attribute("smoothgrad", model, x, t, seed=7, samples=10))
    assert np.abs(first - attribute("smoothgrad", model, x, t, seed=8, samples=10)).max() > 0
