"""DVC stage `classifier_figures`: the classifier's learning curves (from
plots/classifier/history.csv) and test confusion matrix (from
metrics/classifier_confusion.json; when the dataset's classes are not the model's, the
model's most predicted classes from metrics/classifier.json instead); restyling them
retrains nothing."""

from __future__ import annotations

import json
import logging

from pipeline.figures.common import save_figure
from pipeline.figures.training import (
    plot_confusion_matrix,
    plot_predicted_classes,
    plot_training_curves,
)
from pipeline.io import read_csv, read_json
from pipeline.params import load_params
from pipeline.tracking import stage_run
from stages import paths
from stages.runner import require, run_stage

log = logging.getLogger("stages.classifier_figures")


def main() -> None:
    params = load_params()
    history = read_csv(require(paths.CLASSIFIER_HISTORY, "classifier"), as_float=True)
    confusion = json.loads(require(paths.CLASSIFIER_CONFUSION, "classifier").read_text())
    title = f"{params.classifier.arch} on {params.data.dataset}"
    with stage_run(
        "classifier_figures", params.tracking.experiment, params.data.dataset, {}
    ) as run:
        save_figure(plot_training_curves(history, title), paths.CLASSIFIER_CURVES_FIG)
        if confusion["matrix"] is None:  # no labels in the model's classes (classifier.py)
            test = read_json(paths.CLASSIFIER_METRICS, "classifier")["test"]
            figure = plot_predicted_classes(test["most_predicted"], test["note"], title)
        else:
            figure = plot_confusion_matrix(
                confusion["matrix"], confusion["classes"], f"Test confusion matrix, {title}"
            )
        save_figure(figure, paths.CLASSIFIER_CONFUSION_FIG)
        for path in (paths.CLASSIFIER_CURVES_FIG, paths.CLASSIFIER_CONFUSION_FIG):
            run.log_artifact(path, "figures")
    log.info("-> %s, %s", paths.CLASSIFIER_CURVES_FIG, paths.CLASSIFIER_CONFUSION_FIG)


if __name__ == "__main__":
    run_stage("classifier_figures", main)
