"""What a stage does when the world around it fails: a signal (SIGTERM from a scheduler,
Ctrl+C), an unreachable or read-only tracking store, a full disk, a kill -9 in the
middle of a write. Each ends with one line that says what happened and what to do,
nothing half-written in a DVC-tracked folder, and an MLflow run that says KILLED."""

from __future__ import annotations

import errno
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import mlflow
import pytest

from pipeline.io import remove_stale_temps, write_json, write_npz
from pipeline.tracking import describe_failure

REPO = Path(__file__).resolve().parents[1]
EPOCHS = 12

# A training stage in miniature: run_stage + stage_run + the classifier's Lightning fit
# on the tests' bright-square images; it prints a line after every epoch so the test
# knows training is under way, and sleeps a little there so a signal lands mid-training.
TRAIN_SCRIPT = f"""
import sys, time
sys.path[:0] = [{str(REPO)!r}, {str(REPO / "tests")!r}]
from pytorch_lightning.callbacks import Callback
from conftest import make_square_images
from pipeline.classify import train_classifier
from pipeline.data import Splits
from pipeline.params import parse_params
from pipeline.tracking import stage_run
from stages.runner import run_stage

class Announce(Callback):
    def on_train_epoch_end(self, trainer, module):
        print(f"epoch {{trainer.current_epoch + 1}} done", flush=True)
        time.sleep(float(sys.argv[1]))

def main():
    x, y = make_square_images(120, classes=3, size=16, seed=1)
    splits = Splits(x_train=x[:80], y_train=y[:80], x_val=x[80:100], y_val=y[80:100],
                    x_test=x[100:], y_test=y[100:], class_names=("top", "middle", "bottom"),
                    dataset="synthetic")
    params = parse_params({{
        "seed": 3,
        "classifier": {{"arch": "small_cnn", "epochs": {EPOCHS}, "batch_size": 40,
                        "tracked_instances": 5}},
        "trainer": {{"accelerator": "cpu", "devices": 1}},
    }})
    with stage_run("probe", "exp", "synthetic", {{"epochs": {EPOCHS}}}) as run:
        train_classifier(splits, params, "models/probe/checkpoints",
                         logger=run.lightning_logger(), extra_callbacks=[Announce()])

run_stage("probe", main)
"""


def _workspace(tmp_path: Path) -> Path:
    """A folder that pipeline.io recognises as a DVC workspace."""
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "dvc.yaml").write_text("stages: {}\n")
    return ws


