"""DVC stage `data`: load the configured dataset and split it train/val/test (its
figure is drawn by `data_figures`)."""

from __future__ import annotations

import logging

from pipeline.data import load_dataset, split_dataset
from pipeline.io import write_json
from pipeline.params import load_params
from pipeline.tracking import stage_run
from stages.paths import DATA_METRICS, DATASET
from stages.runner import run_stage

log = logging.getLogger("stages.data")


def main() -> None:
    params = load_params()
    log.info("loading dataset %s", params.data.dataset)
    splits = split_dataset(load_dataset(params.data), params.data, params.seed, params.data.dataset)
    summary = splits.summary()
    with stage_run(
        "data",
        params.tracking.experiment,
        params.data.dataset,
        {"seed": params.seed, "data": params.data.model_dump()},
    ) as run:
        splits.save(DATASET)
        write_json(DATA_METRICS, summary)
        run.log_metrics({k: summary[k] for k in ("classes", "train", "val", "test")})
        run.log_artifact(DATA_METRICS)
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
