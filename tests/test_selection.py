"""The instance selection and the stored explanations: known answers from hand-made
prediction tables."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from known_models import RegionModel, region_images

from pipeline.errors import PipelineError
from pipeline.explain.attribute_selection import attribute_selection, background_sample
from pipeline.explain.stored import StoredAttributions
from pipeline.selection import Selection, confused_pairs, select_instances


def one_hot(predicted: list[int], classes: int, confidence: list[float]) -> np.ndarray:
    p = np.full((len(predicted), classes), 0.0)
    for i, (c, conf) in enumerate(zip(predicted, confidence, strict=True)):
        p[i] = (1 - conf) / (classes - 1)
        p[i, c] = conf
    return p


def test_confused_pairs_are_the_largest_off_diagonal_cells() -> None:
    labels = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])
    predicted = np.array([1, 1, 0, 0, 1, 0, 1, 1, 1])
    pairs = confused_pairs(labels, predicted, 3, 5)
    assert pairs.tolist() == [[2, 1, 3], [0, 1, 2], [1, 0, 1], [2, 0, 1]]  # no empty cells
    assert confused_pairs(labels, labels, 3, 3).shape == (0, 3)


def test_selection_takes_k_correct_per_class_and_the_most_confident_mistakes() -> None:
    labels = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, 2])
    predicted = [0, 0, 1, 1, 1, 0, 2, 2, 0, 1]
    confidence = [0.9, 0.8, 0.95, 0.7, 0.6, 0.55, 0.9, 0.9, 0.99, 0.5]
    probabilities = one_hot(predicted, 3, confidence)
    selection = select_instances(
        probabilities, labels, ("a", "b", "c"), per_class=2, misclassified=2, pairs=2, seed=0
    )
    correct = selection.indices[~selection.misclassified]
    assert sorted(correct.tolist()) == [0, 1, 3, 4, 6, 7]  # two per class, all there are
    # the wrong ones, most confident first: index 8 (0.99), then 2 (0.95); 5 and 9 left out
    assert selection.indices[selection.misclassified].tolist() == [8, 2]
    assert selection.predicted.tolist() == np.asarray(predicted)[selection.indices].tolist()
    assert selection.pairs[0].tolist()[:2] in ([0, 1], [1, 0], [2, 0], [2, 1])
    again = select_instances(
        probabilities, labels, ("a", "b", "c"), per_class=2, misclassified=2, pairs=2, seed=0
    )
    np.testing.assert_array_equal(selection.indices, again.indices)


def test_selection_is_seeded_when_there_is_a_choice() -> None:
    labels = np.repeat(np.arange(2), 50)
    probabilities = one_hot(labels.tolist(), 2, [0.9] * 100)
    picks = {
        tuple(
            select_instances(
                probabilities, labels, ("a", "b"), per_class=3, misclassified=0, pairs=1, seed=s
            ).indices
        )
        for s in range(5)
    }
    assert len(picks) > 1  # the seed matters
    one = select_instances(
        probabilities, labels, ("a", "b"), per_class=3, misclassified=0, pairs=1, seed=7
    )
    assert (one.labels == np.array([0, 0, 0, 1, 1, 1])).all()


def test_selection_round_trip_and_corrupt_file(tmp_path) -> None:
    labels = np.array([0, 1, 1])
    selection = select_instances(
        one_hot([0, 0, 1], 2, [0.9, 0.8, 0.7]),
        labels,
        ("x", "y"),
        per_class=1,
        misclassified=1,
        pairs=1,
        seed=0,
    )
    selection.save(tmp_path / "s.npz")
    loaded = Selection.load(tmp_path / "s.npz")
    assert loaded.class_names == ("x", "y")
    np.testing.assert_array_equal(loaded.indices, selection.indices)
    np.testing.assert_array_equal(loaded.pairs, [[1, 0, 1]])
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(PipelineError, match="corrupt"):
        Selection.load(tmp_path / "bad.npz")
    with pytest.raises(PipelineError, match="run the select stage"):
        Selection.load(tmp_path / "missing.npz")


def _method(name: str, **params: object):
    from pipeline.explain.registry import method_class

    cls = method_class(name)
    return cls(seed=0), cls.Params(**params)


@pytest.mark.parametrize("method", ["saliency", "lime"])
def test_misclassified_instances_are_also_explained_for_their_true_class(tmp_path, method) -> None:
    model = RegionModel().eval()
    images, _ = region_images(4, seed=1)
    predicted = np.array([1, 1, 1, 1])
    labels = np.array([1, 0, 1, 0])  # rows 1 and 3 are "wrong"
    explainer, params = _method(
        method, batch_size=8, **({"samples": 50} if method == "lime" else {})
    )
    result, per_image = attribute_selection(explainer, model, images, predicted, labels, params)
    assert result.true_rows.tolist() == [1, 3]
    assert len(result.predicted) == 4 and len(result.true) == 2
    if method == "saliency":
        # class 0's logit is constant: its attribution is zero, class 1's is not
        assert np.abs(result.true).max() == 0 and np.abs(result.predicted).max() > 0
        assert per_image == {}
    else:
        assert result.extras["segments"].shape == (4, 16, 16)
        assert result.extras["true_weights"].shape[0] == 2
        assert per_image["surrogate_r2"].shape == (4,)
    result.save(tmp_path / f"{method}.npz")
    loaded = StoredAttributions.load(tmp_path / f"{method}.npz")
    np.testing.assert_array_equal(loaded.predicted, result.predicted)
    assert loaded.method == method and set(loaded.extras) == set(result.extras)


@pytest.mark.parametrize("method", ["gradcam", "lime"])
def test_no_misclassified_instances_gives_empty_true_arrays(method) -> None:
    images, _ = region_images(3)
    extra = {"layer": "relu"} if method == "gradcam" else {"samples": 20}
    explainer, params = _method(method, batch_size=2, **extra)
    result, _ = attribute_selection(
        explainer, RegionModel(), images, np.ones(3, int), np.ones(3, int), params
    )
    assert result.true.shape == (0, 1, 16, 16) and result.true_rows.size == 0
    assert all(v.shape[0] == 0 for k, v in result.extras.items() if k.startswith("true_"))


def test_background_sample_is_seeded_and_scaled() -> None:
    images = np.arange(10 * 4, dtype=np.uint8).reshape(10, 1, 2, 2)
    background = background_sample(images, 4, seed=1)
    assert background.shape == (4, 1, 2, 2) and float(background.max()) <= 1.0
    assert torch.equal(background, background_sample(images, 4, seed=1))


def test_shap_without_a_background_is_refused() -> None:
    explainer, params = _method("shap")
    images, _ = region_images(2)
    with pytest.raises(ValueError, match="background"):
        explainer.attribute(RegionModel(), images, torch.ones(2, dtype=torch.long), params)
