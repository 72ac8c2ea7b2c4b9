"""Dataset loaders read files the tests write themselves (no network), and split
deterministically."""

from __future__ import annotations

import gzip
import io
import pickle
import pickletools
import struct
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
from PIL import Image

from pipeline import data as data_module
from pipeline.data import (
    FASHION_CLASSES,
    IDX_FILES,
    ImageSet,
    Splits,
    load_dataset,
    load_mnist_embedded,
    read_idx,
    read_image,
    split_dataset,
)
from pipeline.errors import DataError
from pipeline.params import DataParams


def write_idx(path: Path, array: np.ndarray, compress: bool = False) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    if compress:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(payload))
    else:
        path.write_bytes(payload)


def write_mnist_like(
    folder: Path, n_train: int = 60, n_test: int = 20, compress: bool = False, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n_train + n_test, 28, 28), dtype=np.uint8)
    labels = (np.arange(n_train + n_test) % 10).astype(np.uint8)
    for part, sl in (("train", slice(0, n_train)), ("t10k", slice(n_train, None))):
        write_idx(folder / f"{part}-images-idx3-ubyte", images[sl], compress)
        write_idx(folder / f"{part}-labels-idx1-ubyte", labels[sl], compress)
    return images, labels


def write_cifar(folder: Path, per_batch: int = 10, seed: int = 0) -> np.ndarray:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    names = [
        b"airplane",
        b"automobile",
        b"bird",
        b"cat",
        b"deer",
        b"dog",
        b"frog",
        b"horse",
        b"ship",
        b"truck",
    ]
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": names}, f)
    everything = []
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)
        everything.append(data)
        with open(folder / name, "wb") as f:
            pickle.dump({b"data": data, b"labels": list(np.arange(per_batch) % 10)}, f)
    return np.concatenate(everything)


def test_embedded_mnist_is_the_real_5000_digits():
    data = load_mnist_embedded()
    assert data.images.shape == (5000, 1, 28, 28) and data.images.dtype == np.uint8
    assert np.bincount(data.labels).tolist() == [500] * 10
    assert data.images.max() == 255 and data.images.min() == 0
    # real digits: a blank border, ink in the middle
    assert data.images[:, :, :2, :].mean() < 1 and data.images[:, :, 10:18, 10:18].mean() > 60


@pytest.mark.parametrize("compress", [False, True])
def test_idx_loader_reads_mnist_files_as_written(tmp_path, compress):
    images, labels = write_mnist_like(tmp_path / "MNIST" / "raw", compress=compress)
    data = load_dataset(DataParams(dataset="mnist", root=str(tmp_path), download=False))
    assert data.images.shape == (80, 1, 28, 28)
    np.testing.assert_array_equal(data.images[:, 0], images)
    np.testing.assert_array_equal(data.labels, labels)
    assert data.class_names == tuple("0123456789")


def test_fashion_mnist_uses_its_own_folder_and_class_names(tmp_path):
    write_mnist_like(tmp_path / "FashionMNIST" / "raw")
    data = load_dataset(DataParams(dataset="fashion_mnist", root=str(tmp_path), download=False))
    assert data.class_names == FASHION_CLASSES and len(data.labels) == 80


def test_truncated_idx_file_is_reported_as_corrupt(tmp_path):
    folder = tmp_path / "MNIST" / "raw"
    write_mnist_like(folder)
    path = folder / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataError, match="truncated or corrupt"):
        load_dataset(DataParams(dataset="mnist", root=str(tmp_path), download=False))


def test_non_idx_file_is_rejected(tmp_path):
    bad = tmp_path / "x"
    bad.write_bytes(b"GIF89a....")
    with pytest.raises(DataError, match="magic"):
        read_idx(bad, 3)
    good = tmp_path / "labels"
    write_idx(good, np.arange(5, dtype=np.uint8))
    with pytest.raises(DataError, match="1 dimensions, expected 3"):
        read_idx(good, 3)


def test_missing_files_without_download_say_where_to_put_them(tmp_path):
    with pytest.raises(DataError) as info:
        load_dataset(DataParams(dataset="mnist", root=str(tmp_path), download=False))
    message = str(info.value)
    assert str(tmp_path / "MNIST" / "raw") in message
    assert all(name in message for name in IDX_FILES)
    assert "mnist_embedded" in message


