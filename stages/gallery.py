"""DVC stage `gallery`: one figure per selected image with every explanation of it side
by side (pipeline/figures/gallery.py), drawn from what the explain and inside stages
stored, into reports/figures/gallery/<nn>_<true>_as_<pred>.png, and
reports/figures/gallery/gallery.json: the title, a sentence on how to read the figures
and per image its file, test index, classes, confidence, rows and caption (the report
page embeds them from it)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from pipeline.console import progress
from pipeline.data import Splits
from pipeline.errors import PipelineError
from pipeline.explain.registry import method_class
from pipeline.explain.stored import StoredAttributions
from pipeline.figures.gallery import (
    DPI,
    HOW_TO_READ,
    TITLE,
    Decodings,
    EpochMaps,
    Gallery,
    LimePros,
    MethodMaps,
    Walks,
)
from pipeline.io import atomic_path, write_json
from pipeline.params import Params, load_params
from pipeline.selection import Selection
from pipeline.skips import read_stored
from pipeline.tracking import stage_run
from stages import paths
from stages.runner import run_stage

log = logging.getLogger("stages.gallery")
# it asks each method's class whether its maps are signed: every method module is loaded
RUNS_MODULES = ("pipeline/explain/methods",)
GALLERY = Path("reports/figures/gallery")
GALLERY_JSON = GALLERY / "gallery.json"
LIME = "lime"


def signed(method: str, params: Params) -> bool:
    """Whether `method`'s maps are signed in this configuration (saliency's depend on
    its `absolute` param)."""
    return method_class(method).is_signed(getattr(params.explain, method))


def load_gallery(params: Params) -> Gallery:
    """Every stored array the gallery draws, read (and checked) before any drawing."""
    splits = Splits.load(paths.DATASET)
    selection = Selection.load(paths.SELECTION)
    images = splits.x_test[selection.indices]
    methods = params.explain.methods
    stored = {m: StoredAttributions.load(paths.attribution_file(m)) for m in methods}
    skipped: dict[str, str] = {}
    epochs = read_part("across_epochs", "maps", skipped)
    decoded = read_part("cladec_decodings", "decoded", skipped)
    walks = read_part("vae_walks", "walks", skipped)
    return Gallery(
        images,
        selection,
        [MethodMaps.from_stored(stored[m], signed(m, params)) for m in methods],
        lime=LimePros.from_stored(stored[LIME], params.explain.lime.features)
        if LIME in stored
        else None,
        epochs=None
        if epochs is None
        else EpochMaps.from_stored(epochs, images, signed(str(epochs["method"]), params)),
        decodings=None if decoded is None else Decodings.from_stored(decoded, images),
        walks=None if walks is None else Walks.from_stored(walks, splits.y_test),
        skipped=skipped,
    )


def read_part(part: str, stem: str, skipped: dict[str, str]) -> dict[str, np.ndarray] | None:
    """An inside part's stored arrays (explanations/<part>/<stem>.npz), or None with its
    reason put in `skipped` when the part was skipped (its rows are then left out)."""
    stored = read_stored(paths.part_dir(part), part)
    if isinstance(stored, str):
        skipped[part] = stored
        return None
    if stem not in stored:
        raise PipelineError(f"{paths.part_dir(part) / stem}.npz not found: run `dvc repro {part}`")
    return stored[stem]


def save_exact(fig: Figure, path: Path) -> Path:
    """A gallery figure as a PNG at its own size, atomically. Not `save_figure`: its
    tight bounding box would leave out the pixel-placed mosaic (and draw it twice)."""
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=DPI, format="png")
    plt.close(fig)
    return path


def main() -> None:
    params = load_params()
    gallery = load_gallery(params)
    count = len(gallery.selection)
    with stage_run("gallery", params.tracking.experiment, params.data.dataset, {}) as run:
        entries = []
        for r in progress(range(count), "gallery", total=count, unit="image"):
            fig, rows = gallery.figure(r)
            path = save_exact(fig, GALLERY / gallery.file_name(r))
            entries.append(gallery.entry(r, rows))
            run.log_artifact(path, "figures/gallery")
        kept = {entry["file"] for entry in entries}
        for old in GALLERY.glob("*.png"):  # a hand run over an older, larger selection
            if old.name not in kept:
                old.unlink()
        write_json(GALLERY_JSON, {"title": TITLE, "how_to_read": HOW_TO_READ, "images": entries})
        run.log_artifact(GALLERY_JSON, "figures/gallery")
        run.log_metrics({"images": count})
    log.info("%d figures and %s", count, GALLERY_JSON)


if __name__ == "__main__":
    run_stage("gallery", main)
