"""A small real image folder to try `data.dataset=imagefolder` on: seeded random crops of
the texture photographs scikit-image ships (brick, grass, gravel; grey, 512 x 512), one
sub-folder per texture, as PNG.

    python benchmarks/texture_folder.py /tmp/textures            # 3 x 40 crops of 128 px

The README's own-images example was checked on this folder (README: Datasets)."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data

TEXTURES = ("brick", "grass", "gravel")


def write_crops(out: Path, per_class: int, size: int, seed: int) -> int:
    """Write `per_class` random `size` x `size` crops of each texture; return the count."""
    rng = np.random.default_rng(seed)
    for name in TEXTURES:
        photo = getattr(data, name)()
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            top, left = rng.integers(0, np.array(photo.shape[:2]) - size + 1)
            crop = photo[top : top + size, left : left + size]
            Image.fromarray(crop).save(folder / f"{i:03d}.png")
    return per_class * len(TEXTURES)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="the folder to create (one sub-folder per class)")
    parser.add_argument("--per-class", type=int, default=40)
    parser.add_argument("--size", type=int, default=128, help="crop side in pixels (<= 512)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    count = write_crops(args.out, args.per_class, args.size, args.seed)
    print(f"{count} images in {len(TEXTURES)} class folders under {args.out}")


if __name__ == "__main__":
    main()
