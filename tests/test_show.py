"""`make show`'s table (pipeline/show.py) on a hand-written sample of `dvc exp show --json`
(the structure DVC 3.67 prints: baselines, each with `experiments[].revs[]`)."""

from __future__ import annotations

import io
import json
import sys

import pytest

from pipeline.show import format_table, main


def _run(rev: str, name: str | None, lr: float, accuracy: float | None, aucs: dict) -> dict:
    """One row of `dvc exp show --json`: params.yaml and the two headline metrics files."""
    methods = {
        m: {
            "deletion_auc": d,
            "insertion_auc": i,
            "beats_random_deletion": d < 0.5,
            "beats_random_insertion": i > 0.9,
            "sanity_passed": m != "gradcam",
        }
        for m, (d, i) in aucs.items()
    }
    metrics = {"metrics/evaluate.json": {"data": {"methods": methods}}}
    if accuracy is not None:
        metrics["metrics/classifier.json"] = {"data": {"test": {"accuracy": accuracy}}}
    params = {"classifier": {"lr": lr, "epochs": 12}, "cladec": {"alphas": [0.0, 0.5]}}
    return {
        "rev": rev,
        "name": name,
        "data": {"rev": rev, "params": {"params.yaml": {"data": params}}, "metrics": metrics},
        "error": None,
    }


AUCS = {"saliency": (0.2145, 0.9648), "gradcam": (0.6, 0.8), "lime": (0.0921, 0.9541)}


@pytest.fixture
def sample() -> list[dict]:
    """The workspace, a commit, and eight experiments (one failed: no data)."""
    workspace = _run("workspace", None, 0.001, 0.978, AUCS)
    workspace["experiments"] = None
    head = _run("4efeaf0cac29e66c5a9cd4e6b6db753724496c85", "main", 0.001, 0.978, AUCS)
    exps = [_run(f"{i:040x}", f"exp-{i}", 0.001 * (i + 2), 0.9, AUCS) for i in range(7)]
    exps.append({"rev": "f" * 40, "name": "broken-experiment-name", "data": None, "error": {}})
    head["experiments"] = [{"revs": [e]} for e in exps]
    return [workspace, head]


def test_every_line_fits_and_the_runs_wrap_into_blocks(sample):
    text = format_table(sample, width=120)
    lines = text.splitlines()
    assert max(map(len, lines)) <= 120
    # 10 runs at 13 characters each do not fit next to the labels: two header lines
    headers = [line for line in lines if "workspace" in line or "exp-6" in line]
    assert len(headers) == 2 and "exp-6" not in headers[0]
    assert max(map(len, format_table(sample, width=80).splitlines())) <= 80


def test_headline_values_and_verdict_counts(sample):
    # the longest label, "sanity passed, foreground", is 25 characters; a run 2 + 11
    first_block = format_table(sample).split("\n\n")[0]
    row = {line.split("  ")[0].strip(): line for line in first_block.splitlines()}
    assert row["del/ins saliency"].count("0.214/0.965") == 7  # (120 - 25) // 13 runs
    assert row["del/ins lime"].count("0.092/0.954") == 7
    assert row["test accuracy"].split()[2:5] == ["0.978", "0.978", "0.900"]
    # gradcam fails beats-random deletion (0.6 >= 0.5) and its sanity check, by construction
    assert row["beats random: deletion"].split()[3] == "2/3"
    assert row["sanity check passed"].split()[3] == "2/3"
    assert row["beats random: insertion"].split()[3] == "2/3"


def test_only_params_that_differ_and_missing_runs_as_dashes(sample):
    text = format_table(sample)
    assert "param classifier.lr" in text
    assert "classifier.epochs" not in text and "cladec.alphas" not in text
    last_block = text.split("\n\n")[1]
    assert "broken-exp…" in last_block  # the name cut to the cell, marked
    accuracy = next(line for line in last_block.splitlines() if line.startswith("test acc"))
    assert accuracy.split()[-1] == "—"


def test_main_reads_stdin(sample, monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.StringIO(json.dumps(sample)))
    assert main(["--width", "100"]) == 0
    out = capsys.readouterr().out
    assert "del/ins gradcam" in out and max(map(len, out.splitlines())) <= 100
