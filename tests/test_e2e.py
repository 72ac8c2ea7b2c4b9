"""End to end: copy the repository, shrink the params, run `dvc repro`, then change a
param as a user would and check what reran, what DVC reports and what MLflow holds."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import mlflow
import pytest
import yaml
from repo_copy import copy_tracked_files
from test_report_browser import assert_report_works

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def sh(args: list[str], cwd: Path, timeout: int = 600) -> str:
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "DVC_NO_ANALYTICS": "true"}
    env.pop("MLFLOW_TRACKING_URI", None)
    result = subprocess.run(
        args,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, (
        f"{args} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    )
    return result.stdout + result.stderr


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """A fresh clone-like copy: tracked files only, small params, one git commit."""
    root = tmp_path_factory.mktemp("e2e") / "repo"
    copy_tracked_files(root)
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["data"]["max_samples"] = 400
    params["classifier"].update(epochs=2, batch_size=32, tracked_instances=25)
    # 40 steps: enough for decodings that differ (the walks refuse a VAE whose decodings
    # vary under 5% as much as the images; one epoch of 5 steps gave 0.14%, this 25%)
    params["vae"].update(epochs=2, batch_size=16, latent_dim=4)
    params["cladec"].update(layers=["dense"], alphas=[0.0, 0.5], max_epochs=1)
    params["cladec"]["variational"]["layers"] = []  # an empty list turns it off
    params["select"].update(per_class=1, misclassified=2, confused_pairs=2)
    params["explain"]["methods"] = ["saliency", "gradcam", "lime"]
    params["explain"]["lime"]["samples"] = 100
    params["evaluate"].update(
        images=20,
        steps=8,
        road_percentages=[0.25, 0.5, 0.75],
        random_seeds=1,
        sanity_images=4,
        sanity_seeds=2,
        bootstrap=200,
    )
    params["inside"]["activation_max"]["iterations"] = 4
    params["inside"]["ice"].update(images=40, concepts=3, fidelity_concepts=[2, 4], examples=2)
    params["inside"]["vae_walks"].update(steps=4, pairs_per_class_pair=1)
    params["inside"]["grand_tour"].update(instances=30, frames=3)
    params["inside"]["instanceflow"].update(epochs=2, unstable=2)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    sh(["git", "init", "-q"], root)
    # DVC commits experiments: give the copy an identity even where git has none (CI)
    sh(["git", "config", "user.name", "e2e"], root)
    sh(["git", "config", "user.email", "e2e@example.invalid"], root)
    sh(["git", "add", "-A"], root)
    sh(["git", "commit", "-qm", "init"], root)
    sh(["dvc", "repro"], root)
    return root


def client(root: Path) -> mlflow.MlflowClient:
    return mlflow.MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")


def runs(root: Path, name: str) -> list:
    c = client(root)
    experiment = c.get_experiment_by_name("xai-pipeline")
    found = c.search_runs(
        [experiment.experiment_id],
        f"attributes.run_name = '{name}'",
        order_by=["attributes.start_time ASC"],
    )
    return list(found)


def test_repro_writes_every_output(workspace):
    for out in (
        "data/dataset.npz",
        "models/classifier/model.pt",
        "models/classifier/epoch_predictions.npz",
        "models/classifier/checkpoints/epoch-001.ckpt",
        "models/classifier/checkpoints/epoch-002.ckpt",
        "models/classifier/checkpoints/last.ckpt",
        "reports/figures/classifier_curves.png",
        "reports/figures/classifier_confusion.png",
        "reports/figures/data_samples.png",
        "plots/classifier/history.csv",
    ):
        assert (workspace / out).stat().st_size > 0, out
    metrics = json.loads((workspace / "metrics/classifier.json").read_text())
    assert metrics["training_epochs"] == 2 and 0.1 < metrics["test"]["accuracy"] <= 1
    assert set(metrics["test"]["per_class_accuracy"]) == set("0123456789")
    confusion = json.loads((workspace / "metrics/classifier_confusion.json").read_text())
    assert sum(map(sum, confusion["matrix"])) == 40  # 10% of the 400 images
    history = (workspace / "plots/classifier/history.csv").read_text().splitlines()
    assert history[0] == "epoch,train_loss,train_acc,val_loss,val_acc" and len(history) == 3
    import numpy as np

    with np.load(workspace / "models/classifier/epoch_predictions.npz") as records:
        assert records["predictions"].shape == (2, 25)
        assert records["probabilities"].shape == (2, 25, 10)


def test_the_report_of_the_run_works_in_chromium(workspace, browser):
    """The page `dvc repro` wrote: every section, image and interactive part (one Grand
    Tour per layer and animation kind)."""
    assert_report_works(browser, workspace / "reports" / "index.html", tours=4)


def test_nothing_changed_means_nothing_runs(workspace):
    out = sh(["dvc", "status"], workspace)
    assert "Data and pipelines are up to date" in out
    out = sh(["dvc", "repro"], workspace)
    assert "didn't change, skipping" in out and "Running stage" not in out
    plots = sh(["dvc", "plots", "show", "--json"], workspace)
    assert "history.csv" in plots


def test_mlflow_holds_one_run_per_stage_with_params_curves_and_artifacts(workspace):
    (data_run,) = runs(workspace, "data")
    (train_run,) = runs(workspace, "classifier")
    assert train_run.info.status == "FINISHED"
    assert train_run.data.params["classifier.lr"] == "0.001"
    assert train_run.data.params["trainer.accelerator"] == "cpu"
    assert train_run.data.tags["dataset"] == "mnist_embedded"
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=workspace, capture_output=True, text=True
    ).stdout.strip()
    assert train_run.data.tags["git_commit"] == commit
    history = client(workspace).get_metric_history(train_run.info.run_id, "val_acc")
    assert len(history) == 2  # one point per epoch
    artifacts = {f.path for f in client(workspace).list_artifacts(train_run.info.run_id, "metrics")}
    assert "metrics/classifier.json" in artifacts
    # the figures are drawn by their own stage, from the stored curves and confusion
    (figures_run,) = runs(workspace, "classifier_figures")
    drawn = {f.path for f in client(workspace).list_artifacts(figures_run.info.run_id, "figures")}
    assert {"figures/classifier_confusion.png", "figures/classifier_curves.png"} <= drawn
    assert data_run.data.metrics["train"] == 320
    assert (workspace / "mlruns").is_dir()


def test_generative_stages_write_the_cladec_table(workspace):
    table = (workspace / "reports/cladec_table.csv").read_text().splitlines()
    assert table[0] == (
        "kind,layer,alpha,mse_per_pixel,sse_per_image,classifier_ce,classifier_accuracy,"
        "training_epochs,stopped_early,best_epoch,"
        "reference_sse_per_image,reference_classifier_ce,reference_accuracy"
    )
    assert [row.split(",")[:3] for row in table[1:]] == [
        ["cladec", "dense", "0.0"],
        ["cladec", "dense", "0.5"],
        ["refae", "dense", ""],
    ]
    for out in (
        "models/vae/model.pt",
        "models/refvae/model.pt",
        "models/refae/dense/model.pt",
        "models/cladec/dense-0.5/model.pt",
        "reports/figures/cladec_alpha_tradeoff.png",
    ):
        assert (workspace / out).stat().st_size > 0, out
    assert not (workspace / "models/vcladec").exists()
    names = {
        r.info.run_name
        for r in client(workspace).search_runs(
            [client(workspace).get_experiment_by_name("xai-pipeline").experiment_id]
        )
    }
    assert {"vae", "refvae", "cladec@dense-0.0", "cladec@dense-0.5", "refae@dense"} <= names


def test_explanations_are_computed_scored_and_drawn(workspace):
    import numpy as np

    with np.load(workspace / "explanations/selection.npz") as selection:
        count = len(selection["indices"])
        assert count >= 10  # one correct image per class, plus the misclassified
    for method in ("saliency", "gradcam", "lime"):
        with np.load(workspace / f"explanations/attributions/{method}.npz") as stored:
            assert stored["predicted"].shape[0] == count
            assert stored["predicted"].shape[-2:] == (28, 28)
        for group in ("correct", "misclassified"):
            figure = workspace / f"reports/figures/attributions/{method}/{method}_{group}.png"
            assert figure.stat().st_size > 2000, figure
        assert (workspace / f"plots/evaluate/deletion/{method}.csv").read_text().count("\n") == 10
    scores = json.loads((workspace / "metrics/evaluate.json").read_text())["methods"]
    assert set(scores) == {"random", "saliency", "gradcam", "lime"}
    for method in ("saliency", "gradcam", "lime"):
        row = scores[method]
        assert 0 <= row["deletion_auc_low"] <= row["deletion_auc"] <= row["deletion_auc_high"] <= 1
        assert row["deletion_auc_n"] + row["constant_maps"] == row["images"] == 20
        assert 0 <= row["road_morf_auc"] <= 1 and 0 <= row["road_lerf_auc"] <= 1
        assert isinstance(row["sanity_passed"], bool) and row["sanity_seeds"] == 2
        assert 1 <= row["sanity_spearman_all_n"] <= 4
    assert (workspace / "reports/figures/evaluate.png").stat().st_size > 10000
    assert "| saliency |" in (workspace / "reports/evaluate_table.md").read_text()
    (evaluate_run,) = runs(workspace, "evaluate")
    assert "saliency.deletion_auc" in " ".join(evaluate_run.data.metrics)
    (lime_run,) = runs(workspace, "explain@lime")
    assert lime_run.data.params["explain.lime.samples"] == "100"


def test_inside_the_model_stages_write_arrays_metrics_and_figures(workspace):
    figures = {
        "feature_maps": ["conv_layer_1.png", "first_layer_filters.png"],
        "activation_max": ["filters.png", "classes.png"],
        "ice": ["concept_heatmaps.png", "classes.png", "concept_examples.png", "fidelity.png"],
        "instanceflow": ["sankey.png", "sankey.html", "unstable_instances.png"],
        "vae_walks": ["walks.png"],
        "cladec_decodings": ["dense.png"],
        "grand_tour": ["softmax_rotation.gif", "dense_rotation.html", "dense_epochs.gif"],
        "across_epochs": ["gradcam_by_epoch.png"],
    }
    for part, names in figures.items():
        for name in names:
            assert (workspace / f"reports/figures/{part}/{name}").stat().st_size > 2000, (
                part,
                name,
            )
        assert json.loads((workspace / f"metrics/explain/{part}.json").read_text()), part
    ice = json.loads((workspace / "metrics/explain/ice.json").read_text())
    assert set(ice["fidelity"]) == {"2", "4"}
    assert 0 <= ice["fidelity"]["4"]["accuracy"] <= 1
    flow = json.loads((workspace / "metrics/explain/instanceflow.json").read_text())
    assert flow["instances"] == 25 and flow["epochs"] == 2
    (run,) = runs(workspace, "inside_figures")
    assert run.info.status == "FINISHED"


def test_changing_a_method_param_reruns_that_method_and_its_evaluation_only(workspace):
    original = (workspace / "params.yaml").read_text()
    params = yaml.safe_load(original)
    params["explain"]["lime"]["samples"] = 200
    (workspace / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        status = sh(["dvc", "status", "--json"], workspace)
    finally:
        (workspace / "params.yaml").write_text(original)
    # the figure stages read every method's params too (LIME's: the superpixels shown, in
    # the attribution figures and the gallery); `params` validates every edit of
    # params.yaml (its output never changes). LIME's evaluation is rerun inside
    # explain@lime; `evaluate` only gathers, and reruns once explain@lime has rewritten
    # explanations/evaluation/lime.npz, not for the params
    assert set(json.loads(status)) == {"params", "explain@lime", "attribution_figures", "gallery"}
    dag = sh(["dvc", "dag", "--outs", "--dot"], workspace)
    assert '"explanations/evaluation/lime.npz" -> "reports/evaluate_table.md"' in dag


def test_adding_an_alpha_adds_one_stage_per_layer_and_nothing_else(workspace):
    original = (workspace / "params.yaml").read_text()
    params = yaml.safe_load(original)
    params["cladec"]["alphas"].append(0.9)
    (workspace / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        status = sh(["dvc", "status", "--json"], workspace)
    finally:
        (workspace / "params.yaml").write_text(original)
    # the new decoder, the ClaDec explanation figure that shows every alpha, and the
    # validation of the edited params.yaml
    assert set(json.loads(status)) == {"params", "cladec@dense-0.9", "cladec_decodings"}


FIGURE_STAGES = {
    "data_figures",
    "classifier_figures",
    "generative_figures",
    "attribution_figures",
    "evaluate_figure",
    "inside_figures",
    "gallery",
}


@pytest.mark.parametrize(
    ("module", "drawn_by"),
    [
        ("pipeline/figures/attributions.py", "attribution_figures"),
        ("pipeline/figures/training.py", "classifier_figures"),
        ("pipeline/figures/reconstructions.py", "generative_figures"),
        ("pipeline/figures/ice.py", "inside_figures"),
    ],
)
def test_restyling_a_figure_reruns_only_figure_stages(workspace, module, drawn_by):
    """Compute stages compute, figure stages draw: an edit to figure code makes only
    the figure stages that draw with it stale, never a training or an explanation."""
    path = workspace / module
    original = path.read_text()
    path.write_text(original + "\n# restyled\n")
    try:
        stale = set(json.loads(sh(["dvc", "status", "--json"], workspace)))
    finally:
        path.write_text(original)
    assert drawn_by in stale and stale <= FIGURE_STAGES, stale


def test_changing_lr_reruns_only_the_classifier_and_both_runs_compare(workspace):
    out = sh(["dvc", "exp", "run", "-S", "classifier.lr=0.003", "classifier"], workspace)
    assert "Stage 'data' didn't change, skipping" in out
    assert "Running stage 'classifier'" in out
    assert "Running stage 'data'" not in out
    train_runs = runs(workspace, "classifier")
    assert [r.data.params["classifier.lr"] for r in train_runs] == ["0.001", "0.003"]
    assert "dvc_experiment" in train_runs[-1].data.tags
    assert len(runs(workspace, "data")) == 1
    shown = json.loads(sh(["dvc", "exp", "show", "--json"], workspace))
    assert len(json.dumps(shown)) > 0 and "0.003" in json.dumps(shown)
    diff = sh(["dvc", "metrics", "diff", "--json"], workspace)
    assert "metrics/classifier.json" in diff


def test_queued_experiment_logs_into_the_workspace_store(workspace):
    # the target keeps the queued run short: the classifier and what it needs
    sh(["dvc", "exp", "run", "--queue", "-S", "classifier.lr=0.005", "classifier"], workspace)
    sh(["dvc", "queue", "start"], workspace)
    deadline = time.time() + 300
    while time.time() < deadline:
        status = sh(["dvc", "queue", "status"], workspace)
        if "Queued" not in status and "Running" not in status:
            break
        time.sleep(3)
    assert "Success" in status, status
    lrs = [r.data.params["classifier.lr"] for r in runs(workspace, "classifier")]
    assert "0.005" in lrs
    assert not list((workspace / ".dvc").rglob("mlflow.db"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_mlflow_ui_serves_the_classifier_run(workspace):
    port = _free_port()
    server = subprocess.Popen(
        [
            str(BIN / "mlflow"),
            "ui",
            "--backend-store-uri",
            f"sqlite:///{workspace}/mlflow.db",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        cwd=workspace,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/get-by-name?experiment_name=xai-pipeline"
        for _ in range(120):
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    experiment = json.load(response)["experiment"]
                break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("mlflow ui did not start")
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/2.0/mlflow/runs/search",
            data=json.dumps({"experiment_ids": [experiment["experiment_id"]]}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            names = {r["info"]["run_name"] for r in json.load(response)["runs"]}
        assert {"data", "classifier"} <= names
    finally:
        server.terminate()
        server.wait(timeout=30)
