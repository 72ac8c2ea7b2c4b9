"""Filter visualization by gradient ascent (activation maximization): from noise,
climb the mean activation of each filter of a layer (or each class logit) with
L2-normalised gradient steps, all filters optimised together as one batch."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from pipeline.models.archs import ImageShape
from pipeline.models.generative import LayerEncoder


@dataclass
class Ascent:
    images: np.ndarray  # B×C×H×W in [0, 1], one per filter or class
    start: np.ndarray  # B objective values at the starting noise
    end: np.ndarray  # B objective values after the last step


def _layer_output(model: nn.Module, layer: str, x: Tensor) -> Tensor:
    """The layer's activation; the forward pass stops there (nothing after it runs)."""
    return LayerEncoder(model, layer)(x)


def _objective(model: nn.Module, layer: str | None, x: Tensor, units: Tensor) -> Tensor:
    """Per image b: mean activation of channel units[b] at `layer`, or logit units[b]."""
    if layer is None:
        return model(x).gather(1, units[:, None]).flatten()
    picked = _layer_output(model, layer, x)[torch.arange(len(units)), units]
    return picked.flatten(1).mean(1) if picked.dim() > 1 else picked


def unit_count(model: nn.Module, layer: str | None, image_shape: ImageShape) -> int:
    """Channels of `layer` (or classes, for layer=None)."""
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
