"""The one place that talks to MLflow.

Store: `sqlite:///<workspace>/mlflow.db` for metadata and `<workspace>/mlruns/` for
artifacts, unless MLFLOW_TRACKING_URI names another store. Experiments queued with
`dvc exp run --queue` run in a temporary copy under `.dvc/tmp/exps/`; they still log
into the workspace's store, so every run is compared in one UI.

Every stage checks the store first (`check_tracking`, called by `stages/runner.py`), so
an unreachable server or a read-only store stops it within seconds and before any work.
A resumed training continues the MLflow run it was killed in (`StageRun.continue_training`).

Runs are grouped: one parent run per pipeline configuration (the git commit, a hash of
the validated params and the DVC experiment name), found by its `pipeline_config` tag or
created; every stage run is nested under it (`mlflow.parentRunId`). The parent carries
the whole flat params, so two configurations compare at the parent level, and the
headline numbers the report stage logs to it (`StageRun.log_to_parent`).
"""

from __future__ import annotations

import errno
import fnmatch
import functools
import hashlib
import json
import logging
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote, urlparse

from pipeline.errors import PipelineError, Stopped

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


def _git(*args: str, strip: bool = True) -> str:
    try:
        out = subprocess.run(["git", *args], capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip() if strip else out.stdout


# written by DVC (or `dvc exp run -S`, whose values the params hash holds), not by a person
DVC_WRITTEN = ("dvc.lock", "params.yaml")  # and every .gitignore (DVC appends outputs)
_OUT_KINDS = ("outs", "metrics", "plots")


def declared_outputs(dvc_yaml: str | Path = "dvc.yaml") -> list[str]:
    """The paths dvc.yaml declares as outputs, metrics or plots (a `${...}` template part
    as `*`): DVC deletes and rewrites them while stages run, so they say nothing about
    the code. Read with yaml, not DVC: importing DVC costs a stage process seconds."""
    import yaml

    path = Path(dvc_yaml)
    if not path.is_file():
        return []
    stages = (yaml.safe_load(path.read_text()) or {}).get("stages") or {}
    found: list[str] = []
    for stage in stages.values():
        body = stage.get("do", stage) if isinstance(stage, dict) else {}
        for kind in _OUT_KINDS:
            for entry in body.get(kind) or []:
                found += list(entry) if isinstance(entry, dict) else [str(entry)]
    return [re.sub(r"\$\{[^}]*\}", "*", out) for out in dict.fromkeys(found)]


def _dvc_written(path: str, patterns: Sequence[str]) -> bool:
    """A path DVC writes itself: a listed file, anything under a listed folder, a
    .gitignore. (fnmatch's `*` also crosses `/`: a `${...}` part may hold one.)"""
    return PurePosixPath(path).name == ".gitignore" or any(
        fnmatch.fnmatchcase(path, p) or fnmatch.fnmatchcase(path, f"{p.rstrip('/')}/*")
        for p in patterns
    )


def git_dirty(root: str | Path = ".") -> bool:
    """Whether tracked source files differ from the commit: files DVC writes (dvc.lock,
    params.yaml, .gitignore entries, every declared output, metric and plot) do not
    count, as DVC rewrites them before or while stages run. One plain `git status`,
    filtered here: a pathspec per output made git itself 6x slower (0.16 s a stage)."""
    status = _git(
        "-C",
        str(root),
        "status",
        "--porcelain=v1",
        "-z",
        "--no-renames",
        "--untracked-files=no",
        strip=False,
    )
    changed = [entry[3:] for entry in status.split("\0") if len(entry) > 3]
    if not changed:
        return False
    patterns = [*DVC_WRITTEN, *declared_outputs(Path(root) / "dvc.yaml")]
    return any(not _dvc_written(path, patterns) for path in changed)


def _script() -> str:
    """The running script, relative to the current folder when inside it."""
    path = Path(sys.argv[0]).resolve() if sys.argv and sys.argv[0] else Path("unknown")
    return str(path.relative_to(Path.cwd())) if path.is_relative_to(Path.cwd()) else str(path)


def run_tags(stage: str, dataset: str) -> dict[str, str]:
    """Tags that let a user find a run again: commit, dataset, stage, DVC experiment."""
    commit = _git("rev-parse", "HEAD")
    tags = {
        "stage": stage,
        "dataset": dataset,
        "git_commit": commit or "unknown",
        "mlflow.source.git.commit": commit or "unknown",
        "git_dirty": str(git_dirty()).lower(),
        # the runs table's default Source column: the stage's script
        "mlflow.source.name": _script(),
        "mlflow.source.type": "LOCAL",
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


# ------------------------------------------------------------------ store checks

# MLflow's HTTP client retries 7 times with backoff (about 4.5 minutes against a closed
# port); the start-up probe asks once more at most, with a short timeout.
PROBE_ENV = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "5",
}
_FULL = (errno.ENOSPC, errno.EDQUOT)
_NO_ANSWER = {  # what requests says -> what the user reads
    "refused": "connection refused",
    "timed out": f"timed out after {PROBE_ENV['MLFLOW_HTTP_REQUEST_TIMEOUT']} s",
    "resolve": "host name not found",
    "Max retries": "no connection",
}


def _sqlite_path(uri: str) -> Path | None:
    """The database file of a `sqlite:///` URI (None for an in-memory one)."""
    rest = uri[len("sqlite://") :].split("?")[0]
    if not rest.startswith("/") or rest == "/":
        return None
    return Path(unquote(rest[1:])).absolute()


def _probe_folder(folder: Path, what: str) -> None:
    """Create (and drop) a nameless file in `folder`: the real test of writing there,
    which also holds for root and for read-only mounts, where os.access does not."""
    if not folder.is_dir():
        raise PipelineError(
            f"{what} {folder} does not exist: create it, "
            "or set MLFLOW_TRACKING_URI to another store"
        )
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise _store_write_error(folder, what, exc) from None


def _store_write_error(path: Path, what: str, exc: OSError | str) -> PipelineError:
    if isinstance(exc, OSError) and exc.errno in _FULL:
        return PipelineError(
            f"no space left on the device holding {what} {path}: free some space "
            f"(`df -h {path}`), or set MLFLOW_TRACKING_URI to a store on another disk"
        )
    reason = exc.strerror if isinstance(exc, OSError) else exc
    return PipelineError(
        f"{what} {path} is not writable ({reason}): make it writable (`chmod -R u+w {path}`), "
        "or set MLFLOW_TRACKING_URI to a store you can write to"
    )


def _check_sqlite(db: Path) -> None:
    if not db.exists():
        _probe_folder(db.parent, "the MLflow store's folder")
        return
    try:  # opening for writing is the kernel's own check (permissions, read-only mounts)
        os.close(os.open(db, os.O_RDWR))
    except OSError as exc:
        raise _store_write_error(db, "the MLflow store", exc) from None
    try:
        # mode=rw never creates the file; reading the schema version finds a file that is
        # not a database; BEGIN IMMEDIATE takes the write lock; nothing is written
        with closing(sqlite3.connect(f"{db.as_uri()}?mode=rw", uri=True, timeout=5)) as con:
            con.execute("PRAGMA schema_version")
            con.execute("BEGIN IMMEDIATE")
            con.rollback()
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc) or "busy" in str(exc):
            return  # another stage is writing: the store works
        raise _store_write_error(db, "the MLflow store", str(exc)) from None
    except sqlite3.DatabaseError as exc:
        raise PipelineError(
            f"the MLflow store {db} is not a usable database ({exc}): move it away "
            "(a new one is made), or set MLFLOW_TRACKING_URI to another store"
        ) from None
    _probe_folder(db.parent, "the MLflow store's folder")  # sqlite writes its journal there


