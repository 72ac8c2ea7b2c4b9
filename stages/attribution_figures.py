"""DVC stage `attribution_figures@<method>`: draw a method's stored attributions (no
recomputation), correctly classified and misclassified instances apart."""

from __future__ import annotations

import argparse
import logging

import numpy as np

from pipeline.data import Splits
from pipeline.explain.registry import SIGNED, pixel_map
from pipeline.explain.stored import Explanations
from pipeline.figures.attributions import Instance, plot_attribution_grid, plot_lime_grid
from pipeline.figures.common import message_figure, save_figure
from pipeline.params import ATTRIBUTION_METHODS, load_params
from pipeline.selection import Selection
from pipeline.tracking import stage_run
from stages import paths
from stages.runner import run_stage

log = logging.getLogger("stages.attribution_figures")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--method", required=True, choices=ATTRIBUTION_METHODS)
    method = parser.parse_args().method
    params = load_params()
    splits = Splits.load(paths.DATASET)
    selection = Selection.load(paths.SELECTION)
    stored = Explanations.load(paths.attribution_file(method))
    names = selection.class_names
    signed = SIGNED[method] or (method == "saliency" and not params.explain.saliency.absolute)
    written = []
    with stage_run(
        f"attribution_figures@{method}", params.tracking.experiment, splits.dataset, {}
    ) as run:
        true_row = {int(r): k for k, r in enumerate(stored.true_rows)}
        for group, rows in (
            ("correct", np.flatnonzero(~selection.misclassified)),
            ("misclassified", np.flatnonzero(selection.misclassified)),
        ):
            path = paths.ATTRIBUTION_FIGURES / f"{method}_{group}.png"
            if len(rows) == 0:
                save_figure(message_figure(f"no {group} instances were selected", method), path)
                continue
            instances = [
                Instance(
                    splits.x_test[selection.indices[r]],
                    int(selection.labels[r]),
                    int(selection.predicted[r]),
                    selection.probabilities[r],
                )
                for r in rows
            ]
            if method == "lime":
                true_weights = {
                    i: stored.extras["weights_true"][true_row[r]]
                    for i, r in enumerate(rows)
                    if r in true_row
                }
                fig = plot_lime_grid(
                    instances,
                    stored.extras["segments"][rows],
                    stored.extras["weights"][rows],
                    true_weights,
                    names,
                    params.explain.lime.features,
                )
            else:
                true_maps = {
                    i: pixel_map(stored.true[[true_row[r]]])[0]
                    for i, r in enumerate(rows)
                    if r in true_row
                }
                fig = plot_attribution_grid(
                    instances, pixel_map(stored.predicted[rows]), true_maps, names, method, signed
                )
            save_figure(fig, path)
            run.log_artifact(path, "figures")
            written.append(str(path))
    log.info("%s: %s", method, ", ".join(written))


if __name__ == "__main__":
    run_stage("attribution_figures", main)
