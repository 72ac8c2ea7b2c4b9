"""ICE concepts: NMF recovers known non-negative factors, putting the reconstruction back
into the network keeps the model's logits, and the class statistics and figures read
hand-made inputs the way their docstrings say."""

from __future__ import annotations

from collections import OrderedDict
from itertools import permutations
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from pipeline.explain.parts.ice import (
    PER_CLASS,
    REFERENCE_EPSILON,
    Concepts,
    class_presence,
    class_weights,
    concept_scores,
    fidelity,
    fit_concepts,
    metrics_row,
    reconstruct,
    reference_fidelity,
    replace_layer_output,
    top_images,
    upsample,
)
from pipeline.figures.common import save_figure
from pipeline.figures.ice import (
    kept_note,
    plot_class_concepts,
    plot_concept_examples,
    plot_concept_heatmaps,
    plot_fidelity,
)
from pipeline.inference import as_float_images, layer_codes
from pipeline.models.archs import build_classifier, resolve_layer

N, H, W, C, K = 24, 4, 4, 8, 3


def known_factors(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Activations N×C×H×W = S @ W with sparse non-negative S and W: 3 concepts on
    mostly separate channels, so the factorisation is unique up to order and scale."""
    rng = np.random.default_rng(seed)
    components = np.zeros((K, C))
    components[0, [0, 1, 2]] = [1.0, 0.6, 0.3]
    components[1, [2, 3, 4, 5]] = [0.2, 1.0, 0.8, 0.5]
    components[2, [5, 6, 7]] = [0.4, 0.9, 1.0]
    scores = rng.exponential(1.0, size=(N * H * W, K)) * (rng.random((N * H * W, K)) < 0.5)
    rows = scores @ components
    return rows.reshape(N, H, W, C).transpose(0, 3, 1, 2).astype(np.float32), components


def unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_fit_concepts_recovers_known_components_up_to_order_and_scale() -> None:
    activations, truth = known_factors()
    concepts = fit_concepts(activations, n_concepts=K, seed=0, max_iter=1000)
    assert concepts.components.shape == (K, C) and concepts.n_concepts == K
    cosine = unit(concepts.components) @ unit(truth).T  # fitted × true
    best = max(permutations(range(K)), key=lambda p: sum(cosine[i, p[i]] for i in range(K)))
    assert min(cosine[i, best[i]] for i in range(K)) > 0.95

    rebuilt = reconstruct(activations, concepts)
    assert rebuilt.shape == activations.shape
    assert np.linalg.norm(rebuilt - activations) / np.linalg.norm(activations) < 0.05
    assert concepts.relative_error < 0.05


def test_concept_scores_are_non_negative_maps_per_concept() -> None:
    activations, _ = known_factors()
    concepts = fit_concepts(activations, n_concepts=2, seed=0)
    scores = concept_scores(activations[:5], concepts)
    assert scores.shape == (5, 2, H, W)
    assert (scores >= 0).all()
    # the same fit works on a tensor and on images of another size
    assert concept_scores(torch.from_numpy(activations[:2, :, :2, :3]), concepts).shape == (
        2,
        2,
        2,
        3,
    )


@pytest.mark.parametrize("n_concepts", [0, C + 1])
def test_fit_concepts_rejects_impossible_numbers_of_concepts(n_concepts: int) -> None:
    activations, _ = known_factors()
    with pytest.raises(ValueError, match="n_concepts"):
        fit_concepts(activations, n_concepts=n_concepts, seed=0)


def test_fit_concepts_rejects_negative_activations_and_wrong_channels() -> None:
    activations, _ = known_factors()
    negative = activations.copy()
    negative[0, 0, 0, 0] = -1.0
    with pytest.raises(ValueError, match="non-negative"):
        fit_concepts(negative, n_concepts=2, seed=0)
    concepts = fit_concepts(activations, n_concepts=2, seed=0)
    with pytest.raises(ValueError, match="channels"):
        concept_scores(activations[:, :4], concepts)


@pytest.fixture
def small_cnn() -> tuple[nn.Module, torch.Tensor, np.ndarray]:
    torch.manual_seed(0)
    model = build_classifier("small_cnn", (1, 16, 16), 3).eval()
    rng = np.random.default_rng(0)
    uint8 = rng.integers(0, 256, (8, 1, 16, 16), dtype=np.uint8)
    return model, as_float_images(uint8), layer_codes(model, "conv", uint8).numpy()


def test_replace_layer_output_with_own_activations_keeps_logits_and_removes_hook(
    small_cnn: tuple[nn.Module, torch.Tensor, np.ndarray],
) -> None:
    model, images, activations = small_cnn
    with torch.inference_mode():
        before = model(images)
    same = replace_layer_output(model, "conv", images, torch.from_numpy(activations))
    assert torch.equal(same, before)
    zeroed = replace_layer_output(model, "conv", images, torch.zeros(8, 64, 4, 4))
    assert not torch.allclose(zeroed, before)
    assert not resolve_layer(model, "conv")._forward_hooks  # hook removed
    with torch.inference_mode():
        assert torch.equal(model(images), before)
    with pytest.raises(ValueError, match="outputs"):
        replace_layer_output(model, "conv", images, torch.zeros(8, 64, 2, 2))
    assert not resolve_layer(model, "conv")._forward_hooks  # removed after a failure too


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_fidelity_with_as_many_concepts_as_channels_is_near_perfect(
    small_cnn: tuple[nn.Module, torch.Tensor, np.ndarray],
) -> None:
    model, images, activations = small_cnn
    labels = np.arange(8) % 3
    concepts = fit_concepts(activations, n_concepts=activations.shape[1], seed=0)
    result = fidelity(model, "conv", images, activations, concepts, labels)
    assert result["n_concepts"] == 64
    assert result["relative_logit_error"] < 0.05
    assert result["agreement"] >= 0.95
    assert abs(result["accuracy"] - result["accuracy_original"]) <= 1 / 8
    assert set(result) >= {"accuracy", "accuracy_original", "relative_logit_error", "agreement"}
    one = fidelity(model, "conv", images, activations, fit_concepts(activations, 1, 0), labels)
    assert one["relative_logit_error"] > result["relative_logit_error"]


def test_reference_fidelity_by_hand_counts_each_class_s_own_logit() -> None:
    """Class 0 (images 0, 1): own logits 2, 4 move by 1, 0 -> 0.5 / (3 + ε); class 1
    (image 2): −3 moves to −1 -> 2 / (3 + ε), the sign of the mean dropped; image 1's
    class-1 logit jumps by 5 but is not its own class's; class 2 has no images."""
    logits = np.array([[2.0, 0.0, 1.0], [4.0, 0.0, 1.0], [0.0, -3.0, 1.0]])
    rebuilt = np.array([[1.0, 0.0, 9.0], [4.0, 5.0, 1.0], [0.0, -1.0, 1.0]])
    per_class = reference_fidelity(logits, torch.from_numpy(rebuilt), np.array([0, 0, 1]))
    np.testing.assert_allclose(
        per_class[:2], [0.5 / (3 + REFERENCE_EPSILON), 2 / (3 + REFERENCE_EPSILON)]
    )
    assert np.isnan(per_class[2])
    np.testing.assert_array_equal(reference_fidelity(logits, logits, [0, 1, 2]), [0, 0, 0])
    with pytest.raises(ValueError, match="labels"):
        reference_fidelity(logits, rebuilt[:2], [0, 0])


def pooled_linear(weight: np.ndarray) -> nn.Module:
    """relu (the layer ICE reads) -> channel means -> logits = weight @ means: what the
    model does after the layer is linear, so every error comes from the reconstruction."""
    model = nn.Sequential(
        OrderedDict(
            relu=nn.ReLU(),
            pool=nn.AdaptiveAvgPool2d(1),
            flat=nn.Flatten(),
            logits=nn.Linear(weight.shape[1], weight.shape[0], bias=False),
        )
    )
    with torch.no_grad():
        model.logits.weight.copy_(torch.as_tensor(weight))
    return model.eval()


def test_reference_fidelity_is_zero_for_exact_non_negative_factors() -> None:
    """Activations that are exactly S @ W with non-negative rank-K factors: the true
    components, or NMF of rank K, rebuild them, and the reference error vanishes; one
    concept cannot, and its error does not."""
    activations, truth = known_factors()
    model = pooled_linear(np.random.default_rng(0).normal(size=(K, C)))
    images = torch.from_numpy(activations)
    labels = np.arange(N) % K
    exact = fidelity(model, "relu", images, activations, Concepts(truth, K), labels)
    assert exact["relative_activation_error"] < 1e-5
    assert np.abs(exact[PER_CLASS]).max() < 1e-5 and exact["fidelity_reference"] < 1e-5
    fitted = fit_concepts(activations, K, seed=0, max_iter=1000)
    assert fidelity(model, "relu", images, activations, fitted, labels)["fidelity_reference"] < 2e-3
    one = fidelity(model, "relu", images, activations, fit_concepts(activations, 1, 0), labels)
    assert one["fidelity_reference"] > 0.1


def test_fidelity_keeps_the_predictions_the_concepts_can_rebuild() -> None:
    """Logit k = mean of channel k. Concepts span channels 0 and 1 only: images of
    channel 0 or 1 rebuild exactly, the two class-2 images (channel 2 = 1, channel 1 =
    0.5) lose channel 2 and flip to class 1. Image 3 is a channel-0 image labelled 1.
    Agreement 8/10; accuracy 7/10 (original 9/10); reference fidelity: classes 0 and 1
    keep their own logits (image 3's class-1 logit is 0 before and after), class 2's
    logit falls from 1 to 0: 1 / (1 + ε)."""
    channel = np.array([0, 0, 0, 0, 1, 1, 1, 1, 2, 2])
    activations = np.zeros((10, 3, 2, 2), dtype=np.float32)
    activations[np.arange(10), channel] = 1.0
    activations[8:, 1] = 0.5
    labels = np.array([0, 0, 0, 1, 1, 1, 1, 1, 2, 2])
    concepts = Concepts(components=np.array([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]]), n_concepts=2)
    images = torch.from_numpy(activations)
    row = fidelity(pooled_linear(np.eye(3)), "relu", images, activations, concepts, labels)
    assert row["accuracy_original"] == pytest.approx(0.9)
    assert row["agreement"] == pytest.approx(0.8)
    assert row["accuracy"] == pytest.approx(0.7)
    np.testing.assert_allclose(row[PER_CLASS], [0, 0, 1 / (1 + REFERENCE_EPSILON)], atol=1e-6)
    assert row["fidelity_reference"] == pytest.approx(1 / 3 / (1 + REFERENCE_EPSILON))
    # ours: ‖Δ logits‖ / ‖logits‖ = ‖(1, 1)‖ / ‖(1, 1, 1, 1, 1, 1, 1, 1, √1.25, √1.25)‖
    assert row["relative_logit_error"] == pytest.approx(np.sqrt(2 / (8 + 2 * 1.25)), rel=1e-5)
    stored = metrics_row(row, ["zero", "one", "two"])
    assert stored[PER_CLASS]["two"] == pytest.approx(1 / (1 + REFERENCE_EPSILON))
    missing = metrics_row(row | {PER_CLASS: np.array([0.0, np.nan, 1.0])}, ["a", "b", "c"])
    assert missing[PER_CLASS]["b"] is None  # JSON has no NaN


