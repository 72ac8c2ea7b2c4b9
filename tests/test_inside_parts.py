"""Inside-the-model parts as a whole: the registry holds exactly the eight parts, every
part computes on a tiny world and draws from what the stage stores, the stages write
and read those files, and the helpers the parts share give known answers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from pipeline.explain.parts import vae_walks
from pipeline.explain.parts.across_epochs import distance_to_final
from pipeline.explain.parts.cladec_decodings import latent_grid
from pipeline.explain.registry import inside_parts, part_class
from pipeline.inference import predict_proba
from pipeline.io import read_npz, write_npz
from pipeline.models.archs import build_classifier
from pipeline.params import Params
from pipeline.selection import Selection, select_instances
from pipeline.skips import Skipped
from stages.inside import Inputs, declared_params
from stages.inside_figures import save_drawing

REPO = Path(__file__).resolve().parents[1]
PARTS = (
    "across_epochs",
    "activation_max",
    "cladec_decodings",
    "feature_maps",
    "grand_tour",
    "ice",
    "instanceflow",
    "vae_walks",
)


def test_the_registry_lists_exactly_the_eight_parts_with_the_defaults_of_params_yaml() -> None:
    assert tuple(inside_parts()) == PARTS
    raw = yaml.safe_load((REPO / "params.yaml").read_text())["inside"]
    assert tuple(sorted(raw)) == PARTS
    for name, cls in inside_parts().items():
        assert cls.name == name and cls.title
        assert cls.Params().model_dump() == raw[name], name


# ------------------------------------------------------------------ a tiny world


class Images(nn.Module):
    """codes (any shape) -> 1×16×16 images in [0, 1]: a stand-in decoder."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.fc = nn.Linear(features, 16 * 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.fc(x.flatten(1))).view(-1, 1, 16, 16)


class TinyVAE:
    def __init__(self, latent_dim: int) -> None:
        torch.manual_seed(0)
        self.encoder = nn.Linear(16 * 16, latent_dim)
        self.decoder = Images(latent_dim)

    def encode_mean(self, images: torch.Tensor) -> torch.Tensor:
        return self.encoder(images.flatten(1))

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return self.decoder(latents)


class TinyInputs(Inputs):
    """The stage's inputs with everything in memory: untrained networks of the right
    shapes (the parts' contracts, not their numbers, are under test here)."""

    def __init__(self, splits: Any, reads: dict[str, Any]) -> None:
        super().__init__(seed=0, reads=reads)
        torch.manual_seed(0)
        net = build_classifier("small_cnn", splits.image_shape, splits.num_classes).eval()
        probabilities = predict_proba(net, splits.x_test)
        self.__dict__.update(
            splits=splits,
            _classifier=(net, list(splits.class_names)),
            selection=select_instances(
                probabilities,
                splits.y_test,
                splits.class_names,
                per_class=2,
                misclassified=2,
                pairs=2,
                seed=0,
            ),
            vae=TinyVAE(4),
            refvae=TinyVAE(2),  # the variational ClaDec's 2-D latent
        )
        rng = np.random.default_rng(0)
        epochs, n, k = 4, 12, splits.num_classes
        logits = rng.normal(size=(epochs, n, k))
        probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
        self.__dict__["epoch_predictions"] = {
            "test_indices": np.arange(n),
            "labels": splits.y_test[:n],
            "epochs": np.arange(1, epochs + 1),
            "probabilities": probs.astype(np.float32),
            "predictions": probs.argmax(-1),
            "class_names": np.array(splits.class_names),
        }

    def epoch_classifiers(self):  # type: ignore[override]
        for epoch in (1, 2):
            torch.manual_seed(epoch)
            yield epoch, build_classifier("small_cnn", self.splits.image_shape, 3).eval()

    def refae(self, layer: str, code_shape: tuple[int, ...]) -> nn.Module:
        return nn.Identity()

    def cladec_decoder(self, layer: str, alpha: float, code_shape: tuple[int, ...]) -> nn.Module:
        return Images(int(np.prod(code_shape)))

    def vcladec_decoder(self, layer: str, latent_dim: int) -> nn.Module:
        return Images(latent_dim)