def _check_server(uri: str, root: Path) -> None:
    import mlflow

    saved = {key: os.environ.get(key) for key in PROBE_ENV}
    os.environ.update(PROBE_ENV)
    try:
        mlflow.MlflowClient(tracking_uri=uri).search_experiments(max_results=1)
    except Exception as exc:
        text = str(exc)
        reasons = [(sign, why) for sign, why in _NO_ANSWER.items() if sign in text]
        state = "does not answer" if reasons else "answers with an error"
        reason = reasons[0][1] if reasons else (text.splitlines() or [type(exc).__name__])[0]
        reason = reason if len(reason) <= 160 else reason[:157] + "..."
        raise PipelineError(
            f"the MLflow tracking server MLFLOW_TRACKING_URI={uri} {state} "
            f"({reason}): start it (`make ui` serves this workspace's store on "
            "http://127.0.0.1:5000), or unset MLFLOW_TRACKING_URI to log into "
            f"{root / 'mlflow.db'}"
        ) from None
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def check_tracking(root: Path | None = None) -> None:
    """Stop with one line when the tracking store cannot take this stage's run: a
    server that does not answer (in about 15 s at most, not MLflow's 4.5 minutes of
    retries), a read-only database or artifact folder, a full disk. Called before any
    work, by `stages/runner.py`; writes nothing."""
    if not is_rank_zero():
        return
    root = root or workspace_root()
    uri = tracking_uri(root)
    scheme = urlparse(uri).scheme
    if scheme in ("http", "https"):
        _check_server(uri, root)
    elif scheme == "sqlite":
        db = _sqlite_path(uri)
        if db is not None:
            _check_sqlite(db)
        if not os.environ.get("MLFLOW_TRACKING_URI"):
            mlruns = root / "mlruns"
            if mlruns.exists():
                _probe_folder(mlruns, "the MLflow artifact folder")
    elif scheme in ("", "file"):
        folder = Path(unquote(urlparse(uri).path))
        _probe_folder(folder if folder.exists() else folder.parent, "the MLflow store folder")


