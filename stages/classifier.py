"""DVC stage `classifier`: train (or resume) the CNN, evaluate it on the test split,
record per-training-epoch predictions of the tracked test instances. Its figures are
drawn by `classifier_figures` from what this stage stores."""

from __future__ import annotations

import logging
import time

from pipeline.classify import (
    HISTORY_KEYS,
    classification_metrics,
    epoch_prediction_record,
    prediction_pairs,
    train_classifier,
)
from pipeline.data import Splits
from pipeline.inference import predict_proba
from pipeline.io import write_csv, write_json, write_npz
from pipeline.models.export import save_classifier
from pipeline.params import check_runtime, load_params
from pipeline.tracking import is_rank_zero, stage_run
from stages import paths
from stages.runner import run_stage

log = logging.getLogger("stages.classifier")


def main() -> None:
    params = load_params()
    check_runtime(params)  # the accelerator and precision exist on this machine
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
        metrics = {"test": test, "training_epochs": len(result.history)}

        save_classifier(net, dict(result.module.hparams), names, paths.CLASSIFIER_MODEL)
        write_npz(
            paths.EPOCH_PREDICTIONS,
            compressed=False,
            **epoch_prediction_record(result, splits.y_test, names),
        )
        write_json(paths.CLASSIFIER_METRICS, metrics)
        write_json(paths.CLASSIFIER_CONFUSION, {"classes": names, "matrix": confusion})
        write_csv(paths.CLASSIFIER_HISTORY, result.history, ["epoch", *HISTORY_KEYS])
        write_csv(
            paths.CLASSIFIER_CONFUSION_PLOT,
            prediction_pairs(splits.y_test, probabilities.argmax(1), names),
            ["actual", "predicted"],
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
        if params.tracking.log_checkpoints:
            for ckpt in sorted(paths.CLASSIFIER_CKPTS.glob("*.ckpt")):
                run.log_artifact(ckpt, "checkpoints")
    log.info(
        "test accuracy %.4f, loss %.4f after %d training epochs (%.1f s); model -> %s",
        test["accuracy"],
        test["loss"],
        len(result.history),
        seconds,
        paths.CLASSIFIER_MODEL,
    )


if __name__ == "__main__":
    run_stage("classifier", main)
