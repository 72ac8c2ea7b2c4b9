"""DVC stage `attribution_figures@<method>`: draw a method's stored attributions (no
recomputation) into reports/figures/attributions/<method>/, correctly classified and
misclassified instances apart."""

from __future__ import annotations

import argparse
import logging

from pipeline.data import Splits
from pipeline.explain.base import Shown
from pipeline.explain.registry import method_class
from pipeline.explain.stored import StoredAttributions
from pipeline.figures.common import save_figure
from pipeline.params import ATTRIBUTION_METHODS, load_params
from pipeline.selection import Selection
from pipeline.tracking import stage_run
from stages import paths
from stages.runner import run_stage

log = logging.getLogger("stages.attribution_figures")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--method", required=True, choices=ATTRIBUTION_METHODS)
    name = parser.parse_args().method
    params = load_params()
    splits = Splits.load(paths.DATASET)
    selection = Selection.load(paths.SELECTION)
    stored = StoredAttributions.load(paths.attribution_file(name))
    shown = Shown(splits.x_test[selection.indices], selection)
    out = paths.ATTRIBUTION_FIGURES / name
    with stage_run(
        f"attribution_figures@{name}", params.tracking.experiment, splits.dataset, {}
    ) as run:
        figures = method_class(name)().draw(stored, shown, getattr(params.explain, name))
        written = [save_figure(fig, out / f"{key}.png") for key, fig in figures.items()]
        for path in written:
            run.log_artifact(path, f"figures/attributions/{name}")
    log.info("%s: %s", name, ", ".join(map(str, written)))


if __name__ == "__main__":
    run_stage("attribution_figures", main)
