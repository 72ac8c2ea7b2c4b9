"""What every generative stage (vae, cladec, refae) does once its model is trained:
test-split metrics, export, curves, a figure of reconstructions, MLflow logging."""

from __future__ import annotations

import logging
from typing import Any

import torch

from pipeline.data import Splits
from pipeline.decode import HISTORY_KEYS, Trained, reconstruction_metrics, save_module
from pipeline.figures.common import save_figure
from pipeline.figures.reconstructions import one_per_class, plot_reconstructions
from pipeline.io import write_csv, write_json
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
    title: str,
) -> dict[str, Any]:
    """Write and log everything for model `name` (e.g. 'cladec/dense-0.5'); no gradients."""
    slug = name.replace("/", "_")
    metrics = reconstruction_metrics(trained.decoded_test, splits.x_test, classifier, splits.y_test)
    record = {**config, **metrics, "epochs": len(trained.history)}
    save_module(trained.module, config, paths.model_dir(name) / "model.pt")
    write_json(paths.GENERATIVE_METRICS / f"{slug}.json", record)
    write_csv(paths.GENERATIVE_PLOTS / f"{slug}.csv", trained.history, ["epoch", *HISTORY_KEYS])
    picks = one_per_class(splits.y_test, 10)
    predicted = classifier(trained.decoded_test[picks]).argmax(1).tolist()
    captions = [
        f"{splits.class_names[splits.y_test[i]]}→{splits.class_names[p]}"
        for i, p in zip(picks, predicted, strict=True)
    ]
    figure = plot_reconstructions(
        splits.x_test[picks],
        [(name, trained.decoded_test[picks].numpy())],
        captions,
        f"{title} (caption: true → classifier on decoded)",
    )
    figure_path = save_figure(figure, paths.GENERATIVE_FIGURES / f"{slug}.png")
    run.log_metrics({f"test_{k}": v for k, v in metrics.items()})
    run.log_artifact(paths.GENERATIVE_METRICS / f"{slug}.json", "metrics")
    run.log_artifact(figure_path, "figures")
    log.info(
        "%s: test MSE/pixel %.4f, classifier accuracy on decoded %.3f -> %s",
        name,
        metrics["mse_per_pixel"],
        metrics["classifier_accuracy"],
        paths.model_dir(name),
    )
    return record
