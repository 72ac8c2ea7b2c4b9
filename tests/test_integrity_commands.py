"""Nothing in params.yaml runs as code, and a refused param loses nothing.

A params value in a dvc.yaml command reached the shell before any schema saw it (a layer
named `conv; touch x` ran `touch x`), and DVC removes a stage's outputs before its
command starts, so a stage that refused a bad value had already lost its uncached
metrics and plots. Now no command holds a params value (stages read their item from
DVC_STAGE), a `params` stage validates the whole file before anything else runs, and
every uncached or params-named output is `persist: true`. The unit tests check dvc.yaml
and the item lookup; the e2e ones run DVC in small copies of the repository."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from repo_copy import copy_tracked_files

from pipeline.errors import PipelineError
from pipeline.params import load_params
from stages import dvc_item
from stages.cladec import _from_dvc

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _stage_blocks(dvc_yaml: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(name, definition) of every stage of a parsed dvc.yaml, a foreach's `do` body
    standing for its members."""
    for name, stage in dvc_yaml["stages"].items():
        yield name, stage.get("do", stage)


def _outputs(stage: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(path as written, flags) of every outs/metrics/plots entry."""
    for section in ("outs", "metrics", "plots"):
        for entry in stage.get(section, []):
            if isinstance(entry, str):
                yield entry, {}
            else:
                ((path, flags),) = entry.items()
                yield path, flags or {}


# ------------------------------------------------------------------ dvc.yaml rules


def test_no_command_holds_a_params_value():
    """Raw text first (what DVC's templating would fill), then every parsed cmd."""
    text = (REPO / "dvc.yaml").read_text()
    commands = re.findall(r"^\s*cmd:(.*(?:\n\s+-.*)*)", text, flags=re.M)
    assert len(commands) >= 10
    assert [c for c in commands if "${" in c] == []
    for name, stage in _stage_blocks(yaml.safe_load(text)):
        cmd = stage["cmd"]
        for line in [cmd] if isinstance(cmd, str) else cmd:
            assert "${" not in line and "$" not in line, (name, line)


def test_outputs_named_by_params_and_uncached_outputs_persist():
    """DVC never removes a persistent output before a run: an output path holding a
    params value (`../../x` would point outside the workspace) and an uncached metric or
    plot (which `dvc checkout` cannot bring back) are `persist: true`."""
    dvc_yaml = yaml.safe_load((REPO / "dvc.yaml").read_text())
    checked = 0
    for name, stage in _stage_blocks(dvc_yaml):
        for path, flags in _outputs(stage):
            if "${" in path or flags.get("cache") is False:
                checked += 1
                assert flags.get("persist") is True, (name, path)
    assert checked >= 30


def test_params_stage_comes_before_every_other_stage():
    from dvc.repo import Repo

    with Repo(str(REPO)) as repo:
        graph = repo.index.graph
        roots = [stage.addressing for stage in graph if not list(graph.successors(stage))]
        params = next(stage for stage in graph if stage.addressing == "params")
        deps = {os.path.relpath(dep.fs_path, repo.root_dir) for dep in params.deps}
        outs = [os.path.relpath(out.fs_path, repo.root_dir) for out in params.outs]
    assert roots == ["params"]
    assert "params.yaml" in deps and outs == ["data/params_valid.txt"]


# ------------------------------------------------------------ items from DVC_STAGE


def test_stage_names_as_dvc_writes_them_map_back_to_the_validated_values(tmp_path, monkeypatch):
    """DVC names a matrix member after its values' `str()` as its own YAML loader reads
    them (`0.001` for `1e-3`, `1` for an integer); the cladec stage finds every such name
    among the layers and alphas of params.yaml as validated, with the suffix its output
    paths use."""
    from dvc.repo import Repo

    (tmp_path / "params.yaml").write_text(
        "cladec:\n  layers: [conv, dense]\n  alphas: [0.0, 0.01, 0.5, 0.99, 1, 1e-3, 2.5e-1]\n"
    )
    (tmp_path / "dvc.yaml").write_text(
        "stages:\n  cladec:\n    matrix:\n      layer: ${cladec.layers}\n"
        "      alpha: ${cladec.alphas}\n"
        "    cmd: python -m stages.cladec\n"
    )
    subprocess.run([BIN / "dvc", "init", "--no-scm", "-q"], cwd=tmp_path, check=True, env=_env())
    with Repo(str(tmp_path)) as repo:
        names = [stage.name for stage in repo.index.stages]
    assert {"cladec@conv-0.0", "cladec@conv-1", "cladec@dense-0.001", "cladec@dense-0.25"} <= set(
        names
    )
    assert len(names) == 14
    validated = load_params(tmp_path / "params.yaml")
    for name in names:
        monkeypatch.setenv(dvc_item.DVC_STAGE, name)
        suffix = name.partition("@")[2]
        layer, written = suffix.split("-", 1)
        assert _from_dvc(validated.cladec.layers, validated.cladec.alphas) == (
            layer,
            float(written),
            suffix,
        )


def test_dvc_member_prefers_nothing_it_cannot_match(monkeypatch):
    members = {"conv": "conv", "dense": "dense"}
    monkeypatch.setenv("DVC_STAGE", "refae@dense")
    assert dvc_item.dvc_member("refae", members, "cladec.layers", "--layer") == (
        "dense",
        "dense",
    )
    # `dvc repro` run from a sub-folder: DVC_STAGE is the address relative to it
    monkeypatch.setenv("DVC_STAGE", "../dvc.yaml:refae@conv")
    assert dvc_item.dvc_item("refae") == "conv"
    monkeypatch.setenv("DVC_STAGE", "refae@conv; touch x #")
    with pytest.raises(PipelineError) as refused:
        dvc_item.dvc_member("refae", members, "cladec.layers", "--layer")
    message = str(refused.value)
    assert "\n" not in message and "'refae@conv; touch x #'" in message
    assert "refae@conv, refae@dense" in message and "cladec.layers" in message
    monkeypatch.setenv("DVC_STAGE", "data")
    with pytest.raises(PipelineError, match="not a stage refae@<item>"):
        dvc_item.dvc_item("refae")
    monkeypatch.delenv("DVC_STAGE")
    with pytest.raises(PipelineError, match="no --layer given"):
        dvc_item.dvc_member("refae", members, "cladec.layers", "--layer")


def test_stage_reads_its_item_from_dvc_stage_and_its_argument_wins(tmp_path):
    """The explain stage by DVC_STAGE and by --method: both get past the item to the
    missing dataset; a DVC_STAGE that params.yaml does not define stops it first."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["explain"]["methods"] = ["saliency"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))

    def explain(stage: str | None, *args: str) -> subprocess.CompletedProcess:
        env = {**_env(), "PYTHONPATH": str(REPO)}
        env.pop("DVC_STAGE", None)
        if stage is not None:
            env["DVC_STAGE"] = stage
        return subprocess.run(
            [sys.executable, "-m", "stages.explain", *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    for stage, args in (("explain@saliency", ()), ("explain@lime", ("--method", "lime"))):
        result = explain(stage, *args)
        assert result.returncode == 2 and "data/dataset.npz not found" in result.stderr
    result = explain("explain@lime")
    assert result.returncode == 2
    assert _errors(result.stderr) == [
        "explain: error: stage 'explain@lime' is not one that explain.methods in params.yaml "
        "defines (explain@saliency); run `dvc repro` after editing params.yaml"
    ]


# ------------------------------------------------------------ e2e: DVC in a copy


def _env() -> dict[str, str]:
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "DVC_NO_ANALYTICS": "true"}
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def _run(args: list[str], cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    result = subprocess.run(
        args,
        cwd=cwd,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    result.stdout += result.stderr  # DVC and the stages interleave: read them as one
    return result


def _ok(args: list[str], cwd: Path, timeout: int = 300) -> str:
    result = _run(args, cwd, timeout)
    assert result.returncode == 0, f"{args} failed:\n{result.stdout[-4000:]}"
    return result.stdout


def _errors(output: str) -> list[str]:
    """The stages' one-line errors (`<stage>: error: ...`), not DVC's own."""
    return [line for line in output.splitlines() if re.match(r"^[\w@]+: error: ", line)]


def _copy_repo(root: Path, **groups: dict[str, Any]) -> Path:
    """Tracked and new files (not metrics/, plots/, dvc.lock) in a fresh git repo, with
    the params groups updated."""
    copy_tracked_files(root)
    _write_params(root, **groups)
    for args in (
        ["git", "init", "-q"],
        ["git", "config", "user.name", "test"],
        ["git", "config", "user.email", "test@example.invalid"],
        ["git", "add", "-A"],
        ["git", "commit", "-qm", "init"],
    ):
        _ok(args, root)
    return root


def _merge(into: dict[str, Any], changes: dict[str, Any]) -> None:
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


def _write_params(root: Path, **groups: dict[str, Any]) -> None:
    """The repository's params.yaml with `groups` merged in (nested keys one by one)."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    _merge(params, groups)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


PAYLOADS = [
    "conv; touch {marker} #",
    "$(touch {marker})",
    "`touch {marker}`",
    "conv' ; touch '{marker}",
]


@pytest.fixture(scope="module")
def command_copy(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("commands") / "repo"
    root.mkdir()
    return _copy_repo(root, cladec={"alphas": [0.5]}, explain={"methods": ["saliency"]})


def _fake_inputs(root: Path) -> None:
    """Inputs the stages check only after params.yaml (DVC runs a stage only when its
    deps exist; `dvc exp run` removes what dvc.lock does not hold)."""
    for path in (
        "data/dataset.npz",
        "models/classifier/model.pt",
        "explanations/selection.npz",
        "explanations/classifier_check.json",  # the decoders wait for select's guardrail
    ):
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(b"never read")


@pytest.mark.e2e
@pytest.mark.parametrize("payload", PAYLOADS)
def test_params_values_never_run_as_commands(command_copy, tmp_path, payload):
    """Through `dvc repro`, `dvc repro -s <member>` of every foreach/matrix entry and
    `dvc exp run -S`: the marker is never created, the run fails, and where a stage runs
    it stops with the schema's one line about the bad value."""
    marker = tmp_path / "pwned"
    bad = payload.format(marker=marker)
    layers = ["dense", bad]

    def refused(args: list[str], stage: str, key: str) -> None:
        _fake_inputs(command_copy)
        result = _run(args, command_copy)
        assert not marker.exists(), (args, result.stdout)
        assert result.returncode != 0, result.stdout
        errors = _errors(result.stdout)
        assert len(errors) == 1, (args, result.stdout)
        assert errors[0].startswith(f"{stage}: error: params.yaml: {key}"), errors

    _write_params(command_copy, cladec={"layers": layers, "alphas": [0.5]})
    refused(["dvc", "repro"], "params", "cladec.layers")
    refused(["dvc", "repro", "-s", f"refae@{bad}"], "refae", "cladec.layers")
    refused(["dvc", "repro", "-s", f"cladec@{bad}-0.5"], "cladec", "cladec.layers")
    _write_params(command_copy, cladec={"variational": {"layers": [bad]}})
    # the script is stages/cladec.py, which names its errors `cladec`
    refused(["dvc", "repro", "-s", f"vcladec@{bad}"], "cladec", "cladec.variational.layers")
    _write_params(command_copy)
    refused(
        ["dvc", "exp", "run", "-S", f"cladec.layers={json.dumps(layers)}"],
        "params",
        "cladec.layers",
    )
    # an attribution method is a module: DVC refuses the member before its command runs
    _write_params(command_copy, explain={"methods": ["saliency", bad]})
    _fake_inputs(command_copy)
    result = _run(["dvc", "repro", "-s", f"explain@{bad}"], command_copy)
    assert result.returncode != 0 and not marker.exists(), result.stdout
    assert _errors(result.stdout) == [] and "failed to reproduce" in result.stdout
    refused(["dvc", "repro"], "params", "explain.methods")
    _write_params(command_copy)


@pytest.mark.e2e
def test_outputs_named_outside_the_workspace_are_never_removed(command_copy, tmp_path):
    """An output path is `<folder>/${item}/model.pt`: DVC removes a stage's outputs before
    running it (even when the stage then fails, even outside the repository), so an item
    `../../../x` would delete `x/model.pt`. Such outputs persist: DVC leaves them alone."""
    victim = command_copy.parent / "victim"
    victim.mkdir(exist_ok=True)
    kept = {name: f"{name} must survive".encode() for name in ("model.pt", "x.npz", "x.json")}
    for name, data in kept.items():
        (victim / name).write_bytes(data)
    (victim.parent / "victim-0.5").mkdir(exist_ok=True)
    (victim.parent / "victim-0.5" / "model.pt").write_bytes(b"must survive")
    layer, method = "../../../victim", "../../../victim/x"
    _write_params(
        command_copy,
        cladec={"layers": ["dense", layer], "alphas": [0.5]},
        explain={"methods": ["saliency", method]},
    )
    names = _ok(["dvc", "stage", "list", "--name-only"], command_copy).split()
    assert {f"refae@{layer}", f"cladec@{layer}-0.5", f"explain@{method}"} <= set(names)
    for args in (
        ["dvc", "repro", "-s", f"refae@{layer}"],
        ["dvc", "repro", "-f", "-s", f"refae@{layer}"],
        ["dvc", "repro", "-f", "-s", f"cladec@{layer}-0.5"],
        ["dvc", "repro", "-s", f"explain@{method}"],
        ["dvc", "repro", "-f", "-s", f"explain@{method}"],
    ):
        _fake_inputs(command_copy)
        result = _run(args, command_copy)
        assert result.returncode != 0, result.stdout
        for name, data in kept.items():
            assert (victim / name).read_bytes() == data, (args, name, result.stdout)
        assert (victim.parent / "victim-0.5" / "model.pt").read_bytes() == b"must survive"
    _write_params(command_copy)


# ------------------------------------------------------- e2e: a refused param loses nothing


def _snapshot(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for folder in ("metrics", "plots")
        for p in sorted((root / folder).rglob("*"))
        if p.is_file()
    }


@pytest.mark.e2e
def test_a_refused_param_leaves_metrics_and_plots_in_place(tmp_path):
    root = tmp_path / "repo"
    root.mkdir()
    small = {
        "data": {"max_samples": 400},
        "classifier": {"epochs": 1, "batch_size": 32, "tracked_instances": 25},
    }
    _copy_repo(root, **small)
    _ok(["dvc", "repro", "classifier"], root, timeout=600)
    before = _snapshot(root)
    assert {"metrics/data.json", "metrics/classifier.json", "plots/classifier/history.csv"} <= set(
        before
    )
    lock = yaml.safe_load((root / "dvc.lock").read_text())
    recorded = {out["path"] for out in lock["stages"]["classifier"]["outs"]}
    assert "metrics/classifier.json" in recorded  # persist: DVC still records its hash

    message = "params.yaml: classifier.lr = -1: Input should be greater than 0"
    bad = {**small, "classifier": {**small["classifier"], "lr": -1}}
    _write_params(root, **bad)
    result = _run(["dvc", "repro"], root)
    assert result.returncode != 0
    assert _errors(result.stdout) == [f"params: error: {message}"]
    assert "Running stage 'data'" not in result.stdout
    assert _snapshot(root) == before
    assert (root / "models/classifier/model.pt").is_file()  # nothing touched at all

    # one stage alone skips the params stage: DVC removes its cached outputs first
    result = _run(["dvc", "repro", "-s", "classifier"], root)
    assert result.returncode != 0
    assert _errors(result.stdout) == [f"classifier: error: {message}"]
    assert _snapshot(root) == before
    assert not (root / "models/classifier/model.pt").exists()

    # an experiment runs the pipeline from the params stage on
    _write_params(root, **small)
    result = _run(["dvc", "exp", "run", "-S", "classifier.lr=-1", "classifier"], root)
    assert result.returncode != 0
    assert _errors(result.stdout) == [f"params: error: {message}"]
    assert _snapshot(root) == before

    # with the param fixed, `dvc checkout` brings the cached outputs back
    _write_params(root, **small)
    _ok(["dvc", "checkout", "--with-deps", "classifier"], root)
    status = _ok(["dvc", "status", "--with-deps", "classifier"], root)
    assert "Data and pipelines are up to date" in status
    assert _snapshot(root) == before
    assert "metrics/classifier.json" in _ok(["dvc", "metrics", "show"], root)
