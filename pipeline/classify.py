"""Training and evaluating the classifier: per-training-epoch prediction records for
InstanceFlow, test metrics, and the orchestration the classifier stage calls."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback

from pipeline import training
from pipeline.data import Splits
from pipeline.inference import predict_proba
from pipeline.models import archs
from pipeline.models import classifier as classifier_module
from pipeline.models.classifier import ClassifierModule
from pipeline.params import Params
from pipeline.training import InMemoryImages, fit

HISTORY_KEYS = ("train_loss", "train_acc", "val_loss", "val_acc")


class PredictionRecorder(Callback):
    """After every training epoch, the predicted class and probabilities of a fixed subset of
    test instances: the raw material of InstanceFlow."""

    def __init__(self, images: np.ndarray) -> None:
        self.images = images
        self.probabilities: list[np.ndarray] = []

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.probabilities.append(predict_proba(pl_module, self.images).astype(np.float16))

    def state_dict(self) -> dict[str, Any]:
        return {"probabilities": [torch.from_numpy(p) for p in self.probabilities]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.probabilities = [np.asarray(p) for p in state_dict["probabilities"]]


def tracked_indices(n_test: int, count: int, seed: int) -> np.ndarray:
    """A fixed, seeded subset of test indices (all of them when the split is smaller)."""
    if count >= n_test:
        return np.arange(n_test)
    return np.sort(np.random.default_rng(seed).choice(n_test, size=count, replace=False))


def classification_metrics(
    probs: np.ndarray, labels: np.ndarray, class_names: Sequence[str]
) -> dict[str, Any]:
    """Accuracy, mean cross-entropy, per-class accuracy and the confusion matrix."""
    from sklearn.metrics import confusion_matrix

    predicted = probs.argmax(1)
    eps = np.finfo(np.float32).tiny
    loss = float(-np.log(np.maximum(probs[np.arange(len(labels)), labels], eps)).mean())
    matrix = confusion_matrix(labels, predicted, labels=np.arange(len(class_names)))
    support = matrix.sum(1)
    per_class = {
        name: (float(matrix[i, i] / support[i]) if support[i] else None)
        for i, name in enumerate(class_names)
    }
    return {
        "accuracy": float((predicted == labels).mean()),
        "loss": loss,
        "per_class_accuracy": per_class,
        "confusion_matrix": matrix.tolist(),
    }


@dataclass
class ClassifierResult:
    module: ClassifierModule
    history: list[dict[str, float]]
    tracked: np.ndarray  # indices into the test split
    epoch_probabilities: np.ndarray  # training epochs × tracked × classes
    resumed_from: Path | None


MODEL_CODE = [inspect.getfile(m) for m in (archs, classifier_module, training)]


def train_classifier(
    splits: Splits,
    params: Params,
    checkpoint_dir: str | Path,
    logger: Any = False,
    extra_callbacks: Sequence[Callback] = (),
) -> ClassifierResult:
    """Train (or resume) the classifier; every training epoch is checkpointed in
    `checkpoint_dir`."""
    cfg = params.classifier
    pl.seed_everything(params.seed, workers=True, verbose=False)
    mean = (splits.x_train / 255.0).mean(axis=(0, 2, 3)).tolist()
    std = np.maximum((splits.x_train / 255.0).std(axis=(0, 2, 3)), 1e-3).tolist()
    module = ClassifierModule(
        cfg.arch, splits.image_shape, splits.num_classes, cfg.lr, cfg.weight_decay, mean, std
    )
    tracked = tracked_indices(len(splits.y_test), cfg.tracked_instances, params.seed)
    recorder = PredictionRecorder(splits.x_test[tracked])
    result = fit(
        module,
        InMemoryImages(splits.x_train, splits.y_train),
        InMemoryImages(splits.x_val, splits.y_val),
        trainer_params=params.trainer,
        seed=params.seed,
        epochs=cfg.epochs,
        batch_size=cfg.batch_size,
        checkpoint_dir=checkpoint_dir,
        config={"classifier": cfg.model_dump()},
        code=MODEL_CODE,
        history_keys=HISTORY_KEYS,
        logger=logger,
        callbacks=[recorder, *extra_callbacks],
    )
    return ClassifierResult(
        module=module,
        history=result.history,
        tracked=tracked,
        epoch_probabilities=np.stack(recorder.probabilities).astype(np.float32),
        resumed_from=result.resumed_from,
    )


def epoch_prediction_record(
    result: ClassifierResult, test_labels: np.ndarray, class_names: Sequence[str]
) -> dict[str, np.ndarray]:
    """The tracked test images' predictions after every training epoch, as the arrays
    of epoch_predictions.npz (InstanceFlow's input)."""
    return {
        "test_indices": result.tracked,
        "labels": test_labels[result.tracked],
        "epochs": np.array([row["epoch"] for row in result.history]),
        "probabilities": result.epoch_probabilities,
        "predictions": result.epoch_probabilities.argmax(-1),
        "class_names": np.array(class_names),
    }


def prediction_pairs(
    labels: np.ndarray, predicted: np.ndarray, class_names: Sequence[str]
) -> list[dict[str, str]]:
    """One (actual, predicted) row per test image, by class name: what DVC's confusion
    plot template reads."""
    return [
        {"actual": class_names[a], "predicted": class_names[p]}
        for a, p in zip(labels, predicted, strict=True)
    ]
