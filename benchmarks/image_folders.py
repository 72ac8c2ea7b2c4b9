"""Small real image folders to run the pipeline on (`data.dataset=imagefolder`), made
from the photographs scikit-image ships, seeded, one sub-folder per source image:

    python benchmarks/image_folders.py textures /tmp/textures   # 3 x 40 grey 128 px PNG
    python benchmarks/image_folders.py photos /tmp/photos       # 4 x 40 RGB 224 px JPEG
    python benchmarks/image_folders.py photos /tmp/flat --flat  # no sub-folders: unlabelled

`textures`: random crops of brick, grass and gravel (grey, 512 x 512), the folder the
README's own-images example was checked on (README: Datasets). `photos`: crops of 50-100%
of the short side of astronaut, coffee, chelsea and rocket, mirrored half of the time and
resized, the folder of the README's natural-images timings (README: Models you already
have)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data


def texture_crop(image: np.ndarray, rng: np.random.Generator, size: int) -> Image.Image:
    """A `size` x `size` crop at a random place (a texture looks alike everywhere)."""
    top, left = rng.integers(0, np.array(image.shape[:2]) - size + 1)
    return Image.fromarray(image[top : top + size, left : left + size])


def photo_crop(image: np.ndarray, rng: np.random.Generator, size: int) -> Image.Image:
    """A square crop of 50-100% of the photo's short side at a random place, mirrored
    half of the time, resized to `size`: a different view of the same scene each time."""
    short = min(image.shape[:2])
    side = int(rng.integers(short // 2, short + 1))
    top, left = rng.integers(0, np.array(image.shape[:2]) - side + 1)
    crop = image[top : top + side, left : left + side]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    return Image.fromarray(np.ascontiguousarray(crop)).resize((size, size), Image.BILINEAR)


@dataclass(frozen=True)
class Kind:
    """A folder kind: its source images, how one is cropped, the file names and size."""

    sources: tuple[str, ...]
    crop: Callable[[np.ndarray, np.random.Generator, int], Image.Image]
    file_name: Callable[[str, int], str]
    size: int


KINDS = {
    "textures": Kind(("brick", "grass", "gravel"), texture_crop, lambda _, i: f"{i:03d}.png", 128),
    "photos": Kind(
        ("astronaut", "coffee", "chelsea", "rocket"),
        photo_crop,
        lambda name, i: f"{name}_{i:03d}.jpg",
        224,
    ),
}


def write_folder(
    kind: Kind, out: Path, per_class: int, size: int, seed: int, flat: bool = False
) -> int:
    """Write `per_class` crops of each source image (a sub-folder each unless `flat`);
    return the count."""
    rng = np.random.default_rng(seed)
    for name in kind.sources:
        image = getattr(data, name)()
        folder = out if flat else out / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            crop = kind.crop(image, rng, size)
            path = folder / kind.file_name(name, i)
            crop.save(path, quality=92) if path.suffix == ".jpg" else crop.save(path)
    return per_class * len(kind.sources)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=sorted(KINDS))
    parser.add_argument("out", type=Path, help="the folder to create")
    parser.add_argument("--per-class", type=int, default=40)
    parser.add_argument("--size", type=int, help="side of the saved images (default per kind)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--flat", action="store_true", help="no class sub-folders")
    args = parser.parse_args()
    kind = KINDS[args.kind]
    count = write_folder(
        kind, args.out, args.per_class, args.size or kind.size, args.seed, args.flat
    )
    layout = "one flat folder" if args.flat else f"{len(kind.sources)} class folders"
    print(f"{count} images in {layout} under {args.out}")


if __name__ == "__main__":
    main()
