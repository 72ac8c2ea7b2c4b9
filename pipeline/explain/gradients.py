"""Gradient-based attributions through captum: vanilla gradient (saliency), guided
backprop, integrated gradients and Grad-CAM. Each works in slices of `batch_size`
images so memory stays bounded whatever the number of instances."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor, nn

from pipeline.models.archs import resolve_layer


def _in_batches(
    fn: Callable[[Tensor, Tensor], Tensor], images: Tensor, targets: Tensor, batch_size: int
) -> np.ndarray:
    out = []
    for start in range(0, len(images), batch_size):
        x = images[start : start + batch_size].clone().requires_grad_(True)
        with torch.enable_grad():
            out.append(fn(x, targets[start : start + batch_size]).detach().float().cpu())
    return torch.cat(out).numpy()


def saliency(
    model: nn.Module,
    images: Tensor,
    targets: Tensor,
    *,
    absolute: bool = True,
    batch_size: int = 256,
) -> np.ndarray:
    """Gradient of the class logit with respect to the pixels (Simonyan et al. 2014)."""
    from captum.attr import Saliency

    method = Saliency(model)
    return _in_batches(
        lambda x, t: method.attribute(x, target=t, abs=absolute), images, targets, batch_size
    )


def guided_backprop(
    model: nn.Module, images: Tensor, targets: Tensor, *, batch_size: int = 256
) -> np.ndarray:
    """Gradient with negative signals stopped at every ReLU (Springenberg et al. 2015)."""
    from captum.attr import GuidedBackprop

    method = GuidedBackprop(model)
    return _in_batches(lambda x, t: method.attribute(x, target=t), images, targets, batch_size)


def make_baseline(images: Tensor, kind: str, blur_sigma: float = 3.0) -> Tensor:
    """The reference image integrated gradients starts from."""
    if kind == "black":
        return torch.zeros_like(images)
    if kind == "white":
        return torch.ones_like(images)
    if kind == "mean":
        return images.mean(dim=(2, 3), keepdim=True).expand_as(images).contiguous()
    if kind == "blur":
        from pipeline.explain.perturb import gaussian_blur

        return gaussian_blur(images, blur_sigma)
    raise ValueError(f"unknown baseline {kind!r}: use black, white, mean or blur")


def integrated_gradients(
    model: nn.Module,
    images: Tensor,
    targets: Tensor,
    *,
    steps: int = 32,
    baseline: str = "black",
    blur_sigma: float = 3.0,
    batch_size: int = 256,
) -> np.ndarray:
    """Path integral of the gradient from a baseline to the image (Sundararajan et al.
    2017); `batch_size` is captum's internal batch size (steps × images per pass)."""
    from captum.attr import IntegratedGradients

    method = IntegratedGradients(model)
    base = make_baseline(images, baseline, blur_sigma)
    out = []
    per_pass = max(1, batch_size // steps)
    for start in range(0, len(images), per_pass):
        sl = slice(start, start + per_pass)
        with torch.enable_grad():
            attr = method.attribute(
                images[sl],
                baselines=base[sl],
                target=targets[sl],
                n_steps=steps,
                internal_batch_size=batch_size,
            )
        out.append(attr.detach().float().cpu())
    return torch.cat(out).numpy()


def gradcam(
    model: nn.Module, images: Tensor, targets: Tensor, *, layer: str = "conv", batch_size: int = 256
) -> np.ndarray:
    """Grad-CAM (Selvaraju et al. 2017): the layer's channels weighted by their mean
    gradient, ReLU, bilinearly up-sampled to the image. Returns N×1×H×W."""
    from captum.attr import LayerAttribution, LayerGradCam

    method = LayerGradCam(model, resolve_layer(model, layer))
    size = tuple(images.shape[-2:])

    def run(x: Tensor, t: Tensor) -> Tensor:
        cam = method.attribute(x, target=t, relu_attributions=True)
        if cam.dim() != 4:
            raise ValueError(f"Grad-CAM needs a spatial layer (N×C×H×W); {layer!r} is not one")
        return LayerAttribution.interpolate(cam, size, interpolate_mode="bilinear")

    return _in_batches(run, images, targets, batch_size)
