"""DVC stage `select`: the test instances every explainer and figure works on, and the
separate evaluation set the attribution methods are scored on.

It is also the gate before the explanation stages: a classifier at or near chance is
refused (pipeline/chance.py) before anything is written, and every explanation stage
depends on this stage's outputs, so none runs after a refusal. When the model's classes
are not the dataset's (an ImageNet model explained as-is on other photos, or a folder
without labels) the check is skipped with the reason in the log and in
explanations/classifier_check.json, and the predictions are the classes explained."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from pipeline.chance import (
    ChanceCheck,
    labels_in_model_classes,
    measure_chance,
    refuse_near_chance,
    skipped_check,
)
from pipeline.data import UNLABELLED, Splits
from pipeline.errors import PipelineError
from pipeline.evaluation_set import evaluation_set
from pipeline.inference import predict_proba
from pipeline.io import write_json
from pipeline.models.export import load_classifier
from pipeline.params import load_params
from pipeline.selection import select_instances
from pipeline.tracking import stage_run
from stages import paths
from stages.runner import run_stage

log = logging.getLogger("stages.select")

ABOVE_CHANCE_KEY = "select.above_chance"


def _log_check(check: ChanceCheck, above_chance: float | None) -> None:
    """Say what the near-chance check measured; warn when it is off and the classifier
    is no better than chance, since nothing else will."""
    if above_chance:
        log.info(
            "test accuracy %.3f, chance %.3f (majority class '%s'): passes %s = %g (needs %.3f)",
            check.accuracy,
            check.chance,
            check.majority_class,
            ABOVE_CHANCE_KEY,
            above_chance,
            check.required(above_chance),
        )
    elif check.accuracy <= check.chance:
        log.warning(
            "test accuracy %.3f is no better than chance %.3f; %s is off, so the explanation "
            "stages will explain a classifier that learnt nothing",
            check.accuracy,
            check.chance,
            ABOVE_CHANCE_KEY,
        )


def _targets(
    splits: Splits, names: tuple[str, ...], predicted: np.ndarray, above_chance: float | None
) -> tuple[np.ndarray, ChanceCheck | None, dict[str, Any]]:
    """The test labels in the model's classes and the near-chance check on them; when the
    data's classes are not the model's, the predictions stand in for the labels (the
    classes explained) and the check is skipped, with the reason."""
    labels = labels_in_model_classes(names, splits.class_names, splits.y_test)
    if labels is None:
        why = (
            "the dataset has no labels"
            if splits.class_names == (UNLABELLED,)
            else f"the dataset's classes are not among the model's {len(names)}"
        )
        reason = (
            f"{why}: the accuracy is undefined, so the near-chance check is skipped and "
            "the predicted classes are explained"
        )
        log.info("%s = %s not applied: %s", ABOVE_CHANCE_KEY, above_chance, reason)
        return predicted, None, skipped_check(reason, predicted, names)
    if splits.class_names == (UNLABELLED,):
        raise PipelineError(
            "the dataset has no labels (a folder without class sub-folders), so a classifier "
            "trained on it learnt nothing: explain a model as it is (classifier.train=false "
            "with classifier.weights), or sort the images into one sub-folder per class"
        )
    check = measure_chance(labels, predicted, names)
    refuse_near_chance(check, above_chance, ABOVE_CHANCE_KEY)
    return labels, check, check.as_dict()


def main() -> None:
    params = load_params()
    splits = Splits.load(paths.DATASET)
    net, names = load_classifier(paths.CLASSIFIER_MODEL)
    logged = {
        "seed": params.seed,
        "select": params.select.model_dump(),
        "evaluate.images": params.evaluate.images,
    }
    probabilities = predict_proba(net, splits.x_test)
    predicted = probabilities.argmax(1)
    labels, check, check_record = _targets(
        splits, tuple(names), predicted, params.select.above_chance
    )
    with stage_run("select", params.tracking.experiment, splits.dataset, logged) as run:
        selection = select_instances(
            probabilities,
            labels,
            tuple(names),
            per_class=params.select.per_class,
            misclassified=params.select.misclassified,
            pairs=params.select.confused_pairs,
            seed=params.seed,
        )
        selection.save(paths.SELECTION)
        evaluated = evaluation_set(labels, predicted, params.evaluate.images, params.seed)
        evaluated.save(paths.EVALUATION_SET)
        summary = {
            "instances": len(selection),
            "correct": int((~selection.misclassified).sum()),
            "misclassified": int(selection.misclassified.sum()),
            "evaluation_images": len(evaluated),
            "evaluation_misclassified": int((evaluated.labels != evaluated.predicted).sum()),
            "confused_pairs": [
                {"true": names[t], "predicted": names[p], "count": int(c)}
                for t, p, c in selection.pairs
            ],
        }
        write_json(paths.SELECTION_METRICS, summary)
        write_json(paths.CHANCE_CHECK, check_record)
        run.log_metrics(
            {k: summary[k] for k in ("instances", "correct", "misclassified", "evaluation_images")}
        )
        run.log_artifact(paths.SELECTION_METRICS, "metrics")
        run.log_artifact(paths.CHANCE_CHECK, "metrics")
    if check is not None:
        _log_check(check, params.select.above_chance)
    pairs = ", ".join(
        f"{p['true']}→{p['predicted']} ({p['count']})" for p in summary["confused_pairs"]
    )
    log.info(
        "%d instances (%d correct, %d misclassified); most confused: %s -> %s",
        summary["instances"],
        summary["correct"],
        summary["misclassified"],
        pairs or "none",
        paths.SELECTION,
    )
    log.info(
        "evaluation set: %d test images stratified by class -> %s",
        len(evaluated),
        paths.EVALUATION_SET,
    )


if __name__ == "__main__":
    run_stage("select", main)
