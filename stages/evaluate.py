"""DVC stage `evaluate`: gathers every method's per-image evaluation (written by its
explain stage), adds the random-attribution baseline on the same images, and reports
each score with its bootstrap 95% interval and the verdicts that follow from them."""

from __future__ import annotations

import logging

import torch

from pipeline.data import Splits
from pipeline.evaluate.protocol import (
    SANITY_KEYS,
    MethodEvaluation,
    markdown_scores,
    random_baseline,
    score_methods,
)
from pipeline.evaluation_set import EvaluationSet
from pipeline.inference import as_float_images
from pipeline.io import write_csv, write_json, write_text
from pipeline.models.export import load_classifier
from pipeline.params import load_params
from pipeline.tracking import stage_run
from stages import paths
from stages.runner import run_stage

log = logging.getLogger("stages.evaluate")
CURVES = {
    "deletion": "fraction",
    "insertion": "fraction",
    "road_morf": "removed",
    "road_lerf": "removed",
}


def write_curves(evaluations: dict[str, MethodEvaluation]) -> None:
    """plots/evaluate/<kind>/<method>.csv: the mean curves; randomization/<method>.csv:
    the cascade's mean similarity per step. Curves of methods no longer evaluated are
    removed (the folder persists between runs, dvc.yaml)."""
    for kind, x_name in CURVES.items():
        for name, ev in evaluations.items():
            x = ev.road_fractions if kind.startswith("road") else ev.fractions
            write_csv(
                paths.EVALUATE_PLOTS / kind / f"{name}.csv",
                [
                    {x_name: round(float(f), 5), "probability": float(p)}
                    for f, p in zip(x, ev.mean_curve(kind), strict=True)
                ],
                [x_name, "probability"],
            )
    for name, ev in evaluations.items():
        if len(ev.sanity_layers):
            write_csv(
                paths.EVALUATE_PLOTS / "randomization" / f"{name}.csv",
                [{"step": i + 1, **r} for i, r in enumerate(ev.cascade_means())],
                ["step", "layer", *SANITY_KEYS],
            )
    sanity = {n for n, ev in evaluations.items() if len(ev.sanity_layers)}
    for kind in (*CURVES, "randomization"):
        keep = sanity if kind == "randomization" else set(evaluations)
        for old in (paths.EVALUATE_PLOTS / kind).glob("*"):
            if old.is_file() and old.stem not in keep:
                old.unlink()


def main() -> None:
    params = load_params()
    splits = Splits.load(paths.DATASET)
    evaluated = EvaluationSet.load(paths.EVALUATION_SET)
    net, _ = load_classifier(paths.CLASSIFIER_MODEL)
    methods = params.explain.methods
    evaluations = {m: MethodEvaluation.load(paths.evaluation_file(m)) for m in methods}
    logged = {
        "seed": params.seed,
        "evaluate": params.evaluate.model_dump(),
        "explain.methods": ",".join(methods),
    }
    ev = params.evaluate
    with stage_run("evaluate", params.tracking.experiment, splits.dataset, logged) as run:
        log.info("random baseline: %d draws on %d images", ev.random_seeds, len(evaluated))
        random = random_baseline(
            net,
            as_float_images(splits.x_test[evaluated.indices]),
            torch.as_tensor(evaluated.predicted),
            ev,
            params.seed,
        )
        scores = score_methods(
            evaluations,
            random,
            threshold=ev.sanity_threshold,
            seed=params.seed,
            resamples=ev.bootstrap,
        )
        write_json(paths.EVALUATE_METRICS, {"methods": scores})
        write_curves({random.method: random, **evaluations})
        table = markdown_scores(scores)
        write_text(paths.EVALUATE_TABLE, table)
        run.log_metrics({"methods": scores})
        run.log_artifact(paths.EVALUATE_METRICS, "metrics")
        run.log_artifact(paths.EVALUATE_TABLE, "metrics")
    print(table)
    log.info(
        "metrics -> %s, table -> %s, curves -> %s/",
        paths.EVALUATE_METRICS,
        paths.EVALUATE_TABLE,
        paths.EVALUATE_PLOTS,
    )


if __name__ == "__main__":
    run_stage("evaluate", main)
