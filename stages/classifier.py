"""DVC stage `classifier`: train (or resume) the classifier, from scratch or from the
weights `classifier.weights` names, evaluate it on the test split, record
per-training-epoch predictions of the tracked test instances. With `classifier.train:
false` it exports the weights as they are (ImageNet's for `imagenet`, with ImageNet's
class names), or a user's TorchScript file (`arch: torchscript`), so every downstream
stage explains that model. Its figures are drawn by
`classifier_figures` from what this stage stores."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor, nn

from pipeline.chance import labels_in_model_classes
from pipeline.classify import (
    HISTORY_KEYS,
    ClassifierResult,
    classification_metrics,
    epoch_prediction_record,
    prediction_pairs,
    tracked_indices,
    train_classifier,
)
from pipeline.data import Splits
from pipeline.inference import predict_proba
from pipeline.io import write_csv, write_json, write_npz, write_torch
from pipeline.models.archs import build_classifier
from pipeline.models.export import save_classifier
from pipeline.models.user_model import ARCH as USER_ARCH
from pipeline.models.user_model import (
    UserModel,
    build_user_model,
    check_output,
    read_script,
    user_model_payload,
)
from pipeline.models.weights import (
    StartFrom,
    fit_state,
    imagenet_class_names,
    locate_weights,
    read_state_dict,
)
from pipeline.params import Params, check_runtime, load_params
from pipeline.tracking import is_rank_zero, stage_run
from pipeline.training import prepare_checkpoint_dir
from stages import paths
from stages.runner import run_stage

log = logging.getLogger("stages.classifier")


def _model_classes(params: Params, splits: Splits) -> list[str]:
    """The classes the exported model answers with: ImageNet's for its weights as they
    are, else the dataset's (a new head when fine-tuning from ImageNet)."""
    cfg = params.classifier
    if not cfg.train and cfg.weights == "imagenet":
        return imagenet_class_names(cfg.arch)
    return list(splits.class_names)


def _starting_state(
    params: Params, splits: Splits, path: Path | None, classes: int
) -> dict[str, Tensor] | None:
    """The weights in `path` (None: scratch), read and fitted to the arch before any
    work (a key missing or of the wrong shape stops the stage here)."""
    cfg = params.classifier
    if path is None:
        return None
    probe = build_classifier(cfg.arch, splits.image_shape, classes)
    given = (cfg.mean, cfg.std) if cfg.mean is not None and cfg.std is not None else None
    state, notes = fit_state(probe, cfg.arch, read_state_dict(path), cfg.train, given)
    log.info("weights from %s", path)
    for note in notes:
        log.info("weights: %s", note)
    return state


def _user_model(params: Params, splits: Splits, path: Path, classes: int) -> UserModel:
    """The TorchScript file as the classifier: loaded, its layers tapped, and checked on
    one image of the data's shape before any work."""
    cfg = params.classifier
    model = build_user_model(read_script(path), path, cfg.layers, cfg.mean, cfg.std)
    check_output(model, splits.image_shape, classes, str(path))
    log.info("TorchScript model from %s; named layers %s", path, cfg.layers or "none")
    return model


def _as_is(
    params: Params, splits: Splits, state: dict[str, Tensor] | nn.Module, classes: int
) -> tuple[nn.Module, dict[str, Any], ClassifierResult]:
    """The classifier with the given weights (or the user's TorchScript model) and no
    training (explain-as-is); its prediction record holds one epoch, 0: the predictions
    before any training."""
    cfg = params.classifier
    if isinstance(state, nn.Module):
        net = state
    else:
        net = build_classifier(cfg.arch, splits.image_shape, classes)
        net.load_state_dict({**net.state_dict(), **state})
    tracked = tracked_indices(len(splits.y_test), cfg.tracked_instances, params.seed)
    result = ClassifierResult(
        module=None,  # type: ignore[arg-type]  (nothing was trained)
        history=[],
        tracked=tracked,
        epoch_probabilities=predict_proba(net, splits.x_test[tracked])[None],
        resumed_from=None,
    )
    # a DVC out: emptied, so no stage reads an earlier training's epochs as this model's
    prepare_checkpoint_dir(paths.CLASSIFIER_CKPTS, "as-is: no training")
    hparams = {"arch": cfg.arch, "input_shape": splits.image_shape, "num_classes": classes}
    return net.eval(), hparams, result


