"""The data, classifier and generative figures are drawn from stored arrays, CSV and JSON
only: each figure stage, given small synthetic stored files in an empty folder, writes
its PNGs (and needs no model, no dataset beyond what it reads)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_stages import run_stage, write_params

from pipeline.figures.common import save_figure
from pipeline.figures.reconstructions import plot_stored_reconstructions, reconstruction_title
from pipeline.io import read_csv, write_csv, write_json, write_npz


def stored_reconstructions(name: str, config: dict, channels: int = 1) -> dict[str, np.ndarray]:
    """What generative_training.sample_reconstructions stores, with random pixels."""
    rng = np.random.default_rng(0)
    return {
        "name": np.array(name),
        "config": np.array(json.dumps(config)),
        "test_indices": np.arange(4),
        "originals": rng.integers(0, 255, (4, channels, 8, 8), dtype=np.uint8),
        "decoded": rng.random((4, channels, 8, 8), dtype=np.float32),
        "labels": np.array([0, 1, 2, 0]),
        "predicted": np.array([0, 2, 2, 1]),
        "class_names": np.array(["a", "b", "c"]),
        "dataset": np.array("synthetic"),
    }


@pytest.mark.parametrize(
    ("config", "title"),
    [
        ({"kind": "vae", "latent_dim": 16, "beta": 1.0}, "VAE with a 16-D latent"),
        ({"kind": "refvae", "latent_dim": 2, "beta": 1.0}, "Reference VAE with a 2-D latent"),
        ({"kind": "cladec", "layer": "dense", "alpha": 0.5}, "ClaDec of layer dense, alpha 0.5"),
        (
            {"kind": "vcladec", "layer": "dense", "alpha": 0.5, "latent_dim": 2, "beta": 1.0},
            "Variational ClaDec of layer dense, alpha 0.5, 2-D latent",
        ),
        ({"kind": "refae", "layer": "conv", "alpha": None}, "Reference autoencoder, layer conv"),
    ],
)
def test_reconstruction_title_names_the_model(config, title):
    assert reconstruction_title(config) == title


@pytest.mark.parametrize("channels", [1, 3])
def test_reconstructions_are_drawn_from_stored_arrays(tmp_path, channels):
    stored = stored_reconstructions(
        "cladec/dense-0.5", {"kind": "cladec", "layer": "dense", "alpha": 0.5}, channels
    )
    write_npz(tmp_path / "s.npz", **stored)
    with np.load(tmp_path / "s.npz", allow_pickle=False) as archive:  # no pickled objects
        figure = plot_stored_reconstructions({k: archive[k] for k in archive.files})
    assert figure.axes[0].get_title() == "a→a"
    assert figure.axes[1].get_title() == "b→c"
    path = save_figure(figure, tmp_path / "out.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_history_csv_reads_back_as_floats(tmp_path):
    rows = [{"epoch": 1, "train_loss": 0.5}, {"epoch": 2, "train_loss": 0.25, "val_loss": 0.3}]
    write_csv(tmp_path / "h.csv", rows, ["epoch", "train_loss", "val_loss"])
    back = read_csv(tmp_path / "h.csv", as_float=True)
    assert back[1] == {"epoch": 2.0, "train_loss": 0.25, "val_loss": 0.3}
    assert np.isnan(back[0]["val_loss"])
    assert read_csv(tmp_path / "h.csv")[0]["epoch"] == "1"


def test_figure_stages_draw_from_stored_files_alone(tmp_path, tiny_splits):
    write_params(tmp_path)
    tiny_splits.save(tmp_path / "data/dataset.npz")
    history = [
        {"epoch": e, "train_loss": 1 / e, "val_loss": 1.1 / e, "train_acc": 0.5, "val_acc": 0.4}
        for e in (1, 2, 3)
    ]
    write_csv(tmp_path / "plots/classifier/history.csv", history, list(history[0]))
    write_json(
        tmp_path / "metrics/classifier_confusion.json",
        {"classes": ["a", "b", "c"], "matrix": [[5, 1, 0], [0, 4, 0], [1, 0, 3]]},
    )
    for slug, config in (
        ("vae", {"kind": "vae", "latent_dim": 4, "beta": 1.0}),
        ("refae_dense", {"kind": "refae", "layer": "dense", "alpha": None}),
    ):
        write_npz(
            tmp_path / f"explanations/generative/{slug}.npz",
            **stored_reconstructions(slug.replace("_", "/"), config),
        )
    scores = {"mse_per_pixel": 0.02, "sse_per_image": 15.7, "classifier_ce": 0.3}
    for slug, record in (
        ("cladec_dense-0.5", {"kind": "cladec", "layer": "dense", "alpha": 0.5}),
        ("cladec_dense-0.0", {"kind": "cladec", "layer": "dense", "alpha": 0.0}),
        ("refae_dense", {"kind": "refae", "layer": "dense", "alpha": None}),
        ("vae", {"kind": "vae"}),  # not a ClaDec row
    ):
        write_json(
            tmp_path / f"metrics/generative/{slug}.json",
            {**record, **scores, "classifier_accuracy": 0.9},
        )
    for stage in ("data_figures", "classifier_figures", "generative_figures"):
        result = run_stage(stage, tmp_path)
        assert result.returncode == 0, result.stderr
    table = (tmp_path / "reports/cladec_table.csv").read_text().splitlines()
    # by layer, ClaDec by alpha, RefAE last; the VAE is not a row
    assert [row.split(",")[:3] for row in table[1:]] == [
        ["cladec", "dense", "0.0"],
        ["cladec", "dense", "0.5"],
        ["refae", "dense", ""],
    ]
    assert "| refae | dense | — |" in (tmp_path / "reports/cladec_table.md").read_text()
    for png in (
        "data_samples.png",
        "classifier_curves.png",
        "classifier_confusion.png",
        "generative/vae.png",
        "generative/refae_dense.png",
        "cladec_alpha_tradeoff.png",
    ):
        assert (tmp_path / "reports/figures" / png).stat().st_size > 2000, png
    assert not (tmp_path / "models").exists()  # nothing was trained or loaded


def test_figure_stages_without_their_inputs_say_what_to_run(tmp_path):
    write_params(tmp_path)
    expected = {
        "data_figures": "data/dataset.npz not found: run the data stage first",
        "classifier_figures": "plots/classifier/history.csv not found: run the classifier stage",
        "generative_figures": "no stored reconstructions in explanations/generative",
    }
    for stage, message in expected.items():
        result = run_stage(stage, tmp_path)
        assert result.returncode == 2
        assert message in result.stderr, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]


def test_a_model_explained_as_it_is_gets_its_predicted_classes_not_a_matrix(tmp_path):
    """An ImageNet model on a folder of other classes has no confusion matrix (the
    classifier stage stores None and the most predicted classes): the stage draws those
    counts, with the reason, and says there were no training epochs."""
    write_params(tmp_path)
    write_csv(tmp_path / "plots/classifier/history.csv", [], ["epoch", "train_loss"])
    write_json(tmp_path / "metrics/classifier_confusion.json", {"classes": ["x"], "matrix": None})
    note = "the dataset's classes are not among the model's: no accuracy"
    write_json(
        tmp_path / "metrics/classifier.json",
        {"test": {"note": note, "most_predicted": {"photocopier": 12, "tench": 4}}},
    )
    result = run_stage("classifier_figures", tmp_path)
    assert result.returncode == 0, result.stderr
    for png in ("classifier_curves.png", "classifier_confusion.png"):
        assert (tmp_path / "reports/figures" / png).stat().st_size > 2000, png


def test_the_predicted_classes_figure_draws_the_counts_most_predicted_on_top():
    from pipeline.figures.training import plot_predicted_classes, plot_training_curves

    fig = plot_predicted_classes({"photocopier": 12, "tench": 4}, "why", "resnet50 on photos")
    bars = fig.axes[0].patches
    assert [b.get_width() for b in bars] == [4, 12]  # barh draws bottom-up
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels == ["tench", "photocopier"]
    assert "no confusion matrix: why" in fig.axes[0].get_title()
    assert "no training epochs" in plot_training_curves([], "m")._suptitle.get_text()


def test_reconstructions_of_a_model_of_other_classes_say_the_first_class_is_its_own():
    """An ImageNet model explained as it is on a folder of 3 classes: the stage stores the
    samples in the model's classes, the "true" class being its prediction on the
    original (TARGETS_KEY), and the title says so; the captions index 1,000 names."""
    import matplotlib.text

    from pipeline.chance import PREDICTED_TARGETS, TARGETS_KEY

    stored = stored_reconstructions("vae", {"kind": "vae", "latent_dim": 4, "beta": 1.0})
    stored.update(
        labels=np.array([0, 999, 2, 1]),
        predicted=np.array([0, 999, 3, 1]),
        class_names=np.array([f"imagenet {i}" for i in range(1000)]),
    )
    plain = plot_stored_reconstructions(stored)
    assert plain._suptitle.get_text().endswith("(caption: true → classifier on decoded)")
    stored[TARGETS_KEY] = np.array(PREDICTED_TARGETS)
    figure = plot_stored_reconstructions(stored)
    texts = {t.get_text() for t in figure.findobj(matplotlib.text.Text)}
    assert {"imagenet 0→imagenet 0", "imagenet 999→imagenet 999", "imagenet 2→imagenet 3"} <= texts
    assert "(caption: classifier on original → classifier on decoded)" in (
        figure._suptitle.get_text()
    )


def test_a_corrupt_decoder_metrics_file_names_the_stage_to_rerun(tmp_path, monkeypatch):
    """generative_figures reads each metrics file through io.read_json: one line saying
    which stage rewrites it, not a JSON traceback."""
    from pipeline.errors import PipelineError
    from stages import paths
    from stages.generative_figures import cladec_rows

    monkeypatch.chdir(tmp_path)
    paths.GENERATIVE_METRICS.mkdir(parents=True)
    (paths.GENERATIVE_METRICS / "cladec_dense-0.5.json").write_text('{"kind": "cla')
    with pytest.raises(PipelineError, match=r"corrupt .*dvc repro -f cladec@dense-0\.5"):
        cladec_rows()
