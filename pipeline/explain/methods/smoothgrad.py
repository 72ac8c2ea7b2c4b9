"""SmoothGrad (Smilkov et al. 2017): the gradient of the class logit averaged over
copies of the image with Gaussian noise added, through captum's `NoiseTunnel` over
`Saliency`.

The noise's standard deviation is `stdevs` times the input range; images are in
[0, 1], so it is `stdevs` itself (the paper finds 10–20% of the range best). captum
draws the noise from torch's global generator: it is drawn here inside
`torch.random.fork_rng()` seeded with the method's seed, so two runs with one seed give
the same maps and the caller's random state is left as it was.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from pydantic import Field

from pipeline.explain.base import (
    AttributionMethod,
    Attributions,
    BatchedParams,
    gradients_in_batches,
)

if TYPE_CHECKING:
    from torch import Tensor, nn


class SmoothGradParams(BatchedParams):
    samples: int = Field(25, ge=1, description="noisy copies of each image")
    stdevs: float = Field(0.15, gt=0, description="noise std as a fraction of the input range")
    absolute: bool = Field(
        True, description="average |gradient| (as saliency); false keeps the sign"
    )
    batch_size: int = Field(256, gt=0, description="noisy images per forward/backward pass")


class SmoothGrad(AttributionMethod):
    name = "smoothgrad"
    Params = SmoothGradParams
    title = "SmoothGrad"
    reference = "Smilkov et al. 2017; captum.attr.NoiseTunnel over Saliency"
    signed: ClassVar[bool] = False
    seeded = True

    @classmethod
    def is_signed(cls, p: SmoothGradParams) -> bool:  # type: ignore[override]
        return not p.absolute

    def attribute(
        self, model: nn.Module, images: Tensor, targets: Tensor, p: SmoothGradParams
    ) -> Attributions:  # type: ignore[override]
        """Images go through captum in slices of `batch_size // samples` (at least one),
        so each pass holds at most `batch_size` noisy images (or `samples` for one image).
        The noise is drawn slice after slice from one seeded stream: a different
        `batch_size` draws the same amount of noise in another order, so its maps differ
        by sampling noise only."""
        import numpy as np
        import torch
        from captum.attr import NoiseTunnel
        from captum.attr import Saliency as CaptumSaliency

        if len(images) == 0:
            return Attributions(np.zeros(tuple(images.shape), np.float32))
        method = NoiseTunnel(CaptumSaliency(model))
        cuda = [images.device.index or 0] if images.device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda):
            torch.manual_seed(self.seed)
            maps = gradients_in_batches(
                lambda x, t: method.attribute(
                    x,
                    nt_type="smoothgrad",
                    nt_samples=p.samples,
                    stdevs=p.stdevs,
                    target=t,
                    abs=p.absolute,
                ),
                images,
                targets,
                max(1, p.batch_size // p.samples),
            )
        return Attributions(maps)
