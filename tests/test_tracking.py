"""MLflow tracking: the store location, tags, params, and FAILED runs."""

from __future__ import annotations

import json
import shutil
import subprocess
import textwrap
from pathlib import Path

import mlflow
import pytest

from pipeline import tracking
from pipeline.errors import Stopped
from pipeline.tracking import (
    configuration,
    declared_outputs,
    experiment_url,
    flatten,
    git_dirty,
    params_hash,
    run_url,
    stage_run,
    tracking_uri,
    workspace_root,
)


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
    runs = client.search_runs(
        [experiment.experiment_id],
        filter_string="tags.stage = 'classifier'",  # not the parent
        order_by=["attributes.start_time"],
    )
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
    assert [r.info.status for r in runs] == ["KILLED", "KILLED", "KILLED"]  # the parent too


# ------------------------------------------------------------ parent runs, tags, kind


def _client(root: Path) -> mlflow.MlflowClient:
    return mlflow.MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")


def _runs(root: Path, experiment: str = "exp") -> list:
    client = _client(root)
    eid = client.get_experiment_by_name(experiment).experiment_id
    return client.search_runs([eid], order_by=["attributes.start_time"])


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    """An empty workspace as the current folder, logging into its own sqlite store."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_stage_runs_of_one_configuration_nest_under_one_parent(workspace):
    with stage_run("data", "exp", "d", {}) as first:
        pass
    with stage_run("classifier", "exp", "d", {"classifier": {"lr": 0.003}}) as second:
        second.log_to_parent({"test": {"accuracy": 0.75}, "verdict": "text"})
    (workspace / "params.yaml").write_text("seed: 7\n")  # another configuration
    with stage_run("data", "exp", "d", {}) as third:
        pass

    runs = {r.info.run_id: r for r in _runs(workspace)}
    parents = [r for r in runs.values() if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 2 and len(runs) == 5
    assert first.parent_run_id == second.parent_run_id != third.parent_run_id
    for child in (first, second, third):
        assert runs[child.run_id].data.tags["mlflow.parentRunId"] == child.parent_run_id
    parent, other = runs[first.parent_run_id], runs[third.parent_run_id]
    assert parent.data.metrics == {"test.accuracy": 0.75}  # the text is skipped
    assert runs[second.run_id].data.metrics == {}
    assert parent.data.params["seed"] == "42" and other.data.params["seed"] == "7"
    assert len(parent.data.params) == len(configuration())  # the whole params, > 100 keys
    assert parent.data.tags["params_hash"] != other.data.tags["params_hash"]
    assert parent.data.tags["params_hash"] == runs[first.run_id].data.tags["params_hash"]
    digest = parent.data.tags["params_hash"]
    assert parent.info.run_name == f"pipeline unknown {digest[:8]}"  # not a git repo here
    assert parent.info.status == other.info.status == "FINISHED"
    assert parent.info.end_time == runs[second.run_id].info.end_time  # the latest child's
    # the runs table's default columns: Source and Dataset (name, digest of data.* and seed)
    assert parent.data.tags["mlflow.source.name"] == "dvc.yaml"
    assert runs[first.run_id].data.tags["mlflow.source.type"] == "LOCAL"
    inputs = [runs[i].inputs.dataset_inputs[0].dataset for i in (first.run_id, third.run_id)]
    assert [d.name for d in inputs] == ["d", "d"] and inputs[0].digest != inputs[1].digest
    assert json.loads(inputs[1].source)["seed"] == 7


def test_a_params_file_spelling_out_defaults_is_the_same_configuration(workspace):
    defaults = configuration()
    (workspace / "params.yaml").write_text("seed: 42\nclassifier:\n  lr: 0.001\n")
    assert defaults["seed"] == 42 and defaults["classifier.lr"] == 0.001
    assert params_hash(configuration()) == params_hash(defaults)
    (workspace / "params.yaml").write_text("classifier:\n  lr: 0.002\n")
    assert params_hash(configuration()) != params_hash(defaults)
    assert params_hash({"a": 1, "b": 2}) == params_hash({"b": 2, "a": 1})


def test_the_parent_is_named_after_the_dvc_experiment_and_keyed_by_it(workspace, monkeypatch):
    monkeypatch.setenv("DVC_EXP_NAME", "brisk-lark")
    with stage_run("data", "exp", "d", {}) as named:
        pass
    monkeypatch.setenv("DVC_EXP_NAME", "other-exp")
    with stage_run("data", "exp", "d", {}) as other:
        pass
    parent = _client(workspace).get_run(named.parent_run_id)
    assert parent.info.run_name == "brisk-lark"
    assert parent.data.tags["dvc_experiment"] == "brisk-lark"
    assert parent.data.tags["pipeline_config"].endswith("/brisk-lark")
    assert other.parent_run_id != named.parent_run_id


def test_racing_creators_keep_the_oldest_parent(workspace, monkeypatch):
    """A queued experiment that did not see a parent another one just made creates its
    own, finds both, keeps the oldest and deletes its own."""
    with stage_run("data", "exp", "d", {}) as first:
        pass
    real = tracking._parents
    calls = []

    def missed_once(*args):
        calls.append(args)
        return [] if len(calls) == 1 else real(*args)

    monkeypatch.setattr(tracking, "_parents", missed_once)
    with stage_run("classifier", "exp", "d", {}) as second:
        pass
    assert len(calls) == 2  # the lookup that missed, the one after creating
    assert second.parent_run_id == first.parent_run_id
    parents = [r for r in _runs(workspace) if "mlflow.parentRunId" not in r.data.tags]
    assert [p.info.run_id for p in parents] == [first.parent_run_id]  # the duplicate deleted


def test_a_failed_stage_marks_its_parent_failed_until_a_stage_finishes(workspace):
    with pytest.raises(RuntimeError), stage_run("classifier", "exp", "d", {}) as failed:
        raise RuntimeError("boom")
    client = _client(workspace)
    assert client.get_run(failed.parent_run_id).info.status == "FAILED"
    with stage_run("classifier", "exp", "d", {}) as rerun:
        assert client.get_run(rerun.parent_run_id).info.status == "RUNNING"
    assert rerun.parent_run_id == failed.parent_run_id
    assert client.get_run(rerun.parent_run_id).info.status == "FINISHED"


def test_log_to_parent_logs_files_and_folders_at_stable_paths(workspace):
    report = workspace / "reports"
    (report / "img").mkdir(parents=True)
    (report / "index.html").write_text("<html></html>")
    (report / "img" / "a.png").write_bytes(b"png")
    with stage_run("report", "exp", "d", {}) as run:
        run.log_to_parent({"n": 1}, [report / "index.html", report / "img"])
    client = _client(workspace)
    top = sorted(f.path for f in client.list_artifacts(run.parent_run_id))
    assert top == ["img", "index.html"]
    assert [f.path for f in client.list_artifacts(run.parent_run_id, "img")] == ["img/a.png"]
    assert client.list_artifacts(run.run_id) == []


def test_run_url_points_at_the_ui(workspace, monkeypatch):
    with stage_run("data", "exp", "d", {}) as run:
        pass
    url = run_url(run.parent_run_id)
    assert url == (
        f"http://127.0.0.1:5000/#/experiments/{run.experiment_id}/runs/{run.parent_run_id}"
        "?workflowType=machine_learning"
    )
    server = run_url("abc", "3", uri="http://mlflow.example:5000/")
    assert server.startswith("http://mlflow.example:5000/#/experiments/3/runs/abc")
    assert experiment_url("3", uri="sqlite:////x/mlflow.db") == (
        "http://127.0.0.1:5000/#/experiments/3/runs?workflowType=machine_learning"
    )


def test_ui_link_opens_the_experiment_params_yaml_names(workspace):
    """`make ui` / `make repro` print it: the start page before any run, then the
    experiment's runs table in the classic view; a broken params.yaml still gets one."""
    from pipeline.tracking import experiment_link, ui_link

    (workspace / "params.yaml").write_text("tracking:\n  experiment: mine\n")
    assert ui_link(workspace) == "http://127.0.0.1:5000"  # no store yet
    with stage_run("data", "mine", "d", {}) as run:
        pass
    assert ui_link(workspace) == (
        f"http://127.0.0.1:5000/#/experiments/{run.experiment_id}/runs"
        "?workflowType=machine_learning"
    )
    assert experiment_link("another", workspace) == "http://127.0.0.1:5000"
    (workspace / "params.yaml").write_text("tracking:\n  experiment: ''\n")
    assert ui_link(workspace) == "http://127.0.0.1:5000"


