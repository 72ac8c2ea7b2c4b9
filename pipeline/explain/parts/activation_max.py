"""Filter visualisation by gradient ascent (activation maximisation): from noise, climb
the mean activation of each filter of a layer (or each class logit) with L2-normalised
gradient steps, all filters optimised together as one batch.

torch is imported inside the functions, so params validation and the figure stage read
this module without loading it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from pydantic import Field

from pipeline.explain.base import Computed, InsidePart, MethodParams, Score

if TYPE_CHECKING:
    from torch import Tensor, nn

    from pipeline.data import Splits
    from pipeline.models.archs import ImageShape

    class Inputs(Protocol):
        seed: int
        splits: Splits
        net: nn.Module
        class_names: list[str]


class ActivationMaxParams(MethodParams):
    layer: str = Field(
        "conv", min_length=1, description="whose filters (every class logit is done too)"
    )
    iterations: int = Field(64, gt=0, description="gradient-ascent steps")
    step: float = Field(
        0.05, gt=0, description="pixel-space length of each L2-normalised gradient step"
    )


@dataclass
class Ascent:
    images: np.ndarray  # B×C×H×W in [0, 1], one per filter or class
    start: np.ndarray  # B objective values at the starting noise
    end: np.ndarray  # B objective values after the last step


def _layer_output(model: nn.Module, layer: str, x: Tensor) -> Tensor:
    """The layer's activation; the forward pass stops there (nothing after it runs)."""
    from pipeline.models.archs import LayerEncoder

    return LayerEncoder(model, layer)(x)


def _objective(model: nn.Module, layer: str | None, x: Tensor, units: Tensor) -> Tensor:
    """Per image b: mean activation of channel units[b] at `layer`, or logit units[b]."""
    import torch

    if layer is None:
        return model(x).gather(1, units[:, None]).flatten()
    picked = _layer_output(model, layer, x)[torch.arange(len(units)), units]
    return picked.flatten(1).mean(1) if picked.dim() > 1 else picked


def unit_count(model: nn.Module, layer: str | None, image_shape: ImageShape) -> int:
    """Channels of `layer` (or classes, for layer=None)."""
    import torch

    with torch.no_grad():
        probe = torch.zeros(1, *image_shape)
        out = model(probe) if layer is None else _layer_output(model, layer, probe)
    return int(out.shape[1])


def maximize(
    model: nn.Module,
    image_shape: ImageShape,
    *,
    layer: str | None,
    units: list[int] | None = None,
    iterations: int = 64,
    step: float = 0.05,
    seed: int = 0,
) -> Ascent:
    """Gradient ascent for every unit at once (`layer=None`: the class logits). Pixels
    stay in [0, 1]; each step moves every image by `step` along its L2-normalised
    gradient."""
    import torch

    if iterations < 1:
        raise ValueError(f"iterations must be at least 1, got {iterations}")
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    if units is None:
        units = list(range(unit_count(model, layer, image_shape)))
    index = torch.as_tensor(units)
    generator = torch.Generator().manual_seed(seed)
    x = (0.5 + 0.1 * torch.randn(len(units), *image_shape, generator=generator)).clamp(0, 1)
    with torch.no_grad():
        start = _objective(model, layer, x, index)
    for _ in range(iterations):
        x.requires_grad_(True)
        with torch.enable_grad():
            total = _objective(model, layer, x, index).sum()
            (grad,) = torch.autograd.grad(total, x)
        norm = grad.flatten(1).norm(dim=1).clamp(min=1e-12).view(-1, 1, 1, 1)
        x = (x.detach() + step * grad / norm).clamp(0, 1)
    with torch.no_grad():
        end = _objective(model, layer, x, index)
    for p in model.parameters():
        p.requires_grad_(True)
    return Ascent(x.numpy(), start.numpy(), end.numpy())


class ActivationMax(InsidePart):
    name = "activation_max"
    Params = ActivationMaxParams
    title = "activation maximisation"
    reference = "Erhan et al. 2009; Olah et al., Distill 2017"
    seeded = True  # the starting noise
    scores = (
        Score("filters_raised", "share of filters whose activation the ascent raised", "higher"),
        Score("classes_raised", "share of class logits the ascent raised", "higher"),
    )

    def compute(self, inputs: Inputs, p: ActivationMaxParams) -> Computed:  # type: ignore[override]
        """`ascent`: the image found for every filter of `p.layer` and every class logit,
        with the objective before and after."""
        shape = inputs.splits.image_shape
        common: dict[str, Any] = {"iterations": p.iterations, "step": p.step, "seed": inputs.seed}
        filters = maximize(inputs.net, shape, layer=p.layer, **common)
        classes = maximize(inputs.net, shape, layer=None, **common)
        arrays = {
            "layer": np.array(p.layer),
            "filter_images": filters.images,
            "filter_start": filters.start,
            "filter_end": filters.end,
            "class_images": classes.images,
            "class_start": classes.start,
            "class_end": classes.end,
            "class_names": np.array(inputs.class_names),
        }
        metrics = {
            "filters": len(filters.end),
            "filters_raised": float((filters.end > filters.start).mean()),
            "filter_gain_mean": float((filters.end - filters.start).mean()),
            "classes_raised": float((classes.end > classes.start).mean()),
            "class_logit_gain_mean": float((classes.end - classes.start).mean()),
        }
        return Computed({"ascent": arrays}, metrics)

    def draw(
        self, stored: dict[str, dict[str, np.ndarray]], p: ActivationMaxParams
    ) -> dict[str, Any]:  # type: ignore[override]
        """`filters.png`, `classes.png`."""
        from pipeline.figures.activation_max import plot_tiles

        z = stored["ascent"]
        layer = str(z["layer"])
        return {
            "filters.png": plot_tiles(
                z["filter_images"],
                [f"ch {i}" for i in range(len(z["filter_images"]))],
                f"Images that maximise each filter of {layer} ({p.iterations} gradient-ascent "
                "steps from noise)",
            ),
            "classes.png": plot_tiles(
                z["class_images"],
                [str(n) for n in z["class_names"]],
                f"Images that maximise each class logit ({p.iterations} steps from noise)",
            ),
        }
