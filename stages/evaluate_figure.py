"""DVC stage `evaluate_figure`: the method comparison figure, from the evaluate stage's
metrics and curves (restyling it recomputes nothing)."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import numpy as np

from pipeline.errors import PipelineError
from pipeline.figures.common import save_figure
from pipeline.figures.evaluation import CURVE_PANELS, plot_evaluation
from pipeline.params import load_params
from pipeline.tracking import stage_run
from stages import paths
from stages.runner import run_stage

log = logging.getLogger("stages.evaluate_figure")


def _read(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _curve(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(x, mean probability) of one curve CSV (its first column is the x axis)."""
    rows = _read(path)
    x_name = next(iter(rows[0])) if rows else "fraction"
    return (
        np.array([float(r[x_name]) for r in rows]),
        np.array([float(r["probability"]) for r in rows]),
    )


def main() -> None:
    params = load_params()
    if not paths.EVALUATE_METRICS.is_file():
        raise PipelineError(f"{paths.EVALUATE_METRICS} not found: run `dvc repro evaluate`")
    scores = json.loads(paths.EVALUATE_METRICS.read_text())["methods"]
    curves = {}
    for kind, _, _ in CURVE_PANELS:
        by_method, x = {}, np.zeros(0)
        for name in scores:
            x, by_method[name] = _curve(paths.EVALUATE_PLOTS / kind / f"{name}.csv")
        curves[kind] = (x, by_method)
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
            curves,
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
