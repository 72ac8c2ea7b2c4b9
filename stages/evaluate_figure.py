"""DVC stage `evaluate_figure`: the method comparison figure, from the evaluate stage's
metrics and curves (restyling it recomputes nothing)."""

from __future__ import annotations

import csv
import json
import logging

import numpy as np

from pipeline.errors import PipelineError
from pipeline.figures.common import save_figure
from pipeline.figures.evaluation import plot_evaluation
from pipeline.params import load_params
from pipeline.tracking import stage_run
from stages import paths
from stages.runner import run_stage

log = logging.getLogger("stages.evaluate_figure")


def _read(path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def main() -> None:
    params = load_params()
    if not paths.EVALUATE_METRICS.is_file():
        raise PipelineError(f"{paths.EVALUATE_METRICS} not found: run `dvc repro evaluate`")
    scores = json.loads(paths.EVALUATE_METRICS.read_text())["methods"]
    curves: dict[str, dict[str, np.ndarray]] = {"deletion": {}, "insertion": {}}
    fractions = np.zeros(0)
    for kind in curves:
        for name in scores:
            rows = _read(paths.EVALUATE_PLOTS / kind / f"{name}.csv")
            fractions = np.array([float(r["fraction"]) for r in rows])
            curves[kind][name] = np.array([float(r["probability"]) for r in rows])
    sanity = {}
    for name in scores:
        file = paths.EVALUATE_PLOTS / "randomization" / f"{name}.csv"
        if file.is_file():
            sanity[name] = [
                {"layer": r["layer"], "spearman": float(r["spearman"])} for r in _read(file)
            ]
    logged = {"evaluate": {"sanity_threshold": params.evaluate.sanity_threshold}}
    with stage_run(
        "evaluate_figure", params.tracking.experiment, params.data.dataset, logged
    ) as run:
        fig = plot_evaluation(
            fractions,
            curves["deletion"],
            curves["insertion"],
            scores,
            sanity,
            params.evaluate.sanity_threshold,
            f"How far the attributions of the {params.classifier.arch} classifier can be trusted",
        )
        save_figure(fig, paths.EVALUATE_FIG)
        run.log_artifact(paths.EVALUATE_FIG, "figures")
    log.info("-> %s", paths.EVALUATE_FIG)


if __name__ == "__main__":
    run_stage("evaluate_figure", main)