def _env(**extra: str) -> dict[str, str]:
    """The test's environment without its MLFLOW_TRACKING_URI: the default store unless
    a test names one."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    return {**env, "PYTHONPATH": str(REPO), "MPLBACKEND": "Agg", **extra}


def _errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "error:" in line]


def _runs(db: Path, parents: bool = False) -> list:
    """The stage runs of the store (the parent runs they nest under with `parents`)."""
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{db}")
    experiment = client.get_experiment_by_name("exp")
    runs = client.search_runs([experiment.experiment_id]) if experiment else []
    return [r for r in runs if ("mlflow.parentRunId" in r.data.tags) != parents]


def _start_training(ws: Path, pause: float) -> subprocess.Popen:
    (ws / "train.py").write_text(TRAIN_SCRIPT)
    return subprocess.Popen(
        [sys.executable, "train.py", str(pause)],
        cwd=ws,
        env=_env(MLFLOW_TRACKING_URI=f"sqlite:///{ws / 'mlflow.db'}"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _stop_mid_training(ws: Path, signum: int) -> tuple[int, str]:
    process = _start_training(ws, pause=0.5)
    try:
        assert process.stdout is not None
        for line in process.stdout:
            if line.startswith("epoch 2 done"):
                process.send_signal(signum)
                break
        _, stderr = process.communicate(timeout=120)
    finally:
        process.kill()
    return process.returncode, stderr


def _no_temp_files(ws: Path) -> None:
    everything = [p for p in ws.rglob("*") if p.is_file()]
    assert not [p for p in everything if p.name.endswith(".tmp")], everything


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_mid_training_ends_with_one_line_its_exit_code_and_a_killed_run(
    tmp_path, signum, code
):
    ws = _workspace(tmp_path)
    returncode, stderr = _stop_mid_training(ws, signum)
    name = signal.Signals(signum).name
    assert returncode == code, stderr
    errors = _errors(stderr)
    assert len(errors) == 1 and errors[0].startswith(f"probe: error: stopped by {name} ("), stderr
    assert "Traceback" not in stderr
    runs = _runs(ws / "mlflow.db")
    assert [r.info.status for r in runs] == ["KILLED"]
    assert [r.info.status for r in _runs(ws / "mlflow.db", parents=True)] == ["KILLED"]
    _no_temp_files(ws)
    checkpoints = ws / "models" / "probe" / "checkpoints"
    assert (checkpoints / "epoch-001.ckpt").is_file()
    assert not (checkpoints / f"epoch-{EPOCHS:03d}.ckpt").exists()  # stopped mid-training

    if signum == signal.SIGTERM:  # resuming continues the same run: one whole curve
        process = _start_training(ws, pause=0)
        _, err = process.communicate(timeout=180)
        assert process.returncode == 0, err
        assert "continuing MLflow run" in err
        (run,) = _runs(ws / "mlflow.db")
        assert run.info.run_id == runs[0].info.run_id and run.info.status == "FINISHED"
        client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{ws / 'mlflow.db'}")
        history = client.get_metric_history(run.info.run_id, "train_loss")
        assert len({m.step for m in history}) == EPOCHS  # every epoch, once per step
        assert run.data.tags["resumed"] == "true"
        _no_temp_files(ws)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_server_stops_the_stage_at_once_before_any_work(tmp_path):
    ws = _workspace(tmp_path)
    shutil.copy(REPO / "params.yaml", ws / "params.yaml")
    uri = f"http://127.0.0.1:{_free_port()}"
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "stages.data"],
        cwd=ws,
        env=_env(MLFLOW_TRACKING_URI=uri),
        capture_output=True,
        text=True,
        timeout=60,
    )
    elapsed = time.monotonic() - started
    assert elapsed < 30, elapsed
    assert result.returncode == 2, result.stderr
    errors = _errors(result.stderr)
    assert len(errors) == 1, result.stderr
    assert errors[0].startswith(
        f"data: error: the MLflow tracking server MLFLOW_TRACKING_URI={uri}"
    )
    assert "unset MLFLOW_TRACKING_URI" in errors[0] and "make ui" in errors[0]
    assert not (ws / "data").exists()  # the data stage did no work


def _unprivileged() -> list[str]:
    """A command prefix under which file permissions hold: root ignores them unless the
    process lacks CAP_DAC_OVERRIDE."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: permissions cannot be tested")
    return ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--"]


PROBE = "from stages.runner import run_stage; run_stage('probe', lambda: print('ran'))"


def _probe(ws: Path, script: str = PROBE, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*_unprivileged(), sys.executable, "-c", script],
        cwd=ws,
        env=_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_read_only_store_is_named_with_the_fix(tmp_path):
    ws = _workspace(tmp_path)
    db = ws / "mlflow.db"
    with sqlite3.connect(db) as con:
        con.execute("CREATE TABLE t (x)")
    db.chmod(0o444)
    try:
        result = _probe(ws)
    finally:
        db.chmod(0o644)
    assert result.returncode == 2 and "ran" not in result.stdout, result.stderr
    (line,) = _errors(result.stderr)
    assert line.startswith(f"probe: error: the MLflow store {db} is not writable")
    assert "chmod" in line and "MLFLOW_TRACKING_URI" in line

    (ws / "mlruns").mkdir()
    (ws / "mlruns").chmod(0o555)
    try:
        result = _probe(ws)
    finally:
        (ws / "mlruns").chmod(0o755)
    assert result.returncode == 2, result.stderr
    (line,) = _errors(result.stderr)
    assert line.startswith(f"probe: error: the MLflow artifact folder {ws / 'mlruns'} is not")
    assert "chmod -R u+w" in line

    assert _probe(ws).returncode == 0  # writable again: the stage runs


