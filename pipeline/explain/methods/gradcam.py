"""Grad-CAM (Selvaraju et al. 2017): a conv layer's channels weighted by their mean
gradient, ReLU, bilinearly up-sampled to the image; through captum's `LayerGradCam`
(equal to the `grad-cam` package's `GradCAM`, see benchmarks/)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline.explain.base import (
    AttributionMethod,
    Attributions,
    LayerParams,
    gradients_in_batches,
)

if TYPE_CHECKING:
    from torch import Tensor, nn


class GradCAMParams(LayerParams):
    pass


class GradCAM(AttributionMethod):
    name = "gradcam"
    Params = GradCAMParams
    title = "Grad-CAM"
    reference = "Selvaraju et al. 2017; captum.attr.LayerGradCam"
    signed = False
    needs_spatial_layer = True

    def attribute(
        self, model: nn.Module, images: Tensor, targets: Tensor, p: GradCAMParams
    ) -> Attributions:  # type: ignore[override]
        """N×1×H×W maps."""
        from captum.attr import LayerAttribution, LayerGradCam

        from pipeline.models.archs import resolve_layer

        method = LayerGradCam(model, resolve_layer(model, p.layer))
        size = tuple(images.shape[-2:])

        def run(x: Tensor, t: Tensor) -> Tensor:
            cam = method.attribute(x, target=t, relu_attributions=True)
            if cam.dim() != 4:
                raise ValueError(
                    f"Grad-CAM needs a spatial layer (N×C×H×W); {p.layer!r} is not one"
                )
            return LayerAttribution.interpolate(cam, size, interpolate_mode="bilinear")

        return Attributions(gradients_in_batches(run, images, targets, p.batch_size))
