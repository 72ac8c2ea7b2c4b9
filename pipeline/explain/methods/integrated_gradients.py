"""Integrated gradients: the path integral of the gradient from a baseline image to the
image (Sundararajan et al. 2017), through captum's `IntegratedGradients`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import Field

from pipeline.explain.base import AttributionMethod, Attributions, BatchedParams

if TYPE_CHECKING:
    from torch import Tensor, nn


class IntegratedGradientsParams(BatchedParams):
    steps: int = Field(32, ge=2, description="points on the path from the baseline to the image")
    baseline: Literal["black", "white", "mean", "blur"] = "black"
    blur_sigma: float = Field(3.0, gt=0, description="baseline=blur: Gaussian sigma in pixels")


def make_baseline(images: Tensor, kind: str, blur_sigma: float = 3.0) -> Tensor:
    """The reference image the path starts from: black, white, the image's mean colour,
    or the image blurred."""
    import torch

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


class IntegratedGradients(AttributionMethod):
    name = "integrated_gradients"
    Params = IntegratedGradientsParams
    title = "integrated gradients"
    reference = "Sundararajan et al. 2017; captum.attr.IntegratedGradients"
    signed = True

    def attribute(
        self, model: nn.Module, images: Tensor, targets: Tensor, p: IntegratedGradientsParams
    ) -> Attributions:  # type: ignore[override]
        """`batch_size` is captum's internal batch size (steps × images per pass)."""
        import torch
        from captum.attr import IntegratedGradients as CaptumIG

        method = CaptumIG(model)
        base = make_baseline(images, p.baseline, p.blur_sigma)
        out = []
        per_pass = max(1, p.batch_size // p.steps)
        for start in range(0, len(images), per_pass):
            sl = slice(start, start + per_pass)
            with torch.enable_grad():
                attr = method.attribute(
                    images[sl],
                    baselines=base[sl],
                    target=targets[sl],
                    n_steps=p.steps,
                    internal_batch_size=p.batch_size,
                )
            out.append(attr.detach().float().cpu())
        maps = torch.cat(out).numpy() if out else np.zeros(tuple(images.shape), np.float32)
        return Attributions(maps)
