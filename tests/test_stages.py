"""Stage scripts: bad params or missing inputs stop them at once, with one line that
names the problem, a non-zero exit, and no output touched."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def run_stage(stage: str, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "MLFLOW_TRACKING_URI": f"sqlite:///{cwd}/m.db"}
    return subprocess.run(
        [sys.executable, "-m", f"stages.{stage}", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def write_params(folder: Path, **overrides: dict) -> None:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    for group, values in overrides.items():
        params[group].update(values)
    (folder / "params.yaml").write_text(yaml.safe_dump(params))


def test_bad_param_stops_the_stage_before_any_work(tmp_path):
    write_params(tmp_path, classifier={"lr": -1})
    before = sorted(p.name for p in tmp_path.iterdir())
    for stage in ("data", "classifier"):
        result = run_stage(stage, tmp_path)
        assert result.returncode == 2
        errors = [line for line in result.stderr.splitlines() if "error:" in line]
        assert errors == [
            f"{stage}: error: params.yaml: classifier.lr = -1: Input should be greater than 0"
        ]
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written


def test_missing_dataset_tells_which_stage_to_run(tmp_path):
    write_params(tmp_path)
    result = run_stage("classifier", tmp_path)
    assert result.returncode == 2
    assert "data/dataset.npz not found: run the data stage first" in result.stderr
    assert not (tmp_path / "models").exists()


def test_unreachable_dataset_fails_with_a_hint(tmp_path):
    write_params(
        tmp_path,
        data={"dataset": "fashion_mnist", "download": False, "root": str(tmp_path / "raw")},
    )
    result = run_stage("data", tmp_path)
    assert result.returncode == 2
    assert "by hand" in result.stderr and "FashionMNIST" in result.stderr
    assert not (tmp_path / "data").exists()


def test_bad_method_param_stops_the_explain_stage(tmp_path):
    write_params(tmp_path, explain={"lime": {"segmentation": "felzenszwalb"}})
    result = run_stage("explain", tmp_path, "--method", "lime")
    assert result.returncode == 2
    assert (
        "explain: error: params.yaml: explain.lime.segmentation = 'felzenszwalb'" in result.stderr
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]


def test_unknown_method_is_refused_by_the_explain_stage(tmp_path):
    write_params(tmp_path)
    result = run_stage("explain", tmp_path, "--method", "no_such_method")
    assert result.returncode == 2
    assert "invalid choice: 'no_such_method'" in result.stderr


def test_explain_stages_without_their_inputs_say_what_to_run(tmp_path):
    write_params(tmp_path)
    result = run_stage("select", tmp_path)
    assert result.returncode == 2
    assert "data/dataset.npz not found: run the data stage first" in result.stderr
    result = run_stage("evaluate_figure", tmp_path)
    assert result.returncode == 2
    assert "metrics/evaluate.json not found: run `dvc repro evaluate`" in result.stderr


def test_dvc_matrix_expands_to_one_stage_per_layer_and_alpha():
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    out = subprocess.run(
        ["dvc", "stage", "list", "--name-only"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout.split()
    params = yaml.safe_load((REPO / "params.yaml").read_text())["cladec"]
    expected = {
        f"cladec@{layer}-{alpha}" for layer in params["layers"] for alpha in params["alphas"]
    }
    assert expected == {name for name in out if name.startswith("cladec@")}
    assert len(expected) == 10
    assert {f"refae@{layer}" for layer in params["layers"]} <= set(out)
    assert {f"vcladec@{layer}" for layer in params["variational"]["layers"]} <= set(out)
    assert {"data", "classifier", "vae", "refvae", "generative_figures"} <= set(out)
    assert "cladec_report" not in out  # the ClaDec table is drawn by generative_figures
    assert {"data_figures", "classifier_figures", "generative_figures"} <= set(out)
    methods = yaml.safe_load((REPO / "params.yaml").read_text())["explain"]["methods"]
    assert {f"explain@{m}" for m in methods} == {n for n in out if n.startswith("explain@")}
    assert {"select", "evaluate", "evaluate_figure", "attribution_figures"} <= set(out)
    assert {"inside_figures", "across_epochs", "cladec_decodings", "grand_tour"} <= set(out)
