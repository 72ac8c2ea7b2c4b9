"""DVC stage `classifier`: train (or resume) the CNN, evaluate it on the test split,
record per-epoch predictions of the tracked test instances."""

from __future__ import annotations

import logging
import time

import numpy as np

from pipeline.classify import HISTORY_KEYS, classification_metrics, train_classifier
from pipeline.data import Splits
from pipeline.figures.common import save_figure
from pipeline.figures.training import plot_confusion_matrix, plot_training_curves
from pipeline.inference import predict_proba
from pipeline.io import write_csv, write_json, write_npz
from pipeline.models.export import save_classifier
from pipeline.params import load_params
from pipeline.tracking import is_rank_zero, stage_run
from stages import paths
from stages.runner import run_stage

log = logging.getLogger("stages.classifier")


def main() -> None:
    params = load_params()
    splits = Splits.load(paths.DATASET)
    names = list(splits.class_names)
    logged = {
        "seed": params.seed,
        "classifier": params.classifier.model_dump(),
        "trainer": params.trainer.model_dump(),
    }
    with stage_run("classifier", params.tracking.experiment, splits.dataset, logged) as run:
        started = time.perf_counter()
        result = train_classifier(
            splits, params, paths.CLASSIFIER_CKPTS, logger=run.lightning_logger()
        )
        seconds = time.perf_counter() - started
        if not is_rank_zero():
            return
        if result.resumed_from is not None:
            log.info("resumed from %s", result.resumed_from)
        net = result.module.net
        probabilities = predict_proba(net, splits.x_test)
        test = classification_metrics(probabilities, splits.y_test, names)
        confusion = test.pop("confusion_matrix")
        metrics = {"test": test, "epochs": len(result.history)}

        save_classifier(net, dict(result.module.hparams), names, paths.CLASSIFIER_MODEL)
        write_npz(
            paths.EPOCH_PREDICTIONS,
            compressed=False,
            test_indices=result.tracked,
            labels=splits.y_test[result.tracked],
            epochs=np.array([row["epoch"] for row in result.history]),
            probabilities=result.epoch_probabilities,
            predictions=result.epoch_probabilities.argmax(-1),
            class_names=np.array(names),
        )
        write_json(paths.CLASSIFIER_METRICS, metrics)
        write_json(paths.CLASSIFIER_CONFUSION, {"classes": names, "matrix": confusion})
        write_csv(paths.CLASSIFIER_HISTORY, result.history, ["epoch", *HISTORY_KEYS])
        predicted = probabilities.argmax(1)
        write_csv(
            paths.CLASSIFIER_CONFUSION_PLOT,
            [
                {"actual": names[a], "predicted": names[p]}
                for a, p in zip(splits.y_test, predicted, strict=True)
            ],
            ["actual", "predicted"],
        )
        title = f"{params.classifier.arch} on {splits.dataset}"
        save_figure(plot_training_curves(result.history, title), paths.CLASSIFIER_CURVES_FIG)
        save_figure(
            plot_confusion_matrix(confusion, names, f"Test confusion matrix, {title}"),
            paths.CLASSIFIER_CONFUSION_FIG,
        )

        run.log_metrics(
            {"test_accuracy": test["accuracy"], "test_loss": test["loss"], "train_seconds": seconds}
        )
        run.log_metrics(
            {f"test_accuracy_class/{k}": v for k, v in test["per_class_accuracy"].items()}
        )
        for path in (
            paths.CLASSIFIER_METRICS,
            paths.CLASSIFIER_CONFUSION,
            paths.CLASSIFIER_HISTORY,
        ):
            run.log_artifact(path, "metrics")
        for path in (paths.CLASSIFIER_CURVES_FIG, paths.CLASSIFIER_CONFUSION_FIG):
            run.log_artifact(path, "figures")
        if params.tracking.log_checkpoints:
            for ckpt in sorted(paths.CLASSIFIER_CKPTS.glob("*.ckpt")):
                run.log_artifact(ckpt, "checkpoints")
    log.info(
        "test accuracy %.4f, loss %.4f after %d epochs (%.1f s); model -> %s",
        test["accuracy"],
        test["loss"],
        len(result.history),
        seconds,
        paths.CLASSIFIER_MODEL,
    )


if __name__ == "__main__":
    run_stage("classifier", main)
