"""Saliency: the gradient of the class logit with respect to the pixels (Simonyan et al.
2014), through captum's `Saliency`."""

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


class SaliencyParams(BatchedParams):
    absolute: bool = Field(True, description="|gradient| (the usual map); false keeps the sign")


class Saliency(AttributionMethod):
    name = "saliency"
    Params = SaliencyParams
    title = "vanilla gradient"
    reference = "Simonyan et al. 2014; captum.attr.Saliency"
    signed: ClassVar[bool] = False

    @classmethod
    def is_signed(cls, p: SaliencyParams) -> bool:  # type: ignore[override]
        return not p.absolute

    def attribute(
        self, model: nn.Module, images: Tensor, targets: Tensor, p: SaliencyParams
    ) -> Attributions:  # type: ignore[override]
        from captum.attr import Saliency as CaptumSaliency

        method = CaptumSaliency(model)
        return Attributions(
            gradients_in_batches(
                lambda x, t: method.attribute(x, target=t, abs=p.absolute),
                images,
                targets,
                p.batch_size,
            )
        )
