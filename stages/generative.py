"""What every generative stage (vae, refvae, cladec, vcladec, refae) does once its model
is trained: test-split metrics, export, curves per training epoch, the sample
reconstructions the `generative_figures` stage draws, MLflow logging. Nothing here
draws."""

from __future__ import annotations

import logging
from typing import Any

import torch

from pipeline.console import numbers
from pipeline.data import Splits
from pipeline.generative_training import (
    HISTORY_KEYS,
    Trained,
    reconstruction_metrics,
    sample_reconstructions,
    save_module,
)
from pipeline.io import write_csv, write_json, write_npz
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
) -> dict[str, Any]:
    """Write and log everything for model `name` (e.g. 'cladec/dense-0.5'); no gradients.
    `extra_metrics` (the VAE's ELBO terms) join the metrics file and MLflow."""
    slug = paths.model_slug(name)
    metrics = {
        **(extra_metrics or {}),
        **reconstruction_metrics(trained.decoded_test, splits.x_test, classifier, splits.y_test),
    }
    record = {**config, **metrics, **trained.training_record()}
    save_module(trained.module, config, paths.model_dir(name) / "model.pt")
    write_json(paths.GENERATIVE_METRICS / f"{slug}.json", record)
    write_csv(paths.GENERATIVE_PLOTS / f"{slug}.csv", trained.history, ["epoch", *HISTORY_KEYS])
    write_npz(
        paths.GENERATIVE_SAMPLES / f"{slug}.npz",
        **sample_reconstructions(name, config, trained.decoded_test, splits, classifier),
    )
    run.log_metrics({k if k.startswith("test_") else f"test_{k}": v for k, v in metrics.items()})
    run.log_artifact(paths.GENERATIVE_METRICS / f"{slug}.json", "metrics")
    log.info(
        "%s: test SSE/image %.2f, classifier accuracy on decoded %.3f, %s -> %s",
        name,
        metrics["sse_per_image"],
        metrics["classifier_accuracy"],
        numbers(trained.training_record()),
        paths.model_dir(name),
    )
    return record