def describe_failure(exc: BaseException) -> str | None:
    """One line for a failure the user fixes outside the code (a full disk, a read-only
    file system or store), found anywhere in the exception's chain; None for others."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        text = str(current)
        if isinstance(current, OSError) and current.errno in _FULL:
            where = f" writing {current.filename}" if current.filename else ""
            return f"no space left on device{where}: free some space and run the stage again"
        if isinstance(current, OSError) and current.errno == errno.EROFS:
            return (
                f"cannot write {current.filename or 'a file'}: the file system is mounted "
                "read-only; remount it read-write or move the workspace"
            )
        if "database or disk is full" in text:
            return (
                f"the disk holding the MLflow store {tracking_uri()} is full: free some space "
                "and run the stage again"
            )
        if "readonly database" in text:
            return (
                f"the MLflow store {tracking_uri()} is read-only: make it writable, "
                "or set MLFLOW_TRACKING_URI to a store you can write to"
            )
        current = current.__cause__ or current.__context__
    return None


# ---------------------------------------------------------------------------- runs

FINGERPRINT_TAG = "training_fingerprint"
CHECKPOINTS_TAG = "training_checkpoints"
CONFIG_TAG = "pipeline_config"  # on parent runs only: "<commit>/<params hash>/<DVC experiment>"
PARENT_TAG = "mlflow.parentRunId"  # MLflow's own nesting tag
# MLflow 3's UI reads this experiment tag to tell classic training from GenAI experiments
KIND_TAG, KIND = "mlflow.experimentKind", "custom_model_development"
UI_ADDRESS = "http://127.0.0.1:5000"  # `make ui`
_BATCH = 100  # MLflow takes at most 100 params or tags per log_batch


def _log_numbers(client: Any, run_id: str, metrics: Mapping[str, Any], step: int | None) -> None:
    """Numeric leaves only (NaN and text are skipped; flags count as 1 / 0), in one batch."""
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    batch = [
        Metric(key, float(value), now, step or 0)
        for key, value in flatten(metrics).items()
        if isinstance(value, int | float) and value == value
    ]
    if batch:
        client.log_batch(run_id, metrics=batch)


def _log_params(client: Any, run_id: str, params: Mapping[str, Any]) -> None:
    """Flat params as MLflow strings (None as `null`), in batches MLflow accepts."""
    from mlflow.entities import Param

    items = [Param(k, "null" if v is None else str(v)) for k, v in flatten(params).items()]
    for start in range(0, len(items), _BATCH):
        client.log_batch(run_id, params=items[start : start + _BATCH])


def ui_base(uri: str | None = None) -> str:
    """The MLflow UI's address: the tracking server itself when MLFLOW_TRACKING_URI
    names one, else `make ui`'s."""
    uri = uri or tracking_uri()
    return uri.rstrip("/") if urlparse(uri).scheme in ("http", "https") else UI_ADDRESS