FULL_DISK = """
import errno, os
real_open = os.open
def full(path, flags, *args, **kwargs):
    if flags & (os.O_WRONLY | os.O_RDWR):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
    return real_open(path, flags, *args, **kwargs)
"""


def test_a_full_disk_is_one_line_naming_the_path(tmp_path):
    ws = _workspace(tmp_path)
    outputs = FULL_DISK + textwrap.dedent("""
        from pipeline.io import write_json
        from stages.runner import run_stage
        def body():
            os.open = full
            write_json("metrics/x.json", {})
        run_stage("probe", body)
    """)
    result = _probe(ws, outputs, MLFLOW_TRACKING_URI=f"sqlite:///{ws / 'm.db'}")
    assert result.returncode == 2, result.stderr
    (line,) = _errors(result.stderr)
    assert line == (
        "probe: error: no space left on the device holding metrics (writing metrics/x.json): "
        "free some space (`df -h metrics`) and run the stage again"
    )
    assert not (ws / "metrics" / "x.json").exists()

    store = FULL_DISK + "os.open = full\n" + PROBE
    result = _probe(ws, store)
    assert result.returncode == 2, result.stderr
    (line,) = _errors(result.stderr)
    assert line.startswith("probe: error: no space left on the device holding the MLflow store")
    assert str(ws) in line and "MLFLOW_TRACKING_URI" in line


def test_store_and_disk_failures_found_deep_in_an_exception_read_as_one_line():
    from mlflow.exceptions import MlflowException

    full = MlflowException("(sqlite3.OperationalError) database or disk is full")
    assert "MLflow store" in describe_failure(full) and "is full" in describe_failure(full)
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device", "models/x.ckpt")
        except OSError as exc:
            raise RuntimeError("torch failed") from exc
    except RuntimeError as wrapped:
        assert describe_failure(wrapped) == (
            "no space left on device writing models/x.ckpt: free some space and run the stage again"
        )
    assert describe_failure(ValueError("a bug")) is None


WRITE_BIG = """
import sys, numpy as np
from pipeline.io import write_npz
print("writing", flush=True)
write_npz(sys.argv[1], compressed=False, big=np.ones((64, 1024, 1024), np.float32))
"""


def _kill_while_writing(cwd: Path, target: Path, temps: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-c", WRITE_BIG, str(target)],
        cwd=cwd,
        env=_env(),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            written = [p for p in temps.glob("*.tmp") if p.stat().st_size > 0]
            if written:
                break
            time.sleep(0.005)
        else:
            pytest.fail("the writer never started writing")
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        process.kill()
    assert process.returncode == -signal.SIGKILL  # killed mid-write, not finished


def test_kill_9_mid_write_leaves_no_temporary_file_in_the_tracked_folder(tmp_path):
    ws = _workspace(tmp_path)
    folder = ws / "explanations" / "attributions"
    folder.mkdir(parents=True)
    _kill_while_writing(ws, folder / "lime.npz", ws / ".tmp")
    assert list(folder.iterdir()) == []  # nothing for DVC to hash
    assert len(list((ws / ".tmp").iterdir())) == 1  # git- and DVC-ignored
    assert remove_stale_temps(ws) == 1  # what every stage does first
    assert list((ws / ".tmp").iterdir()) == []

    # outside a DVC workspace the temporary file lies beside the output; the next write
    # of that output removes what a killed writer left
    elsewhere = tmp_path / "plain"
    elsewhere.mkdir()
    _kill_while_writing(elsewhere, elsewhere / "a.npz", elsewhere)
    assert len(list(elsewhere.glob(".a.npz.*.tmp"))) == 1
    write_npz(elsewhere / "a.npz", x=[1])
    assert [p.name for p in elsewhere.iterdir()] == ["a.npz"]


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o027, 0o640)])
def test_outputs_get_the_mode_a_plain_open_gives(tmp_path, umask, mode):
    previous = os.umask(umask)
    try:
        write_json(tmp_path / "m.json", {})
        write_npz(tmp_path / "a.npz", x=[1])
    finally:
        os.umask(previous)
    assert (tmp_path / "m.json").stat().st_mode & 0o777 == mode
    assert (tmp_path / "a.npz").stat().st_mode & 0o777 == mode
