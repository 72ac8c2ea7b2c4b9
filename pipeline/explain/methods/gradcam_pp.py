"""Grad-CAM++ (Chattopadhay et al. 2018): Grad-CAM with each channel weighted by a sum
of its positive gradients times per-position coefficients from second- and third-order
terms (the closed form of the paper's eq. 19), so that several instances of a class in
one image all count. Through the `grad-cam` package's `GradCAMPlusPlus` (import
`pytorch_grad_cam`).

What the package returns, as it returns it: the ReLU'd map of the layer, scaled to
[0, 1] per image and resized to the image with OpenCV (bilinear), N×1×H×W. The
per-image scaling means magnitudes do not compare across images (ranks within one
image, which the evaluation uses, are unaffected).

The package hooks the layer's forward pass and keeps the hooks until released; its
context manager swallows `IndexError`s, so the hooks are released here in a `finally`
instead. It runs on a frozen copy of the model (the caller's parameters get no
`.grad`), with gradients flowing from the input.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline.explain.base import AttributionMethod, Attributions, LayerParams

if TYPE_CHECKING:
    from torch import Tensor, nn


class GradCAMPlusPlusParams(LayerParams):
    pass


class GradCAMPlusPlus(AttributionMethod):
    name = "gradcam_pp"
    Params = GradCAMPlusPlusParams
    title = "Grad-CAM++"
    reference = "Chattopadhay et al. 2018; pytorch_grad_cam.GradCAMPlusPlus (grad-cam package)"
    signed = False
    needs_spatial_layer = True

    def attribute(
        self, model: nn.Module, images: Tensor, targets: Tensor, p: GradCAMPlusPlusParams
    ) -> Attributions:  # type: ignore[override]
        """N×1×H×W maps in [0, 1]."""
        import copy

        import numpy as np
        import torch
        from pytorch_grad_cam import GradCAMPlusPlus as PackageGradCAMPlusPlus
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        from pipeline.models.archs import resolve_layer

        n, _, h, w = images.shape
        if n == 0:
            return Attributions(np.zeros((0, 1, h, w), np.float32))
        net = copy.deepcopy(model).eval().requires_grad_(False)
        layer = resolve_layer(net, p.layer)
        shape: list[tuple[int, ...]] = []
        probe = layer.register_forward_hook(lambda _m, _i, out: shape.append(tuple(out.shape)))
        try:
            with torch.no_grad():
                net(images[:1])
        finally:
            probe.remove()
        if len(shape) != 1 or len(shape[0]) != 4:
            raise ValueError(
                f"Grad-CAM++ needs a spatial layer (N×C×H×W) called once; {p.layer!r} gives "
                f"{shape or 'no output'}"
            )
        cam = PackageGradCAMPlusPlus(net, [layer])
        out = []
        try:
            for start in range(0, n, p.batch_size):
                x = images[start : start + p.batch_size].clone().requires_grad_(True)
                chosen = [ClassifierOutputTarget(int(t)) for t in targets[start : start + len(x)]]
                with torch.enable_grad():
                    out.append(cam(input_tensor=x, targets=chosen))
        finally:
            cam.activations_and_grads.release()
        return Attributions(np.concatenate(out)[:, None].astype(np.float32))
