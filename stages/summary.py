"""DVC stage `summary`: `metrics/summary.json`, the numbers people compare between runs
(pipeline/summary.py), from the other stages' metrics; recomputes nothing."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from pipeline.cladec_table import decoder_rows
from pipeline.io import read_json, write_json
from pipeline.params import load_params
from pipeline.summary import summarize
from pipeline.tracking import stage_run
from stages import paths
from stages.runner import run_stage

log = logging.getLogger("stages.summary")


def _read(path: Path, stage: str, required: bool = True) -> Any:
    """A metrics file's contents (None for a missing optional one)."""
    return read_json(path, stage) if required or path.is_file() else None


def main() -> None:
    params = load_params()
    classifier = _read(paths.CLASSIFIER_METRICS, "classifier")
    evaluate = _read(paths.EVALUATE_METRICS, "evaluate")
    rows, _ = decoder_rows(  # the decoders whose stages were skipped are left out
        {
            file.stem: read_json(file, paths.slug_stage(file.stem))
            for file in sorted(paths.GENERATIVE_METRICS.glob("*.json"))
        }
    )
    ice = _read(paths.part_metrics("ice"), "ice", required=False)
    decodings = _read(paths.part_metrics("cladec_decodings"), "cladec_decodings", False)
    with stage_run("summary", params.tracking.experiment, params.data.dataset, {}) as run:
        summary = summarize(classifier, evaluate, rows, ice, decodings)
        write_json(paths.SUMMARY_METRICS, summary)
        run.log_metrics(summary)
        run.log_artifact(paths.SUMMARY_METRICS, "metrics")
    log.info(
        "test accuracy %s, %d methods flagged by the sanity check -> %s",
        summary.get("test_accuracy", summary.get("test_note")),
        summary["sanity_flagged"],
        paths.SUMMARY_METRICS,
    )


if __name__ == "__main__":
    run_stage("summary", main)