def test_failed_download_explains_the_manual_route(tmp_path, monkeypatch):
    import torchvision.datasets as tvd

    class Offline:
        def __init__(self, **kwargs):
            raise OSError("network is unreachable")

    monkeypatch.setattr(tvd, "CIFAR10", Offline)
    with pytest.raises(DataError) as info:
        load_dataset(DataParams(dataset="cifar10", root=str(tmp_path), download=True))
    message = str(info.value)
    assert "network is unreachable" in message
    assert str(tmp_path / data_module.CIFAR_DIR) in message and "by hand" in message


def test_cifar_batches_are_read_channel_first(tmp_path):
    raw = write_cifar(tmp_path / data_module.CIFAR_DIR)
    data = load_dataset(DataParams(dataset="cifar10", root=str(tmp_path), download=False))
    assert data.images.shape == (60, 3, 32, 32)
    assert data.class_names[:2] == ("airplane", "automobile")
    # pixel (c, y, x) of image 0 is raw[0, c*1024 + y*32 + x]
    assert data.images[0, 2, 5, 7] == raw[0, 2 * 1024 + 5 * 32 + 7]


class Python2Pickler(pickle._Pickler):
    """Pickles as Python 2's cPickle wrote the official CIFAR-10 batches (protocol 2):
    strings as 8-bit STRING opcodes (bytes under encoding='bytes', no `_codecs.encode`)
    and numpy's array rebuilder under its numpy 1 name."""

    dispatch: ClassVar[dict] = dict(pickle._Pickler.dispatch)  # type: ignore[attr-defined]

    def save_py2_str(self, obj: bytes | str) -> None:
        data = obj if isinstance(obj, bytes) else obj.encode("latin1")
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str
    dispatch[str] = save_py2_str


def python2_pickle(obj: object) -> bytes:
    buffer = io.BytesIO()
    Python2Pickler(buffer, protocol=2).dump(obj)
    return buffer.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")


def write_official_cifar(folder: Path, per_batch: int = 10) -> np.ndarray:
    """Batches laid out and pickled like the files in cifar-10-python.tar.gz."""
    folder.mkdir(parents=True, exist_ok=True)
    names = ["airplane", "automobile", "bird", "cat", "deer"]
    names += ["dog", "frog", "horse", "ship", "truck"]
    meta = {"num_cases_per_batch": per_batch, "label_names": names, "num_vis": 3072}
    (folder / "batches.meta").write_bytes(python2_pickle(meta))
    rng = np.random.default_rng(1)
    everything = []
    for i, name in enumerate([f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]):
        data = rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)
        everything.append(data)
        batch = {
            "batch_label": f"training batch {i + 1} of 5",
            "labels": [int(k) % 10 for k in range(i, i + per_batch)],
            "data": data,
            "filenames": [f"img_{i}_{k}.png" for k in range(per_batch)],
        }
        (folder / name).write_bytes(python2_pickle(batch))
    return np.concatenate(everything)


def test_official_cifar_batches_are_read_without_unpickling_anything_else(tmp_path):
    folder = tmp_path / data_module.CIFAR_DIR
    raw = write_official_cifar(folder)
    batch = (folder / "data_batch_1").read_bytes()
    assert batch.startswith(b"\x80\x02}")  # protocol 2, a dict: like the real files
    globals_named = {
        arg for op, arg, _ in pickletools.genops(batch) if op.name in ("GLOBAL", "STACK_GLOBAL")
    }
    assert globals_named == {"numpy.core.multiarray _reconstruct", "numpy ndarray", "numpy dtype"}
    data = load_dataset(DataParams(dataset="cifar10", root=str(tmp_path), download=False))
    assert data.images.shape == (60, 3, 32, 32) and data.class_names[-1] == "truck"
    np.testing.assert_array_equal(data.images.reshape(60, -1), raw)
    assert data.labels[:12].tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 1, 2]


def test_corrupt_cifar_batch(tmp_path):
    folder = tmp_path / data_module.CIFAR_DIR
    write_cifar(folder)
    (folder / "data_batch_3").write_bytes(b"\x80\x04garbage")
    with pytest.raises(DataError, match="data_batch_3"):
        load_dataset(DataParams(dataset="cifar10", root=str(tmp_path), download=False))


def write_image_folder(root: Path, sizes=((20, 30), (40, 40))) -> None:
    colours = {"cats": (255, 0, 0), "dogs": (0, 0, 255)}
    for name, colour in colours.items():
        (root / name).mkdir(parents=True)
        for i, size in enumerate(sizes):
            Image.new("RGB", size, colour).save(root / name / f"{i}.png")


