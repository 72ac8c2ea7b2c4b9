"""DVC stage `activation_max`: filter visualisation by gradient ascent, for every filter
of a chosen layer and every class logit, each batch optimised at once."""

from __future__ import annotations

import logging

import numpy as np

from pipeline.explain.activation_max import maximize
from pipeline.io import write_json, write_npz
from pipeline.params import load_params
from pipeline.tracking import stage_run
from stages import paths
from stages.common import load_inputs
from stages.runner import run_stage

log = logging.getLogger("stages.activation_max")
PART = "activation_max"


def main() -> None:
    params = load_params()
    cfg = params.explain.activation_max
    inputs = load_inputs(selection=False)
    shape = inputs.splits.image_shape
    logged = {"seed": params.seed, f"explain.{PART}": cfg.model_dump()}
    with stage_run(PART, params.tracking.experiment, inputs.splits.dataset, logged) as run:
        common = {"iterations": cfg.iterations, "step": cfg.step, "seed": params.seed}
        filters = maximize(inputs.net, shape, layer=cfg.layer, **common)
        classes = maximize(inputs.net, shape, layer=None, **common)
        write_npz(
            paths.part_dir(PART) / "ascent.npz",
            layer=np.array(cfg.layer),
            filter_images=filters.images,
            filter_start=filters.start,
            filter_end=filters.end,
            class_images=classes.images,
            class_start=classes.start,
            class_end=classes.end,
            class_names=np.array(inputs.names),
        )
        metrics = {
            "filters": len(filters.end),
            "filters_raised": float((filters.end > filters.start).mean()),
            "filter_gain_mean": float((filters.end - filters.start).mean()),
            "classes_raised": float((classes.end > classes.start).mean()),
            "class_logit_gain_mean": float((classes.end - classes.start).mean()),
        }
        write_json(paths.part_metrics(PART), metrics)
        run.log_metrics(metrics)
    log.info(
        "%d filters of %s (%.0f%% raised) and %d classes -> %s",
        metrics["filters"],
        cfg.layer,
        100 * metrics["filters_raised"],
        len(classes.end),
        paths.part_dir(PART),
    )


if __name__ == "__main__":
    run_stage(PART, main)