def test_experiments_are_marked_as_classic_model_training(workspace):
    client = _client(workspace)
    client.create_experiment("older", artifact_location=(workspace / "mlruns").as_uri())
    for name in ("older", "exp"):  # one made before, one made by the stage
        with stage_run("data", name, "d", {}):
            pass
        kind = client.get_experiment_by_name(name).tags["mlflow.experimentKind"]
        assert kind == "custom_model_development"


def test_non_zero_ranks_log_nothing(workspace, monkeypatch):
    monkeypatch.setenv("LOCAL_RANK", "1")
    with stage_run("classifier", "exp", "d", {}) as run:
        run.log_metrics({"a": 1})
        run.log_to_parent({"a": 1}, [workspace / "missing.html"])
    assert run.parent_run_id == "" and not (workspace / "mlflow.db").exists()


# ---------------------------------------------------------------------------- git_dirty


def _git_repo(root: Path) -> None:
    def git(*args: str) -> None:
        subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True)

    (root / "stages").mkdir()
    (root / "metrics" / "explain").mkdir(parents=True)
    (root / "plots").mkdir()
    files = {
        "stages/train.py": "x = 1\n",
        "dvc.lock": "schema: '2.0'\n",
        "params.yaml": "seed: 1\n",
        ".gitignore": "/data\n",
        "metrics/train.json": "{}\n",
        "metrics/explain/lime.json": "{}\n",
        "plots/history.csv": "a\n",
        "dvc.yaml": textwrap.dedent(
            """\
            stages:
              train:
                cmd: python -m stages.train
                outs: [data/model.pt]
                metrics: [{metrics/train.json: {cache: false}}]
                plots: [plots/history.csv]
              explain:
                foreach: [lime]
                do:
                  cmd: python -m stages.explain
                  metrics: [{"metrics/explain/${item}.json": {cache: false}}]
            """
        ),
    }
    for path, text in files.items():
        (root / path).write_text(text)
    git("init", "-q")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")


