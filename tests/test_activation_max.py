"""Activation maximisation: on hand-built models whose optimum is known by construction
the ascent reaches it, with the regularisers off and on; the regularisers and transforms
give known answers; a seed gives the same images; bad params name their key."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from known_models import REGION, SIZE, RegionModel
from pydantic import ValidationError
from torch import Tensor, nn

from pipeline.errors import ParamsError
from pipeline.explain.parts.activation_max import (
    REGULARISERS,
    ActivationMaxParams,
    class_probabilities,
    maximize,
    random_transform,
    total_variation,
    unit_count,
)
from pipeline.models.archs import build_classifier
from pipeline.params import parse_params

FAST = {"iterations": 40}  # every known optimum below is reached well within 40 steps


class SignedLinear(nn.Module):
    """Two logits, w·x and -w·x, with w = +1 on the left half of the image and -1 on the
    right: over [0, 1] pixels logit 0 is highest for white left, black right."""

    def __init__(self) -> None:
        super().__init__()
        weight = torch.ones(1, SIZE, SIZE)
        weight[..., SIZE // 2 :] = -1
        self.register_buffer("w", weight)

    def forward(self, x: Tensor) -> Tensor:
        z = (x * self.w).flatten(1).sum(1)
        return torch.stack([z, -z], 1)


class BrightDark(nn.Module):
    """A `conv` layer of two 1×1 filters, +x and -x: the mean activation of filter 0 is
    highest for an all-white image, that of filter 1 for an all-black one."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 1, bias=False)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([1.0, -1.0]).view(2, 1, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x).mean((2, 3))


