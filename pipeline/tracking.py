"""The one place that talks to MLflow.

Store: `sqlite:///<workspace>/mlflow.db` for metadata and `<workspace>/mlruns/` for
artifacts, unless MLFLOW_TRACKING_URI names another store. Experiments queued with
`dvc exp run --queue` run in a temporary copy under `.dvc/tmp/exps/`; they still log
into the workspace's store, so every run is compared in one UI.
"""

from __future__ import annotations

import logging
import os
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

QUEUE_MARKER = (".dvc", "tmp", "exps")


def workspace_root(start: str | Path | None = None) -> Path:
    """The repository the user works in, also from inside a DVC queue's temporary copy."""
    path = Path(start or os.getcwd()).resolve()
    parts = path.parts
    for i in range(len(parts) - len(QUEUE_MARKER) + 1):
        if parts[i : i + len(QUEUE_MARKER)] == QUEUE_MARKER:
            return Path(*parts[:i])
    return path


def tracking_uri(root: Path | None = None) -> str:
    """MLFLOW_TRACKING_URI if set, else the workspace's sqlite store."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    return f"sqlite:///{(root or workspace_root()) / 'mlflow.db'}"


def is_rank_zero() -> bool:
    """False in the extra processes a multi-device (DDP) launch starts: they only train."""
    return all(os.environ.get(var, "0") == "0" for var in ("RANK", "LOCAL_RANK", "NODE_RANK"))


def _git(*args: str) -> str:
    try:
        out = subprocess.run(["git", *args], capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip()


def run_tags(stage: str, dataset: str) -> dict[str, str]:
    """Tags that let a user find a run again: commit, dataset, stage, DVC experiment."""
    commit = _git("rev-parse", "HEAD")
    tags = {
        "stage": stage,
        "dataset": dataset,
        "git_commit": commit or "unknown",
        "mlflow.source.git.commit": commit or "unknown",
        "git_dirty": str(bool(_git("status", "--porcelain", "--untracked-files=no"))).lower(),
    }
    if os.environ.get("DVC_EXP_NAME"):
        tags["dvc_experiment"] = os.environ["DVC_EXP_NAME"]
    if os.environ.get("DVC_EXP_BASELINE_REV"):
        tags["dvc_baseline_rev"] = os.environ["DVC_EXP_BASELINE_REV"]
    return tags


def flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'classifier': {'lr': 1e-3}} -> {'classifier.lr': 1e-3}: the keys of params.yaml."""
    flat: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


@dataclass
class StageRun:
    """An open MLflow run for one stage execution."""

    run_id: str
    experiment_name: str
    uri: str
    client: Any  # mlflow.MlflowClient; typed loosely so importing this module stays cheap

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Numeric leaves only (NaN and text are skipped; flags count as 1 / 0), in one batch."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [
            Metric(key, float(value), now, step or 0)
            for key, value in flatten(metrics).items()
            if isinstance(value, int | float) and value == value
        ]
        if batch:
            self.client.log_batch(self.run_id, metrics=batch)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_path)

    def lightning_logger(self) -> Any:
        """Lightning's MLFlowLogger writing into this same run."""
        from pytorch_lightning.loggers import MLFlowLogger

        return MLFlowLogger(
            experiment_name=self.experiment_name, tracking_uri=self.uri, run_id=self.run_id
        )


class _NullRun(StageRun):
    """Stand-in on non-zero DDP ranks: logs nothing."""

    def __init__(self) -> None:
        super().__init__(run_id="", experiment_name="", uri="", client=None)

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        return None

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        return None

    def lightning_logger(self) -> Any:
        return False


def _experiment_id(client: Any, name: str, root: Path) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    location = None
    if not os.environ.get("MLFLOW_TRACKING_URI"):
        location = (root / "mlruns").as_uri()
    return client.create_experiment(name, artifact_location=location)


@contextmanager
def stage_run(
    stage: str, experiment: str, dataset: str, params: Mapping[str, Any]
) -> Iterator[StageRun]:
    """Open one MLflow run named after the stage, log its params and tags, and close it
    as FINISHED, or FAILED if the stage raises."""
    if not is_rank_zero():
        yield _NullRun()
        return
    import mlflow

    root = workspace_root()
    uri = tracking_uri(root)
    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment_id = _experiment_id(client, experiment, root)
    run = client.create_run(experiment_id, run_name=stage, tags=run_tags(stage, dataset))
    run_id = run.info.run_id
    from mlflow.entities import Param

    client.log_batch(
        run_id,
        params=[
            Param(key, "null" if value is None else str(value))
            for key, value in flatten(params).items()
        ],
    )
    log.info("MLflow run %s (%s) in %s", stage, run_id, uri)
    try:
        yield StageRun(run_id, experiment, uri, client)
    except BaseException:
        client.set_terminated(run_id, status="FAILED")
        raise
    client.set_terminated(run_id, status="FINISHED")
