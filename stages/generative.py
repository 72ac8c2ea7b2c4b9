"""What every generative stage (vae, refvae, cladec, vcladec, refae) does once its model
is trained: test-split metrics, export, curves per training epoch, the sample
reconstructions the `generative_figures` stage draws, MLflow logging; or, for a decoder
that would not scale to the images or does not apply to the model (pipeline/skips.py),
the reason in every output dvc.yaml declares for it. Nothing here draws."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from pipeline.chance import TARGETS_KEY, splits_in_model_classes
from pipeline.console import numbers
from pipeline.data import Splits
from pipeline.generative_training import (
    HISTORY_KEYS,
    Trained,
    reconstruction_metrics,
    sample_reconstructions,
    save_module,
)
from pipeline.io import write_csv, write_json, write_npz, write_torch
from pipeline.params import Params
from pipeline.skips import MARKER, Skipped, check_decoder_size, write_marker
from pipeline.tracking import StageRun
from stages import paths

log = logging.getLogger("stages.generative")


@torch.inference_mode()
def finish(
    run: StageRun,
    name: str,
    trained: Trained,
    splits: Splits,
    classifier: Any,
    config: dict[str, Any],
    extra_metrics: dict[str, float] | None = None,
    targets: str | None = None,
) -> dict[str, Any]:
    """Write and log everything for model `name` (e.g. 'cladec/dense-0.5'); no gradients.
    `extra_metrics` (the VAE's ELBO terms) join the metrics file and MLflow; `targets`,
    when the labels are the model's predictions, says so in the metrics file."""
    slug = paths.model_slug(name)
    (paths.model_dir(name) / "checkpoints" / MARKER).unlink(missing_ok=True)  # of a skipped run
    metrics = {
        **(extra_metrics or {}),
        **reconstruction_metrics(trained.decoded_test, splits.x_test, classifier, splits.y_test),
    }
    record = {**config, **metrics, **trained.training_record()}
    if targets is not None:
        record["classifier_targets"] = targets
    save_module(trained.module, config, paths.model_dir(name) / "model.pt")
    write_json(paths.GENERATIVE_METRICS / f"{slug}.json", record)
    write_csv(paths.GENERATIVE_PLOTS / f"{slug}.csv", trained.history, ["epoch", *HISTORY_KEYS])
    write_npz(
        paths.GENERATIVE_SAMPLES / f"{slug}.npz",
        **sample_reconstructions(name, config, trained.decoded_test, splits, classifier),
        **({} if targets is None else {TARGETS_KEY: np.array(targets)}),
    )
    run.log_metrics({k if k.startswith("test_") else f"test_{k}": v for k, v in metrics.items()})
    run.log_artifact(paths.GENERATIVE_METRICS / f"{slug}.json", "metrics")
    log.info(
        "%s: test SSE/image %.2f, classifier accuracy on decoded %.3f%s, %s -> %s",
        name,
        metrics["sse_per_image"],
        metrics["classifier_accuracy"],
        "" if targets is None else " (agreement with its predictions on the originals)",
        numbers(trained.training_record()),
        paths.model_dir(name),
    )
    return record


def skip(run: StageRun, name: str, config: dict[str, Any], reason: str) -> None:
    """Every output dvc.yaml declares for decoder `name`, holding the reason it was
    skipped (DVC needs them all): the marker in its checkpoints folder, a model.pt of the
    reason (loads with weights_only=True; pipeline/restore.py raises Skipped on it), the
    metrics, a header-only curves CSV and a samples .npz with `skipped`."""
    slug, folder = paths.model_slug(name), paths.model_dir(name)
    write_marker(folder / "checkpoints", reason)
    write_torch(folder / "model.pt", {"skipped": reason})
    write_json(paths.GENERATIVE_METRICS / f"{slug}.json", {"skipped": reason, **config})
    write_csv(paths.GENERATIVE_PLOTS / f"{slug}.csv", [], ["epoch", *HISTORY_KEYS])
    write_npz(
        paths.GENERATIVE_SAMPLES / f"{slug}.npz",
        skipped=np.array(reason),
        name=np.array(name),
        config=np.array(json.dumps(config, sort_keys=True)),
    )
    run.log_artifact(folder / "checkpoints" / MARKER, "skipped")
    log.info("%s skipped: %s", name.replace("/", "@", 1), reason)


def in_model_classes(
    splits: Splits, classifier: Any, model_names: list[str]
) -> tuple[Splits, str | None]:
    """The splits labelled in the classifier's classes (pipeline.chance.
    splits_in_model_classes: by name, or its own predictions when the data's classes
    are not its own), so its loss term and its accuracy on decodings mean something."""
    from pipeline.inference import predict_proba

    labelled, targets = splits_in_model_classes(
        splits, model_names, lambda images: predict_proba(classifier, images).argmax(1)
    )
    if targets is not None:
        log.info("classifier targets: %s", targets)
    return labelled, targets


def train_and_finish(
    run: StageRun,
    name: str,
    config: dict[str, Any],
    params: Params,
    splits: Splits,
    classifier: Any,
    model_names: list[str],
    train: Callable[[Splits], Trained],
) -> None:
    """Train decoder `name` on the splits in the classifier's classes (in_model_classes)
    and finish() it; or, when its images are larger than cladec.max_side or `train`
    finds it does not apply, skip() it before any training (or prediction)."""
    try:
        _, height, width = splits.image_shape
        check_decoder_size(height, width, params.cladec.max_side, params.cladec.max_epochs)
        splits, targets = in_model_classes(splits, classifier, model_names)
        trained = train(splits)
    except Skipped as skipped:
        skip(run, name, config, str(skipped))
        return
    finish(run, name, trained, splits, classifier, config, targets=targets)