def test_image_folder_resizes_and_labels_by_subfolder(tmp_path):
    write_image_folder(tmp_path / "imgs")
    params = DataParams(
        dataset="imagefolder", image_folder=str(tmp_path / "imgs"), image_size=16, channels=3
    )
    data = load_dataset(params)
    assert data.images.shape == (4, 3, 16, 16)
    assert data.class_names == ("cats", "dogs")
    cats = data.images[data.labels == 0]
    assert (cats[:, 0] == 255).all() and (cats[:, 2] == 0).all()
    grey = load_dataset(params.model_copy(update={"channels": 1}))
    assert grey.images.shape == (4, 1, 16, 16)


def test_image_folder_errors(tmp_path):
    write_image_folder(tmp_path / "imgs")
    (tmp_path / "imgs" / "dogs" / "broken.jpg").write_bytes(b"not a jpeg")
    params = DataParams(dataset="imagefolder", image_folder=str(tmp_path / "imgs"))
    with pytest.raises(DataError, match=r"broken\.jpg: not a readable image"):
        load_dataset(params)
    with pytest.raises(DataError, match="not a directory"):
        load_dataset(params.model_copy(update={"image_folder": str(tmp_path / "nope")}))
    (tmp_path / "one" / "only").mkdir(parents=True)
    with pytest.raises(DataError, match="at least two class"):
        load_dataset(params.model_copy(update={"image_folder": str(tmp_path / "one")}))


def saved(img: Image.Image, path: Path) -> Path:
    img.save(path)
    return path


def grey(values, dtype) -> np.ndarray:
    return np.array(values, dtype=dtype).reshape(2, 2)


@pytest.mark.parametrize(
    ("make", "suffix", "expected"),
    [
        # 1-bit: 0/1 -> 0/255
        (lambda: Image.fromarray(grey([0, 1, 1, 0], bool)), ".png", [0, 255, 255, 0]),
        (lambda: Image.fromarray(grey([0, 7, 128, 255], np.uint8)), ".png", [0, 7, 128, 255]),
        # 16-bit by 0..65535: v/257 rounded (the inverse of 8 -> 16 bit), not clipped white
        (
            lambda: Image.fromarray(grey([0, 257, 32896, 65535], np.uint16)),
            ".png",
            [0, 1, 128, 255],
        ),
        (
            lambda: Image.frombytes("I;16B", (2, 2), grey([0, 300, 40000, 65535], ">u2").tobytes()),
            ".tif",
            [0, 1, 156, 255],
        ),
        # 32-bit integers: 0..255 as they are, 0..65535 as 16-bit, else min..max
        (lambda: Image.fromarray(grey([0, 9, 200, 255], np.int32)), ".tif", [0, 9, 200, 255]),
        (lambda: Image.fromarray(grey([0, 257, 1000, 65535], np.int32)), ".tif", [0, 1, 4, 255]),
        (
            lambda: Image.fromarray(grey([-1000, 0, 1000, 600], np.int32)),
            ".tif",
            [0, 128, 255, 204],
        ),
        # floats: 0..1 times 255, 0..255 as they are, else min..max; NaN as 0
        (
            lambda: Image.fromarray(grey([0, 0.5, 1, np.nan], np.float32)),
            ".tif",
            [0, 128, 255, 0],
        ),
        (lambda: Image.fromarray(grey([0, 2.4, 100, 255], np.float32)), ".tif", [0, 2, 100, 255]),
        (lambda: Image.fromarray(grey([-1, 0, 1, 3], np.float32)), ".tif", [0, 64, 128, 255]),
        # alpha multiplied in (composited onto black)
        (
            lambda: Image.fromarray(
                np.array([[200, 255], [200, 0], [200, 128], [10, 255]], np.uint8).reshape(2, 2, 2)
            ),
            ".png",
            [200, 0, 100, 10],
        ),
    ],
)
def test_every_grey_mode_becomes_the_right_8_bit_values(tmp_path, make, suffix, expected):
    img = make()
    path = saved(img, tmp_path / f"img{suffix}")
    with Image.open(path) as check:
        assert check.mode == img.mode  # the file keeps the mode under test
    grey_image = read_image(path, image_size=2, channels=1)
    assert grey_image.shape == (1, 2, 2) and grey_image.dtype == np.uint8
    assert grey_image.ravel().tolist() == expected
    colour = read_image(path, image_size=2, channels=3)
    assert (colour == grey_image).all()  # grey repeated into three channels