def test_class_presence_counts_images_reaching_the_threshold() -> None:
    scores = np.zeros((4, 2, 2, 2))
    scores[0, 0, 0, 0] = 1.0  # concept 0's strongest image: class 0
    scores[1, 0, 1, 1] = 0.6  # ≥ 0.5 × 1.0: present, class 0
    scores[2, 0, 0, 1] = 0.4  # below: absent, class 1
    scores[3, 0] = 0.45  # below everywhere, class 1; concept 1 never active
    presence = class_presence(scores, np.array([0, 0, 1, 1]), num_classes=3, threshold=0.5)
    assert presence.shape == (3, 2)
    np.testing.assert_array_equal(presence[:2], [[1.0, 0.0], [0.0, 0.0]])
    assert np.isnan(presence[2]).all()  # no images of class 2
    assert class_presence(scores, np.array([0, 0, 1, 1]), 3, threshold=0.4)[1, 0] == 1.0


def test_class_weights_follow_the_concept_that_raises_a_logit() -> None:
    """Logit 0 = 2 × mean of channel 0, logit 1 = −mean of channel 1: concept 0 (channel 0)
    raises class 0 by 2 per unit, concept 1 (channel 1) lowers class 1 by 1."""
    model = nn.Sequential(
        OrderedDict(
            relu=nn.ReLU(),
            pool=nn.AdaptiveAvgPool2d(1),
            flat=nn.Flatten(),
            logits=nn.Linear(4, 2),
        )
    )
    with torch.no_grad():
        model.logits.weight.copy_(torch.tensor([[2.0, 0, 0, 0], [0, -1.0, 0, 0]]))
        model.logits.bias.zero_()
    images = torch.rand(5, 4, 3, 3)
    concepts = Concepts(components=np.array([[3.0, 0, 0, 0], [0, 0.5, 0, 0]]), n_concepts=2)
    weights = class_weights(model, "relu", images, images, concepts, epsilon=0.1)
    np.testing.assert_allclose(weights, [[2.0, 0.0], [0.0, -1.0]], atol=1e-5)
    assert weights[0, 0] > 0 and weights[1, 1] < 0


