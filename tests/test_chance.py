"""The near-chance guardrail: a classifier no better than its majority class is refused
by the select stage before any explanation stage runs; the threshold is a param that
can turn it off. Accuracies and chance levels are known by construction."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import networkx as nx
import numpy as np
import pytest
import torch
import yaml

from pipeline.chance import measure_chance, refuse_near_chance
from pipeline.data import Splits
from pipeline.errors import ParamsError, PipelineError
from pipeline.models.archs import build_classifier
from pipeline.models.export import save_classifier
from pipeline.params import parse_params

REPO = Path(__file__).resolve().parents[1]
KEY = "select.above_chance"
NAMES = ("a", "b", "c")
# 12 test images, 6 of class a: the best constant classifier ("always a") scores 0.5
LABELS = np.array([0] * 6 + [1] * 3 + [2] * 3)


def predictions(correct: int) -> np.ndarray:
    """'Always a', then `correct - 6` of the b and c images answered right as well."""
    predicted = np.zeros_like(LABELS)
    predicted[6:correct] = LABELS[6:correct]
    return predicted


def test_chance_is_the_majority_share_and_a_constant_classifier_scores_it() -> None:
    check = measure_chance(LABELS, predictions(6), NAMES)
    assert (check.accuracy, check.chance, check.majority_class) == (0.5, 0.5, "a")
    assert (check.most_predicted, check.most_predicted_count, check.images) == ("a", 12, 12)
    assert check.required(0.5) == 0.75  # half the way from 0.5 to 1


def test_a_constant_classifier_is_refused_with_what_was_measured_and_how_to_override() -> None:
    check = measure_chance(LABELS, predictions(6), NAMES)
    with pytest.raises(PipelineError) as refused:
        refuse_near_chance(check, 0.1, KEY)
    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith("test accuracy 0.500 is at or near chance")
    assert "majority class 'a' scores 0.500" in message
    assert "answers 'a' for 12 of 12 test images" in message
    assert f"{KEY} = 0.1 asks for at least 0.550" in message
    assert f"`dvc exp run -S {KEY}=0`" in message and "params.yaml" in message


def test_the_threshold_is_a_share_of_the_way_from_chance_to_one() -> None:
    # 0.5 of the way from chance 0.5 asks for 0.75: 9 of 12 right passes, 8 of 12 does not
    refuse_near_chance(measure_chance(LABELS, predictions(9), NAMES), 0.5, KEY)
    with pytest.raises(PipelineError, match=r"0\.667 is at or near chance"):
        refuse_near_chance(measure_chance(LABELS, predictions(8), NAMES), 0.5, KEY)


@pytest.mark.parametrize("off", [0, 0.0, None])
def test_zero_or_null_turns_the_check_off(off: float | None) -> None:
    refuse_near_chance(measure_chance(LABELS, predictions(6), NAMES), off, KEY)


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (-0.1, "greater than or equal to 0"),
        (1, "less than 1"),
        ("high", "valid number"),
        (True, "not true/false"),
    ],
)
def test_a_bad_threshold_names_the_key(value: object, problem: str) -> None:
    with pytest.raises(ParamsError, match=rf"{KEY} = .*{problem}"):
        parse_params({"select": {"above_chance": value}})


def test_the_default_and_the_overrides_parse() -> None:
    assert parse_params({}).select.above_chance == 0.1
    assert parse_params({"select": {"above_chance": None}}).select.above_chance is None
    assert parse_params({"select": {"above_chance": 0.3}}).select.above_chance == 0.3


# ------------------------------------------------------------------------- the stage


def _constant_workspace(folder: Path, above_chance: float | None) -> None:
    """A test split of 3 balanced classes and a classifier that answers class 0 for
    every image (zero weights, a bias for class 0): accuracy = chance = 1/3."""
    labels = np.arange(45) % 3
    images = np.random.default_rng(0).integers(0, 255, (45, 1, 16, 16), dtype=np.uint8)
    Splits(
        images[:30], labels[:30], images[30:36], labels[30:36], images[:45], labels[:45],
        NAMES, "synthetic",
    ).save(folder / "data/dataset.npz")  # fmt: skip
    net = build_classifier("small_cnn", (1, 16, 16), 3)
    with torch.no_grad():
        net.logits.weight.zero_()
        net.logits.bias.copy_(torch.tensor([5.0, 0.0, 0.0]))
    hparams = {"arch": "small_cnn", "input_shape": (1, 16, 16), "num_classes": 3}
    save_classifier(net, hparams, NAMES, folder / "models/classifier/model.pt")
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["select"].update(per_class=1, misclassified=2, confused_pairs=1)
    params["select"]["above_chance"] = above_chance
    params["evaluate"].update(images=12, sanity_images=10)
    (folder / "params.yaml").write_text(yaml.safe_dump(params))


def _run_select(folder: Path) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "MLFLOW_TRACKING_URI": f"sqlite:///{folder}/m.db",
    }
    return subprocess.run(
        [sys.executable, "-m", "stages.select"],
        cwd=folder, env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip


def test_the_select_stage_refuses_a_constant_classifier_and_writes_nothing(tmp_path) -> None:
    _constant_workspace(tmp_path, 0.1)
    result = _run_select(tmp_path)
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and "Traceback" not in result.stderr
    assert errors[0].startswith("select: error: test accuracy 0.333 is at or near chance")
    assert f"{KEY} = 0.1 asks for at least 0.400" in errors[0]
    assert not (tmp_path / "explanations").exists() and not (tmp_path / "metrics").exists()


def test_the_override_lets_the_constant_classifier_through(tmp_path) -> None:
    _constant_workspace(tmp_path, 0)
    result = _run_select(tmp_path)
    assert result.returncode == 0, result.stderr
    assert "no better than chance" in result.stderr  # said once, as a warning
    record = yaml.safe_load((tmp_path / "explanations/classifier_check.json").read_text())
    assert record["accuracy"] == pytest.approx(1 / 3) and record["chance"] == pytest.approx(1 / 3)
    assert (tmp_path / "explanations/selection.npz").is_file()


# ------------------------------------------------------------------------ the wiring

# the stages that may run before the check: it needs the classifier, and its record
# (curves, confusion matrix) is how one sees why a classifier was refused
BEFORE_THE_CHECK = {"params", "data", "data_figures", "classifier", "classifier_figures"}


def test_every_stage_after_the_classifier_waits_for_the_check() -> None:
    """Every other stage of dvc.yaml depends on select (directly or through other
    stages' outputs), so DVC runs none of them after a refusal."""
    from dvc.repo import Repo

    with Repo(str(REPO)) as repo:
        graph = repo.index.graph  # an edge runs from a stage to a stage it depends on
        stages = {stage.addressing: stage for stage in graph.nodes if stage.cmd}
        gate = stages["select"]
        upstream = {name for name, stage in stages.items() if name != "select"} - {
            name for name, stage in stages.items() if gate in nx.descendants(graph, stage)
        }
    assert "explain@saliency" not in upstream and "grand_tour" not in upstream
    assert upstream == BEFORE_THE_CHECK
