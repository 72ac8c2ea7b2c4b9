"""MLflow tracking: the store location, tags, params, and FAILED runs."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest

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
