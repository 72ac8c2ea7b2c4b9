"""Occlusion (Zeiler & Fergus 2014): a square window, slid over the image, replaces the
pixels it covers (all channels) with a constant; each pixel's attribution is the drop
of the class logit, averaged over the windows that cover it. Through captum's
`Occlusion`, whose forward passes run here on an inference copy of the model
(`pipeline.inference.inference_copy`, channels-last) under `torch.inference_mode()`.

The window spans every channel, so captum's N×C×H×W result has C equal channels; the
method returns one of them, N×1×H×W (it scores regions, not channels). Signed: a
window whose occlusion raises the logit marks evidence against the class.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field

from pipeline.explain.base import AttributionMethod, Attributions, BatchedParams

if TYPE_CHECKING:
    from torch import Tensor, nn


class OcclusionParams(BatchedParams):
    window: int = Field(4, ge=1, description="side of the occluding square in pixels")
    stride: int = Field(2, ge=1, description="pixels between window positions")
    baseline: float = Field(0.0, description="value the occluded pixels take (0 = black)")
    batch_size: int = Field(512, gt=0, description="occluded images per forward pass")


class Occlusion(AttributionMethod):
    name = "occlusion"
    Params = OcclusionParams
    title = "occlusion"
    reference = "Zeiler & Fergus 2014; captum.attr.Occlusion"
    signed = True

    def attribute(
        self, model: nn.Module, images: Tensor, targets: Tensor, p: OcclusionParams
    ) -> Attributions:  # type: ignore[override]
        """N×1×H×W maps. captum perturbs a slice of images at once
        (`perturbations_per_eval` windows each), so that every forward pass holds about
        `batch_size` occluded images."""
        import numpy as np
        import torch
        from captum.attr import Occlusion as CaptumOcclusion

        from pipeline.inference import channels_last, inference_copy

        n, c, h, w = images.shape
        if p.window > min(h, w):
            raise ValueError(f"occlusion window {p.window} is larger than the {h}×{w} images")
        fast = inference_copy(model)
        method = CaptumOcclusion(lambda x: fast(channels_last(x)))
        per_pass = max(1, min(n, p.batch_size))
        out = []
        with torch.inference_mode():
            for start in range(0, n, per_pass):
                x = images[start : start + per_pass]
                attr = method.attribute(
                    x,
                    sliding_window_shapes=(c, p.window, p.window),
                    strides=(c, p.stride, p.stride),
                    baselines=p.baseline,
                    target=targets[start : start + per_pass],
                    perturbations_per_eval=max(1, p.batch_size // len(x)),
                )
                out.append(attr[:, :1].float().cpu())
        maps = torch.cat(out).numpy() if out else np.zeros((0, 1, h, w), np.float32)
        return Attributions(maps)