SMALL = {
    "across_epochs": {"instances": 3},
    "activation_max": {"iterations": 2},
    "cladec_decodings": {"instances": 3, "grid": 3},
    "feature_maps": {"instances": 3, "channels": 4},
    "grand_tour": {"instances": 20, "frames": 3},
    "ice": {"images": 20, "concepts": 2, "fidelity_concepts": [2, 3], "examples": 2},
    "instanceflow": {"epochs": 3, "unstable": 2},
    "vae_walks": {"steps": 4, "pairs_per_class_pair": 1},
}
DRAWN = {
    "across_epochs": ["gradcam_by_epoch.png"],
    "activation_max": ["filters.png", "classes.png"],
    "cladec_decodings": ["conv.png", "dense.png", "latent_grids.png"],
    "feature_maps": ["conv_layer_1.png", "first_layer_filters.png"],
    "grand_tour": ["softmax_rotation.gif", "dense_rotation.html", "dense_epochs.gif"],
    "ice": ["concept_heatmaps.png", "classes.png", "concept_examples.png", "fidelity.png"],
    "instanceflow": ["sankey.png", "sankey.html", "unstable_instances.png", "instances.csv"],
    "vae_walks": ["walks.png"],
}


@pytest.mark.parametrize("name", PARTS)
def test_each_part_computes_and_draws_from_what_the_stage_stores(
    name: str, tiny_splits: Any, tmp_path: Path
) -> None:
    params = Params.model_validate(
        {
            "cladec": {"layers": ["conv", "dense"], "alphas": [0.0, 0.5]},
            "inside": {name: SMALL[name]},
        }
    )
    cls = part_class(name)
    p = getattr(params.inside, name)
    reads = declared_params(cls, params, p)
    computed = cls().compute(TinyInputs(tiny_splits, reads), p)
    json.dumps(computed.metrics)  # metrics/explain/<part>.json
    for score in cls.scores:
        assert isinstance(computed.metrics[score.key], float), score.key
    for stem, arrays in computed.arrays.items():
        write_npz(tmp_path / "stored" / f"{stem}.npz", **arrays)
    stored = {path.stem: read_npz(path) for path in (tmp_path / "stored").glob("*.npz")}
    drawn = cls().draw(stored, p)
    for file, drawing in drawn.items():
        save_drawing(file, drawing, tmp_path / "figures")
    written = {path.name: path.stat().st_size for path in (tmp_path / "figures").iterdir()}
    assert set(DRAWN[name]) <= set(written), written
    assert min(written.values()) > 200


def test_declared_params_fill_the_part_s_own_fields_and_inputs_refuse_the_rest() -> None:
    params = Params.model_validate({"inside": {"across_epochs": {"method": "saliency"}}})
    cls = part_class("across_epochs")
    reads = declared_params(cls, params, params.inside.across_epochs)
    assert reads == {"explain.saliency": params.explain.saliency}
    inputs = Inputs(0, reads)
    assert inputs.param("explain.saliency") is params.explain.saliency
    with pytest.raises(KeyError, match="not declared"):
        inputs.param("explain.gradcam")
    assert declared_params(
        part_class("cladec_decodings"), params, params.inside.cladec_decodings
    ) == {
        "cladec.layers": params.cladec.layers,
        "cladec.alphas": params.cladec.alphas,
        "cladec.variational": params.cladec.variational,
    }


# --------------------------------------------------------------- the stage scripts


def run(module: str, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "MLFLOW_TRACKING_URI": f"sqlite:///{cwd}/m.db"}
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_the_stages_compute_store_and_draw_a_part(tmp_path: Path) -> None:
    (tmp_path / "params.yaml").write_text((REPO / "params.yaml").read_text())
    predictions = np.array([[0, 1, 1], [1, 1, 0], [2, 1, 2], [1, 1, 2]])  # 4 epochs, 3 images
    write_npz(
        tmp_path / "models/classifier/epoch_predictions.npz",
        test_indices=np.array([5, 7, 9]),
        labels=np.array([1, 1, 2]),
        epochs=np.arange(1, 5),
        probabilities=np.eye(3, dtype=np.float32)[predictions],
        predictions=predictions,
        class_names=np.array(["a", "b", "c"]),
    )
    result = run("stages.inside", tmp_path, "--part", "instanceflow")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "explanations/instanceflow").iterdir()) == [
        "flow.npz"
    ]
    metrics = json.loads((tmp_path / "metrics/explain/instanceflow.json").read_text())
    assert metrics["instances"] == 3 and metrics["epochs"] == 4
    assert metrics["share_final_correct"] == 1.0
    result = run("stages.inside_figures", tmp_path, "--part", "instanceflow")
    assert result.returncode == 0, result.stderr
    table = (tmp_path / "reports/figures/instanceflow/instances.csv").read_text().splitlines()
    assert table[0].startswith("test_index,label,final_prediction")
    assert table[1] == "5,b,b,0.5,3,a b c"  # predicted a, b, c, b over the epochs
    assert {p.name for p in (tmp_path / "reports/figures/instanceflow").iterdir()} == {
        "sankey.png",
        "sankey.html",
        "unstable_instances.png",
        "instances.csv",
    }


