"""ROAD (pipeline/evaluate/road.py): the batched CG imputation against a sparse direct
solve of the reference's system, its exact cases, the noise, and the curves on a model
whose decision depends on a known region."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from scipy.sparse.linalg import spsolve
from torch import Tensor, nn

from pipeline.evaluate.road import linear_impute, noisy_linear_impute, road_curves

# road/imputations.py `neighbors_weights` in github.com/tleemann/road_evaluation
REFERENCE_WEIGHTS = [
    ((1, 1), 1 / 12), ((0, 1), 1 / 6), ((-1, 1), 1 / 12), ((1, -1), 1 / 12),
    ((0, -1), 1 / 6), ((-1, -1), 1 / 12), ((1, 0), 1 / 6), ((-1, 0), 1 / 6),
]  # fmt: skip


def reference_system(image: np.ndarray, kept: np.ndarray) -> tuple[sp.csc_matrix, np.ndarray]:
    """The reference's `setup_sparse_system` for one C×H×W image, vectorised over the
    pixels as there (benchmarks/road_speed.py times it): one equation per removed pixel,
    -s·x_i + Σ w·x_j (removed neighbours) = -Σ w·v_j (kept neighbours), where s is the
    weight of the neighbours inside the image."""
    h, w = kept.shape
    kept_flat = kept.reshape(-1)
    unknown = np.flatnonzero(~kept_flat)
    var = np.zeros(h * w, dtype=np.int64)
    var[unknown] = np.arange(len(unknown))
    rows, cols = np.divmod(unknown, w)
    flat = image.reshape(len(image), -1)
    a = sp.lil_matrix((len(unknown), len(unknown)))
    b = np.zeros((len(unknown), len(image)))
    s = np.ones(len(unknown))
    for (dr, dc), weight in REFERENCE_WEIGHTS:
        r, c = rows + dr, cols + dc
        inside = (r >= 0) & (r < h) & (c >= 0) & (c < w)
        s[~inside] -= weight
        eq, neighbour = np.flatnonzero(inside), r[inside] * w + c[inside]
        known = kept_flat[neighbour]
        b[eq[known]] -= weight * flat[:, neighbour[known]].T
        a[eq[~known], var[neighbour[~known]]] = weight
    a.setdiag(-s)
    return a.tocsc(), b


def reference_impute(image: np.ndarray, kept: np.ndarray) -> np.ndarray:
    """NoisyLinearImputer(noise=0) of the reference: spsolve, kept pixels unchanged."""
    out = image.reshape(len(image), -1).astype(np.float64).copy()
    if kept.all():
        return out.reshape(image.shape)
    a, b = reference_system(image, kept)
    out[:, ~kept.reshape(-1)] = spsolve(a, b).reshape(len(b), -1).T
    return out.reshape(image.shape)


def masks_to_test(h: int, w: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Removed-pixel masks: scattered at several densities, whole regions (a block in
    the middle, a block in a corner, the border ring, all but one row, all but a single
    pixel in a corner: the worst-conditioned case), and nothing removed."""
    masks = [rng.random((h, w)) < share for share in (0.05, 0.3, 0.6, 0.9, 0.98)]
    block = np.zeros((h, w), bool)
    block[3:-4, 2:-3] = True
    corner = np.zeros((h, w), bool)
    corner[: h // 2 + 2, : w // 2 + 3] = True
    ring = np.ones((h, w), bool)
    ring[2:-2, 2:-2] = False
    but_row = np.ones((h, w), bool)
    but_row[h // 2] = False
    but_pixel = np.ones((h, w), bool)
    but_pixel[-1, -1] = False
    return [*masks, block, corner, ring, but_row, but_pixel, np.zeros((h, w), bool)]


@pytest.mark.parametrize(("channels", "size"), [(1, 16), (3, 12)])
def test_imputation_agrees_with_a_sparse_direct_solve_of_the_reference_system(channels, size):
    rng = np.random.default_rng(channels)
    removed = np.stack(masks_to_test(size, size + 3, rng))
    images = rng.random((len(removed), channels, size, size + 3)).astype(np.float32)
    ours = linear_impute(torch.as_tensor(images), torch.as_tensor(removed)).numpy()
    for image, mask, imputed in zip(images, removed, ours, strict=True):
        expected = reference_impute(image.astype(np.float64), ~mask)
        np.testing.assert_allclose(imputed, expected, rtol=0, atol=1e-5)
        np.testing.assert_array_equal(imputed[:, ~mask], image[:, ~mask])


def test_the_reference_system_is_symmetric_positive_definite():
    """What CG needs: -A = diag(s) - W on the removed pixels, for the reference's weights."""
    rng = np.random.default_rng(5)
    for mask in masks_to_test(9, 11, rng)[:-1]:
        a, _ = reference_system(np.zeros((1, 9, 11)), ~mask)
        dense = -a.toarray()
        np.testing.assert_array_equal(dense, dense.T)
        assert np.linalg.eigvalsh(dense).min() > 1e-4


def ramp(h: int, w: int) -> np.ndarray:
    """Two channels linear in x and y: each pixel is the mean of its symmetric 8 neighbours."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    return np.stack([0.2 + 0.03 * y + 0.02 * x, 0.9 - 0.01 * y + 0.04 * x])


def test_a_linear_ramp_is_imputed_exactly_away_from_the_border():
    rng = np.random.default_rng(2)
    image = ramp(20, 24)
    removed = np.zeros((3, 20, 24), bool)
    removed[0, 1:-1, 1:-1] = rng.random((18, 22)) < 0.7  # scattered, border kept
    removed[1, 1:-1, 1:-1] = True  # everything but the border
    removed[2, 4:15, 3:9] = True  # one block
    images = torch.as_tensor(np.repeat(image[None], 3, axis=0))
    out = linear_impute(images, torch.as_tensor(removed)).numpy()
    np.testing.assert_allclose(out, images.numpy(), atol=1e-5)


def test_at_the_border_the_mean_is_renormalised_over_the_neighbours_inside():
    """The reference drops the neighbours outside the image and divides by the weight of
    the rest, so a ramp that rises towards the border is not continued exactly."""
    image = ramp(10, 10)[:1]
    removed = np.zeros((1, 10, 10), bool)
    removed[0, -1, 4] = True  # one pixel on the bottom edge
    out = linear_impute(torch.as_tensor(image[None]), torch.as_tensor(removed)).numpy()
    # inside neighbours: (8,3) (8,4) (8,5) (9,3) (9,5) with weights 1/12 1/6 1/12 1/6 1/6
    expected = (image[0, 8, 3] + image[0, 8, 5]) / 12 + image[0, 8, 4] / 6
    expected = (expected + (image[0, 9, 3] + image[0, 9, 5]) / 6) / (2 / 3)
    assert out[0, 0, 9, 4] == pytest.approx(expected, abs=1e-6)
    assert abs(out[0, 0, 9, 4] - image[0, 9, 4]) > 1e-3


def test_noise_is_seeded_with_the_requested_std_on_imputed_pixels_only():
    rng = np.random.default_rng(3)
    images = torch.as_tensor(rng.random((16, 3, 20, 20)).astype(np.float32))
    removed = torch.as_tensor(rng.random((16, 20, 20)) < 0.5)

    def impute(seed: int) -> Tensor:
        generator = torch.Generator().manual_seed(seed)
        return noisy_linear_impute(images, removed, noise=0.05, generator=generator)

    noisy = impute(7)
    diff = (noisy - linear_impute(images, removed)).permute(1, 0, 2, 3)  # C×N×H×W
    assert torch.equal(diff[:, ~removed], torch.zeros_like(diff[:, ~removed]))
    on_imputed = diff[:, removed]  # ~9,600 values
    assert on_imputed.std().item() == pytest.approx(0.05, rel=0.03)
    assert abs(on_imputed.mean().item()) < 0.003
    assert torch.equal(impute(7), noisy)
    assert not torch.equal(impute(8), noisy)


def test_nothing_removed_returns_the_images_unchanged():
    images = torch.rand(3, 2, 8, 8)
    removed = torch.zeros(3, 8, 8, dtype=torch.bool)
    out = noisy_linear_impute(images, removed, noise=0.5, generator=torch.Generator())
    assert torch.equal(out, images)


def test_the_torch_thread_count_is_restored_after_the_one_thread_solve():
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        linear_impute(torch.rand(2, 1, 8, 8), torch.rand(2, 8, 8) < 0.5)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)


def maps_for(evidence: np.ndarray) -> np.ndarray:
    """The right map (high on the evidence, known by construction), with a little seeded
    spread so that the ranking is not mostly ties."""
    spread = np.random.default_rng(0).random(evidence.shape).astype(np.float32)
    return evidence + 0.1 * spread


PERCENTAGES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def test_road_ranks_the_true_map_above_the_reversed_one(region_case):
    model, images, evidence, classes = region_case
    maps = maps_for(evidence)
    args = {"percentages": PERCENTAGES, "noise": 0.01, "seed": 0}
    true = road_curves(model, images, maps, classes, **args)
    reversed_ = road_curves(model, images, -maps, classes, **args)
    assert np.all(true.morf_auc < reversed_.morf_auc - 0.2)
    assert np.all(true.lerf_auc > reversed_.lerf_auc + 0.2)
    # the evidence is 9 of 256 pixels: at 10%, MoRF on the true map has removed all of it
    # (the distractor outside the model's region stays) and LeRF has kept all of it
    assert np.all(true.morf[:, 1] < 0.5) and np.all(true.lerf[:, 1:] > 0.9)


def test_curves_start_at_the_original_probability_and_do_not_depend_on_batch_size(region_case):
    model, images, evidence, classes = region_case
    args = {"percentages": [0.25, 0.5], "noise": 0.01, "seed": 3}
    curves = road_curves(model, images, maps_for(evidence), classes, **args, batch_size=1024)
    with torch.no_grad():
        original = torch.softmax(model(images), dim=1)[:, 1].numpy()
    np.testing.assert_array_equal(curves.fractions, [0.0, 0.25, 0.5])
    assert curves.morf.shape == curves.lerf.shape == (len(images), 3)
    np.testing.assert_allclose(curves.morf[:, 0], original, rtol=1e-6)
    np.testing.assert_array_equal(curves.morf[:, 0], curves.lerf[:, 0])
    again = road_curves(model, images, maps_for(evidence), classes, **args, batch_size=5)
    np.testing.assert_allclose(again.morf, curves.morf, rtol=1e-6)
    np.testing.assert_allclose(again.lerf, curves.lerf, rtol=1e-6)


class ConstantModel(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return torch.tensor([[0.0, np.log(3.0)]]).expand(len(x), 2)  # p(class 1) = 0.75


def test_auc_is_the_trapezoid_from_zero_to_the_last_percentage(region_case):
    _, images, evidence, classes = region_case
    curves = road_curves(
        ConstantModel(),
        images,
        maps_for(evidence),
        classes,
        percentages=[0.3, 0.6],
        noise=0.0,
        seed=0,
    )
    np.testing.assert_allclose(curves.morf_auc, 0.75 * 0.6, rtol=1e-6)
    np.testing.assert_allclose(curves.lerf_auc, 0.75 * 0.6, rtol=1e-6)


def test_extreme_percentages_remove_no_pixel_or_all_but_one(region_case):
    """0.001 of 256 pixels floors to 0 removed (the point equals the original); 0.999
    floors to 255, one pixel kept, which still has a unique imputation."""
    model, images, evidence, classes = region_case
    curves = road_curves(
        model, images, maps_for(evidence), classes, percentages=[0.001, 0.999], noise=0.01, seed=0
    )
    np.testing.assert_array_equal(curves.morf[:, 1], curves.morf[:, 0])
    np.testing.assert_array_equal(curves.lerf[:, 1], curves.lerf[:, 0])
    assert np.all(np.isfinite(curves.morf)) and np.all(np.isfinite(curves.lerf))


@pytest.mark.parametrize(
    ("change", "name"),
    [
        ({"percentages": [0.0, 0.5]}, "percentages"),
        ({"percentages": [0.5, 1.0]}, "percentages"),
        ({"percentages": []}, "percentages"),
        ({"percentages": [0.5, 0.3]}, "percentages"),
        ({"maps": np.zeros((12, 16, 15))}, "maps"),
        ({"classes": torch.ones(13, dtype=torch.long)}, "classes"),
        ({"noise": -0.1}, "noise"),
        ({"batch_size": 0}, "batch_size"),
    ],
)
def test_bad_curve_arguments_name_the_argument(region_case, change, name):
    model, images, evidence, classes = region_case
    args = {
        "maps": maps_for(evidence),
        "classes": classes,
        "percentages": [0.5],
        "noise": 0.01,
        "seed": 0,
    } | change
    maps_arg, classes = args.pop("maps"), args.pop("classes")
    with pytest.raises(ValueError, match=name):
        road_curves(model, images, maps_arg, classes, **args)


@pytest.mark.parametrize(
    ("images", "removed", "name"),
    [
        (torch.rand(2, 8, 8), torch.zeros(2, 8, 8, dtype=torch.bool), "images"),
        (torch.rand(2, 1, 8, 8), torch.zeros(2, 8, 7, dtype=torch.bool), "removed"),
        (torch.rand(2, 1, 8, 8), torch.zeros(2, 8, 8), "removed"),
        (torch.rand(2, 1, 8, 8), torch.ones(2, 8, 8, dtype=torch.bool), "removed"),
    ],
)
def test_bad_imputation_arguments_name_the_argument(images, removed, name):
    with pytest.raises(ValueError, match=name):
        noisy_linear_impute(images, removed, noise=0.01, generator=torch.Generator())
