"""DVC stage `generative_figures`: what the generative models show, drawn from what
their stages stored (restyling retrains nothing):

- one figure of sample reconstructions per model (VAE, reference VAE, every ClaDec,
  variational ClaDec and RefAE), from explanations/generative/;
- the ClaDec table, a row per (layer, alpha) and RefAE, from metrics/generative/, with
  the epochs each trained, the reference implementation's MNIST numbers beside ours, the
  qualitative properties of the reference's table checked on this run (each holds or
  FAILS, from the metrics; the classifier's accuracy from metrics/classifier.json), and
  the alpha trade-off figure.

A decoder whose stage was skipped (pipeline/skips.py) is left out of both and named with
its reason: under the table, and in reports/figures/generative/skipped.json for the
report; with no ClaDec or RefAE left the table is that reason alone.

One process for both: starting a stage costs more than either drawing."""

from __future__ import annotations

import logging

from pipeline.cladec_table import (
    COLUMNS,
    Property,
    cladec_markdown,
    decoder_rows,
    qualitative_properties,
    with_reference,
)
from pipeline.errors import PipelineError
from pipeline.figures.alpha_tradeoff import plot_alpha_tradeoff
from pipeline.figures.common import save_figure
from pipeline.figures.reconstructions import plot_stored_reconstructions
from pipeline.io import read_json, read_npz, write_csv, write_text
from pipeline.params import load_params
from pipeline.skips import MARKER, skipped_together, stored_reason, write_marker
from pipeline.tracking import StageRun, stage_run
from stages import paths
from stages.runner import run_stage

log = logging.getLogger("stages.generative_figures")


def cladec_rows() -> tuple[list[dict], dict[str, str]]:
    """Every ClaDec decoder's and RefAE's metrics, by layer, RefAE last, by alpha; and
    {stage: reason} of every generative stage that was skipped (pipeline/skips.py)."""
    records = {
        paths.slug_stage(file.stem): read_json(file, paths.slug_stage(file.stem))
        for file in sorted(paths.GENERATIVE_METRICS.glob("*.json"))
    }
    rows, skipped = decoder_rows(records)
    if not rows and not skipped:
        raise PipelineError(
            f"no ClaDec or RefAE metrics in {paths.GENERATIVE_METRICS}: "
            "run the cladec and refae stages first"
        )
    rows = sorted(rows, key=lambda r: (r["layer"], r["kind"] == "refae", r["alpha"] or 0.0))
    return rows, skipped


def classifier_accuracy() -> float | None:
    """The classifier's test accuracy on the original images; None (with a warning) when
    metrics/classifier.json is absent or holds none (a model explained as it is on data
    of other classes): the accuracy property is then not checked."""
    if not paths.CLASSIFIER_METRICS.is_file():
        log.warning("%s is absent: accuracy property not checked", paths.CLASSIFIER_METRICS)
        return None
    test = read_json(paths.CLASSIFIER_METRICS, "classifier")["test"]
    if "accuracy" not in test:
        log.warning("no test accuracy (%s): accuracy property not checked", test.get("note"))
        return None
    return float(test["accuracy"])


def write_cladec_table(rows: list[dict], skipped: dict[str, str], run: StageRun) -> list[Property]:
    """The CSV and Markdown ClaDec tables, the trade-off figure; returns the properties.
    The decoders `skipped` are named with their reason (with none trained, the reason
    alone, and a header-only CSV)."""
    rows = [with_reference(r) for r in rows]
    write_csv(paths.CLADEC_TABLE, rows, COLUMNS)
    properties = qualitative_properties(rows, classifier_accuracy()) if rows else []
    write_text(paths.CLADEC_TABLE_MD, cladec_markdown(rows, properties, skipped))
    save_figure(
        plot_alpha_tradeoff(
            rows, "ClaDec: what the decoders keep, by alpha", skipped_together(skipped)
        ),
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
    rows, skipped = cladec_rows()  # every input checked before any work
    samples = {file.stem: read_npz(file) for file in files}
    stored = {slug: z for slug, z in samples.items() if stored_reason(z) is None}
    dataset = str(next(iter(stored.values()))["dataset"]) if stored else params.data.dataset
    with stage_run("generative_figures", params.tracking.experiment, dataset, {}) as run:
        for slug in samples.keys() - stored.keys():  # skipped: no figure (of a hand run either)
            (paths.GENERATIVE_FIGURES / f"{slug}.png").unlink(missing_ok=True)
        for slug, arrays in stored.items():
            path = save_figure(
                plot_stored_reconstructions(arrays),
                paths.GENERATIVE_FIGURES / f"{slug}.png",
            )
            run.log_artifact(path, "figures")
        if skipped:  # the report's reconstructions section shows it
            write_marker(paths.GENERATIVE_FIGURES, skipped_together(skipped))
            log.info("skipped: %s", skipped_together(skipped))
        else:
            (paths.GENERATIVE_FIGURES / MARKER).unlink(missing_ok=True)  # of an earlier run
        properties = write_cladec_table(rows, skipped, run)
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
