"""The explorer's logic (pipeline/explorer/logic.py) without a browser: its maps are the
registry methods' own output with params.yaml's settings, its top classes are sorted
probabilities, and an uploaded picture of any size and colour becomes the model's input."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import make_square_images
from PIL import Image

from pipeline.data import Splits
from pipeline.errors import ParamsError, PipelineError
from pipeline.explain.base import pixel_map
from pipeline.explain.registry import attribution_methods, method_class
from pipeline.explorer import logic
from pipeline.figures.attributions import heat_panel
from pipeline.models.archs import build_classifier
from pipeline.models.export import save_classifier
from pipeline.params import parse_params

NAMES = ("top", "middle", "bottom")


def write_run(folder: Path, channels: int = 1, params: dict | None = None) -> tuple[str, ...]:
    """A small seeded classifier (untrained: the maps are compared with the library's,
    not judged), a dataset of its shape and a params file; their paths."""
    torch.manual_seed(0)
    shape = (channels, 16, 16)
    net = build_classifier("small_cnn", shape, len(NAMES))
    model = folder / "model.pt"
    hparams = {"arch": "small_cnn", "input_shape": shape, "num_classes": len(NAMES)}
    save_classifier(net, hparams, NAMES, model)
    x, y = make_square_images(30, classes=3, size=16, channels=channels, seed=2)
    data = folder / "dataset.npz"
    Splits(x[:18], y[:18], x[18:24], y[18:24], x[24:], y[24:], NAMES, "synthetic").save(data)
    params_file = folder / "params.yaml"
    params_file.write_text(yaml.safe_dump(params or {"seed": 5}))
    return str(model), str(data), str(params_file)


PARAMS = {"seed": 5, "explain": {"saliency": {"absolute": False}}}


@pytest.fixture(scope="module")
def explorer(tmp_path_factory) -> logic.Explorer:
    return logic.load_explorer(*write_run(tmp_path_factory.mktemp("run"), params=PARAMS))


@pytest.mark.parametrize("name", ["saliency", "gradcam", "occlusion", "rise"])
def test_maps_are_the_library_methods_with_the_params_file(explorer, name):
    """The same map as the registry's class gives with the file's params and seed (RISE:
    seeded), drawn with the report's heat_panel; saliency's sign follows the file's
    `absolute: false` (signed, so negative values and the diverging map)."""
    image, _ = explorer.test_image(1)
    got = logic.explain(explorer, image, name, 2)
    p = getattr(parse_params(PARAMS).explain, name)
    cls = method_class(name)
    x = torch.as_tensor(image[None]).float() / 255.0
    expected = pixel_map(cls(seed=5).attribute(explorer.net, x, torch.tensor([2]), p).maps)[0]
    np.testing.assert_array_equal(got.heat, expected)
    assert got.signed == cls.is_signed(p)
    np.testing.assert_array_equal(got.panel, heat_panel(image, expected, got.signed))
    assert got.heat.shape == image.shape[1:] and got.target == 2
    if name == "saliency":
        assert got.signed and (got.heat < 0).any()


def test_a_method_with_a_background_gets_the_pipelines_sample(explorer):
    """SHAP gets the explain stage's seeded background sample of training images."""
    from pipeline.explain.attribute_selection import background_sample

    method = logic.make_method(explorer, "shap")
    count = explorer.params.explain.shap.background
    expected = background_sample(explorer.splits.x_train, count, 5)
    torch.testing.assert_close(method.background, expected)
    assert method.seed == 5


def test_top_classes_are_sorted_probabilities():
    probs = np.array([0.1, 0.6, 0.3], dtype=np.float32)
    top = logic.top_classes(probs, list(NAMES), k=2)
    assert [(i, n) for i, n, _ in top] == [(1, "middle"), (2, "bottom")]
    assert [p for *_, p in top] == pytest.approx([0.6, 0.3])


