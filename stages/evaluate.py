"""DVC stage `evaluate`: faithfulness (deletion / insertion against random attributions)
and the randomization sanity check, for every attribution method."""

from __future__ import annotations

import logging

import numpy as np
import torch

from pipeline.data import Splits
from pipeline.evaluate.protocol import evaluate_attributions, markdown_scores, subset_explainer
from pipeline.explain.attribute_selection import background_sample
from pipeline.explain.registry import method_class
from pipeline.explain.stored import StoredAttributions
from pipeline.inference import as_float_images
from pipeline.io import write_csv, write_json, write_text
from pipeline.models.export import load_classifier
from pipeline.params import load_params
from pipeline.selection import Selection
from pipeline.tracking import stage_run
from stages import paths
from stages.runner import run_stage

log = logging.getLogger("stages.evaluate")
# the sanity check recomputes every method's maps: the stage runs every method module
RUNS_MODULES = ("pipeline/explain/methods",)


def main() -> None:
    params = load_params()
    splits = Splits.load(paths.DATASET)
    selection = Selection.load(paths.SELECTION)
    net, _ = load_classifier(paths.CLASSIFIER_MODEL)
    methods = params.explain.methods
    attributions = {
        m: StoredAttributions.load(paths.attribution_file(m)).predicted for m in methods
    }
    logged = {
        "seed": params.seed,
        "evaluate": params.evaluate.model_dump(),
        "explain.methods": ",".join(methods),
    }
    with stage_run("evaluate", params.tracking.experiment, splits.dataset, logged) as run:
        images = as_float_images(splits.x_test[selection.indices])
        classes = torch.as_tensor(selection.predicted)
        # spread the sanity instances over the selection (and so over the classes)
        count = min(len(selection), params.evaluate.sanity_instances)
        rows = np.unique(np.linspace(0, len(selection) - 1, count).astype(int))
        explainers = {}
        for m in methods:
            cls, p = method_class(m), getattr(params.explain, m)
            background = (
                background_sample(splits.x_train, p.background, params.seed)
                if cls.needs_background
                else None
            )
            method = cls(seed=params.seed, background=background)
            explainers[m] = subset_explainer(
                lambda model, x, t, method=method, p=p: method.attribute(model, x, t, p).maps,
                images[rows],
                classes[rows],
            )
        ev = params.evaluate
        result = evaluate_attributions(
            net,
            images,
            classes,
            attributions,
            steps=ev.steps,
            deletion_value=ev.deletion_value,
            blur_sigma=ev.insertion_blur_sigma,
            random_seeds=ev.random_seeds,
            seed=params.seed,
            explainers=explainers,
            sanity_threshold=ev.sanity_threshold,
        )
        write_json(paths.EVALUATE_METRICS, result.metrics())
        for kind, curves in (
            ("deletion", result.deletion_curves),
            ("insertion", result.insertion_curves),
        ):
            for name, curve in curves.items():
                write_csv(
                    paths.EVALUATE_PLOTS / kind / f"{name}.csv",
                    [
                        {"fraction": round(float(f), 5), "probability": float(p)}
                        for f, p in zip(result.fractions, curve, strict=True)
                    ],
                    ["fraction", "probability"],
                )
        for name, sanity_rows in result.sanity.items():
            write_csv(
                paths.EVALUATE_PLOTS / "randomization" / f"{name}.csv",
                [{"step": i + 1, **r} for i, r in enumerate(sanity_rows)],
                ["step", "layer", "spearman", "ssim"],
            )
        # plots/evaluate/ persists between runs (dvc.yaml): drop the curves of methods
        # no longer evaluated
        for kind, written in (
            ("deletion", result.deletion_curves),
            ("insertion", result.insertion_curves),
            ("randomization", result.sanity),
        ):
            for old in (paths.EVALUATE_PLOTS / kind).glob("*"):
                if old.is_file() and old.name not in {f"{name}.csv" for name in written}:
                    old.unlink()
        write_text(paths.EVALUATE_TABLE, markdown_scores(result.scores))
        run.log_metrics(result.metrics())
        run.log_artifact(paths.EVALUATE_METRICS, "metrics")
        run.log_artifact(paths.EVALUATE_TABLE, "metrics")
    print(markdown_scores(result.scores))
    log.info("metrics -> %s, curves -> %s/", paths.EVALUATE_METRICS, paths.EVALUATE_PLOTS)


if __name__ == "__main__":
    run_stage("evaluate", main)