def test_the_stages_say_what_to_run_when_their_inputs_are_missing(tmp_path: Path) -> None:
    (tmp_path / "params.yaml").write_text((REPO / "params.yaml").read_text())
    result = run("stages.inside", tmp_path, "--part", "ice")
    assert result.returncode == 2
    assert [line for line in result.stderr.splitlines() if "error:" in line] == [
        "ice: error: data/dataset.npz not found: run the data stage first (`dvc repro data`)"
    ]
    result = run("stages.inside_figures", tmp_path, "--part", "ice")
    assert result.returncode == 2
    assert "inside_figures: error: explanations/ice/ holds no arrays: run `dvc repro ice`" in (
        result.stderr
    )
    result = run("stages.inside", tmp_path, "--part", "epochs")
    assert result.returncode == 2 and "invalid choice: 'epochs'" in result.stderr
    for output in ("explanations", "metrics", "reports"):
        assert not (tmp_path / output).exists()


# -------------------------------------------------------------- shared helpers


def test_spread_picks_correct_rows_over_the_classes_and_a_third_misclassified() -> None:
    misclassified = np.array([False] * 6 + [True] * 4)
    selection = Selection(
        indices=np.arange(10),
        labels=np.array([0, 0, 1, 1, 2, 2, 0, 1, 2, 0]),
        predicted=np.array([0, 0, 1, 1, 2, 2, 1, 2, 0, 2]),
        probabilities=np.zeros((10, 3), dtype=np.float32),
        misclassified=misclassified,
        pairs=np.zeros((0, 3), dtype=np.int64),
        class_names=("zero", "one", "two"),
    )
    assert selection.spread(6).tolist() == [0, 1, 3, 5, 6, 7]
    assert selection.spread(3).tolist() == [0, 5, 6]
    assert selection.spread(30).tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
    assert selection.caption(2) == "one"
    assert selection.caption(7) == "one→two"


def test_distance_to_final_is_zero_for_the_final_maps_and_one_for_disjoint_ones() -> None:
    final = np.zeros((2, 4, 4))
    final[:, 0, 0] = 1.0
    disjoint = np.zeros((2, 4, 4))
    disjoint[:, 3, 3] = -2.0  # |map| is compared: the sign does not matter
    scaled = 5 * final
    distance = distance_to_final(np.stack([disjoint, scaled, final]))
    assert distance == pytest.approx([1.0, 0.0, 0.0])


def test_latent_grid_rows_run_from_the_top_of_the_plane() -> None:
    points, axis = latent_grid(3, span=1.0)
    assert axis.tolist() == [-1.0, 0.0, 1.0]
    assert points[:3].tolist() == [[-1.0, 1.0], [0.0, 1.0], [1.0, 1.0]]
    assert points[-1].tolist() == [1.0, -1.0]


class CollapsedVAE(TinyVAE):
    """A VAE that learned one picture: every latent decodes to the same grey image."""

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return torch.full((len(latents), 1, 16, 16), 0.48)


class IdentityVAE(TinyVAE):
    """A perfect VAE: its latent is the image, its decoding the image again."""

    def encode_mean(self, images: torch.Tensor) -> torch.Tensor:
        return images

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return latents


def test_the_spread_of_decodings_is_a_share_of_the_images_spread():
    images = np.random.default_rng(0).random((20, 1, 4, 4))
    assert vae_walks.decoded_spread(images, images) == pytest.approx(1.0)
    assert vae_walks.decoded_spread(images, images * 0.5) == pytest.approx(0.5)
    assert vae_walks.decoded_spread(images, np.zeros_like(images)) == 0.0


