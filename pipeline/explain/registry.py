"""Method name -> implementation, imported lazily (shap alone takes seconds to import;
figure stages that only need SIGNED and pixel_map do not load torch at all)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from torch import Tensor, nn

from pipeline.errors import ParamsError

_MODULES = {
    "saliency": ("pipeline.explain.gradients", "saliency"),
    "guided_backprop": ("pipeline.explain.gradients", "guided_backprop"),
    "integrated_gradients": ("pipeline.explain.gradients", "integrated_gradients"),
    "gradcam": ("pipeline.explain.gradients", "gradcam"),
    "shap": ("pipeline.explain.shap_values", "attribute"),
    "lime": ("pipeline.explain.lime_image", "attribute"),
}

# signed maps (evidence for and against) are drawn with a diverging colour map centred
# at 0; the others are non-negative. Saliency is signed only with absolute=false.
SIGNED = {
    "saliency": False,
    "guided_backprop": True,
    "integrated_gradients": True,
    "gradcam": False,
    "shap": True,
    "lime": True,
    "random": False,
}


def method_function(method: str) -> Callable[..., np.ndarray]:
    """The `attribute` function of a method, by name."""
    if method not in _MODULES:
        raise ParamsError(
            f"unknown attribution method {method!r}; use one of {', '.join(_MODULES)}"
        )
    module, name = _MODULES[method]
    return getattr(importlib.import_module(module), name)


def attribute(
    method: str, model: nn.Module, images: Tensor, targets: Tensor, **params: Any
) -> np.ndarray:
    """Run a method by name; the model is put in eval mode first."""
    return method_function(method)(model.eval(), images, targets, **params)


def pixel_map(attributions: np.ndarray) -> np.ndarray:
    """N×C×H×W -> N×H×W, summing the channels (signed): one importance per pixel."""
    return np.asarray(attributions, dtype=np.float32).sum(axis=1)