def _optimum() -> np.ndarray:
    """SignedLinear's logit-0 optimum: 1 where w > 0, 0 where w < 0."""
    best = np.zeros((1, SIZE, SIZE), dtype=np.float32)
    best[..., : SIZE // 2] = 1
    return best


def test_without_regularisers_the_ascent_reaches_the_linear_optimum_exactly() -> None:
    p = ActivationMaxParams(**FAST).unregularised()
    ascent = maximize(SignedLinear(), (1, SIZE, SIZE), p, layer=None, units=[0, 1])
    np.testing.assert_array_equal(ascent.images[0], _optimum())
    np.testing.assert_array_equal(ascent.images[1], 1 - _optimum())  # logit 1 = -w·x
    assert (ascent.end > ascent.start).all()


def test_with_the_regularisers_the_ascent_reaches_the_linear_optimum_away_from_its_edge() -> None:
    """Jitter (±2 px), rotation, rescaling and blur mix every pixel with neighbours about
    two pixels away at most. The two columns on either side of the sign change see the
    other sign in some draws: their expected gradient keeps the optimum's sign but is
    weaker than the blur's pull, so they may land anywhere in [0, 1]. Every other pixel
    must reach its optimum up to the pull of one L2 / TV decay step (each far below
    0.02); the edge stays where the optimum puts it; the logit keeps at least 75% of its
    optimum (all of it but the two columns next to the edge; about 93% is typical)."""
    p = ActivationMaxParams(**FAST)
    assert all(getattr(p, key) > 0 for key in REGULARISERS)  # the defaults regularise
    ascent = maximize(SignedLinear(), (1, SIZE, SIZE), p, layer=None, units=[0], centre=0.5)
    image, best = ascent.images[0], _optimum()
    edge = SIZE // 2
    away = np.r_[: edge - 2, edge + 2 : SIZE]
    np.testing.assert_allclose(image[..., away], best[..., away], atol=0.02)
    assert image[..., edge - 2 : edge].mean() > image[..., edge : edge + 2].mean()
    assert ascent.end[0] >= 0.75 * best.sum()


@pytest.mark.parametrize("regularised", [False, True])
def test_the_filters_of_a_layer_reach_their_optimum_all_at_once(regularised: bool) -> None:
    """All-white and all-black are fixed points of every regulariser but the L2 decay,
    whose pull (0.01 × 0.5 per step) is far below one Adam step: exact optima either way."""
    p = ActivationMaxParams(**FAST)
    p = p if regularised else p.unregularised()
    ascent = maximize(BrightDark(), (1, 8, 8), p, layer="conv")
    assert len(ascent.images) == unit_count(BrightDark(), "conv", (1, 8, 8)) == 2
    np.testing.assert_allclose(ascent.images[0], 1.0, atol=1e-6)
    np.testing.assert_allclose(ascent.images[1], 0.0, atol=1e-6)


def test_without_regularisers_pixels_without_gradient_stay_where_the_noise_put_them() -> None:
    """RegionModel's logit 1 grows with every pixel above 0.5 inside REGION and nothing
    else: exactly those go white; Adam leaves pixels with a zero gradient untouched."""
    p = ActivationMaxParams(**FAST).unregularised()
    ascent = maximize(RegionModel(), (1, SIZE, SIZE), p, layer=None, units=[1], centre=0.5)
    assert ascent.end[0] > ascent.start[0]
    generator = torch.Generator().manual_seed(0)
    start = (0.5 + 0.1 * torch.randn(1, 1, SIZE, SIZE, generator=generator)).clamp(0, 1)[0, 0]
    live = torch.zeros(SIZE, SIZE, dtype=torch.bool)
    live[REGION] = start[REGION] > 0.5
    image = torch.as_tensor(ascent.images[0, 0])
    assert live.sum() > 5 and image[live].min() == 1.0
    assert torch.equal(image[~live], start[~live])


def test_the_same_seed_gives_the_same_images_and_another_seed_others() -> None:
    torch.manual_seed(0)  # a fixed untrained network
    cnn = build_classifier("small_cnn", (1, 16, 16), 3).eval()
    p = ActivationMaxParams(iterations=4)
    first = maximize(cnn, (1, 16, 16), p, layer=None, seed=3)
    again = maximize(cnn, (1, 16, 16), p, layer=None, seed=3)
    other = maximize(cnn, (1, 16, 16), p, layer=None, seed=4)
    np.testing.assert_array_equal(first.images, again.images)
    assert not np.array_equal(first.images, other.images)
    assert first.images.min() >= 0 and first.images.max() <= 1
    assert all(w.requires_grad for w in cnn.parameters())  # the model is left trainable
    assert unit_count(cnn, "conv", (1, 16, 16)) == 64
    filters = maximize(cnn, (1, 16, 16), p, layer="conv", units=[0, 5, 63])
    assert len(filters.end) == 3 and (filters.end >= filters.start).all()  # a dead one stays 0
    probability = class_probabilities(cnn, first.images)
    with torch.no_grad():
        expected = torch.softmax(cnn(torch.as_tensor(first.images)), 1).diagonal().numpy()
    np.testing.assert_allclose(probability, expected, rtol=1e-6)


def test_jitter_alone_shifts_each_image_by_whole_pixels_within_its_bound() -> None:
    images = torch.zeros(32, 1, 9, 9)
    images[:, 0, 4, 4] = 1.0  # one white pixel in the middle
    p = ActivationMaxParams(jitter=2, scale=0, rotate=0)
    moved = random_transform(images, p, torch.Generator().manual_seed(0))
    flat = moved.flatten(1)
    np.testing.assert_allclose(flat.max(1).values, 1.0, atol=1e-6)  # exact whole-pixel shift
    np.testing.assert_allclose(flat.sum(1), 1.0, atol=1e-6)
    rows, cols = np.unravel_index(flat.argmax(1).numpy(), (9, 9))
    assert np.abs(rows - 4).max() == 2 and np.abs(cols - 4).max() == 2  # the whole range
    assert len(set(zip(rows, cols, strict=True))) > 10  # one draw per image
    off = ActivationMaxParams().unregularised()
    assert random_transform(images, off, torch.Generator()) is images


def test_total_variation_of_a_known_edge() -> None:
    image = torch.zeros(2, 1, 6, 6)
    image[0, :, :, 3:] = 1.0  # one vertical edge, 6 pixels long
    image[1, :, 2, 2] = 0.5  # one grey pixel: 4 neighbours at 0.5
    assert total_variation(image).tolist() == [6.0, 2.0]


def test_unregularised_turns_every_regulariser_off_and_keeps_the_rest() -> None:
    p = ActivationMaxParams(iterations=7, step=0.1)
    off = p.unregularised()
    assert all(getattr(off, key) == 0 for key in REGULARISERS)
    assert (off.iterations, off.step, off.layer) == (7, 0.1, "conv")


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("jitter", -1, "greater than or equal to 0"),
        ("jitter", 1.5, "valid integer"),
        ("scale", 1.0, "less than 1"),
        ("rotate", 200.0, "less than or equal to 180"),
        ("blur_sigma", -0.5, "greater than or equal to 0"),
        ("blur_every", 0, "greater than 0"),
        ("l2_decay", 1.0, "less than 1"),
        ("tv_decay", -0.1, "greater than or equal to 0"),
        ("step", 0, "greater than 0"),
    ],
)
def test_bad_params_name_their_key(key: str, value: object, expected: str) -> None:
    with pytest.raises(ValidationError, match=key):
        ActivationMaxParams(**{key: value})
    with pytest.raises(ParamsError) as info:
        parse_params({"inside": {"activation_max": {key: value}}})
    first = str(info.value).splitlines()[0]
    assert f"inside.activation_max.{key} = {value!r}" in first and expected in first, first
