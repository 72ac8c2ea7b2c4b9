"""What the explorer does, as plain functions of a loaded `Explorer`: nothing here knows
about the web framework, so the tests run it directly and the page stays a thin layer.

The maps are the library's: the registry's class for the method, its params from the
validated params.yaml and the pipeline's seed, drawn with the figures' `heat_panel`
(signed maps on the diverging map centred at 0, unsigned ones on the sequential map,
each scaled by its largest |value|)."""

from __future__ import annotations

import io
import threading
import time
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from torch import Tensor, nn

from pipeline.data import Splits
from pipeline.errors import PipelineError
from pipeline.explain.attribute_selection import background_sample
from pipeline.explain.base import AttributionMethod, compiled_parts, pixel_map
from pipeline.explain.registry import attribution_methods, method_class
from pipeline.figures.attributions import _enlarged, _rgb, heat_panel
from pipeline.inference import as_float_images, predict_proba
from pipeline.models.archs import ImageShape
from pipeline.models.export import load_classifier
from pipeline.params import Params, load_params
from pipeline.restore import classifier_spec

# preselected in the page and run once before the app serves: one backward pass each
# through captum, cheapest first (the page shows each map as soon as it is computed):
# 0.002-0.05 s for an MNIST image, 0.2-0.5 s for a 224 px image on ResNet50 (in the
# app, on a busy 2-core machine). Grad-CAM++ and SHAP import their packages on first use
# (pytorch_grad_cam, shap: 6-14 s here); LIME, RISE and SHAP perturb: picked by hand.
CHEAP_METHODS = ("gradcam", "saliency", "guided_backprop")


@dataclass
class Explorer:
    """The trained classifier, its input shape and class names, the test split, and the
    params every method runs with."""

    net: nn.Module
    class_names: list[str]
    input_shape: ImageShape
    splits: Splits
    params: Params
    # one explanation at a time: methods hook the model (guided backprop's ReLU hooks),
    # and two browser sessions must not see each other's hooks
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def test_image(self, index: int) -> tuple[np.ndarray, int]:
        """Test image `index` (uint8 C×H×W) and its label."""
        if not 0 <= index < len(self.splits.x_test):
            raise PipelineError(f"test image {index} does not exist (0 to {self.test_count - 1})")
        return self.splits.x_test[index], int(self.splits.y_test[index])

    @property
    def test_count(self) -> int:
        return len(self.splits.x_test)


def load_explorer(
    model: str | Path, dataset: str | Path, params: str | Path = "params.yaml"
) -> Explorer:
    """Everything the app needs, loaded once: the model with the existing restore
    functions (weights_only), the dataset, params.yaml validated by its schema. A model
    trained on other data than the dataset given is refused: its maps would mislead."""
    checked = load_params(params)
    spec = classifier_spec(model)
    net, names = load_classifier(model)
    splits = Splits.load(dataset)
    if tuple(splits.image_shape) != tuple(spec.input_shape) or splits.num_classes != len(names):
        raise PipelineError(
            f"{model} takes {spec.input_shape} images in {len(names)} classes but {dataset} "
            f"holds {splits.image_shape} images in {splits.num_classes}: pass the dataset "
            "the model was trained on"
        )
    return Explorer(net, names, spec.input_shape, splits, checked)


@cache
def shared_explorer(model: str, dataset: str, params: str) -> Explorer:
    """`load_explorer`, once per process: the app loads it before it serves, and every
    page run (Streamlit reruns the page script on each click) gets the same one."""
    return load_explorer(model, dataset, params)


