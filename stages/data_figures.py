"""DVC stage `data_figures`: what the dataset looks like (example training images per
class), drawn from data/dataset.npz; restyling it reruns nothing else."""

from __future__ import annotations

import logging

from pipeline.data import Splits
from pipeline.figures.common import save_figure
from pipeline.figures.samples import plot_class_samples
from pipeline.params import load_params
from pipeline.tracking import stage_run
from stages import paths
from stages.runner import run_stage

log = logging.getLogger("stages.data_figures")
PER_CLASS = 10  # images in each class's row


def main() -> None:
    params = load_params()
    splits = Splits.load(paths.DATASET)
    with stage_run("data_figures", params.tracking.experiment, splits.dataset, {}) as run:
        figure = plot_class_samples(
            splits.x_train,
            splits.y_train,
            splits.class_names,
            PER_CLASS,
            f"{splits.dataset}: training images per class",
        )
        save_figure(figure, paths.DATA_SAMPLES_FIG)
        run.log_artifact(paths.DATA_SAMPLES_FIG, "figures")
    log.info("-> %s", paths.DATA_SAMPLES_FIG)


if __name__ == "__main__":
    run_stage("data_figures", main)
