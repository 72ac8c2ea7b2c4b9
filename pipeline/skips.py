"""Parts of the pipeline that do not apply to a model or would not scale to its images
(gradient ascent on hundreds of 224 px images, the epochs of a model explained as it is):
the part raises `Skipped` with a one-line reason before any heavy work, its stage writes
that reason where its outputs would be (so DVC still finds every declared output), and the
figures and the report show the reason instead of a missing figure."""

from __future__ import annotations

import json
from pathlib import Path

from pipeline.io import write_json

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
