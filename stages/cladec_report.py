"""DVC stage `cladec_report`: one table of every ClaDec decoder and RefAE (a row per
(layer, alpha)), and the alpha trade-off figure."""

from __future__ import annotations

import json
import logging

from pipeline.errors import PipelineError
from pipeline.figures.alpha_tradeoff import PANELS, plot_alpha_tradeoff
from pipeline.figures.common import save_figure
from pipeline.io import write_csv, write_text
from pipeline.params import load_params
from pipeline.tables import markdown_table
from pipeline.tracking import stage_run
from stages import paths
from stages.runner import run_stage

log = logging.getLogger("stages.cladec_report")
COLUMNS = ["kind", "layer", "alpha", *(key for key, _ in PANELS)]


def main() -> None:
    params = load_params()
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
    rows.sort(key=lambda r: (r["layer"], r["kind"] == "refae", r["alpha"] or 0.0))
    with stage_run("cladec_report", params.tracking.experiment, params.data.dataset, {}) as run:
        write_csv(paths.CLADEC_TABLE, rows, COLUMNS)
        cells = [
            [r["kind"], r["layer"], "—" if r["alpha"] is None else f"{r['alpha']:g}"]
            + [f"{r[key]:.4f}" for key, _ in PANELS]
            for r in rows
        ]
        write_text(paths.CLADEC_TABLE_MD, markdown_table(COLUMNS, cells))
        save_figure(
            plot_alpha_tradeoff(rows, "ClaDec: what the decoders keep, by alpha"),
            paths.CLADEC_ALPHA_FIG,
        )
        run.log_metrics({"models": len(rows)})
        for path in (paths.CLADEC_TABLE, paths.CLADEC_TABLE_MD):
            run.log_artifact(path, "tables")
        run.log_artifact(paths.CLADEC_ALPHA_FIG, "figures")
    log.info("%d rows -> %s, %s", len(rows), paths.CLADEC_TABLE, paths.CLADEC_ALPHA_FIG)


if __name__ == "__main__":
    run_stage("cladec_report", main)
