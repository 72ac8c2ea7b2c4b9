"""Guided backpropagation: the gradient with negative signals stopped at every ReLU
(Springenberg et al. 2015), through captum's `GuidedBackprop`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline.explain.base import (
    AttributionMethod,
    Attributions,
    BatchedParams,
    gradients_in_batches,
)

if TYPE_CHECKING:
    from torch import Tensor, nn


class GuidedBackpropParams(BatchedParams):
    pass


class GuidedBackprop(AttributionMethod):
    name = "guided_backprop"
    Params = GuidedBackpropParams
    title = "guided backpropagation"
    reference = "Springenberg et al. 2015; captum.attr.GuidedBackprop"
    signed = True
    hooks_nonlinearities = True

    def attribute(
        self, model: nn.Module, images: Tensor, targets: Tensor, p: GuidedBackpropParams
    ) -> Attributions:  # type: ignore[override]
        from captum.attr import GuidedBackprop as CaptumGuidedBackprop

        method = CaptumGuidedBackprop(model)
        return Attributions(
            gradients_in_batches(
                lambda x, t: method.attribute(x, target=t), images, targets, p.batch_size
            )
        )
