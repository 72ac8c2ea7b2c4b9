"""DVC stage `explain@<method>`: one attribution method over the selected instances (for
the figures), and its evaluation: faithfulness on the evaluation set and the
randomization sanity check (pipeline/evaluate/protocol.py). The evaluate stage only
gathers these per-method results, so changing one method's params reruns one method."""

from __future__ import annotations

import argparse
import logging
import time

import numpy as np
import torch

from pipeline.data import Splits
from pipeline.evaluate.protocol import evaluate_method
from pipeline.evaluation_set import EvaluationSet
from pipeline.explain.attribute_selection import attribute_selection, background_sample
from pipeline.explain.registry import method_class
from pipeline.inference import as_float_images
from pipeline.io import write_json
from pipeline.models.export import load_classifier
from pipeline.params import ATTRIBUTION_METHODS, load_params
from pipeline.selection import Selection
from pipeline.tracking import stage_run
from stages import paths
from stages.dvc_item import dvc_member
from stages.runner import run_stage

log = logging.getLogger("stages.explain")
# the method's own module (the registry imports it by name): tests/dvc_deps.py
RUNS_MODULES = ("pipeline/explain/methods/{item}.py",)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--method", choices=ATTRIBUTION_METHODS, help="by hand; under DVC explain@<method> gives it"
    )
    name = parser.parse_args().method
    params = load_params()
    if name is None:  # no params value is ever part of a command: stages/dvc_item.py
        methods = params.explain.methods
        name, _ = dvc_member("explain", {m: m for m in methods}, "explain.methods", "--method")
    cls = method_class(name)
    p = getattr(params.explain, name)
    splits = Splits.load(paths.DATASET)
    selection = Selection.load(paths.SELECTION)
    evaluated = EvaluationSet.load(paths.EVALUATION_SET)
    net, _ = load_classifier(paths.CLASSIFIER_MODEL)
    logged = {
        "seed": params.seed,
        f"explain.{name}": p.model_dump(),
        "method": name,
        "evaluate": params.evaluate.model_dump(),
    }
    with stage_run(f"explain@{name}", params.tracking.experiment, splits.dataset, logged) as run:
        background = None
        if cls.needs_background:
            background = background_sample(splits.x_train, p.background, params.seed)
        method = cls(seed=params.seed, background=background)
        started = time.perf_counter()
        stored, per_image = attribute_selection(
            method,
            net,
            as_float_images(splits.x_test[selection.indices]),
            selection.predicted,
            selection.labels,
            p,
        )
        seconds = time.perf_counter() - started
        out = paths.attribution_file(name)
        stored.save(out)
        log.info(
            "%s: evaluating on %d test images (sanity on %d, %d seeds)",
            name,
            len(evaluated),
            min(params.evaluate.sanity_images, len(evaluated)),
            params.evaluate.sanity_seeds,
        )
        started = time.perf_counter()
        eval_images = as_float_images(splits.x_test[evaluated.indices])
        eval_classes = torch.as_tensor(evaluated.predicted)

        def attribute(model: torch.nn.Module, x: torch.Tensor, t: torch.Tensor) -> np.ndarray:
            return method.attribute(model, x, t, p).maps

        with torch.enable_grad():
            eval_maps = attribute(net.eval(), eval_images, eval_classes)
        evaluation = evaluate_method(
            name, net, eval_images, eval_classes, eval_maps, attribute, params.evaluate, params.seed
        )
        evaluation.save(paths.evaluation_file(name))
        evaluation_seconds = time.perf_counter() - started
        metrics: dict[str, float | int] = {
            "instances": len(selection),
            "explanations": len(stored.predicted) + len(stored.true),
        }
        for score in cls.scores:
            metrics[f"{score.key}_mean"] = round(float(np.mean(per_image[score.key])), 5)
        write_json(paths.EXPLAIN_METRICS / f"{name}.json", metrics)
        # run times go to MLflow only: they differ on every run, so in the DVC metrics
        # they would make `dvc metrics diff` list every method as changed
        timings = {"seconds": seconds, "evaluation_seconds": evaluation_seconds}
        run.log_metrics({**metrics, **timings})
    log.info(
        "%s: %d explanations of %d instances in %.1f s -> %s; evaluated in %.1f s -> %s",
        name,
        metrics["explanations"],
        len(selection),
        seconds,
        out,
        evaluation_seconds,
        paths.evaluation_file(name),
    )


if __name__ == "__main__":
    run_stage("explain", main)
