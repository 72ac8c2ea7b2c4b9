"""A small folder of RGB photographs to run the pipeline on at 224 px: seeded random crops
(and mirror flips) of the colour photographs scikit-image ships, one sub-folder per
photograph, as JPEG. `--flat` writes them all into one folder with no class sub-folders
(an unlabelled folder: the predictions are then the targets explained).

    python benchmarks/photo_folder.py /tmp/photos              # 4 x 40 crops, 224 px

The README's natural-images timings were measured on this folder (README: Models you
already have)."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")


def random_crop(photo: np.ndarray, rng: np.random.Generator, size: int) -> Image.Image:
    """A square crop of 50-100% of the photo's short side at a random place, mirrored
    half of the time, resized to `size`: a different view of the same scene each time."""
    short = min(photo.shape[:2])
    side = int(rng.integers(short // 2, short + 1))
    top, left = rng.integers(0, np.array(photo.shape[:2]) - side + 1)
    crop = photo[top : top + side, left : left + side]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    return Image.fromarray(np.ascontiguousarray(crop)).resize((size, size), Image.BILINEAR)


def write_crops(out: Path, per_class: int, size: int, seed: int, flat: bool = False) -> int:
    """Write `per_class` crops of each photo (a sub-folder each unless `flat`); the count."""
    rng = np.random.default_rng(seed)
    for name in PHOTOS:
        photo = getattr(data, name)()
        folder = out if flat else out / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            random_crop(photo, rng, size).save(folder / f"{name}_{i:03d}.jpg", quality=92)
    return per_class * len(PHOTOS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="the folder to create")
    parser.add_argument("--per-class", type=int, default=40)
    parser.add_argument("--size", type=int, default=224, help="side of the saved images")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--flat", action="store_true", help="no class sub-folders")
    args = parser.parse_args()
    count = write_crops(args.out, args.per_class, args.size, args.seed, args.flat)
    kind = "one flat folder" if args.flat else f"{len(PHOTOS)} class folders"
    print(f"{count} images in {kind} under {args.out}")


if __name__ == "__main__":
    main()
