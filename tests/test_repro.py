"""`make repro`'s output: the stage counter against what a real `dvc repro` runs (fresh,
partial, no-op, a rerun whose outputs come out the same), DVC's output and exit code
passed through, signals forwarded to the running stage; quiet output without a
terminal (one line per training epoch, progress lines only for long loops, the same
training results either way); numbers rounded for printing."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from io import BytesIO
from pathlib import Path

import pytest
import torch
import yaml

import pipeline.console as console
import pipeline.training as training
from pipeline.classify import train_classifier
from pipeline.repro import Counter, Relay, dag_edges, dry_plan, end_message

ROOT = Path(__file__).resolve().parents[1]
DVC = Path(sys.executable).with_name("dvc")

# ------------------------------------------------------------------ counter, offline

DRY = """\
Stage 'a' didn't change, skipping
Running stage 'b':
> run b

Stage 'c' didn't change, skipping
Stage 'd' didn't change, skipping
"""
DOT = 'strict digraph {\n"a";\n"b";\n"a" -> "b";\n"b" -> "c";\n"a" -> "d";\n}\n'


def _lock(path: Path, stages: dict[str, tuple[dict[str, str], list[str]]]) -> Path:
    """A dvc.lock with each stage's (outputs and hashes, deps)."""
    path.write_text(
        yaml.safe_dump(
            {
                "stages": {
                    name: {
                        "outs": [{"path": o, "md5": h} for o, h in outs.items()],
                        "deps": [{"path": d} for d in deps],
                    }
                    for name, (outs, deps) in stages.items()
                }
            }
        )
    )
    return path


LOCK = {
    "a": ({"out_a": "1"}, []),
    "b": ({"out_b": "1", "extra_b": "1"}, ["out_a"]),
    "c": ({"out_c": "1"}, ["out_b"]),
    "d": ({"out_d": "1"}, ["out_a"]),
}


def test_plan_counts_out_of_date_stages_and_those_downstream_of_them(tmp_path):
    """b is out of date; c reads b's output, d only a's: b and c will run."""
    counter = Counter(dry_plan(DRY), dag_edges(DOT), _lock(tmp_path / "dvc.lock", LOCK))
    assert counter.planned() == ["b", "c"]
    assert counter.total() == 2


def test_a_rerun_that_leaves_what_the_next_stage_reads_drops_it(tmp_path):
    """b reruns: extra_b changes, out_b (all c reads) does not: c no longer counts."""
    lock = _lock(tmp_path / "dvc.lock", LOCK)
    counter = Counter(dry_plan(DRY), dag_edges(DOT), lock)
    assert counter.line(b"Running stage 'b':") == b"stage 1/2: b\n"
    assert counter.line(b"Updating lock file 'dvc.lock'") == b""
    _lock(lock, {**LOCK, "b": ({"out_b": "1", "extra_b": "2"}, ["out_a"])})
    counter.line(b"")  # DVC writes dvc.lock after saying so: checked at the next line
    assert counter.total() == 1


def test_a_changed_output_keeps_the_stages_that_read_it(tmp_path):
    lock = _lock(tmp_path / "dvc.lock", LOCK)
    counter = Counter(dry_plan(DRY), dag_edges(DOT), lock)
    counter.line(b"Running stage 'b':")
    counter.line(b"Updating lock file 'dvc.lock'")
    _lock(lock, {**LOCK, "b": ({"out_b": "2", "extra_b": "1"}, ["out_a"])})
    assert counter.line(b"\x1b[1mRunning stage 'c':\x1b[0m") == b"stage 2/2: c\n"


def test_a_stage_restored_from_the_run_cache_is_not_counted(tmp_path):
    """DVC checks b's outputs out of its run cache (nothing runs); c still reads them."""
    lock = _lock(tmp_path / "dvc.lock", LOCK)
    counter = Counter(dry_plan(DRY), dag_edges(DOT), lock)
    assert counter.line(b"Stage 'b' is cached - skipping run, checking out outputs") == b""
    counter.line(b"Updating lock file 'dvc.lock'")
    _lock(lock, {**LOCK, "b": ({"out_b": "2", "extra_b": "1"}, ["out_a"])})
    assert counter.line(b"Running stage 'c':") == b"stage 1/1: c\n"


def test_the_params_check_reruns_nothing_after_it(tmp_path):
    """`params` writes a constant file: out of date after any params edit, it does not
    make every stage after it count."""
    dry = "Running stage 'params':\nStage 'a' didn't change, skipping\nRunning stage 'b':\n"
    edges = [("params", "a"), ("a", "b"), ("params", "b")]
    lock = _lock(
        tmp_path / "dvc.lock",
        {
            "params": ({"valid.txt": "1"}, ["params.yaml"]),
            "a": ({"out_a": "1"}, ["valid.txt"]),
            "b": ({"out_b": "1"}, ["valid.txt", "out_a"]),
        },
    )
    assert Counter(dry_plan(dry), edges, lock).planned() == ["params", "b"]
    assert Counter(dry_plan(dry), edges, lock, refine=False).planned() == ["params", "a", "b"]


