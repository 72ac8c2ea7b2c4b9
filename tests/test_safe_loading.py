"""Files the pipeline reads back never run code and never end in a raw traceback: a planted
pickle is refused, a decompression bomb is stopped before decoding, and a cut-short or
overwritten array or model file is one line naming it and the stage that rewrites it."""

from __future__ import annotations

import os
import pickle
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_data import write_cifar

from pipeline import data as data_module
from pipeline.data import Splits, load_cifar_batches, load_dataset, load_image_folder
from pipeline.errors import DataError, PipelineError
from pipeline.explain.stored import StoredAttributions
from pipeline.io import read_npz, write_npz, write_torch, writer_stage
from pipeline.models.archs import build_classifier
from pipeline.models.export import load_classifier, save_classifier
from pipeline.params import DataParams
from pipeline.selection import Selection, select_instances

REPO = Path(__file__).resolve().parents[1]
SHAPE = (1, 16, 16)


class MakesMarker:
    """Unpickling this creates `marker`: proof that the file's code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def one_line_error(info: pytest.ExceptionInfo) -> str:
    message = str(info.value)
    assert "\n" not in message and "Traceback" not in message, message
    return message


def cut_in_half(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


# ------------------------------------------------------------------------ CIFAR batches


def test_cifar_batch_with_code_is_refused_and_never_run(tmp_path):
    folder = tmp_path / data_module.CIFAR_DIR
    write_cifar(folder)
    marker = tmp_path / "ran"
    for protocol in (2, 5):
        with open(folder / "data_batch_2", "wb") as f:
            pickle.dump({b"data": MakesMarker(marker), b"labels": []}, f, protocol=protocol)
        with pytest.raises(DataError) as info:
            load_cifar_batches(folder)
        message = one_line_error(info)
        assert str(folder / "data_batch_2") in message and "refused" in message
        assert "io.open" in message or "builtins.open" in message
        assert not marker.exists()
    # os.system, the attack as reported
    with open(folder / "batches.meta", "wb") as f:
        f.write(b"cos\nsystem\n(S'touch " + str(marker).encode() + b"'\ntR.")
    with pytest.raises(DataError, match=r"batches\.meta.*refused to call os\.system"):
        load_cifar_batches(folder)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (7, "holds a int, not a dict"),
        ([1, 2, 3], "holds a list, not a dict"),
        ({b"labels": [0] * 10}, "no 'data' and 'labels'"),
        ({b"data": np.zeros((10, 3072), np.float32), b"labels": [0] * 10}, "float32"),
        ({b"data": [[0] * 3072] * 10, b"labels": [0] * 10}, "'data' is list"),
        ({b"data": np.zeros((10, 1024), np.uint8), b"labels": [0] * 10}, r"\(10, 1024\)"),
        ({b"data": np.zeros((10, 3072), np.uint8), b"labels": [0] * 9}, "10 images but"),
        ({b"data": np.zeros((10, 3072), np.uint8), b"labels": [b"cat"] * 10}, "10 images but"),
        ({b"data": np.zeros((10, 3072), np.uint8), b"labels": [12] * 10}, "outside 0..9"),
        ({b"data": np.zeros((10, 3072), np.uint8), b"labels": 5}, "'labels' is a int"),
    ],
)
def test_cifar_batch_with_wrong_content_is_one_line(tmp_path, content, problem):
    folder = tmp_path / data_module.CIFAR_DIR
    write_cifar(folder)
    with open(folder / "test_batch", "wb") as f:
        pickle.dump(content, f, protocol=2)
    with pytest.raises(DataError, match=problem) as info:
        load_dataset(DataParams(dataset="cifar10", root=str(tmp_path), download=False))
    message = one_line_error(info)
    assert message.startswith(f"{folder / 'test_batch'}: not a CIFAR-10 python batch")
    assert "cifar-10-python.tar.gz" in message


@pytest.mark.parametrize(
    "meta", [3, {b"label_names": "cat"}, {b"names": []}, {b"label_names": [1, 2]}]
)
def test_cifar_meta_with_wrong_content_is_one_line(tmp_path, meta):
    folder = tmp_path / data_module.CIFAR_DIR
    write_cifar(folder)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump(meta, f, protocol=2)
    with pytest.raises(DataError, match=r"batches\.meta: not a CIFAR-10 python batch") as info:
        load_cifar_batches(folder)
    one_line_error(info)


def test_truncated_cifar_batch_is_one_line(tmp_path):
    folder = tmp_path / data_module.CIFAR_DIR
    write_cifar(folder)
    cut_in_half(folder / "data_batch_5")
    with pytest.raises(DataError, match=r"data_batch_5: not a CIFAR-10 python batch") as info:
        load_cifar_batches(folder)
    one_line_error(info)


# ---------------------------------------------------------------------- image folders


def write_png_bomb(path: Path, side: int) -> None:
    """A valid 1-bit PNG of side×side pixels, all black: megabytes of pixels in a few
    kilobytes of file (a decompression bomb), written without allocating the image."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        body = kind + payload
        return struct.pack(">I", len(payload)) + body + struct.pack(">I", zlib.crc32(body))

    row = b"\x00" * (1 + (side + 7) // 8)  # filter byte + packed bits
    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


def image_folder(root: Path) -> Path:
    for name in ("cats", "dogs"):
        (root / name).mkdir(parents=True)
        Image.new("RGB", (8, 8), (200, 10, 10)).save(root / name / "ok.png")
    return root


def test_decompression_bomb_names_the_file_its_pixels_and_the_param(tmp_path):
    root = image_folder(tmp_path / "imgs")
    bomb = root / "dogs" / "bomb.png"
    write_png_bomb(bomb, 20_000)
    assert bomb.stat().st_size < 200_000
    params = DataParams(dataset="imagefolder", image_folder=str(root), image_size=8)
    with pytest.raises(DataError) as info:
        load_dataset(params)  # the default limit, Pillow's 89,478,485 pixels
    message = one_line_error(info)
    assert message.startswith(f"{bomb}: 400,000,000 pixels, over data.max_image_pixels=")
    assert "raise data.max_image_pixels in params.yaml" in message
    assert Image.MAX_IMAGE_PIXELS == data_module.DEFAULT_MAX_IMAGE_PIXELS  # restored


def test_pixel_limit_comes_from_the_param_and_pillow_warnings_are_errors(tmp_path):
    root = image_folder(tmp_path / "imgs")
    big = root / "cats" / "big.png"
    Image.new("L", (64, 64), 7).save(big)  # 4,096 pixels: over 3,000, under twice that
    with pytest.raises(
        DataError, match=r"big\.png: 4,096 pixels, over data.max_image_pixels=3,000"
    ):
        load_image_folder(root, 8, 1, max_pixels=3_000)
    data = load_image_folder(root, 8, 1, max_pixels=5_000)
    assert data.images.shape == (3, 1, 8, 8)


def test_the_data_stage_reads_the_limit_from_data_max_image_pixels(tmp_path):
    if "max_image_pixels" not in DataParams.model_fields:
        pytest.skip("data.max_image_pixels is not in DataParams yet")
    root = image_folder(tmp_path / "imgs")
    Image.new("L", (64, 64), 7).save(root / "cats" / "big.png")
    params = DataParams(dataset="imagefolder", image_folder=str(root), image_size=8)
    with pytest.raises(DataError, match=r"4,096 pixels, over data.max_image_pixels=4,000"):
        load_dataset(params.model_copy(update={"max_image_pixels": 4_000}))
    assert len(load_dataset(params.model_copy(update={"max_image_pixels": 4_096})).labels) == 3


def test_truncated_image_is_one_line(tmp_path):
    root = image_folder(tmp_path / "imgs")
    broken = root / "cats" / "cut.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), np.uint8)).save(broken)
    cut_in_half(broken)
    with pytest.raises(DataError, match=r"cut\.png: not a readable image") as info:
        load_image_folder(root, 8, 3)
    one_line_error(info)


# ------------------------------------------------------------------- stored arrays


def _selection() -> Selection:
    probabilities = np.eye(2, dtype=np.float32)[[0, 1, 1, 0]]
    return select_instances(
        probabilities, np.array([0, 1, 0, 0]), ("a", "b"), per_class=1, misclassified=1,
        pairs=1, seed=0,
    )  # fmt: skip


def test_truncated_selection(tmp_path):
    path = tmp_path / "explanations" / "selection.npz"
    _selection().save(path)
    assert len(Selection.load(path)) == 3
    cut_in_half(path)
    with pytest.raises(PipelineError) as info:
        Selection.load(path)
    assert one_line_error(info) == (
        f"{path} is truncated or corrupt (BadZipFile: File is not a zip file): "
        "rerun `dvc repro -f select`"
    )


def test_selection_without_an_array(tmp_path):
    path = tmp_path / "selection.npz"
    arrays = read_npz_of(_selection(), path)
    del arrays["pairs"]
    write_npz(path, **arrays)
    with pytest.raises(PipelineError, match=r"\(no array pairs\): rerun `dvc repro -f select`"):
        Selection.load(path)


def read_npz_of(selection: Selection, path: Path) -> dict[str, np.ndarray]:
    selection.save(path)
    return read_npz(path)


def test_truncated_attributions(tmp_path):
    path = tmp_path / "explanations" / "attributions" / "occlusion.npz"
    maps = np.random.default_rng(0).random((4, 1, 16, 16)).astype(np.float32)
    StoredAttributions("occlusion", maps, maps[:1], np.array([3]), {"x": maps}).save(path)
    assert StoredAttributions.load(path).extras["x"].shape == maps.shape
    cut_in_half(path)
    with pytest.raises(PipelineError) as info:
        StoredAttributions.load(path)
    message = one_line_error(info)
    assert message.startswith(f"{path} is truncated or corrupt (")
    assert message.endswith("rerun `dvc repro -f explain@occlusion`")


@pytest.mark.parametrize("offset", [60, 200, 5000])
def test_overwritten_bytes_inside_an_archive(tmp_path, offset):
    # the zip directory intact, a compressed array's bytes overwritten: depending on where
    # (with zlib 1.3: 60, 200, 5000), zlib fails, numpy cannot parse the array's header,
    # or the CRC differs
    path = tmp_path / "explanations" / "grand_tour" / "tour.npz"
    write_npz(path, points=np.random.default_rng(0).random((200, 50)))
    data = bytearray(path.read_bytes())
    data[offset : offset + 200] = b"\xff" * 200
    path.write_bytes(bytes(data))
    with pytest.raises(PipelineError) as info:
        read_npz(path)
    message = one_line_error(info)
    assert message.startswith(f"{path} is truncated or corrupt (")
    assert message.endswith("rerun `dvc repro -f grand_tour`")


def test_truncated_dataset(tmp_path, tiny_splits):
    path = tmp_path / "data" / "dataset.npz"
    tiny_splits.save(path)
    cut_in_half(path)
    with pytest.raises(DataError) as info:
        Splits.load(path)
    assert one_line_error(info).endswith("rerun `dvc repro -f data`")


def test_pickled_arrays_in_an_npz_are_refused(tmp_path):
    path = tmp_path / "explanations" / "ice" / "a.npz"
    write_npz(path, objects=np.array([{"a": 1}], dtype=object))
    with pytest.raises(PipelineError, match=r"allow_pickle=False.*rerun `dvc repro -f ice`"):
        read_npz(path)


@pytest.mark.parametrize(
    ("path", "stage"),
    [
        ("data/dataset.npz", "data"),
        ("models/classifier/model.pt", "classifier"),
        ("models/classifier/checkpoints/epoch-003.ckpt", "classifier"),
        ("models/classifier/epoch_predictions.npz", "classifier"),
        ("/abs/models/vae/model.pt", "vae"),
        ("models/refvae/model.pt", "refvae"),
        ("models/cladec/dense-0.5/model.pt", "cladec@dense-0.5"),
        ("models/vcladec/conv2/model.pt", "vcladec@conv2"),
        ("models/refae/dense/model.pt", "refae@dense"),
        ("explanations/selection.npz", "select"),
        ("explanations/attributions/grad_cam.npz", "explain@grad_cam"),
        ("explanations/generative/refvae.npz", "refvae"),
        ("explanations/generative/cladec_dense-0.5.npz", "cladec@dense-0.5"),
        ("explanations/generative/vcladec_dense.npz", "vcladec@dense"),
        ("explanations/generative/refae_conv2.npz", "refae@conv2"),
        ("explanations/grand_tour/tour.npz", "grand_tour"),
        ("somewhere/else.npz", None),
    ],
)
def test_the_stage_that_writes_a_file(path, stage):
    assert writer_stage(path) == stage


def test_inside_figures_stage_reports_a_truncated_part_in_one_line(tmp_path):
    (tmp_path / "params.yaml").write_text((REPO / "params.yaml").read_text())
    path = tmp_path / "explanations" / "grand_tour" / "tour.npz"
    write_npz(path, points=np.random.default_rng(0).random((100, 3)))
    cut_in_half(path)
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/m.db",
    }
    result = subprocess.run(
        [sys.executable, "-m", "stages.inside_figures", "--part", "grand_tour"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert [line for line in result.stderr.splitlines() if "error:" in line] == [
        "inside_figures: error: explanations/grand_tour/tour.npz is truncated or corrupt "
        "(BadZipFile: File is not a zip file): rerun `dvc repro -f grand_tour`"
    ]


# -------------------------------------------------------------------------- models


def _exported_classifier(path: Path) -> None:
    net = build_classifier("small_cnn", SHAPE, 3)
    hparams = {"arch": "small_cnn", "input_shape": SHAPE, "num_classes": 3}
    save_classifier(net, hparams, ["a", "b", "c"], path)


def _vae_payload(latent: int = 4) -> dict:
    from pipeline.models.generative_nets import ConvEncoder, GaussianHead, ImageDecoder

    encoder = ConvEncoder(SHAPE)
    parts = {
        "encoder": encoder,
        "head": GaussianHead(encoder.out_features, latent),
        "decoder": ImageDecoder((latent,), SHAPE),
    }
    state = {f"{n}.{k}": v for n, m in parts.items() for k, v in m.state_dict().items()}
    return {"config": {"latent_dim": latent}, "state_dict": state}


def test_truncated_classifier_export(tmp_path):
    path = tmp_path / "models" / "classifier" / "model.pt"
    _exported_classifier(path)
    assert load_classifier(path)[1] == ["a", "b", "c"]
    cut_in_half(path)
    with pytest.raises(PipelineError) as info:
        load_classifier(path)
    assert one_line_error(info) == (
        f"{path} is truncated or corrupt (RuntimeError: PytorchStreamReader failed reading "
        "zip archive: failed finding central directory): rerun `dvc repro -f classifier`"
    )


def test_classifier_export_without_its_entries(tmp_path):
    path = tmp_path / "model.pt"
    write_torch(path, {"state_dict": {}})
    with pytest.raises(PipelineError, match=r"KeyError: no entry 'input_shape'.*-f classifier"):
        load_classifier(path)


def test_truncated_models_for_the_explanation_stages(tmp_path):
    from pipeline.restore import (
        ClassifierSpec,
        classifier_spec,
        load_decoder,
        load_epoch_classifier,
        load_refae,
        load_vae,
    )

    vae = tmp_path / "vae.pt"
    write_torch(vae, _vae_payload())
    assert load_vae(vae, SHAPE).latent_dim == 4
    net = build_classifier("small_cnn", SHAPE, 3)
    epoch = tmp_path / "epoch-001.ckpt"
    torch.save({"state_dict": {f"net.{k}": v for k, v in net.state_dict().items()}}, epoch)
    spec = ClassifierSpec("small_cnn", SHAPE, 3)
    load_epoch_classifier(epoch, spec)
    model = tmp_path / "model.pt"
    _exported_classifier(model)
    for path in (vae, epoch, model):
        cut_in_half(path)
    loaders = [
        (lambda: load_vae(vae, SHAPE, "refvae"), vae, "refvae"),
        (lambda: load_decoder(vae, (4,), SHAPE, "cladec@dense-0.5"), vae, "cladec@dense-0.5"),
        (lambda: load_refae(vae, spec, "dense", (4,), SHAPE, "refae@dense"), vae, "refae@dense"),
        (lambda: load_epoch_classifier(epoch, spec), epoch, "classifier"),
        (lambda: classifier_spec(model), model, "classifier"),
    ]
    for load, path, stage in loaders:
        with pytest.raises(PipelineError) as info:
            load()
        message = one_line_error(info)
        assert message.startswith(f"{path} is truncated or corrupt (")
        assert message.endswith(f"rerun `dvc repro -f {stage}`")


def test_vae_export_without_its_config(tmp_path):
    from pipeline.restore import load_vae

    path = tmp_path / "vae.pt"
    payload = _vae_payload()
    del payload["config"]
    write_torch(path, payload)
    with pytest.raises(PipelineError, match=r"no entry 'config'.*rerun `dvc repro -f vae`"):
        load_vae(path, SHAPE)
    write_torch(path, [1, 2])
    with pytest.raises(PipelineError, match=r"no dict of weights under 'state_dict'"):
        load_vae(path, SHAPE)


@pytest.mark.parametrize("kind", ["torch.save", "pickle"])
def test_model_files_whose_pickle_runs_code_are_refused(tmp_path, kind):
    from pipeline.restore import load_epoch_classifier, load_vae

    marker = tmp_path / "ran"
    payload = {"config": {"latent_dim": 4}, "state_dict": {}, "extra": MakesMarker(marker)}
    path = tmp_path / "models" / "classifier" / "model.pt"
    path.parent.mkdir(parents=True)
    if kind == "torch.save":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=2))
    for load in (
        lambda: load_classifier(path),
        lambda: load_vae(path, SHAPE, "classifier"),
        lambda: load_epoch_classifier(path, None),  # type: ignore[arg-type]
    ):
        with pytest.raises(PipelineError) as info:
            load()
        message = one_line_error(info)
        assert message.startswith(f"{path} is truncated or corrupt (it holds pickled objects")
        assert message.endswith("rerun `dvc repro -f classifier`")
        assert not marker.exists()