def main() -> None:
    params = load_params()
    check_runtime(params)  # the accelerator and precision exist on this machine
    cfg = params.classifier
    # the weights file first: a missing one stops the stage before anything is read
    weights = locate_weights(cfg.weights, cfg.arch, params.data.download)
    splits = Splits.load(paths.DATASET)
    names = _model_classes(params, splits)
    if cfg.arch == USER_ARCH:
        assert weights is not None  # the schema refuses torchscript without a file
        state: dict[str, Tensor] | nn.Module | None = _user_model(
            params, splits, weights, len(names)
        )
    else:
        state = _starting_state(params, splits, weights, len(names))
    logged = {
        "seed": params.seed,
        "classifier": params.classifier.model_dump(),
        "trainer": params.trainer.model_dump(),
    }
    with stage_run("classifier", params.tracking.experiment, splits.dataset, logged) as run:
        started = time.perf_counter()
        if cfg.train:
            result = train_classifier(
                splits,
                params,
                paths.CLASSIFIER_CKPTS,
                logger=run.lightning_logger(),
                extra_callbacks=[StartFrom(state)] if isinstance(state, dict) else [],
            )
            net, hparams = result.module.net, dict(result.module.hparams)
        else:
            assert state is not None  # the schema refuses train: false with scratch
            net, hparams, result = _as_is(params, splits, state, len(names))
        seconds = time.perf_counter() - started
        if not is_rank_zero():
            return
        if result.resumed_from is not None:
            log.info("resumed from %s", result.resumed_from)
        probabilities = predict_proba(net, splits.x_test)
        # None: the dataset's classes are not the model's (ImageNet's); the records then
        # keep the dataset's labels
        labels = labels_in_model_classes(names, splits.class_names, splits.y_test)
        test, pairs = _test_results(probabilities, labels, names)
        confusion = test.pop("confusion_matrix", None)
        metrics = {"test": test, "training_epochs": len(result.history)}

        if isinstance(net, UserModel):  # the file's bytes, as given
            payload = user_model_payload(net, splits.image_shape, names)
            write_torch(paths.CLASSIFIER_MODEL, payload)
        else:
            save_classifier(net, hparams, names, paths.CLASSIFIER_MODEL)
        record = epoch_prediction_record(
            result, labels if labels is not None else splits.y_test, names
        )
        if not cfg.train:
            record["epochs"] = np.array([0])  # no history rows: the weights as given
        write_npz(paths.EPOCH_PREDICTIONS, compressed=False, **record)
        write_json(paths.CLASSIFIER_METRICS, metrics)
        write_json(paths.CLASSIFIER_CONFUSION, {"classes": names, "matrix": confusion})
        write_csv(paths.CLASSIFIER_HISTORY, result.history, ["epoch", *HISTORY_KEYS])
        write_csv(paths.CLASSIFIER_CONFUSION_PLOT, pairs, ["actual", "predicted"])

        run.log_metrics({"train_seconds": seconds})
        if "accuracy" in test:
            run.log_metrics({"test_accuracy": test["accuracy"], "test_loss": test["loss"]})
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
        "test accuracy %s, loss %s after %d training epochs (%.1f s); model -> %s",
        _show(test.get("accuracy")),
        _show(test.get("loss")),
        len(result.history),
        seconds,
        paths.CLASSIFIER_MODEL,
    )


def _test_results(
    probabilities: np.ndarray, labels: np.ndarray | None, names: Sequence[str]
) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """Test metrics and (actual, predicted) pairs; without labels in the model's
    classes (ImageNet's names for a dataset of other classes), the predictions only."""
    if labels is None:
        counts = np.bincount(probabilities.argmax(1), minlength=len(names))
        top = {names[i]: int(counts[i]) for i in np.argsort(-counts)[:10] if counts[i]}
        note = "the dataset's classes are not among the model's: no accuracy"
        log.warning("%s; most predicted classes: %s", note, top)
        return {"note": note, "most_predicted": top}, []
    test = classification_metrics(probabilities, labels, names)
    return test, prediction_pairs(labels, probabilities.argmax(1), names)


def _show(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


if __name__ == "__main__":
    run_stage("classifier", main)
