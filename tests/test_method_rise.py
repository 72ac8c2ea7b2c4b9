"""RISE: known answers on a model whose decision depends on one known square, its
definition in a plain loop, the reference's masks, seeding and batching."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from known_models import (
    SIZE,
    RegionModel,
    attribute,
    dilated,
    region_images,
    share,
)
from torch import nn

from pipeline.explain.base import pixel_map
from pipeline.explain.registry import method_class


def test_rise_marks_the_evidence(region_case) -> None:
    """RISE's map is the expected mask weighted by the class probability: every pixel
    carries the mean probability (about 0.77 here) plus the effect of keeping it. Above
    that level (the median pixel), the mass lies on the square widened by one grid
    cell (2 pixels: the bilinear masks blur over a cell): measured 0.74-0.76 with 2,000
    masks over four seeds (0.56-0.69 with the default 1,000, 0.54 with 500: the share
    measures the sampling noise too, so the test takes 2,000)."""
    model, images, evidence, targets = region_case
    maps = attribute("rise", model, images, targets, seed=0, masks=2000)
    assert maps.shape == (12, 1, SIZE, SIZE) and maps.dtype == np.float32 and maps.min() >= 0
    assert method_class("rise").seeded and not method_class("rise").signed
    level = pixel_map(maps)
    above = (level - np.median(level, axis=(1, 2), keepdims=True))[:, None]
    assert share(above, dilated(evidence, 2)).min() >= 0.7
    flat = level.reshape(12, -1)
    assert evidence.reshape(12, -1)[np.arange(12), flat.argmax(1)].all()
    distractor = (images[:, 0].numpy() > 0.9) & ~evidence
    for i in range(12):  # evidence ~0.89, distractor ~0.77 = the mean level
        assert level[i][evidence[i]].mean() > level[i][distractor[i]].mean() + 0.05


def test_rise_matches_its_definition() -> None:
    """Σ_i f_c(I ⊙ M_i) · M_i / (N · p), with the masks of the seed, in a plain loop."""
    from pipeline.explain.methods.rise import make_masks

    model = RegionModel().eval()
    images, _ = region_images(2, seed=5)
    targets = torch.tensor([1, 0])
    maps = attribute("rise", model, images, targets, seed=4, masks=64, grid=4, probability=0.3)
    masks = torch.from_numpy(make_masks(64, 4, 0.3, (SIZE, SIZE), seed=4))
    for i, target in enumerate(targets.tolist()):
        expected = torch.zeros(SIZE, SIZE)
        with torch.no_grad():
            for mask in masks:
                probability = torch.softmax(model(images[i : i + 1] * mask), 1)[0, target]
                expected += probability * mask
        np.testing.assert_allclose(maps[i, 0], expected / (64 * 0.3), rtol=1e-5, atol=1e-6)


def test_rise_masks_follow_the_reference_construction() -> None:
    """Cells kept with probability p, bilinear up-sampling to (s + 1) cells, a shifted
    crop: values in [0, 1], mean p, and smooth (neighbours differ by at most one
    cell's slope)."""
    from pipeline.explain.methods.rise import make_masks

    masks = make_masks(3000, 8, 0.3, (32, 28), seed=0)
    assert masks.shape == (3000, 32, 28) and masks.dtype == np.float32
    assert masks.min() >= 0 and masks.max() <= 1
    assert masks.mean() == pytest.approx(0.3, abs=0.01)
    assert np.abs(np.diff(masks, axis=1)).max() <= 1 / 4 + 1e-6  # cell = ceil(32 / 8) = 4
    np.testing.assert_array_equal(masks, make_masks(3000, 8, 0.3, (32, 28), seed=0))


def test_rise_of_a_constant_model_is_one_everywhere() -> None:
    """f = 1 for every masked image: the map is the mean mask / p, about 1."""

    class Constant(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.zeros(len(x), 1)  # one class: softmax probability 1

    maps = attribute("rise", Constant(), torch.rand(1, 1, 16, 16), torch.tensor([0]), masks=4000)
    assert np.abs(maps - 1).max() < 0.1


def test_rise_is_seeded_and_does_not_depend_on_the_batch_size(region_case) -> None:
    model, images, _, targets = region_case
    x, t = images[:3], targets[:3]

    def rise(seed: int, batch_size: int) -> np.ndarray:
        return attribute("rise", model, x, t, seed=seed, masks=300, batch_size=batch_size)

    first = rise(7, 128)
    np.testing.assert_array_equal(first, rise(7, 128))
    assert np.abs(first - rise(8, 128)).max() > 0.01
    one_at_a_time = rise(7, 1)
    np.testing.assert_allclose(one_at_a_time, first, rtol=1e-5, atol=1e-6)
