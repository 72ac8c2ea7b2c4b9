"""Natural images end to end (issue 15, item 4): folders without labels, an explain-as-is
model whose classes are not the dataset's (the near-chance check is skipped, saying
why, and the predictions are explained), and the parts that do not scale to 224 px
photographs (skipped with a reason that the report shows, or made cheaper). Every
expected value is known by construction."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from pipeline.chance import (
    PREDICTED_TARGETS,
    labels_in_model_classes,
    skipped_check,
    splits_in_model_classes,
)
from pipeline.data import UNLABELLED, Splits, load_image_folder
from pipeline.errors import DataError
from pipeline.explain.parts import grand_tour as tour_module
from pipeline.explain.parts.grand_tour import GrandTourParams, GrandTourPart, principal_basis
from pipeline.models.archs import build_classifier
from pipeline.models.export import save_classifier
from pipeline.models.generative_nets import ImageDecoder
from pipeline.params import Params
from pipeline.report.content import SECTIONS, ReportInputs, RunInfo, build_report
from pipeline.selection import Selection
from pipeline.skips import ASCENT_PIXEL_STEPS, Skipped, check_ascent_cost, read_marker, write_marker

REPO = Path(__file__).resolve().parents[1]

# ------------------------------------------------------------------ folders, labels


def _write_images(folder: Path, count: int, shade: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        Image.new("RGB", (40, 30), (shade, i, 0)).save(folder / f"{i}.png")


def test_a_flat_folder_is_read_without_labels(tmp_path) -> None:
    _write_images(tmp_path, 5, 200)
    data = load_image_folder(tmp_path, 16, 3)
    assert data.class_names == (UNLABELLED,)
    assert data.images.shape == (5, 3, 16, 16) and data.labels.tolist() == [0] * 5
    assert data.images[:, 0].min() == 200  # the red channel of every image, resized


def test_class_sub_folders_still_give_labels_and_loose_images_beside_them_are_ignored(
    tmp_path,
) -> None:
    _write_images(tmp_path / "cat", 2, 10)
    _write_images(tmp_path / "dog", 3, 20)
    _write_images(tmp_path, 4, 30)  # loose images next to class folders
    data = load_image_folder(tmp_path, 8, 3)
    assert data.class_names == ("cat", "dog") and data.labels.tolist() == [0, 0, 1, 1, 1]


def test_one_class_folder_is_refused_naming_both_layouts(tmp_path) -> None:
    _write_images(tmp_path / "cat", 2, 10)
    with pytest.raises(DataError, match=r"at least two class sub-folders.*without labels"):
        load_image_folder(tmp_path, 8, 3)


# --------------------------------------------------------------- the chance check


def test_labels_map_to_the_model_classes_by_name_or_not_at_all() -> None:
    labels = np.array([0, 1, 1])
    imagenet_like = ["tench", "goldfish", "golden retriever"]
    assert labels_in_model_classes(["a", "b"], ["a", "b"], labels) is labels
    mapped = labels_in_model_classes(imagenet_like, ["Golden_Retriever", "goldfish"], labels)
    assert mapped.tolist() == [2, 1, 1]
    assert labels_in_model_classes(imagenet_like, ["cat", "goldfish"], labels) is None
    assert labels_in_model_classes(imagenet_like, [UNLABELLED], labels[:1] * 0) is None


def test_a_skipped_check_records_why_and_the_most_predicted_class() -> None:
    record = skipped_check("why", np.array([2, 2, 0]), ("a", "b", "c"))
    expected = {"skipped": "why", "most_predicted": "c", "most_predicted_count": 2, "images": 3}
    assert record == expected


MODEL_NAMES = ("tench", "goldfish", "great white shark")


def _workspace(folder: Path, data_names: tuple[str, ...], model_names: tuple[str, ...]) -> None:
    """45 test images of the dataset's classes and a model of other classes that answers
    class 1 for every image (zero weights, a bias for class 1)."""
    labels = np.arange(45) % len(data_names)
    images = np.random.default_rng(0).integers(0, 255, (45, 1, 16, 16), dtype=np.uint8)
    Splits(
        images[:30], labels[:30], images[30:36], labels[30:36], images, labels,
        data_names, "imagefolder",
    ).save(folder / "data/dataset.npz")  # fmt: skip
    net = build_classifier("small_cnn", (1, 16, 16), len(model_names))
    with torch.no_grad():
        net.logits.weight.zero_()
        net.logits.bias.copy_(torch.tensor([0.0, 5.0, 0.0]))
    hparams = {"arch": "small_cnn", "input_shape": (1, 16, 16), "num_classes": len(model_names)}
    save_classifier(net, hparams, list(model_names), folder / "models/classifier/model.pt")
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["select"].update(per_class=2, misclassified=2, confused_pairs=1, above_chance=0.1)
    params["evaluate"].update(images=12, sanity_images=10)
    (folder / "params.yaml").write_text(yaml.safe_dump(params))


def _run_select(
    folder: Path, stage: str = "stages.select", *args: str
) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "MLFLOW_TRACKING_URI": f"sqlite:///{folder}/m.db"}
    return subprocess.run(
        [sys.executable, "-m", stage, *args],
        cwd=folder, env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("data_names", "why"),
    [
        (("cat", "dog", "bird"), "the dataset's classes are not among the model's 3"),
        ((UNLABELLED,), "the dataset has no labels"),
    ],
)
def test_select_skips_the_check_and_explains_the_predictions_when_classes_differ(
    tmp_path, data_names: tuple[str, ...], why: str
) -> None:
    """A constant classifier would be refused (accuracy = chance); with the dataset's
    classes not the model's there is no accuracy, so the stage passes, says why once,
    and the selected images' targets are the model's answer, class 1."""
    _workspace(tmp_path, data_names, MODEL_NAMES)
    result = _run_select(tmp_path)
    assert result.returncode == 0, result.stderr
    said = [line for line in result.stderr.splitlines() if "near-chance check is skipped" in line]
    assert len(said) == 1 and why in said[0] and "select.above_chance = 0.1 not applied" in said[0]
    record = json.loads((tmp_path / "explanations/classifier_check.json").read_text())
    assert record["skipped"].startswith(why)
    assert (record["most_predicted"], record["most_predicted_count"]) == ("goldfish", 45)
    selection = Selection.load(tmp_path / "explanations/selection.npz")
    assert selection.class_names == MODEL_NAMES
    assert len(selection) == 2 and set(selection.labels) == set(selection.predicted) == {1}
    evaluated = np.load(tmp_path / "explanations/evaluation_set.npz")
    assert set(evaluated["labels"]) == set(evaluated["predicted"]) == {1}
    # and the explanation stage explains the predicted class (zero logit weights: every
    # gradient is zero by construction)
    result = _run_select(tmp_path, "stages.explain", "--method", "saliency")
    assert result.returncode == 0, result.stderr[-2000:]
    stored = np.load(tmp_path / "explanations/attributions/saliency.npz")
    assert stored["predicted"].shape == (2, 1, 16, 16) and not np.any(stored["predicted"])
    assert len(stored["true_rows"]) == 0  # the targets are the predictions: no second map


def test_splits_take_the_model_s_classes_by_name_or_its_predictions() -> None:
    images = np.zeros((6, 1, 4, 4), dtype=np.uint8)
    images[:, 0, 0, 0] = np.arange(6)
    labels = np.array([0, 1, 1, 0, 1, 0])
    data = Splits(
        images[:2], labels[:2], images[2:4], labels[2:4], images[4:], labels[4:],
        ("Golden_Retriever", "goldfish"), "imagefolder",
    )  # fmt: skip
    seen = []

    def predict(x: np.ndarray) -> np.ndarray:  # "class" = first pixel + 10
        seen.append(len(x))
        return x[:, 0, 0, 0].astype(np.int64) + 10

    same, why = splits_in_model_classes(data, list(data.class_names), predict)
    assert same is data and why is None
    imagenet_like = ["tench", "goldfish", "golden retriever"]
    named, why = splits_in_model_classes(data, imagenet_like, predict)
    assert why is None and named.class_names == tuple(imagenet_like)
    assert named.y_train.tolist() == [2, 1] and named.y_test.tolist() == [1, 2]
    assert seen == []  # matched by name: nothing predicted
    other = ["tench"] + [f"c{k}" for k in range(1, 20)]
    predicted, why = splits_in_model_classes(data, other, predict)
    assert why == PREDICTED_TARGETS and predicted.class_names == tuple(other)
    assert predicted.y_train.tolist() == [10, 11] and predicted.y_val.tolist() == [12, 13]
    assert predicted.y_test.tolist() == [14, 15] and seen == [2, 2, 2]


def test_the_vae_s_classifier_metrics_compare_with_the_model_s_own_predictions(tmp_path) -> None:
    """A model of other classes answering class 1 for every image: on decodings it still
    answers 1, so against its own predictions the accuracy is 1 and the cross-entropy
    log(1 + 2 e^-5) by construction (against the folder's labels 0, 1, 2 it was 1/3)."""
    _workspace(tmp_path, ("cat", "dog", "bird"), MODEL_NAMES)
    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    params["vae"].update(epochs=1, batch_size=16)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    result = _run_select(tmp_path, "stages.vae")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "classifier targets: " + PREDICTED_TARGETS in result.stderr
    metrics = json.loads((tmp_path / "metrics/generative/vae.json").read_text())
    assert metrics["classifier_targets"] == PREDICTED_TARGETS
    assert metrics["classifier_accuracy"] == 1.0
    assert metrics["classifier_ce"] == pytest.approx(np.log1p(2 * np.exp(-5)), rel=1e-5)
    samples = np.load(tmp_path / "explanations/generative/vae.npz")
    assert list(samples["class_names"]) == list(MODEL_NAMES)
    assert set(samples["labels"]) == set(samples["predicted"]) == {1}


def test_a_classifier_trained_on_a_folder_without_labels_is_refused(tmp_path) -> None:
    _workspace(tmp_path, (UNLABELLED,), (UNLABELLED,) * 3)
    result = _run_select(tmp_path)
    assert result.returncode == 2, result.stderr
    assert "select: error: the dataset has no labels" in result.stderr
    assert not (tmp_path / "explanations").exists()


# ------------------------------------------------------- parts that would not scale


def test_gradient_ascent_is_skipped_only_beyond_its_budget() -> None:
    check_ascent_cost(84, 64, 28, 28)  # the MNIST default: 84 images (4.2e6 pixel-steps)
    check_ascent_cost(532, 64, 32, 32)  # resnet18_small on 32 px
    with pytest.raises(Skipped, match=r"520 images of 224x224 px for 64 steps \(1\.7e\+09"):
        check_ascent_cost(520, 64, 224, 224)  # resnet18 on 224 px photos
    assert 532 * 64 * 32 * 32 <= ASCENT_PIXEL_STEPS < 520 * 64 * 224 * 224


def test_the_marker_round_trips_and_its_absence_means_the_part_ran(tmp_path) -> None:
    assert read_marker(tmp_path) is None
    write_marker(tmp_path / "part", "too big")
    assert read_marker(tmp_path / "part") == "too big"


def test_a_wide_layer_is_toured_in_principal_components_that_keep_its_geometry() -> None:
    """20 points span at most 19 dimensions: 19 components keep every distance."""
    points = np.random.default_rng(1).normal(size=(20, 300))
    basis, reduced, kept = principal_basis(points, 19)
    assert basis.shape == (300, 19) and reduced.shape == (20, 19) and kept == pytest.approx(1.0)

    def distances(x: np.ndarray) -> np.ndarray:
        return np.linalg.norm(x[:, None] - x[None], axis=-1)

    np.testing.assert_allclose(distances(reduced), distances(points), atol=1e-9)
    assert principal_basis(points, 300)[0] is None  # within the limit: unchanged
    _, _, part = principal_basis(points, 5)
    assert 0 < part < 1


@pytest.mark.parametrize(("side", "start"), [(28, 7), (32, 8), (224, 8)])
def test_a_flat_code_decoder_starts_from_a_quarter_of_the_side_at_most_8(side, start) -> None:
    """MNIST and CIFAR keep their decoders; a 224 px photo's starts at 8x8, not 56x56
    (a projection of 2,048 x 32 x 56 x 56 = 205 million weights)."""
    decoder = ImageDecoder((2048,), (3, side, side))
    assert decoder.stem[0].out_features == 32 * start * start
    assert decoder(torch.zeros(2, 2048)).shape == (2, 3, side, side)


class _AsIs:
    """The Grand Tour's inputs for a model explained as it is: no saved epochs."""

    seed = 0

    def __init__(self) -> None:
        labels = np.arange(12) % 3
        images = np.random.default_rng(2).integers(0, 255, (12, 1, 16, 16), dtype=np.uint8)
        self.splits = Splits(images, labels, images, labels, images, labels, ("a", "b", "c"), "x")
        torch.manual_seed(0)
        self.net = build_classifier("small_cnn", (1, 16, 16), 3).eval()
        self.class_names = ["a", "b", "c"]
        self.model_labels = labels

    def epoch_classifiers(self):
        raise Skipped("no saved epochs")


def test_the_grand_tour_of_an_as_is_model_has_one_epoch_and_tours_wide_layers_reduced(
    monkeypatch,
) -> None:
    monkeypatch.setattr(tour_module, "MAX_TOUR_DIMENSIONS", 4)
    p = GrandTourParams(layers=["softmax", "dense"], instances=12, frames=3)
    computed = GrandTourPart().compute(_AsIs(), p)
    tour, metrics = computed.arrays["tour"], computed.metrics
    assert tour["epochs"].tolist() == [0] and tour["epoch_predictions"].shape == (1, 12)
    assert tour["dense/rotation"].shape == (3, 12, 2) and tour["dense/epochs"].shape == (1, 12, 2)
    assert metrics["dense/toured_dimensions"] == 4 and metrics["dense/dimensions"] > 4
    assert "softmax/toured_dimensions" not in metrics  # 3 classes: within the limit


def test_the_report_shows_a_skipped_part_s_reason_instead_of_a_stage_to_run() -> None:
    run = RunInfo(dataset="imagefolder", arch="resnet18", commit="abc")
    defaults = Params().model_dump()
    page = build_report(
        ReportInputs(run, {}, defaults, defaults, skipped={"activation_max": "too big"})
    )
    body = re.search(r'<section id="activation-max">(.*?)</section>', page, re.S).group(1)
    assert "Skipped: too big" in body and "dvc repro" not in body
    other = re.search(r'<section id="ice">(.*?)</section>', page, re.S).group(1)
    assert "run <code>dvc repro inside_figures</code> first" in other
    assert {s.part for s in SECTIONS if s.part} >= {"activation_max", "grand_tour", "across_epochs"}


def test_the_report_says_why_instanceflow_is_missing_for_a_model_as_is(
    tmp_path, monkeypatch
) -> None:
    """InstanceFlow sits inside the classifier section, which has no part of its own:
    its skip reason was read by no one and the section just lacked the Sankey."""
    from stages import paths
    from stages.report import read_skipped

    monkeypatch.chdir(tmp_path)
    write_marker(paths.part_figures("instanceflow"), "one epoch: nothing flows")
    write_marker(paths.part_figures("vae_walks"), "labels are not the model's")
    assert read_skipped() == {
        "instanceflow": "one epoch: nothing flows",
        "vae_walks": "labels are not the model's",
    }
    run = RunInfo(dataset="imagefolder", arch="resnet50", commit="abc")
    defaults = Params().model_dump()
    page = build_report(ReportInputs(run, {}, defaults, defaults, skipped=read_skipped()))
    body = re.search(r'<section id="classifier">(.*?)</section>', page, re.S).group(1)
    assert "InstanceFlow skipped: one epoch: nothing flows" in body
    assert 'id="instanceflow-sankey"' not in body