def test_the_models_top_classes_sum_to_at_most_one(explorer):
    image, _ = explorer.test_image(0)
    probs = logic.probabilities(explorer, image)
    top = logic.top_classes(probs, explorer.class_names, k=2)
    values = [p for *_, p in top]
    assert values == sorted(values, reverse=True)
    assert top[0][0] == int(probs.argmax())
    assert 0 < sum(values) <= 1 + 1e-6
    assert sum(p for *_, p in logic.top_classes(probs, explorer.class_names)) == pytest.approx(1)


def png(size: tuple[int, int], colour: tuple[int, int, int], mode: str = "RGB") -> bytes:
    out = io.BytesIO()
    Image.new(mode, size, colour if mode == "RGB" else (*colour, 255)).save(out, "PNG")
    return out.getvalue()


def test_an_uploaded_rgb_image_of_another_size_becomes_the_models_shape():
    """A 40×30 RGB picture of one colour: grey models get Pillow's luminance of that
    colour, RGB models the colour itself, both at the model's 16×16."""
    data = png((40, 30), (200, 10, 50))
    grey = logic.fit_image(data, (1, 16, 16))
    assert grey.shape == (1, 16, 16) and grey.dtype == np.uint8
    assert (grey == round(0.299 * 200 + 0.587 * 10 + 0.114 * 50)).all()  # ITU-R 601-2, as Pillow
    rgb = logic.fit_image(png((25, 60), (200, 10, 50), "RGBA"), (3, 32, 24))
    assert rgb.shape == (3, 32, 24)
    assert (rgb.transpose(1, 2, 0) == (200, 10, 50)).all()


def test_an_upload_is_centre_cropped_not_stretched():
    """A wide picture, left half black and right half white, cropped to a square keeps
    the middle: black columns on the left, white on the right, as many of each."""
    wide = np.zeros((20, 60), dtype=np.uint8)
    wide[:, 30:] = 255
    fitted = logic.fit_image(Image.fromarray(wide), (1, 10, 10))[0]
    assert (fitted[:, :4] == 0).all() and (fitted[:, -4:] == 255).all()


def test_a_file_that_is_no_image_is_one_clear_error():
    with pytest.raises(PipelineError, match="not an image"):
        logic.fit_image(b"not a png", (1, 16, 16))


def test_a_dataset_of_another_shape_is_refused(tmp_path):
    model, _, params = write_run(tmp_path)
    other = tmp_path / "rgb"
    other.mkdir()
    _, rgb_data, _ = write_run(other, channels=3)
    with pytest.raises(PipelineError, match=r"\(1, 16, 16\) images in 3 classes .* \(3, 16, 16\)"):
        logic.load_explorer(model, rgb_data, params)


def test_a_wrong_params_value_names_the_key(tmp_path):
    paths = write_run(tmp_path, params={"explain": {"occlusion": {"window": "big"}}})
    with pytest.raises(ParamsError, match=r"explain\.occlusion\.window"):
        logic.load_explorer(*paths)


def test_a_class_or_image_that_does_not_exist_is_refused(explorer):
    image, _ = explorer.test_image(0)
    with pytest.raises(PipelineError, match="class 3 does not exist"):
        logic.explain(explorer, image, "saliency", 3)
    with pytest.raises(PipelineError, match="test image 6 does not exist"):
        explorer.test_image(6)


def test_the_picker_lists_every_registered_method_and_preselects_cheap_ones(explorer):
    titles = logic.method_titles(explorer.net)
    assert list(titles) == list(attribution_methods())
    assert set(logic.CHEAP_METHODS) <= set(titles)


def test_the_picker_leaves_out_hook_based_methods_on_a_torchscript_model(monkeypatch):
    """Their hooks never reach a compiled graph's ReLUs (the stage refuses them too)."""
    import warnings

    from pipeline.models.user_model import TRUST_ENV, build_user_model

    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(torch.jit.script(torch.nn.Sequential(torch.nn.Flatten())), buffer)
    monkeypatch.setenv(TRUST_ENV, "1")
    scripted = build_user_model(buffer.getvalue(), "m.ts", {}, None, None)
    titles = logic.method_titles(scripted)
    assert sorted(set(attribution_methods()) - set(titles)) == ["deeplift", "guided_backprop"]
