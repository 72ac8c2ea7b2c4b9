"""Parts of the pipeline that do not apply to a model or would not scale to its images
(gradient ascent on hundreds of 224 px images, the epochs of a model explained as it is):
the part raises `Skipped` with a one-line reason before any heavy work, its stage writes
that reason where its outputs would be (so DVC still finds every declared output), and the
figures and the report show the reason instead of a missing figure."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipeline.errors import PipelineError
from pipeline.io import read_npz, write_json

MARKER = "skipped.json"  # in a part's output folder, in place of its arrays or figures
# gradient ascent: images x steps x pixels the part is sized for. At the default 64 steps
# on the conv layer the MNIST run (small_cnn, 28 px: 84 images) needs 4.2e6 and
# resnet18_small at 32 px (532) 3.5e7, resnet18 at 224 px (520) 1.7e9 and resnet50 with
# ImageNet's classes (4,048) 1.3e10: the line sits between the small and the large images
ASCENT_PIXEL_STEPS = 1e8


class Skipped(Exception):
    """A part that does not apply or would not scale here; the message says why."""


def write_marker(folder: Path, reason: str) -> None:
    """The reason, in place of the part's outputs (atomically, as every output)."""
    write_json(folder / MARKER, {"skipped": reason})


def read_marker(folder: Path) -> str | None:
    """The reason a part was skipped, or None when it ran (or its marker is unreadable)."""
    path = folder / MARKER
    if not path.is_file():
        return None
    try:
        return str(json.loads(path.read_text())["skipped"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def read_stored(folder: Path, stage: str) -> dict[str, dict[str, Any]] | str:
    """{file stem: {key: array}} of every .npz in a part's output folder, or the reason
    the part gave for skipping (its marker); a folder with neither is one line naming
    the stage to run (a cut-short file: one line naming it)."""
    reason = read_marker(folder)
    if reason is not None:
        return reason
    files = sorted(folder.glob("*.npz")) if folder.is_dir() else []
    if not files:
        raise PipelineError(f"{folder}/ holds no arrays: run `dvc repro {stage}` first")
    return {path.stem: read_npz(path, stage=stage) for path in files}


def check_ascent_cost(images: int, steps: int, height: int, width: int) -> None:
    """Raise Skipped when gradient ascent on `images` images of height x width pixels for
    `steps` steps is beyond ASCENT_PIXEL_STEPS."""
    cost = images * steps * height * width
    if cost > ASCENT_PIXEL_STEPS:
        raise Skipped(
            f"gradient ascent on {images} images of {height}x{width} px for {steps} steps "
            f"({cost:.1e} pixel-steps) is beyond the {ASCENT_PIXEL_STEPS:.0e} this part is "
            "sized for (an hour or more on a CPU); pick a layer with fewer filters "
            "(inside.activation_max.layer) or fewer iterations to run it"
        )


# The decoders (ClaDec, variational ClaDec, RefAE), measured on this project's 2-core CPU:
# resnet18 on 128 training photos of 224 px, 9.5 s an epoch per decoder (README, "Natural
# images end to end"); MNIST (28 px) and CIFAR (32 px) are within the default max_side 64
DECODER_EPOCH_SECONDS = 9.5
DECODER_MEASURED_ON = "128 photos of 224 px"


def check_decoder_size(height: int, width: int, max_side: int | None, max_epochs: int) -> None:
    """Raise Skipped, before any training, when the images' larger side exceeds
    `cladec.max_side` (None: no limit); the reason names the size, the measured cost of
    one decoder up to `max_epochs` epochs, and the key to set."""
    side = max(height, width)
    if max_side is None or side <= max_side:
        return
    minutes = DECODER_EPOCH_SECONDS * max_epochs / 60
    raise Skipped(
        f"images of {height}x{width} px are larger than cladec.max_side ({max_side} px): a "
        f"decoder costs {DECODER_EPOCH_SECONDS:g} s an epoch on {DECODER_MEASURED_ON} on a "
        f"2-core CPU, up to {max_epochs} epochs (cladec.max_epochs), so up to "
        f"{minutes:.0f} min for each decoder stage; set cladec.max_side: null to train them "
        "anyway (e.g. on a GPU through trainer.accelerator)"
    )


def stored_reason(stored: Mapping[str, Any]) -> str | None:
    """The reason in a skipped stage's stored output (its metrics JSON, samples .npz or
    model.pt payload: a `skipped` entry), or None when the stage ran."""
    reason = stored.get("skipped") if isinstance(stored, Mapping) else None
    return None if reason is None else str(reason)


def skipped_together(reasons: Mapping[str, str]) -> str:
    """{name: reason} as one line, the names that share a reason listed before it."""
    names: dict[str, list[str]] = {}
    for name, reason in reasons.items():
        names.setdefault(reason, []).append(name)
    return "; ".join(f"{', '.join(group)}: {reason}" for reason, group in names.items())