def test_colour_modes_become_the_right_8_bit_values(tmp_path):
    red, green = (255, 0, 0), (0, 255, 0)
    rgba = Image.new("RGBA", (2, 1))
    rgba.putdata([(255, 0, 0, 255), (0, 0, 255, 51)])
    assert read_image(saved(rgba, tmp_path / "a.png"), 2, 3)[:, 0, :].T.tolist() == [
        [255, 0, 0],
        [0, 0, 51],  # blue at 20 % opacity over black
    ]
    palette = Image.new("P", (2, 1))
    palette.putpalette([*red, *green] + [0] * 762)
    palette.putdata([0, 1])
    assert read_image(saved(palette, tmp_path / "p.png"), 2, 3)[:, 0, :].T.tolist() == [
        list(red),
        list(green),
    ]
    palette.info["transparency"] = 0  # index 0, red, fully transparent
    assert read_image(saved(palette, tmp_path / "pt.png"), 2, 3)[:, 0, :].T.tolist() == [
        [0, 0, 0],
        list(green),
    ]
    cmyk = Image.new("CMYK", (2, 1))
    cmyk.putdata([(255, 0, 0, 0), (0, 0, 0, 0)])  # cyan, white
    assert read_image(saved(cmyk, tmp_path / "c.tif"), 2, 3)[:, 0, :].T.tolist() == [
        [0, 255, 255],
        [255, 255, 255],
    ]
    rgb = Image.new("RGB", (2, 1))
    rgb.putdata([red, (10, 20, 30)])
    path = saved(rgb, tmp_path / "rgb.png")
    assert read_image(path, 2, 3)[:, 0, :].T.tolist() == [list(red), [10, 20, 30]]
    assert read_image(path, 2, 1)[0, 0].tolist() == [76, 18]  # ITU-R 601-2 luma


def _dataset(n: int = 240, classes: int = 3) -> ImageSet:
    images = np.arange(n, dtype=np.uint8).reshape(n, 1, 1, 1).repeat(8, 2).repeat(8, 3)
    return ImageSet(images, np.arange(n) % classes, tuple("abc"[:classes]))


def test_split_is_stratified_disjoint_and_deterministic():
    params = DataParams()
    a = split_dataset(_dataset(), params, seed=7, dataset_name="t")
    b = split_dataset(_dataset(), params, seed=7, dataset_name="t")
    c = split_dataset(_dataset(), params, seed=8, dataset_name="t")
    assert (len(a.y_train), len(a.y_val), len(a.y_test)) == (192, 24, 24)
    for part in ("train", "val", "test"):
        np.testing.assert_array_equal(getattr(a, f"x_{part}"), getattr(b, f"x_{part}"))
        assert np.ptp(np.bincount(getattr(a, f"y_{part}"))) == 0  # equal per class
    ids = [set(getattr(a, f"x_{p}")[:, 0, 0, 0].tolist()) for p in ("train", "val", "test")]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    assert not np.array_equal(a.x_test, c.x_test)


def test_max_samples_subsamples_stratified():
    split = split_dataset(_dataset(), DataParams(max_samples=120), seed=0, dataset_name="t")
    total = len(split.y_train) + len(split.y_val) + len(split.y_test)
    assert total == 120 and np.ptp(np.bincount(split.y_train)) <= 1


def test_too_few_images_to_split():
    with pytest.raises(DataError, match="cannot split"):
        split_dataset(_dataset(n=6), DataParams(), seed=0, dataset_name="t")


def test_splits_round_trip_and_corruption(tmp_path, tiny_splits):
    path = tmp_path / "d.npz"
    tiny_splits.save(path)
    loaded = Splits.load(path)
    assert loaded.class_names == tiny_splits.class_names and loaded.dataset == "synthetic"
    np.testing.assert_array_equal(loaded.x_test, tiny_splits.x_test)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(DataError, match="corrupt"):
        Splits.load(path)
    with pytest.raises(DataError, match="dvc repro data"):
        Splits.load(tmp_path / "missing.npz")


def test_summary_counts_the_splits_and_the_training_classes(tiny_splits):
    summary = tiny_splits.summary()
    assert summary == {
        "classes": 3,
        "image_shape": [1, 16, 16],
        "train": 150,
        "val": 45,
        "test": 45,
        "train_per_class": {"top": 50, "middle": 50, "bottom": 50},
    }