def test_relay_passes_output_through_and_numbers_stages_split_anywhere(tmp_path):
    out = BytesIO()
    relay = Relay(Counter(dry_plan(DRY), dag_edges(DOT), tmp_path / "dvc.lock"), out)
    stream = b"Stage 'a' didn't change, skipping\nRunning stage 'b':\n> run b\n\rbar 1\rbar 2"
    for i in range(len(stream)):  # byte by byte: the worst split
        relay.feed(stream[i : i + 1])
        if stream[: i + 1].endswith(b"\rbar 1"):  # a redrawn bar is not held back
            assert out.getvalue().endswith(b"\rbar 1")
    relay.close()
    assert out.getvalue() == stream.replace(b"Running", b"stage 1/2: b\nRunning")


def test_end_message_names_the_report_when_there_is_one(tmp_path):
    counter = Counter(None)
    assert "report:" not in end_message(tmp_path, counter, 5)
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "index.html").write_text("<html>")
    message = end_message(tmp_path, counter, 65)
    assert f"report: {(tmp_path / 'reports' / 'index.html').resolve()}" in message
    assert "0 stages ran in 1 min 5 s" in message
    assert message.splitlines()[-1] == "MLflow: run `make ui`, then open http://127.0.0.1:5000"


# ------------------------------------------------------------ against a real dvc repro

PIPELINE = """\
stages:
  a:
    cmd: python -c "import yaml; print(yaml.safe_load(open('params.yaml'))['a'])" > a.txt
    params: [a]
    outs: [a.txt]
  same:
    cmd: python -c "print('constant')" > same.txt
    deps: [a.txt]
    params: [same]
    outs: [same.txt]
  b:
    cmd: cat a.txt > b.txt
    deps: [a.txt]
    outs: [b.txt]
  c:
    cmd: cat same.txt b.txt > c.txt
    deps: [same.txt, b.txt]
    outs: [c.txt]
  d:
    cmd: cat same.txt > d.txt
    deps: [same.txt]
    outs: [d.txt]
"""


def _env() -> dict[str, str]:
    """The venv's dvc first on PATH, this checkout's `pipeline` importable."""
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "PYTHONPATH": str(ROOT)}
    env["PATH"] = f"{DVC.parent}{os.pathsep}{env['PATH']}"
    return env


def _sh(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, env=_env(), capture_output=True, text=True, check=False)


def _repro(cwd: Path) -> tuple[list[str], list[str], str]:
    """(counter lines, stages DVC ran, whole output) of `python -m pipeline.repro`."""
    done = _sh([sys.executable, "-m", "pipeline.repro"], cwd)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    counted = [line for line in lines if line.startswith("stage ")]
    ran = [line.split("'")[1] for line in lines if line.startswith("Running stage")]
    return counted, ran, done.stdout


