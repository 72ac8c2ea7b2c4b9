"""DVC stage `explain@<method>`: one attribution method over the selected instances."""

from __future__ import annotations

import argparse
import logging
import time

import numpy as np

from pipeline.data import Splits
from pipeline.explain.explanations import background_sample, explain_selection, method_kwargs
from pipeline.inference import as_float_images
from pipeline.io import write_json
from pipeline.models.export import load_classifier
from pipeline.params import ATTRIBUTION_METHODS, load_params
from pipeline.selection import Selection
from pipeline.tracking import stage_run
from stages import paths
from stages.runner import run_stage

log = logging.getLogger("stages.explain")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--method", required=True, choices=ATTRIBUTION_METHODS)
    method = parser.parse_args().method
    params = load_params()
    method_params = getattr(params.explain, method).model_dump()
    splits = Splits.load(paths.DATASET)
    selection = Selection.load(paths.SELECTION)
    net, _ = load_classifier(paths.CLASSIFIER_MODEL)
    logged = {"seed": params.seed, f"explain.{method}": method_params, "method": method}
    with stage_run(f"explain@{method}", params.tracking.experiment, splits.dataset, logged) as run:
        background = None
        if method == "shap":
            background = background_sample(
                splits.x_train, params.explain.shap.background, params.seed
            )
        kwargs = method_kwargs(method, method_params, params.seed, background)
        started = time.perf_counter()
        result = explain_selection(
            method,
            net,
            as_float_images(splits.x_test[selection.indices]),
            selection.predicted,
            selection.labels,
            kwargs,
        )
        seconds = time.perf_counter() - started
        out = paths.attribution_file(method)
        result.save(out)
        metrics: dict[str, float | int] = {
            "seconds": round(seconds, 3),
            "instances": len(selection),
            "explanations": len(result.predicted) + len(result.true),
        }
        if "r2" in result.extras:
            metrics["surrogate_r2_mean"] = float(np.mean(result.extras["r2"]))
        write_json(paths.EXPLAIN_METRICS / f"{method}.json", metrics)
        run.log_metrics(metrics)
    log.info(
        "%s: %d explanations of %d instances in %.1f s -> %s",
        method,
        metrics["explanations"],
        len(selection),
        seconds,
        out,
    )


if __name__ == "__main__":
    run_stage("explain", main)