# MLflow 3.17's UI picks GenAI or classic training per browser (its sidebar toggle,
# GenAI until changed), not from the experiment's tag; this query picks classic training
ML_VIEW = "workflowType=machine_learning"


def experiment_url(experiment_id: str, uri: str | None = None) -> str:
    """The experiment's runs table in the MLflow UI, in the classic training view."""
    return f"{ui_base(uri)}/#/experiments/{experiment_id}/runs?{ML_VIEW}"


def experiment_link(name: str, root: Path | None = None) -> str:
    """Where a person opens the experiment `name`: its runs table in the classic view
    when the store knows it, else the UI's start page. The default store is read with
    sqlite3 directly (no MLflow import: `make repro` prints this after every run)."""
    uri = tracking_uri(root)
    try:
        if urlparse(uri).scheme == "sqlite":
            db = _sqlite_path(uri)
            if db is None or not db.is_file():
                return ui_base(uri)
            with closing(sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True, timeout=5)) as con:
                row = con.execute(
                    "SELECT experiment_id FROM experiments WHERE name = ?", (name,)
                ).fetchone()
            found = None if row is None else str(row[0])
        else:
            import mlflow

            experiment = mlflow.MlflowClient(tracking_uri=uri).get_experiment_by_name(name)
            found = None if experiment is None else experiment.experiment_id
    except Exception:  # a store that cannot answer: the start page still helps
        found = None
    return ui_base(uri) if found is None else experiment_url(found, uri)


def run_url(run_id: str, experiment_id: str | None = None, uri: str | None = None) -> str:
    """The run's page in the MLflow UI (the parent run's for the report's link)."""
    uri = uri or tracking_uri()
    if experiment_id is None:
        import mlflow

        experiment_id = mlflow.MlflowClient(tracking_uri=uri).get_run(run_id).info.experiment_id
    return f"{ui_base(uri)}/#/experiments/{experiment_id}/runs/{run_id}?{ML_VIEW}"


