"""DVC stage `inside_figures`: draw every inside-the-model part from its stored arrays
(explanations/<part>/*.npz) into reports/figures/<part>/, recomputing nothing and
loading no torch. One process for all parts: drawing takes a second or two per part,
starting a stage (imports, MLflow, DVC) four or five."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from pipeline.console import progress
from pipeline.explain.registry import part_class
from pipeline.figures.common import save_figure
from pipeline.io import atomic_path, write_text
from pipeline.params import INSIDE_PARTS, load_params
from pipeline.skips import MARKER, read_stored, write_marker
from pipeline.tracking import stage_run
from stages import paths
from stages.runner import run_stage

log = logging.getLogger("stages.inside_figures")
# it draws every part through its class: every part module runs here
RUNS_MODULES = ("pipeline/explain/parts",)
TEXT_SUFFIXES = (".html", ".csv")  # drawings that are text; .png are Figures, .gif bytes


def load_stored(part: str) -> dict[str, dict[str, Any]] | str:
    """{file stem: {key: array}} of every .npz the part's compute stage wrote, or the
    reason it gave for skipping the part."""
    return read_stored(paths.part_dir(part), part)


def save_drawing(name: str, drawing: Any, folder: Path) -> Path:
    """One drawing into folder/name, atomically: a matplotlib Figure as .png, text as
    .html or .csv, bytes (an animated GIF) as they are."""
    path = folder / name
    if path.suffix == ".png":
        return save_figure(drawing, path)
    if path.suffix in TEXT_SUFFIXES and isinstance(drawing, str):
        write_text(path, drawing)
        return path
    if path.suffix == ".gif" and isinstance(drawing, bytes):
        with atomic_path(path) as tmp:
            tmp.write_bytes(drawing)
        return path
    raise TypeError(f"cannot save a {type(drawing).__name__} as {name}")


def main(parts: tuple[str, ...] = INSIDE_PARTS) -> None:
    params = load_params()
    stored = {part: load_stored(part) for part in parts}  # every input, before any work
    logged = {"inside": params.inside.model_dump()}
    with stage_run(
        "inside_figures", params.tracking.experiment, params.data.dataset, logged
    ) as run:
        for part in progress(parts, "inside figures", unit="part"):
            p = getattr(params.inside, part)
            out = paths.part_figures(part)
            if isinstance(stored[part], str):  # skipped: the reason, for the report
                for old in out.iterdir() if out.is_dir() else []:  # drawings of a hand run
                    if old.is_file():
                        old.unlink()
                write_marker(out, stored[part])
                log.info("%s: skipped (%s)", part, stored[part])
                continue
            (out / MARKER).unlink(missing_ok=True)  # of an earlier run that skipped it
            written = [
                save_drawing(name, drawing, out)
                for name, drawing in part_class(part)().draw(stored[part], p).items()
            ]
            for path in written:
                run.log_artifact(path, f"figures/{part}")
            log.info("%s: %s", part, ", ".join(str(path) for path in written))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--part", choices=INSIDE_PARTS, help="draw this part only (dvc.yaml draws them all)"
    )
    part = parser.parse_args().part
    run_stage("inside_figures", lambda: main((part,) if part else INSIDE_PARTS))