def fit_image(data: bytes | Image.Image, shape: ImageShape) -> np.ndarray:
    """An uploaded picture as the model takes it: uint8 C×H×W with the model's channels
    (grey or RGB) and size, centre-cropped to its aspect ratio first so nothing is
    stretched (EXIF rotation applied, transparency dropped)."""
    channels, height, width = shape
    try:
        image = Image.open(io.BytesIO(data)) if isinstance(data, bytes) else data
        image = ImageOps.exif_transpose(image)
        image = image.convert("L" if channels == 1 else "RGB")
    except (OSError, ValueError) as exc:
        raise PipelineError(f"not an image Pillow can read ({exc})") from None
    if channels not in (1, 3):
        raise PipelineError(f"the model takes {channels}-channel images; uploads are grey or RGB")
    fitted = ImageOps.fit(image, (width, height), Image.Resampling.BILINEAR)
    array = np.asarray(fitted, dtype=np.uint8)
    return array[None] if channels == 1 else array.transpose(2, 0, 1).copy()


def probabilities(explorer: Explorer, image: np.ndarray) -> np.ndarray:
    """The classifier's softmax over the classes for one uint8 C×H×W image."""
    return predict_proba(explorer.net, image[None])[0]


def top_classes(probs: np.ndarray, names: list[str], k: int = 5) -> list[tuple[int, str, float]]:
    """The `k` most probable classes, most probable first: (index, name, probability)."""
    order = np.argsort(-probs, kind="stable")[:k]
    return [(int(i), names[i], float(probs[i])) for i in order]


@dataclass(frozen=True)
class Explained:
    """One method's map for one image and class, and how it is drawn."""

    method: str
    target: int
    heat: np.ndarray  # H×W, the library's map summed over channels (pixel_map)
    signed: bool
    panel: np.ndarray  # H'×W'×3 floats in [0, 1]: heat_panel, as the report draws it
    seconds: float


def make_method(explorer: Explorer, name: str) -> AttributionMethod:
    """The registry's method with what the explain stage gives it: the pipeline seed,
    and the seeded background sample of training images where the method needs one."""
    cls = method_class(name)
    background = None
    if cls.needs_background:
        p = getattr(explorer.params.explain, name)
        background = background_sample(explorer.splits.x_train, p.background, explorer.params.seed)
    return cls(seed=explorer.params.seed, background=background)


def explain(explorer: Explorer, image: np.ndarray, name: str, target: int) -> Explained:
    """The map of method `name` for class `target` of one uint8 C×H×W image, computed by
    the method's own `attribute` with its params.yaml settings."""
    if not 0 <= target < len(explorer.class_names):
        raise PipelineError(f"class {target} does not exist (0 to {len(explorer.class_names) - 1})")
    p = getattr(explorer.params.explain, name)
    started = time.perf_counter()
    with explorer.lock:
        method = make_method(explorer, name)
        images: Tensor = as_float_images(image[None])
        maps = method.attribute(explorer.net.eval(), images, torch.tensor([target]), p).maps
    heat = pixel_map(maps)[0]
    signed = method.is_signed(p)
    return Explained(
        name, target, heat, signed, heat_panel(image, heat, signed), time.perf_counter() - started
    )


def warm_up(explorer: Explorer, methods: tuple[str, ...] = CHEAP_METHODS) -> float:
    """Run `methods` once on the first test image and return the seconds it took: their
    libraries get imported (captum: about a second) before the first request, not in it."""
    started = time.perf_counter()
    image, _ = explorer.test_image(0)
    for name in methods:
        explain(explorer, image, name, 0)
    return time.perf_counter() - started


def shown_image(image: np.ndarray) -> np.ndarray:
    """A uint8 C×H×W image as the figures show it beside its maps (H'×W'×3 in [0, 1],
    small images enlarged with sharp pixels), so image and maps line up."""
    return _enlarged(_rgb(image))


def method_titles(net: nn.Module) -> dict[str, str]:
    """Every registered attribution method that can explain `net`, name -> 'name: title'
    for the picker (none that hooks ReLU modules on a TorchScript model)."""
    compiled = bool(compiled_parts(net))
    return {
        name: f"{name}: {cls.title}"
        for name, cls in attribution_methods().items()
        if not (compiled and cls.hooks_nonlinearities)
    }