@pytest.fixture(scope="module")
def dvc_repo(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("dvcrepo")
    (root / "dvc.yaml").write_text(PIPELINE)
    (root / "params.yaml").write_text("a: 1\nsame: 1\n")
    for args in (["git", "init", "-q"], ["dvc", "init", "-q"]):
        assert _sh(args, root).returncode == 0
    return root


def test_counter_matches_what_dvc_runs(dvc_repo):
    """Fresh: all five, counted 1/5..5/5. No-op: nothing. `a` edited: all five counted;
    `same` reruns with the same output, so d drops out (N 5 -> 4). `same` edited: only
    it is stale, c and d are counted until it has run with the same output."""
    counted, ran, out = _repro(dvc_repo)
    assert ran == ["a", "same", "b", "c", "d"]
    assert counted == [f"stage {i}/5: {name}" for i, name in enumerate(ran, 1)]
    assert out.splitlines()[0] == "repro: 5 stages to run"
    assert out.rstrip().splitlines()[-1].startswith("MLflow: run `make ui`")

    counted, ran, out = _repro(dvc_repo)
    assert (counted, ran) == ([], [])
    assert "repro: 0 stages to run" in out

    (dvc_repo / "params.yaml").write_text("a: 2\nsame: 1\n")
    counted, ran, _ = _repro(dvc_repo)
    assert ran == ["a", "same", "b", "c"]  # d reads only same.txt, which came out the same
    assert counted == ["stage 1/5: a", "stage 2/5: same", "stage 3/4: b", "stage 4/4: c"]

    (dvc_repo / "params.yaml").write_text("a: 2\nsame: 2\n")
    counted, ran, out = _repro(dvc_repo)
    assert ran == ["same"]
    assert "repro: 3 stages to run" in out  # same, and c and d after it, until it has run
    assert counted == ["stage 1/3: same"]
    assert "repro: 1 stage ran" in out


def test_exit_code_and_extra_args_pass_through(dvc_repo):
    done = _sh([sys.executable, "-m", "pipeline.repro", "no_such_stage"], dvc_repo)
    assert done.returncode == 255  # dvc's own code for a bad target
    assert "MLflow" not in done.stdout  # no "where the results are" after a failure
    assert _repro(dvc_repo)[1] == []  # nothing stale
    done = _sh([sys.executable, "-m", "pipeline.repro", "-f", "-s", "d"], dvc_repo)
    assert done.returncode == 0
    assert [x for x in done.stdout.splitlines() if x.startswith("stage ")] == ["stage 1/1: d"]


def test_sigterm_reaches_the_running_stage(tmp_path):
    """SIGTERM to the wrapper stops the stage dvc runs (DVC alone would leave it
    running), and the wrapper exits as dvc did: 128 + 15."""
    (tmp_path / "slow.py").write_text(
        textwrap.dedent(
            """\
            import signal, sys, time
            def stop(*_):
                open("stopped", "w").write("yes")
                sys.exit(143)
            signal.signal(signal.SIGTERM, stop)
            open("started", "w").write("yes")
            time.sleep(60)
            """
        )
    )
    (tmp_path / "dvc.yaml").write_text(
        "stages:\n  slow:\n    cmd: python slow.py\n    outs: [never.txt]\n"
    )
    for args in (["git", "init", "-q"], ["dvc", "init", "-q"]):
        assert _sh(args, tmp_path).returncode == 0
    wrapper = subprocess.Popen(
        [sys.executable, "-m", "pipeline.repro"],
        cwd=tmp_path,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while not (tmp_path / "started").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    wrapper.send_signal(signal.SIGTERM)
    out, _ = wrapper.communicate(timeout=60)
    assert (tmp_path / "stopped").read_text() == "yes", out.decode()
    assert wrapper.returncode == 143, wrapper.returncode  # 128 + SIGTERM: dvc was stopped
    assert b"stage 1/1: slow" in out


# ---------------------------------------------------------------- quiet output


def test_training_without_a_terminal_logs_one_line_per_epoch_and_same_results(
    tmp_path, tiny_splits, tiny_params, caplog, monkeypatch
):
    with caplog.at_level(logging.INFO, logger="pipeline.training"):
        quiet = train_classifier(tiny_splits, tiny_params, tmp_path / "quiet")
    epochs = [r.getMessage() for r in caplog.records if r.getMessage().startswith("epoch ")]
    assert [line.split(":")[0] for line in epochs] == ["epoch 1/3", "epoch 2/3", "epoch 3/3"]
    assert "train_loss" in epochs[0] and "val_acc" in epochs[0]
    monkeypatch.setattr(training, "is_terminal", lambda: True)  # Lightning's bar instead
    with_bar = train_classifier(tiny_splits, tiny_params, tmp_path / "bar")
    assert quiet.history == with_bar.history
    bar_weights = with_bar.module.state_dict()
    for name, value in quiet.module.state_dict().items():
        assert torch.equal(value, bar_weights[name]), name
    for ckpt in ("epoch-001.ckpt", "epoch-003.ckpt"):
        assert (tmp_path / "quiet" / ckpt).read_bytes() == (tmp_path / "bar" / ckpt).read_bytes()


def test_progress_without_a_terminal_prints_plain_lines_for_long_loops_only(capsys, monkeypatch):
    monkeypatch.setattr(console, "LOG_INTERVAL", 0.05)
    assert list(console.progress(range(3), "quick")) == [0, 1, 2]
    assert capsys.readouterr().err == ""  # done before the first interval
    for _ in console.progress(range(4), "slow", unit="step"):
        time.sleep(0.04)
    err = capsys.readouterr().err
    assert "\r" not in err
    assert err.splitlines()[-1].startswith("slow: 100%")
    assert 1 <= len(err.splitlines()) <= 4


def test_rounded_keeps_four_significant_digits_and_leaves_other_values():
    assert console.rounded(0.12345678901234567) == 0.1235
    assert console.rounded({"a": [1 / 3, 7], "b": True, "c": "x"}) == {
        "a": [0.3333, 7],
        "b": True,
        "c": "x",
    }
    assert console.numbers({"loss": 123456.789, "epochs": 12}) == "loss 123500.0, epochs 12"