def test_top_images_orders_by_mean_concept_score() -> None:
    means = np.array([[0.1, 5.0], [0.9, 1.0], [0.5, 3.0], [0.0, 4.0]])  # N×n
    scores = np.repeat(np.repeat(means[:, :, None, None], 2, axis=2), 2, axis=3)
    top, bottom = top_images(scores, count=2)
    np.testing.assert_array_equal(top, [[1, 2], [0, 3]])
    np.testing.assert_array_equal(bottom, [[3, 0], [1, 2]])
    assert top_images(scores, count=10)[0].shape == (2, 4)  # no more than N


def test_upsample_resizes_maps_and_keeps_constants() -> None:
    maps = np.full((2, 3, 4, 4), 0.7, dtype=np.float32)
    big = upsample(maps, 16)
    assert big.shape == (2, 3, 16, 16)
    np.testing.assert_allclose(big, 0.7, rtol=1e-6)


def test_figures_are_written(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (6, 1, 16, 16), dtype=np.uint8)
    scores = rng.random((6, 3, 4, 4))
    maps = upsample(scores, (16, 16))
    top, bottom = top_images(scores, count=2)
    presence = class_presence(scores, np.arange(6) % 3, num_classes=3)
    weights = rng.normal(size=(3, 3))
    rows = [
        {
            "n_concepts": n,
            "accuracy": 0.5 + n / 20,
            "accuracy_original": 0.9,
            "relative_logit_error": 1 / n,
            "agreement": 0.6 + n / 25,
            "fidelity_reference": 0.8 / n,
        }
        for n in (8, 2, 4)
    ]
    per_class = np.array([[0.1, np.nan, 0.2], [0.4, np.nan, 0.5], [0.2, np.nan, 0.3]])
    note = kept_note(3, 0.7, 0.75, 0.9)
    assert note == "3 concepts in place of the layer keep 75.0% of the predictions, " + (
        "accuracy 0.700 (original 0.900)"
    )
    figures = {
        "heatmaps": plot_concept_heatmaps(images[:3], maps[:3], ["a", "b", "c"], note),
        "classes": plot_class_concepts(presence, weights, ["top", "middle", "bottom"], note),
        "examples": plot_concept_examples(images, top, bottom, maps, note),
        "fidelity": plot_fidelity(rows, per_class, ["a", "b", "c"], shown=4, layer="conv"),
        "fidelity_ours_only": plot_fidelity(rows[:1]),
        "colour": plot_concept_heatmaps(
            rng.integers(0, 256, (2, 3, 16, 16), dtype=np.uint8), maps[:2], ["x", "y"]
        ),
    }
    for name, fig in figures.items():
        path = save_figure(fig, tmp_path / f"{name}.png")
        assert path.stat().st_size > 2000, name
