"""DVC stage `generative_figures`: what the generative models show, drawn from what
their stages stored (restyling retrains nothing):

- one figure of sample reconstructions per model (VAE, reference VAE, every ClaDec,
  variational ClaDec and RefAE), from explanations/generative/;
- the ClaDec table, a row per (layer, alpha) and RefAE, from metrics/generative/, with
  the epochs each trained, the reference implementation's MNIST numbers beside ours, the
  qualitative properties of the reference's table checked on this run (each holds or
  FAILS, from the metrics; the classifier's accuracy from metrics/classifier.json), and
  the alpha trade-off figure.

One process for both: starting a stage costs more than either drawing."""

from __future__ import annotations

import json
import logging

from pipeline.cladec_table import (
    COLUMNS,
    Property,
    cladec_markdown,
    qualitative_properties,
    with_reference,
)
from pipeline.errors import PipelineError
from pipeline.figures.alpha_tradeoff import plot_alpha_tradeoff
from pipeline.figures.common import save_figure
from pipeline.figures.reconstructions import plot_stored_reconstructions
from pipeline.io import read_npz, write_csv, write_text
from pipeline.params import load_params
from pipeline.tracking import StageRun, stage_run
from stages import paths
from stages.runner import run_stage

log = logging.getLogger("stages.generative_figures")


def cladec_rows() -> list[dict]:
    """Every ClaDec decoder's and RefAE's metrics, by layer, RefAE last, by alpha."""
    rows = []
    for file in sorted(paths.GENERATIVE_METRICS.glob("*.json")):
        record = json.loads(file.read_text())
        if record.get("kind") in ("cladec", "refae"):
            rows.append(record)
    if not rows:
        raise PipelineError(
            f"no ClaDec or RefAE metrics in {paths.GENERATIVE_METRICS}: "
            "run the cladec and refae stages first"
        )
    return sorted(rows, key=lambda r: (r["layer"], r["kind"] == "refae", r["alpha"] or 0.0))


def classifier_accuracy() -> float | None:
    """The classifier's test accuracy on the original images; None (with a warning) when
    metrics/classifier.json is absent: the accuracy property is then not checked."""
    if not paths.CLASSIFIER_METRICS.is_file():
        log.warning("%s is absent: accuracy property not checked", paths.CLASSIFIER_METRICS)
        return None
    return float(json.loads(paths.CLASSIFIER_METRICS.read_text())["test"]["accuracy"])


def write_cladec_table(rows: list[dict], run: StageRun) -> list[Property]:
    """The CSV and Markdown ClaDec tables, the trade-off figure; returns the properties."""
    rows = [with_reference(r) for r in rows]
    write_csv(paths.CLADEC_TABLE, rows, COLUMNS)
    properties = qualitative_properties(rows, classifier_accuracy())
    write_text(paths.CLADEC_TABLE_MD, cladec_markdown(rows, properties))
    save_figure(
        plot_alpha_tradeoff(rows, "ClaDec: what the decoders keep, by alpha"),
        paths.CLADEC_ALPHA_FIG,
    )
    for path in (paths.CLADEC_TABLE, paths.CLADEC_TABLE_MD):
        run.log_artifact(path, "tables")
    run.log_artifact(paths.CLADEC_ALPHA_FIG, "figures")
    for p in properties:
        log.info("ClaDec property %s — %s: %s (%s)", p.scope, p.claim, p.verdict, p.numbers)
    return properties


def main() -> None:
    params = load_params()
    files = sorted(paths.GENERATIVE_SAMPLES.glob("*.npz"))
    if not files:
        raise PipelineError(
            f"no stored reconstructions in {paths.GENERATIVE_SAMPLES}: run the vae, cladec "
            "and refae stages first (`dvc repro generative_figures` runs them)"
        )
    rows = cladec_rows()  # every input checked before any work
    stored = {file.stem: read_npz(file) for file in files}
    dataset = str(next(iter(stored.values()))["dataset"])
    with stage_run("generative_figures", params.tracking.experiment, dataset, {}) as run:
        for slug, arrays in stored.items():
            path = save_figure(
                plot_stored_reconstructions(arrays), paths.GENERATIVE_FIGURES / f"{slug}.png"
            )
            run.log_artifact(path, "figures")
        properties = write_cladec_table(rows, run)
        run.log_metrics(
            {
                "models": len(stored),
                "cladec_table_rows": len(rows),
                "cladec_properties_hold": sum(p.holds for p in properties),
                "cladec_properties": len(properties),
            }
        )
    log.info(
        "%d figures -> %s; %d rows -> %s, %s",
        len(stored),
        paths.GENERATIVE_FIGURES,
        len(rows),
        paths.CLADEC_TABLE,
        paths.CLADEC_ALPHA_FIG,
    )


if __name__ == "__main__":
    run_stage("generative_figures", main)
