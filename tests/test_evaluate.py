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
    direction, not from hand-written symbols; every number shows its interval."""
    from pipeline.evaluate import DELETION, INSERTION, SANITY
    from pipeline.evaluate.intervals import Interval
    from pipeline.evaluate.protocol import FAITHFULNESS, markdown_scores

    assert DELETION.better(0.1, 0.2) and not DELETION.better(0.2, 0.1)
    assert INSERTION.better(0.9, 0.8) and not INSERTION.better(0.8, 0.9)
    assert SANITY.better(0.2, 0.5) and not SANITY.better(0.5, 0.5)
    random: dict = {}
    method: dict = {"images": 200, "constant_maps": 3}
    for k, s in enumerate(FAITHFULNESS):
        random.update(Interval(0.5, 0.4, 0.6, 200).as_dict(s.key))
        method.update(Interval(0.1 * k, 0.1 * k - 0.05, 0.1 * k + 0.05, 197).as_dict(s.key))
        method[f"beats_random_{s.key.removesuffix('_auc')}"] = k % 2 == 0
    method.update(Interval(0.25, 0.2, 0.3, 50).as_dict(SANITY.key))
    method.update(Interval(0.55, 0.52, 0.6, 50).as_dict("sanity_spearman_foreground"))
    method.update(
        sanity_flagged=False,
        sanity_passed=True,
        sanity_flagged_foreground=True,
        sanity_passed_foreground=False,
    )
    lines = markdown_scores({"random": random, "m": method}).splitlines()
    assert lines[0] == (
        "| method | deletion AUC ↓ | insertion AUC ↑ | ROAD MoRF AUC ↓ | ROAD LeRF AUC ↑ "
        "| beats random (del / ins / MoRF / LeRF) | sanity ρ (all layers random) ↓ "
        "| ρ on foreground ↓ | sanity (all / foreground) | images (constant maps) |"
    )
    assert lines[2].startswith("| random | 0.500 [0.400, 0.600] | 0.500 [0.400, 0.600] |")
    assert lines[3] == (
        "| m | 0.000 [-0.050, 0.050] | 0.100 [0.050, 0.150] | 0.200 [0.150, 0.250] "
        "| 0.300 [0.250, 0.350] | yes / no / yes / no | 0.250 [0.200, 0.300] "
        "| 0.550 [0.520, 0.600] | passed / FLAGGED | 200 (3) |"
    )


def test_ties_are_broken_at_random_seeded_and_unbiased() -> None:
    from pipeline.evaluate.faithfulness import pixel_ranks

    flat = np.zeros((1, 4, 4))
    flat[0, 0, 0] = 1.0  # one clear winner, 15 tied pixels
    ranks = np.stack([pixel_ranks(flat, seed)[0] for seed in range(4000)])
    assert (ranks[:, 0] == 0).all()  # the winner always goes first
    np.testing.assert_array_equal(pixel_ranks(flat, 7), pixel_ranks(flat, 7))
    assert not np.array_equal(pixel_ranks(flat, 7), pixel_ranks(flat, 8))
    # each tied pixel takes each of the 15 remaining ranks about equally often
    mean_rank = ranks[:, 1:].mean(0)
    np.testing.assert_allclose(mean_rank, 8.0, atol=0.3)  # uniform over 1..15: mean 8
    first_tied = np.bincount(np.argmax(ranks == 1, axis=1), minlength=16)[1:]
    assert first_tied.min() > 4000 / 15 * 0.7  # no position is favoured (raster order was)


def test_constant_maps_are_left_out_of_faithfulness_and_sanity() -> None:
    from pipeline.evaluate.faithfulness import constant_maps
    from pipeline.evaluate.sanity import per_image_similarity

    maps = np.random.default_rng(0).random((3, 5, 5))
    maps[1] = 0.25
    assert constant_maps(maps).tolist() == [False, True, False]
    other = np.random.default_rng(1).random((3, 1, 5, 5))
    values = per_image_similarity(maps[:, None], other, np.ones((3, 5, 5), bool))
    assert np.isnan(values["spearman"][1]) and np.isnan(values["spearman_foreground"][1])
    assert np.isfinite(values["spearman"][[0, 2]]).all()
    assert np.isnan(spearman_rows(np.ones((1, 4)), np.ones((1, 4)))[0])  # no ranking at all


def test_foreground_is_where_the_image_differs_from_its_border() -> None:
    from pipeline.evaluate.sanity import foreground_mask, spearman_masked

    images = np.full((2, 3, 6, 6), 0.2, dtype=np.float32)
    images[0, :, 2:4, 2:4] = 0.9  # a bright square on a grey background
    images[1, 1, 1, 1] = 0.25  # a change below the tolerance
    mask = foreground_mask(images, tolerance=0.1)
    assert mask[0].sum() == 4 and mask[0, 2:4, 2:4].all()
    assert mask[1].sum() == 0
    a = np.arange(36.0).reshape(1, 36)
    b = a.copy()
    keep = np.zeros((1, 36), bool)
    keep[0, :10] = True
    b[0, 10:] = -b[0, 10:]  # disagree off the mask only
    assert spearman_masked(a, b, keep)[0] == pytest.approx(1.0)
    assert spearman_rows(a, b)[0] < 0.5


def test_bootstrap_interval_covers_a_known_mean_at_about_the_nominal_rate() -> None:
    from pipeline.evaluate.intervals import bootstrap_interval

    rng = np.random.default_rng(0)
    trials, covered = 400, 0
    for trial in range(trials):
        sample = rng.exponential(1.0, size=60)  # skewed, true mean 1
        interval = bootstrap_interval(sample, seed=trial, resamples=1000)
        assert interval.low <= interval.mean <= interval.high and interval.n == 60
        covered += interval.low <= 1.0 <= interval.high
    # percentile bootstrap on n=60 exponential draws: nominal 95%, a little under in
    # practice; 400 trials give a standard error of about 1.1%
    assert 0.89 <= covered / trials <= 0.98


def test_bootstrap_leaves_out_nan_and_separation_follows_the_direction() -> None:
    from pipeline.evaluate.intervals import Interval, bootstrap_interval, separated

    interval = bootstrap_interval(np.array([1.0, np.nan, 3.0]), seed=0)
    assert interval.n == 2 and interval.mean == pytest.approx(2.0)
    assert bootstrap_interval(np.array([np.nan]), seed=0).n == 0
    assert bootstrap_interval(np.array([np.nan]), seed=0).text() == "—"
    low, high = Interval(0.2, 0.1, 0.3, 9), Interval(0.5, 0.4, 0.6, 9)
    assert separated(low, high, "lower") and not separated(high, low, "lower")
    assert separated(high, low, "higher")
    assert not separated(Interval(0.35, 0.25, 0.45, 9), high, "lower")  # overlap
    with pytest.raises(ValueError, match="direction"):
        separated(low, high, "sideways")


def test_verdicts_follow_the_intervals() -> None:
    """Flagged only when the whole ρ interval lies above the threshold; beats random only
    when the intervals separate."""
    from pipeline.evaluate.protocol import MethodEvaluation, score_methods

    n = 40
    rng = np.random.default_rng(0)
    fractions = np.linspace(0, 1, 5)

    def evaluation(name: str, level: float, rho: float) -> MethodEvaluation:
        curves = np.clip(level + 0.02 * rng.normal(size=(n, 5)), 0, 1)
        final = np.full((3, 3, n), rho) + 0.02 * rng.normal(size=(3, 3, n))
        return MethodEvaluation(
            name, np.zeros(n, bool), fractions, curves, curves, fractions, curves, curves,
            np.array(["logits"]), final[:1], final,
        )  # fmt: skip

    random = evaluation("random", 0.5, 0.0)
    scores = score_methods(
        {
            "good": evaluation("good", 0.2, 0.9),
            "close": evaluation("close", 0.497, 0.5),
            "clear": evaluation("clear", 0.2, 0.1),
        },
        random,
        threshold=0.5,
        seed=0,
        resamples=500,
    )
    assert scores["good"]["beats_random_deletion"] and not scores["good"]["beats_random_insertion"]
    assert not scores["close"]["beats_random_deletion"]  # intervals overlap
    assert scores["good"]["sanity_flagged"] and not scores["good"]["sanity_passed"]
    assert not scores["close"]["sanity_flagged"] and not scores["close"]["sanity_passed"]
    assert scores["clear"]["sanity_passed"] and not scores["clear"]["sanity_flagged"]
    assert scores["good"]["sanity_spearman_all_n"] == n


def test_evaluation_set_is_stratified_seeded_and_prefix_stratified() -> None:
    from pipeline.evaluation_set import evaluation_set, stratified_order

    labels = np.repeat(np.arange(4), [30, 30, 30, 5])
    rows = stratified_order(labels, 60, seed=3)
    assert len(set(rows.tolist())) == 60
    assert np.bincount(labels[rows[:20]]).tolist() == [5, 5, 5, 5]  # every prefix
    assert np.bincount(labels[rows]).tolist() == [19, 18, 18, 5]  # class 3 runs out
    np.testing.assert_array_equal(rows, stratified_order(labels, 60, seed=3))
    assert not np.array_equal(rows, stratified_order(labels, 60, seed=4))
    chosen = evaluation_set(labels, labels[::-1].copy(), 8, seed=0)
    assert chosen.labels.tolist() == labels[chosen.indices].tolist()
    assert chosen.predicted.tolist() == labels[::-1][chosen.indices].tolist()


def test_evaluate_method_flags_a_model_independent_map_and_round_trips(
    trained_cnn, tmp_path
) -> None:
    """On a trained CNN: the gradient passes the sanity check, a 'method' that returns
    the image itself (independent of the model) is flagged on all and on foreground
    pixels; the stored per-image results load back unchanged."""
    from pipeline.evaluate.protocol import MethodEvaluation, evaluate_method, score_methods
    from pipeline.evaluate.protocol import random_baseline as baseline
    from pipeline.params import EvaluateParams

    model, images, labels = trained_cnn
    ev = EvaluateParams(
        images=16, steps=8, road_percentages=[0.25, 0.5, 0.75], random_seeds=2,
        sanity_images=12, sanity_seeds=2, bootstrap=200,
    )  # fmt: skip

    def gradient(m, x, t):
        return attribute("saliency", m, x, t)

    pattern = np.random.default_rng(0).random(images.shape[1:]).astype(np.float32) + 0.5

    def itself(m, x, t):  # the image under a fixed pattern: varies on the foreground too
        return x.numpy() * pattern

    results = {
        name: evaluate_method(name, model, images, labels, f(model, images, labels), f, ev, 0)
        for name, f in (("saliency", gradient), ("image", itself))
    }
    saliency = results["saliency"]
    layers = len(cascade_layers(model))
    assert saliency.deletion.shape == (16, 9) and saliency.road_morf.shape == (16, 4)
    assert saliency.cascade.shape == (layers, 3, 12) and saliency.final.shape == (2, 3, 12)
    np.testing.assert_array_equal(saliency.cascade[-1], saliency.final[0])  # same seed
    scores = score_methods(
        results, baseline(model, images, labels, ev, 0), threshold=0.5, seed=0, resamples=200
    )
    assert scores["image"]["sanity_flagged"] and scores["image"]["sanity_flagged_foreground"]
    assert scores["image"]["sanity_spearman_all"] == pytest.approx(1.0)
    assert scores["image"]["sanity_spearman_foreground"] == pytest.approx(1.0)
    assert not scores["saliency"]["sanity_flagged"]
    assert scores["saliency"]["beats_random_deletion"]
    saliency.save(tmp_path / "saliency.npz")
    loaded = MethodEvaluation.load(tmp_path / "saliency.npz")
    assert loaded.method == "saliency" and loaded.sanity_layers.tolist() == cascade_layers(model)
    np.testing.assert_array_equal(loaded.final, saliency.final)
    (tmp_path / "cut.npz").write_bytes((tmp_path / "saliency.npz").read_bytes()[:200])
    with pytest.raises(Exception, match="truncated or corrupt"):
        MethodEvaluation.load(tmp_path / "cut.npz")
