"""Known-answer tests of the attribution methods: the model's decision depends only on a
known square, so every method must put most of its attribution mass there."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from known_models import SIZE, RegionModel, attribute, region_images

from pipeline.errors import ParamsError
from pipeline.explain.base import pixel_map
from pipeline.explain.methods.integrated_gradients import make_baseline
from pipeline.explain.methods.lime import LimeParams, kernel_weights, segment, weighted_ridge
from pipeline.explain.methods.lime import explain as lime_explain
from pipeline.explain.perturb import gaussian_blur
from pipeline.explain.registry import method_class


def _evidence_share(attributions: np.ndarray, evidence: np.ndarray) -> np.ndarray:
    positive = np.clip(pixel_map(attributions), 0, None)
    return (positive * evidence).sum((1, 2)) / positive.sum((1, 2))


@pytest.mark.parametrize(
    ("method", "params", "minimum"),
    [
        ("saliency", {}, 0.99),
        ("saliency", {"absolute": False}, 0.99),
        ("guided_backprop", {}, 0.99),
        ("integrated_gradients", {"steps": 16}, 0.99),
        ("integrated_gradients", {"steps": 16, "baseline": "mean"}, 0.95),
        ("shap", {"samples": 50}, 0.95),
    ],
)
def test_attribution_mass_lies_on_the_evidence(region_case, method, params, minimum) -> None:
    model, images, evidence, targets = region_case
    background = None
    if method == "shap":
        background = region_images(20, seed=9, distractor=False)[0] * 0.3
    attributions = attribute(method, model, images, targets, background=background, **params)
    assert attributions.shape[0] == len(images) and attributions.shape[-2:] == (SIZE, SIZE)
    share = _evidence_share(attributions, evidence)
    assert share.min() >= minimum, share


def test_lime_puts_its_weight_on_the_superpixels_of_the_evidence(region_case) -> None:
    """LIME scores superpixels, not pixels: the best superpixel covers the evidence and
    most positive weight sits on superpixels that touch it."""
    model, images, evidence, targets = region_case
    result = lime_explain(model, images, targets, LimeParams(segments=30, samples=400), seed=1)
    for labels, weights, mask in zip(result.segments, result.weights, evidence, strict=True):
        touching = np.unique(labels[mask])
        best = int(np.argmax(weights))
        assert best in touching
        assert (labels[mask] == best).mean() >= 0.5
        positive = np.clip(weights, 0, None)
        assert positive[touching].sum() / positive.sum() >= 0.8


def test_gradcam_marks_the_evidence_without_distractors() -> None:
    """Grad-CAM weighs whole channels, so a bright square the model ignores lights up
    too when it excites the same channel; without one, only the evidence is marked."""
    model = RegionModel().eval()
    images, evidence = region_images(8, seed=4, distractor=False)
    cam = attribute("gradcam", model, images, torch.ones(8, dtype=torch.long), layer="relu")
    assert cam.shape == (8, 1, SIZE, SIZE)
    assert (cam >= 0).all()
    assert _evidence_share(cam, evidence).min() >= 0.9


def test_gradcam_of_a_flat_layer_is_refused() -> None:
    model = RegionModel().eval()
    images, _ = region_images(2)
    with pytest.raises(ValueError, match="spatial layer"):
        attribute("gradcam", model, images, torch.ones(2, dtype=torch.long), layer="fc")


def test_attributions_differ_between_classes(region_case) -> None:
    """The class-0 logit is a constant: its gradient is zero everywhere."""
    model, images, _, _ = region_case
    zero = attribute("saliency", model, images, torch.zeros(len(images), dtype=torch.long))
    assert np.abs(zero).max() == 0.0


def test_integrated_gradients_completeness(region_case) -> None:
    """Attributions sum to f(x) - f(baseline) (up to the Riemann error)."""
    model, images, _, targets = region_case
    attributions = attribute("integrated_gradients", model, images, targets, steps=64)
    with torch.no_grad():
        gap = model(images)[:, 1] - model(torch.zeros_like(images))[:, 1]
    np.testing.assert_allclose(attributions.sum((1, 2, 3)), gap.numpy(), rtol=0.03)


def test_baselines_and_blur() -> None:
    images = torch.rand(3, 2, 10, 12)
    assert make_baseline(images, "black").abs().max() == 0
    assert torch.allclose(make_baseline(images, "mean").mean((2, 3)), images.mean((2, 3)))
    blurred = gaussian_blur(images, 2.0)
    assert blurred.shape == images.shape
    assert torch.allclose(blurred.mean(), images.mean(), atol=0.02)
    assert blurred.std() < images.std()  # smoothing removes variance
    flat = torch.full((1, 1, 8, 8), 0.3)
    assert torch.allclose(gaussian_blur(flat, 1.5), flat)


def test_unknown_method_is_a_params_error() -> None:
    with pytest.raises(ParamsError, match="unknown attribution method 'no_such_method'"):
        method_class("no_such_method")


def test_a_method_param_it_does_not_take_is_an_error() -> None:
    """No catch-all keyword arguments: a renamed or misspelt key fails validation."""
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="sample"):
        method_class("lime").Params(sample=10)


def test_weighted_ridge_matches_sklearn() -> None:
    from sklearn.linear_model import Ridge

    rng = np.random.default_rng(0)
    x = rng.integers(0, 2, (300, 12)).astype(float)
    y = x @ rng.normal(size=12) + rng.normal(scale=0.1, size=300)
    w = rng.random(300)
    coef, score = weighted_ridge(x, y, w, alpha=1.0)
    np.testing.assert_allclose(coef, Ridge(alpha=1.0).fit(x, y, sample_weight=w).coef_, atol=1e-10)
    assert 0.9 < score <= 1.0


def test_lime_kernel_matches_its_definition() -> None:
    patterns = np.array([[1, 1, 1, 1], [1, 0, 0, 0], [0, 0, 0, 0.0]])
    weights = kernel_weights(patterns, 0.25)
    assert weights[0] == pytest.approx(1.0)  # distance 0
    # one of four on: cosine 1/2, distance 1/2
    assert weights[1] == pytest.approx(np.sqrt(np.exp(-(0.5**2) / 0.25**2)))
    assert weights[2] == pytest.approx(np.sqrt(np.exp(-1 / 0.25**2)))


def test_lime_recovers_a_linear_model_on_superpixels() -> None:
    """With a model that adds up fixed superpixel contributions, LIME's surrogate is
    exact: the weights it returns rank the superpixels as the model does."""
    segments = np.repeat(np.repeat(np.arange(4).reshape(2, 2), 8, 0), 8, 1)[None]  # 4 quadrants
    contribution = torch.tensor([3.0, -2.0, 0.5, 0.0])

    class Quadrants(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            on = torch.stack(
                [
                    x[:, 0, :8, :8].mean((1, 2)),
                    x[:, 0, :8, 8:].mean((1, 2)),
                    x[:, 0, 8:, :8].mean((1, 2)),
                    x[:, 0, 8:, 8:].mean((1, 2)),
                ],
                1,
            )
            score = (on * contribution).sum(1) / 4
            return torch.stack([-score, score], 1)

    image = torch.ones(1, 1, 16, 16)
    result = lime_explain(
        Quadrants(), image, torch.tensor([1]), LimeParams(samples=500), segment_maps=segments
    )
    assert np.argsort(result.weights[0]).tolist() == np.argsort(contribution.numpy()).tolist()
    assert result.attributions[0, 0, 0, 0] == result.weights[0][0]  # pixels carry their weight


def test_lime_runs_blas_on_one_thread_and_gives_the_threads_back() -> None:
    """numpy's BLAS threads busy-wait between LIME's small ridge solves and slow the
    forward passes: explain() runs them single-threaded and restores the setting."""
    from threadpoolctl import threadpool_info, threadpool_limits

    def blas_threads() -> set[int]:
        return {p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"}

    seen: list[set[int]] = []

    class Recording(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen.append(blas_threads())
            return torch.stack([-x.mean((1, 2, 3)), x.mean((1, 2, 3))], 1)

    segments = np.repeat(np.repeat(np.arange(4).reshape(2, 2), 8, 0), 8, 1)[None]
    with threadpool_limits(limits=2, user_api="blas"):
        assert blas_threads() == {2}
        lime_explain(
            Recording(),
            torch.ones(1, 1, 16, 16),
            torch.tensor([1]),
            LimeParams(samples=50),
            segment_maps=segments,
        )
        assert seen and all(threads == {1} for threads in seen)
        assert blas_threads() == {2}


@pytest.mark.parametrize("method", ["slic", "quickshift"])
def test_segmentation_labels_are_dense(method) -> None:
    images, _ = region_images(1)
    labels = segment(images[0].numpy(), LimeParams(segmentation=method, segments=10))
    assert labels.shape == (SIZE, SIZE)
    assert set(np.unique(labels)) == set(range(labels.max() + 1))
    rgb = torch.rand(3, 16, 16).numpy()
    assert segment(rgb, LimeParams(segmentation=method, segments=10)).shape == (16, 16)


def test_hidden_superpixels_take_their_mean_colour_or_black() -> None:
    from pipeline.explain.methods.lime import perturbed

    image = torch.rand(3, 4, 4)
    labels = torch.tensor([[0, 0, 1, 1]] * 4)  # left half superpixel 0, right half 1
    patterns = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    mean_fill = perturbed(image, labels, patterns, "mean")
    right_mean = image[:, :, 2:].mean((1, 2))[:, None, None].expand(3, 4, 2)
    assert torch.allclose(mean_fill[0, :, :, 2:], right_mean)  # hidden: its mean colour
    assert torch.equal(mean_fill[0, :, :, :2], image[:, :, :2])  # kept: untouched
    black = perturbed(image, labels, patterns, "black")
    assert black[1, :, :, :2].abs().max() == 0 and torch.equal(black[1, :, :, 2:], image[:, :, 2:])