@dataclass
class StageRun:
    """An open MLflow run for one stage execution."""

    run_id: str
    experiment_name: str
    uri: str
    client: Any  # mlflow.MlflowClient; typed loosely so importing this module stays cheap
    stage: str = ""
    experiment_id: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    parent_run_id: str = ""  # the run of this pipeline configuration (`run_url` links it)

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Numeric leaves only (NaN and text are skipped; flags count as 1 / 0), in one batch."""
        _log_numbers(self.client, self.run_id, metrics, step)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_path)

    def log_to_parent(
        self,
        metrics: Mapping[str, Any],
        artifacts: Sequence[str | Path] = (),
        artifact_path: str | None = None,
    ) -> None:
        """The headline numbers (numeric leaves, flattened as in `log_metrics`) and files
        of the whole configuration, on its parent run: what Compare shows side by side
        for two configurations. Files go to the artifact root unless `artifact_path`
        says otherwise: MLflow's Compare lists only the root's files that every compared
        run has. A folder is logged under its own name."""
        _log_numbers(self.client, self.parent_run_id, metrics, None)
        for item in map(Path, artifacts):
            if item.is_dir():
                where = f"{artifact_path}/{item.name}" if artifact_path else item.name
                self.client.log_artifacts(self.parent_run_id, str(item), where)
            else:
                self.client.log_artifact(self.parent_run_id, str(item), artifact_path)

    def lightning_logger(self) -> Any:
        """Lightning's MLFlowLogger writing into this same run (and following it when a
        resumed training continues an earlier run)."""
        return _stage_logger_class()(self)

    def continue_training(
        self, fingerprint: str, checkpoint_dir: str | Path, resumed: bool
    ) -> None:
        """Tag this run with the training it holds. A training resumed from checkpoints
        continues the unfinished run (killed, failed, or left RUNNING by a kill -9) that
        wrote them, so one run holds the whole curve; this execution's own fresh run is
        then deleted. The checkpoints folder is a DVC output other stages read, so the
        link lives in the store (tags), not in a file next to the checkpoints."""
        from mlflow.entities import RunTag

        where = str(Path(checkpoint_dir).resolve())
        previous = self._unfinished_run(fingerprint, where) if resumed else None
        if previous is not None:
            fresh = self.run_id
            tags = {**self.tags, "resumed": "true"}
            self.client.log_batch(previous, tags=[RunTag(k, v) for k, v in tags.items()])
            self.client.update_run(previous, status="RUNNING")
            self.client.delete_run(fresh)
            self.run_id = previous
            log.info("resumed training: continuing MLflow run %s (dropped %s)", previous, fresh)
        self.client.log_batch(
            self.run_id, tags=[RunTag(FINGERPRINT_TAG, fingerprint), RunTag(CHECKPOINTS_TAG, where)]
        )

    def _unfinished_run(self, fingerprint: str, where: str) -> str | None:
        runs = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.{FINGERPRINT_TAG} = '{fingerprint}'",
            order_by=["attributes.start_time DESC"],
            max_results=50,
        )
        for run in runs:
            if (
                run.info.run_id != self.run_id
                and run.info.run_name == self.stage
                and run.info.status != "FINISHED"
                and run.data.tags.get(CHECKPOINTS_TAG) == where
            ):
                return run.info.run_id
        return None


@functools.cache
def _stage_logger_class() -> type:
    """MLFlowLogger subclass, made on first use so that figure stages, which import this
    module, never import Lightning; `__getattr__` below lets pickle find it."""
    from pytorch_lightning.loggers import MLFlowLogger

    class StageLogger(MLFlowLogger):
        """Writes into a StageRun; follows it to an earlier run on resume."""

        def __init__(self, stage_run: StageRun) -> None:
            super().__init__(
                experiment_name=stage_run.experiment_name,
                tracking_uri=stage_run.uri,
                run_id=stage_run.run_id,
            )
            self._stage_run = stage_run

        def continue_training(self, fingerprint: str, checkpoint_dir: Path, resumed: bool) -> None:
            self._stage_run.continue_training(fingerprint, checkpoint_dir, resumed)
            if self._run_id != self._stage_run.run_id:
                self._run_id = self._stage_run.run_id
                self._initialized = False  # fetch the experiment of the run now followed

    StageLogger.__module__ = __name__
    StageLogger.__qualname__ = "StageLogger"
    return StageLogger


def __getattr__(name: str) -> Any:
    if name == "StageLogger":
        return _stage_logger_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _NullRun(StageRun):
    """Stand-in on non-zero DDP ranks: logs nothing."""

    def __init__(self) -> None:
        super().__init__(run_id="", experiment_name="", uri="", client=None)

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        return None

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        return None

    def log_to_parent(
        self,
        metrics: Mapping[str, Any],
        artifacts: Sequence[str | Path] = (),
        artifact_path: str | None = None,
    ) -> None:
        return None

    def lightning_logger(self) -> Any:
        return False

    def continue_training(
        self, fingerprint: str, checkpoint_dir: str | Path, resumed: bool
    ) -> None:
        return None


def _relocate(db: Path, old: str, new: str) -> None:
    """Point the store's artifact locations at this workspace's `mlruns/`: the store was
    copied or moved with its workspace, and MLflow keeps absolute locations, so the
    copy's runs would log into (and read from) the original folder."""
    prefix = len(old) + 1
    with closing(sqlite3.connect(db, timeout=30)) as con, con:
        con.execute(
            "UPDATE experiments SET artifact_location = ? WHERE artifact_location = ?", (new, old)
        )
        con.execute(
            "UPDATE runs SET artifact_uri = ? || substr(artifact_uri, ?) "
            "WHERE substr(artifact_uri, 1, ?) = ?",
            (new, prefix, prefix, old + "/"),
        )
    log.info("MLflow store moved from %s: artifact locations now in %s", old, new)


