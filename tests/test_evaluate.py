"""Faithfulness and sanity scores against answers known by construction."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from known_models import RegionModel, attribute, region_images

from pipeline.evaluate.faithfulness import auc, deletion_insertion, random_maps, reveal_masks
from pipeline.evaluate.sanity import (
    cascade_layers,
    cascading_randomization,
    similarity,
    spearman_rows,
    ssim_rows,
)
from pipeline.models.archs import build_classifier


def test_reveal_masks_count_exactly_and_follow_the_ranking() -> None:
    maps = np.array([[[4.0, 3.0], [2.0, 1.0]], [[0.0, 0.0], [0.0, 1.0]]])
    masks = reveal_masks(maps, steps=4).numpy()
    assert masks.shape == (5, 2, 2, 2)
    assert masks.sum((2, 3)).tolist() == [[0, 0], [1, 1], [2, 2], [3, 3], [4, 4]]
    assert masks[1, 0, 0, 0] and masks[1, 1, 1, 1]  # the top pixel goes first
    assert masks[2, 0].tolist() == [[True, True], [False, False]]


def test_auc_is_the_trapezoid_area() -> None:
    x = np.linspace(0, 1, 5)
    assert auc(x, np.ones((1, 5)))[0] == pytest.approx(1.0)
    assert auc(x, x[None])[0] == pytest.approx(0.5)


def test_perfect_attribution_beats_reversed_on_deletion_and_insertion() -> None:
    model = RegionModel().eval()
    images, evidence = region_images(10, seed=2)
    classes = torch.ones(10, dtype=torch.long)
    perfect = evidence.astype(np.float32) + 0.01 * images[:, 0].numpy()
    curves_good = deletion_insertion(model, images, perfect, classes, steps=16)
    curves_bad = deletion_insertion(model, images, -perfect, classes, steps=16)
    assert curves_good.deletion.shape == (10, 17)
    # both curves start (deletion) or end (insertion) at the unperturbed image
    np.testing.assert_allclose(curves_good.deletion[:, 0], curves_bad.deletion[:, 0])
    np.testing.assert_allclose(curves_good.insertion[:, -1], curves_good.deletion[:, 0], rtol=1e-5)
    assert (curves_good.deletion_auc < curves_bad.deletion_auc).all()
    assert (curves_good.insertion_auc > curves_bad.insertion_auc).all()
    # removing the 9 evidence pixels (first step removes 16 of 256) kills class 1
    assert (curves_good.deletion[:, 1] < 0.5).all()


def test_gradient_maps_beat_random_maps_on_the_region_model() -> None:
    model = RegionModel().eval()
    images, _ = region_images(10, seed=5)
    classes = torch.ones(10, dtype=torch.long)
    saliency = attribute("saliency", model, images, classes)[:, 0]
    random = random_maps(saliency.shape, seed=0)
    good = deletion_insertion(model, images, saliency, classes, steps=16)
    chance = deletion_insertion(model, images, random, classes, steps=16)
    assert good.deletion_auc.mean() < chance.deletion_auc.mean()
    assert good.insertion_auc.mean() > chance.insertion_auc.mean()


def test_spearman_and_ssim_known_values() -> None:
    a = np.arange(12.0).reshape(1, -1)
    assert spearman_rows(a, a)[0] == pytest.approx(1.0)
    assert spearman_rows(a, -a)[0] == pytest.approx(-1.0)
    assert spearman_rows(a, 2 * a + 5)[0] == pytest.approx(1.0)  # ranks only
    maps = np.random.default_rng(0).random((2, 9, 9))
    assert ssim_rows(maps, maps) == pytest.approx([1.0, 1.0])
    assert ssim_rows(maps, maps[::-1]).max() < 0.5


def test_similarity_of_identical_and_unrelated_maps() -> None:
    rng = np.random.default_rng(1)
    maps = rng.normal(size=(4, 3, 9, 9))
    assert similarity(maps, maps) == pytest.approx((1.0, 1.0))
    assert similarity(maps, -maps) == pytest.approx((1.0, 1.0))  # absolute values
    rho, _ = similarity(maps, rng.normal(size=(4, 3, 9, 9)))
    assert abs(rho) < 0.2


def test_cascade_runs_from_the_top_layer_down() -> None:
    model = build_classifier("small_cnn", (1, 16, 16), 3)
    layers = cascade_layers(model)
    assert layers[0] == "logits"
    assert layers[-1] == "features.block1.0"
    assert "normalize" not in layers  # buffers only


@pytest.fixture(scope="module")
def trained_cnn() -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    from conftest import make_square_images

    torch.manual_seed(0)
    x, y = make_square_images(400, classes=3, size=16, seed=5)
    images, labels = torch.as_tensor(x).float() / 255, torch.as_tensor(y)
    model = build_classifier("small_cnn", (1, 16, 16), 3)
    optimiser = torch.optim.Adam(model.parameters(), 3e-3)
    for _ in range(120):
        batch = torch.randint(0, 360, (64,))
        loss = torch.nn.functional.cross_entropy(model(images[batch]), labels[batch])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    model.eval()
    with torch.no_grad():
        assert (model(images[360:]).argmax(1) == labels[360:]).float().mean() > 0.9
    return model, images[360:376], labels[360:376]


def test_unchanged_model_gives_correlation_one(trained_cnn) -> None:
    model, images, labels = trained_cnn
    rows = cascading_randomization(
        model,
        lambda m: attribute("saliency", m, images, labels),
        randomise=lambda module, generator: None,
    )
    assert len(rows) == len(cascade_layers(model))
    assert all(
        r["spearman"] == pytest.approx(1.0) and r["ssim"] == pytest.approx(1.0) for r in rows
    )


def test_randomization_breaks_weight_dependent_maps_only(trained_cnn) -> None:
    model, images, labels = trained_cnn
    before = [p.clone() for p in model.parameters()]
    gradient = cascading_randomization(model, lambda m: attribute("saliency", m, images, labels))
    # measured on this fixture: 0.63 after the logits, 0.15 with every layer random
    assert gradient[-1]["spearman"] < 0.3
    assert gradient[-1]["spearman"] < gradient[0]["spearman"] < 0.9
    # a "method" that ignores the model (the image itself) survives every randomization
    edge = cascading_randomization(model, lambda m: images.numpy().copy())
    assert all(r["spearman"] == pytest.approx(1.0) for r in edge)
    # the trained model itself is left as it was
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_scores_carry_their_direction_into_the_table() -> None:
    """The table's arrows and the 'better than' verdicts come from each score's
    direction, not from hand-written symbols."""
    from pipeline.evaluate import DELETION, INSERTION, SANITY
    from pipeline.evaluate.protocol import markdown_scores

    assert DELETION.better(0.1, 0.2) and not DELETION.better(0.2, 0.1)
    assert INSERTION.better(0.9, 0.8) and not INSERTION.better(0.8, 0.9)
    assert SANITY.better(0.2, 0.5) and not SANITY.better(0.5, 0.5)
    scores = {
        "random": {"deletion_auc": 0.7, "insertion_auc": 0.8},
        "m": {
            "deletion_auc": 0.1,
            "insertion_auc": 0.9,
            "beats_random_deletion": True,
            "beats_random_insertion": False,
            "sanity_spearman_all": 0.25,
            "sanity_passed": True,
        },
    }
    lines = markdown_scores(scores).splitlines()
    assert lines[0] == (
        "| method | deletion AUC ↓ | insertion AUC ↑ | beats random (del / ins) "
        "| sanity ρ (all layers random) ↓ | sanity |"
    )
    assert lines[2] == "| random | 0.7000 | 0.8000 | — | — | — |"
    assert lines[3] == "| m | 0.1000 | 0.9000 | yes / no | 0.250 | passed |"
