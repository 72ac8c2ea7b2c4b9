"""DVC stage `generative_figures`: one figure of sample reconstructions per generative
model (VAE, reference VAE, every ClaDec, variational ClaDec and RefAE), drawn from the
arrays each model's stage stores in explanations/generative/; restyling them retrains
nothing."""

from __future__ import annotations

import logging

from pipeline.errors import PipelineError
from pipeline.figures.common import save_figure
from pipeline.figures.reconstructions import plot_stored_reconstructions
from pipeline.io import read_npz
from pipeline.params import load_params
from pipeline.tracking import stage_run
from stages import paths
from stages.runner import run_stage

log = logging.getLogger("stages.generative_figures")


def main() -> None:
    params = load_params()
    files = sorted(paths.GENERATIVE_SAMPLES.glob("*.npz"))
    if not files:
        raise PipelineError(
            f"no stored reconstructions in {paths.GENERATIVE_SAMPLES}: run the vae, cladec "
            "and refae stages first (`dvc repro generative_figures` runs them)"
        )
    stored = {file.stem: read_npz(file) for file in files}
    dataset = str(next(iter(stored.values()))["dataset"])
    with stage_run("generative_figures", params.tracking.experiment, dataset, {}) as run:
        for slug, arrays in stored.items():
            path = save_figure(
                plot_stored_reconstructions(arrays), paths.GENERATIVE_FIGURES / f"{slug}.png"
            )
            run.log_artifact(path, "figures")
    log.info("%d figures -> %s", len(stored), paths.GENERATIVE_FIGURES)


if __name__ == "__main__":
    run_stage("generative_figures", main)