def _experiment_id(client: Any, name: str, root: Path) -> str:
    """The experiment's id, created if new, marked as classic model training (also an
    existing one: MLflow 3 would open it on its GenAI overview)."""
    default_store = not os.environ.get("MLFLOW_TRACKING_URI")
    location = (root / "mlruns").as_uri()
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        return client.create_experiment(
            name, artifact_location=location if default_store else None, tags={KIND_TAG: KIND}
        )
    old = experiment.artifact_location or ""
    ours = old.startswith("file:") and old.endswith("/mlruns")
    if default_store and ours and old != location:
        _relocate(root / "mlflow.db", old, location)
    if experiment.tags.get(KIND_TAG) != KIND:
        client.set_experiment_tag(experiment.experiment_id, KIND_TAG, KIND)
    return experiment.experiment_id


def configuration(path: str | Path = "params.yaml") -> dict[str, Any]:
    """The validated params of this execution, defaults filled in, flat: what the parent
    run carries and what its params hash covers (a file that spells out a default and
    one that leaves it out are the same configuration). No file: the defaults."""
    from pipeline.params import load_params, parse_params

    params = load_params(path) if Path(path).is_file() else parse_params({})
    return flatten(params.model_dump(mode="json"))


def params_hash(config: Mapping[str, Any]) -> str:
    """A short stable hash of flat params (key order does not matter)."""
    text = json.dumps(dict(config), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _parent_tags(stage_tags: Mapping[str, str], digest: str) -> dict[str, str]:
    """The parent's tags: the configuration key and what a person filters by."""
    shared = ("dataset", "git_commit", "mlflow.source.git.commit", "git_dirty")
    shared += ("dvc_experiment", "dvc_baseline_rev")
    tags = {k: stage_tags[k] for k in shared if k in stage_tags}
    experiment = stage_tags.get("dvc_experiment", "-")
    tags[CONFIG_TAG] = f"{stage_tags['git_commit']}/{digest}/{experiment}"
    tags["params_hash"] = digest
    tags["mlflow.source.name"] = "dvc.yaml"  # the whole pipeline, in the Source column
    tags["mlflow.source.type"] = "LOCAL"
    tags["mlflow.note.content"] = (
        "One pipeline configuration (commit, params, DVC experiment): its stage runs are "
        "nested below; its params are the whole params.yaml, its metrics the headline numbers."
    )
    return tags


def _log_dataset(client: Any, run_id: str, dataset: str, config: Mapping[str, Any]) -> None:
    """The runs table's default Dataset column: the dataset's name and a digest of the
    params that make it (`data.*` and `seed`), which the dataset's details list."""
    from mlflow.entities import Dataset, DatasetInput, InputTag

    making = {k: v for k, v in config.items() if k == "seed" or k.startswith("data.")}
    entry = Dataset(dataset, params_hash(making)[:8], "params", json.dumps(making, default=str))
    context = InputTag("mlflow.data.context", "input")
    client.log_inputs(run_id, datasets=[DatasetInput(entry, tags=[context])])


def _parents(client: Any, experiment_id: str, key: str) -> list[Any]:
    """The live parent runs of one configuration, oldest first (ties by run id)."""
    runs = client.search_runs(
        [experiment_id], filter_string=f"tags.{CONFIG_TAG} = '{key}'", max_results=50
    )
    return sorted(runs, key=lambda run: (run.info.start_time, run.info.run_id))


def _parent_run(
    client: Any, experiment_id: str, stage_tags: Mapping[str, str], config: Mapping[str, Any]
) -> str:
    """The parent run of this configuration: found by its tag, else created. Queued DVC
    experiments may race to create it: each creates, searches again, keeps the oldest
    and deletes its own if that is not the oldest, so all end up under one parent."""
    digest = params_hash(config)
    tags = _parent_tags(stage_tags, digest)
    found = _parents(client, experiment_id, tags[CONFIG_TAG])
    if not found:
        name = stage_tags.get("dvc_experiment") or f"pipeline {tags['git_commit'][:7]} {digest[:8]}"
        created = client.create_run(experiment_id, run_name=name, tags=tags).info.run_id
        _log_params(client, created, config)
        _log_dataset(client, created, stage_tags["dataset"], config)
        found = _parents(client, experiment_id, tags[CONFIG_TAG])
        if found[0].info.run_id != created:
            client.delete_run(created)
    parent = found[0]
    if stage_tags.get("git_dirty") == "true" and parent.data.tags.get("git_dirty") != "true":
        client.set_tag(parent.info.run_id, "git_dirty", "true")  # any stage on changed code
    return parent.info.run_id


def _terminate(run: StageRun, status: str) -> None:
    """Close the run (and its parent, with the same status and end time, so the parent
    shows how the latest stage ended and is never left RUNNING) on any path, without
    hiding a failure: the store itself may be what failed (a full disk)."""
    end = int(time.time() * 1000)
    for run_id in (run.run_id, run.parent_run_id):
        try:
            run.client.set_terminated(run_id, status=status, end_time=end)
        except Exception as exc:
            log.warning("could not mark MLflow run %s %s: %s", run_id, status, exc)


@contextmanager
def stage_run(
    stage: str, experiment: str, dataset: str, params: Mapping[str, Any]
) -> Iterator[StageRun]:
    """Open one MLflow run named after the stage, nested under the parent run of this
    pipeline configuration, log its params and tags, and close it (and the parent) as
    FINISHED; FAILED if the stage raises, KILLED if a signal stopped it."""
    if not is_rank_zero():
        yield _NullRun()
        return
    import mlflow

    root = workspace_root()
    uri = tracking_uri(root)
    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment_id = _experiment_id(client, experiment, root)
    config = configuration()
    tags = {**run_tags(stage, dataset), "params_hash": params_hash(config)}
    parent = _parent_run(client, experiment_id, tags, config)
    client.update_run(parent, status="RUNNING")
    created = client.create_run(experiment_id, run_name=stage, tags={**tags, PARENT_TAG: parent})
    run = StageRun(created.info.run_id, experiment, uri, client, stage, experiment_id, tags, parent)
    try:
        _log_params(client, run.run_id, params)
        _log_dataset(client, run.run_id, dataset, config)
        log.info("MLflow run %s (%s) in %s, under %s", stage, run.run_id, uri, parent)
        yield run
    except (Stopped, KeyboardInterrupt):
        _terminate(run, "KILLED")
        raise
    except BaseException:
        _terminate(run, "FAILED")
        raise
    _terminate(run, "FINISHED")


def ui_link(root: Path | None = None) -> str:
    """Where `make ui` and `make repro` tell a person to look: the experiment that
    `<root>/params.yaml` names, in the classic runs view."""
    from pipeline.params import load_params

    root = root or workspace_root()
    try:
        name = load_params(root / "params.yaml").tracking.experiment
    except PipelineError:  # a broken params.yaml must not keep the UI from starting
        return ui_base(tracking_uri(root))
    return experiment_link(name, root)


if __name__ == "__main__":
    print(ui_link())
