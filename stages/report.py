"""DVC stage `report`: `reports/index.html`, one self-contained page for the whole run
(pipeline/report/), from what the other stages wrote; recomputes nothing. Logged to its
MLflow run and, with the headline numbers of metrics/summary.json, to the parent run of
this pipeline configuration, so two configurations compare side by side there."""

from __future__ import annotations

import logging
from typing import Any

from pipeline.io import read_json, read_npz, write_text
from pipeline.params import Params, load_params
from pipeline.report.content import (
    INSTANCEFLOW,
    SECTIONS,
    ReportInputs,
    RunInfo,
    build_report,
    image_patterns,
)
from pipeline.skips import read_marker
from pipeline.tracking import UI_ADDRESS, run_url, stage_run
from stages import paths
from stages.runner import run_stage

log = logging.getLogger("stages.report")
TABLES = (paths.EVALUATE_TABLE, paths.CLADEC_TABLE_MD)
GALLERY_JSON = paths.part_figures("gallery") / "gallery.json"


def read_images() -> dict[str, bytes]:
    """Every figure the page embeds, by its name under reports/."""
    return {
        path.relative_to(paths.REPORTS).as_posix(): path.read_bytes()
        for pattern in image_patterns()
        for path in sorted(paths.REPORTS.glob(pattern))
        if path.is_file()
    }


def read_stored(part: str, name: str) -> dict[str, Any] | None:
    """A part's stored arrays for the interactive plots (None when the part did not run)."""
    path = paths.part_dir(part) / f"{name}.npz"
    return read_npz(path, stage=part) if path.is_file() else None


def read_skipped() -> dict[str, str]:
    """{part: reason} for every section's part, and InstanceFlow (inside the classifier
    section), that was skipped (the marker its figure folder holds)."""
    found = {}
    for part in [s.part for s in SECTIONS if s.part] + [INSTANCEFLOW]:
        reason = read_marker(paths.part_figures(part))
        if reason is not None:
            found[part] = reason
    return found


def main() -> None:
    params = load_params()
    summary = read_json(paths.SUMMARY_METRICS, "summary")  # every input before any work
    gallery = read_json(GALLERY_JSON, "gallery") if GALLERY_JSON.is_file() else None
    loaded = dict(
        summary=summary,
        params=params.model_dump(),
        defaults=Params().model_dump(),
        images=read_images(),
        tables={t.name: t.read_text() for t in TABLES if t.is_file()},
        gallery=gallery,
        tour=read_stored("grand_tour", "tour"),
        flow=read_stored(INSTANCEFLOW, "flow"),
        skipped=read_skipped(),
    )
    with stage_run("report", params.tracking.experiment, params.data.dataset, {}) as run:
        if run.parent_run_id:
            link = run_url(run.parent_run_id, run.experiment_id, run.uri)
            label = "this pipeline configuration's run (its stage runs are nested under it)"
        else:
            link, label = f"{UI_ADDRESS}/#/experiments/{run.experiment_id}", "the experiment"
        info = RunInfo(
            dataset=params.data.dataset,
            arch=params.classifier.arch,
            commit=run.tags.get("git_commit", "unknown"),
            dirty=run.tags.get("git_dirty") == "true",
            mlflow_url=link,
            mlflow_label=label,
        )
        write_text(paths.REPORT, build_report(ReportInputs(run=info, **loaded)))
        run.log_artifact(paths.REPORT)
        run.log_to_parent(summary, [paths.REPORT])
    size = paths.REPORT.stat().st_size / 2**20
    log.info(
        "%s (%.1f MB, %d figures): open it in a browser", paths.REPORT, size, len(loaded["images"])
    )


if __name__ == "__main__":
    run_stage("report", main)
