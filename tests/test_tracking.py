"""MLflow tracking: the store location, tags, params, and FAILED runs."""

from __future__ import annotations

import shutil
from pathlib import Path

import mlflow
import pytest

from pipeline.errors import Stopped
from pipeline.tracking import flatten, stage_run, tracking_uri, workspace_root


def test_workspace_root_sees_through_a_dvc_queue_copy(tmp_path):
    queued = tmp_path / "repo" / ".dvc" / "tmp" / "exps" / "tmpab12" / "sub"
    queued.mkdir(parents=True)
    assert workspace_root(queued) == tmp_path / "repo"
    assert workspace_root(tmp_path / "repo") == tmp_path / "repo"


def test_default_store_is_sqlite_at_the_root_and_env_overrides(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking_uri(tmp_path) == f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.example:5000")
    assert tracking_uri(tmp_path) == "http://mlflow.example:5000"


def test_flatten_uses_params_yaml_keys():
    assert flatten({"a": {"b": 1, "c": {"d": None}}, "e": 2}) == {"a.b": 1, "a.c.d": None, "e": 2}


def test_stage_run_logs_params_tags_metrics_artifacts_and_status(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DVC_EXP_NAME", "brisk-lark")
    artifact = tmp_path / "m.json"
    artifact.write_text("{}")
    with stage_run("classifier", "exp", "mnist_embedded", {"classifier": {"lr": 0.003}}) as run:
        run.log_metrics({"test": {"accuracy": 0.5}, "ignored": "text"})
        run.log_artifact(artifact, "metrics")
    with pytest.raises(RuntimeError), stage_run("classifier", "exp", "mnist_embedded", {}):
        raise RuntimeError("boom")

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("exp")
    assert experiment.artifact_location == (tmp_path / "mlruns").as_uri()
    runs = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time"])
    assert [r.info.status for r in runs] == ["FINISHED", "FAILED"]
    done = runs[0]
    assert done.info.run_name == "classifier"
    assert done.data.params == {"classifier.lr": "0.003"}
    assert done.data.metrics == {"test.accuracy": 0.5}
    assert done.data.tags["dataset"] == "mnist_embedded"
    assert done.data.tags["dvc_experiment"] == "brisk-lark"
    assert "git_commit" in done.data.tags
    files = [f.path for f in client.list_artifacts(done.info.run_id, "metrics")]
    assert files == ["metrics/m.json"]
    assert Path(tmp_path / "mlruns").is_dir()


def test_a_copied_workspace_logs_its_artifacts_into_its_own_folder(tmp_path, monkeypatch):
    """MLflow stores absolute artifact locations; a copied (or moved) workspace's store
    is pointed at the copy's mlruns/ before it logs, so nothing lands in the original
    and the copy's UI finds the artifacts it holds."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    original, copy = tmp_path / "original", tmp_path / "copy"
    original.mkdir()
    (original / "m.json").write_text("{}")
    monkeypatch.chdir(original)
    with stage_run("data", "exp", "d", {}) as first:
        first.log_artifact(original / "m.json", "metrics")
    shutil.copytree(original, copy)
    monkeypatch.chdir(copy)
    with stage_run("data", "exp", "d", {}) as second:
        second.log_artifact(copy / "m.json", "metrics")

    assert (copy / "mlruns" / second.run_id / "artifacts" / "metrics" / "m.json").is_file()
    assert not (original / "mlruns" / second.run_id).exists()
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{copy / 'mlflow.db'}")
    assert client.get_experiment_by_name("exp").artifact_location == (copy / "mlruns").as_uri()
    for run_id in (first.run_id, second.run_id):
        assert client.get_run(run_id).info.artifact_uri.startswith((copy / "mlruns").as_uri())
        assert [f.path for f in client.list_artifacts(run_id, "metrics")] == ["metrics/m.json"]
    # the original store still points at the original folder
    original_client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{original / 'mlflow.db'}")
    location = original_client.get_experiment_by_name("exp").artifact_location
    assert location == (original / "mlruns").as_uri()


def test_a_stop_marks_the_run_killed(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(Stopped), stage_run("classifier", "exp", "d", {}):
        raise Stopped(15, "SIGTERM")
    with pytest.raises(KeyboardInterrupt), stage_run("classifier", "exp", "d", {}):
        raise KeyboardInterrupt
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("exp")
    runs = client.search_runs([experiment.experiment_id])
    assert [r.info.status for r in runs] == ["KILLED", "KILLED"]