def test_walks_of_a_vae_that_decodes_one_picture_are_skipped_with_the_reason(tiny_splits):
    """The 224 px photo VAE did this (decodings 0.07% as varied as the images): its walks
    would show one grey picture at every step."""
    inputs = TinyInputs(tiny_splits, {})
    p = part_class("vae_walks").Params(steps=4, pairs_per_class_pair=1)
    inputs.__dict__["vae"] = CollapsedVAE(4)
    with pytest.raises(
        Skipped,
        match=r"decodes \d+ different test images to nearly one picture "
        r"\(their decodings vary 0\.00% as much as the images, under the 5%",
    ):
        part_class("vae_walks")().compute(inputs, p)
    inputs.__dict__["vae"] = IdentityVAE(4)
    walks = part_class("vae_walks")().compute(inputs, p).arrays["walks"]  # no Skipped
    assert list(walks["class_names"]) == list(tiny_splits.class_names)


# ---------------------------------------- a model whose classes are not the data's labels
# (explained as it is: ImageNet's 1,000 classes on a folder of other photographs)


def _as_is(tiny_splits: Any) -> TinyInputs:
    inputs = TinyInputs(tiny_splits, {})
    inputs.__dict__["model_labels"] = None  # the folder's classes are not the model's
    return inputs


def test_the_stage_inputs_give_the_labels_in_the_model_s_classes_or_none(tiny_splits) -> None:
    inputs = Inputs(0, {})
    inputs.__dict__.update(splits=tiny_splits, _classifier=(None, ["x", "Bottom", "top"]))
    assert inputs.model_labels is None  # "middle" is none of the model's classes
    both = Inputs(0, {})
    both.__dict__.update(splits=tiny_splits, _classifier=(None, ["Middle", "BOTTOM", "x", "top"]))
    expected = np.array([3, 0, 1])[tiny_splits.y_test]  # matched by name, case aside
    np.testing.assert_array_equal(both.model_labels, expected)


def test_ice_groups_images_by_the_model_s_prediction_when_labels_are_not_its_classes(
    tiny_splits,
) -> None:
    from pipeline.explain.parts.ice import PREDICTED_CLASSES, PREDICTED_NOTE

    inputs, p = _as_is(tiny_splits), part_class("ice").Params(**SMALL["ice"])
    computed = part_class("ice")().compute(inputs, p)
    z, metrics = computed.arrays["concepts"], computed.metrics
    predicted = predict_proba(inputs.net, z["images"]).argmax(1)
    with_images = np.flatnonzero(~np.isnan(z["presence"]).all(axis=1))
    np.testing.assert_array_equal(with_images, np.unique(predicted))
    assert bool(z[PREDICTED_CLASSES]) and metrics["classes"] == PREDICTED_NOTE
    assert metrics["accuracy_original"] == 1.0  # each image's class is its prediction
    assert metrics["fidelity_accuracy"] == metrics["fidelity_agreement"]
    with_labels = part_class("ice")().compute(TinyInputs(tiny_splits, {}), p)
    assert PREDICTED_CLASSES not in with_labels.arrays["concepts"]
    assert "classes" not in with_labels.metrics
    labelled = np.flatnonzero(~np.isnan(with_labels.arrays["concepts"]["presence"]).all(axis=1))
    assert labelled.tolist() == [0, 1, 2]  # 20 random test images hold all three labels


def test_ice_class_figures_draw_at_most_20_of_1000_classes_those_with_images(
    tiny_splits,
) -> None:
    """The resnet50 run's ICE figure over ImageNet's 1,000 classes was sized per class and
    Agg could not allocate it (killed at 24 GB); now only classes with images are drawn,
    at most 20: those the concepts move most."""
    from pipeline.figures.ice import MAX_CLASSES_DRAWN, classes_note, drawn_classes

    p = part_class("ice").Params(**SMALL["ice"])
    computed = part_class("ice")().compute(TinyInputs(tiny_splits, {}), p)
    stored = {stem: dict(arrays) for stem, arrays in computed.arrays.items()}
    z, n = stored["concepts"], len(stored["concepts"]["components"])
    names = np.array([f"class {k}" for k in range(1000)])
    with_images = np.arange(100, 1000, 30)  # 30 classes have images
    presence = np.full((1000, n), np.nan)
    presence[with_images] = 0.5
    weights = np.zeros((1000, n), dtype=np.float32)
    weights[:, 0] = np.arange(1000) % 97  # known strengths; classes without images ignored
    z.update(presence=presence, weights=weights, class_names=names)
    per_class = np.full((len(stored["fidelity"]["n_concepts"]), 1000), np.nan)
    per_class[:, with_images] = 0.1
    stored["fidelity"]["fidelity_reference_per_class"] = per_class
    strength = weights[with_images, 0]
    expected = np.sort(with_images[np.argsort(-strength, kind="stable")[:MAX_CLASSES_DRAWN]])
    np.testing.assert_array_equal(drawn_classes(presence, weights), expected)
    assert drawn_classes(presence[:10], weights[:10]).tolist() == list(range(10))  # MNIST: all

    drawn = part_class("ice")().draw(stored, p)
    heat = drawn["classes.png"].axes[1]
    assert [t.get_text() for t in heat.get_yticklabels()] == names[expected].tolist()
    assert drawn["classes.png"].get_size_inches()[1] < 12
    assert (
        "20 of the model's 1000 classes: those with images here, the 20 of 30 the concepts "
        "move most" in drawn["classes.png"]._suptitle.get_text()
    )
    exactly = np.full((1000, n), np.nan)
    exactly[with_images[:20]] = 0.5  # 20 classes with images: all drawn, none chosen
    assert classes_note(exactly, 20) == "20 of the model's 1000 classes: those with images here"
    assert classes_note(presence[:10], 10) is None
    reference = drawn["fidelity.png"].axes[2]
    per_class_lines = [line.get_label() for line in reference.lines]
    assert per_class_lines[:MAX_CLASSES_DRAWN] == names[expected].tolist()
    assert "class 0" not in per_class_lines and "mean over classes" in per_class_lines


