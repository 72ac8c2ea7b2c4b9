"""DVC stage `attribution_figures`: draw every method's stored attributions (no
recomputation) into reports/figures/attributions/<method>/, correctly classified and
misclassified instances apart. One process for all methods: drawing takes a second or
two per method, starting a stage (imports, MLflow, DVC) four or five."""

from __future__ import annotations

import logging

from pipeline.console import progress
from pipeline.data import Splits
from pipeline.explain.base import Shown
from pipeline.explain.registry import method_class
from pipeline.explain.stored import StoredAttributions
from pipeline.figures.common import save_figure
from pipeline.params import load_params
from pipeline.selection import Selection
from pipeline.tracking import stage_run
from stages import paths
from stages.runner import run_stage

log = logging.getLogger("stages.attribution_figures")
# it draws every method through its class: every method module runs here
RUNS_MODULES = ("pipeline/explain/methods",)


def main() -> None:
    params = load_params()
    methods = params.explain.methods
    splits = Splits.load(paths.DATASET)
    selection = Selection.load(paths.SELECTION)
    stored = {m: StoredAttributions.load(paths.attribution_file(m)) for m in methods}
    shown = Shown(splits.x_test[selection.indices], selection)
    with stage_run("attribution_figures", params.tracking.experiment, splits.dataset, {}) as run:
        for name in progress(methods, "attribution figures", unit="method"):
            out = paths.ATTRIBUTION_FIGURES / name
            figures = method_class(name)().draw(stored[name], shown, getattr(params.explain, name))
            written = [save_figure(fig, out / f"{key}.png") for key, fig in figures.items()]
            for path in written:
                run.log_artifact(path, f"figures/attributions/{name}")
            log.info("%s: %s", name, ", ".join(map(str, written)))


if __name__ == "__main__":
    run_stage("attribution_figures", main)
