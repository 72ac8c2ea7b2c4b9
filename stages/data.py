"""DVC stage `data`: load the configured dataset and split it train/val/test."""

from __future__ import annotations

import logging

import numpy as np

from pipeline.data import load_dataset, split_dataset
from pipeline.figures.common import save_figure
from pipeline.figures.samples import plot_class_samples
from pipeline.io import write_json
from pipeline.params import load_params
from pipeline.tracking import stage_run
from stages.paths import DATA_METRICS, DATA_SAMPLES_FIG, DATASET
from stages.runner import run_stage

log = logging.getLogger("stages.data")


def main() -> None:
    params = load_params()
    log.info("loading dataset %s", params.data.dataset)
    splits = split_dataset(load_dataset(params.data), params.data, params.seed, params.data.dataset)
    summary = {
        "classes": splits.num_classes,
        "image_shape": list(splits.image_shape),
        "train": len(splits.y_train),
        "val": len(splits.y_val),
        "test": len(splits.y_test),
        "train_per_class": dict(
            zip(
                splits.class_names,
                np.bincount(splits.y_train, minlength=splits.num_classes).tolist(),
                strict=True,
            )
        ),
    }
    with stage_run(
        "data",
        params.tracking.experiment,
        params.data.dataset,
        {"seed": params.seed, "data": params.data.model_dump()},
    ) as run:
        splits.save(DATASET)
        write_json(DATA_METRICS, summary)
        figure = plot_class_samples(
            splits.x_train,
            splits.y_train,
            splits.class_names,
            10,
            f"{params.data.dataset}: training images per class",
        )
        save_figure(figure, DATA_SAMPLES_FIG)
        run.log_metrics({k: summary[k] for k in ("classes", "train", "val", "test")})
        for path in (DATA_METRICS, DATA_SAMPLES_FIG):
            run.log_artifact(path)
    log.info(
        "%d train / %d val / %d test images of %d classes -> %s",
        summary["train"],
        summary["val"],
        summary["test"],
        summary["classes"],
        DATASET,
    )


if __name__ == "__main__":
    run_stage("data", main)