def test_the_grand_tour_colours_points_by_prediction_when_labels_are_not_the_model_s(
    tiny_splits,
) -> None:
    from pipeline.explain.parts.grand_tour import PREDICTED_COLOURS

    inputs = _as_is(tiny_splits)
    p = part_class("grand_tour").Params(**SMALL["grand_tour"])
    tour = part_class("grand_tour")().compute(inputs, p).arrays["tour"]
    np.testing.assert_array_equal(tour["labels"], tour["predictions"])
    assert bool(tour[PREDICTED_COLOURS])
    drawn = part_class("grand_tour")().draw({"tour": tour}, p)
    assert "predicted class" in drawn["dense_rotation.png"]._suptitle.get_text()
    labelled = part_class("grand_tour")().compute(TinyInputs(tiny_splits, {}), p).arrays["tour"]
    assert PREDICTED_COLOURS not in labelled
    rows = labelled["test_indices"]
    np.testing.assert_array_equal(labelled["labels"], tiny_splits.y_test[rows])


def test_a_tour_over_1000_classes_lists_only_the_classes_of_its_points() -> None:
    """Before: 1,000 legend entries (a 27,000 px tall PNG) and 1,000 traces per frame (a
    28 MB page for 16 points)."""
    from pipeline.figures.grand_tour import plot_tour_frames, shown_classes, tour_figure

    names = [f"class {k}" for k in range(1000)]
    labels = np.array([7, 7, 512, 999, 512, 7])
    frames = [np.random.default_rng(k).normal(size=(6, 2)) for k in range(3)]
    assert shown_classes(labels, 1000) == [7, 512, 999]
    assert shown_classes(np.array([1, 1]), 10) == list(range(10))  # few classes: all listed
    figure = tour_figure(frames, labels, names, ["0", "1", "2"], "tour")
    assert [trace["name"] for trace in figure["data"]] == ["class 7", "class 512", "class 999"]
    colours = {trace["marker"]["color"] for trace in figure["data"]}
    assert len(colours) == 3  # distinct, though 7 and 999 share a tab20 slot by index
    fig = plot_tour_frames(frames, labels, names, ["a", "b", "c"])
    legend = fig.legends[0]
    assert [t.get_text() for t in legend.get_texts()] == ["class 7", "class 512", "class 999"]


def test_walks_and_instanceflow_are_skipped_with_the_reason_for_a_model_as_is(
    tiny_splits,
) -> None:
    inputs = _as_is(tiny_splits)
    with pytest.raises(Skipped, match="test labels are not the model's classes"):
        part_class("vae_walks")().compute(inputs, part_class("vae_walks").Params())
    record = inputs.epoch_predictions
    one_epoch = {**record, "epochs": np.array([0]), "predictions": record["predictions"][:1]}
    one_epoch["probabilities"] = record["probabilities"][:1]
    inputs.__dict__["epoch_predictions"] = one_epoch
    with pytest.raises(Skipped, match="record holds 1 epoch"):
        part_class("instanceflow")().compute(inputs, part_class("instanceflow").Params())