def test_declared_outputs_reads_outs_metrics_and_plots_with_templates(tmp_path):
    _git_repo(tmp_path)
    assert sorted(declared_outputs(tmp_path / "dvc.yaml")) == [
        "data/model.pt",
        "metrics/explain/*.json",
        "metrics/train.json",
        "plots/history.csv",
    ]
    assert declared_outputs(tmp_path / "missing.yaml") == []


def test_git_dirty_counts_source_files_not_what_dvc_writes(tmp_path):
    _git_repo(tmp_path)
    assert git_dirty(tmp_path) is False
    for path in (
        "dvc.lock",
        "params.yaml",
        ".gitignore",
        "metrics/train.json",
        "metrics/explain/lime.json",
        "plots/history.csv",
    ):
        (tmp_path / path).write_text("rewritten by DVC\n")
    (tmp_path / "metrics" / "train.json").unlink()  # DVC deletes outputs before a stage
    (tmp_path / "untracked.py").write_text("y = 2\n")
    assert git_dirty(tmp_path) is False
    (tmp_path / "stages" / "train.py").write_text("x = 2\n")
    assert git_dirty(tmp_path) is True
    (tmp_path / "stages" / "train.py").write_text("x = 1\n")
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")  # the pipeline's definition counts
    assert git_dirty(tmp_path) is True
