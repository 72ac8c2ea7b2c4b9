"""SHAP values through the shap library.

- `gradient` (default): expected gradients (shap.GradientExplainer) against a seeded
  background sample of training images.
- `partition`: the Partition explainer with a blur masker (shap.maskers.Image, which
  needs opencv): model-agnostic, hierarchical Owen values over image regions.

shap explains every output of a model; to explain one class per image, instances are
grouped by target class and each group sees a model whose only output is that class.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import Field

from pipeline.console import progress
from pipeline.explain.base import AttributionMethod, Attributions, BatchedParams

if TYPE_CHECKING:
    from torch import Tensor, nn


class ShapParams(BatchedParams):
    explainer: Literal["gradient", "partition"] = "gradient"
    background: int = Field(100, gt=0, description="training images drawn as the background")
    samples: int = Field(128, gt=0, description="gradient explainer: samples per instance")
    max_evals: int = Field(500, ge=10, description="partition explainer: evaluations per image")
    blur: int = Field(7, ge=1, description="partition explainer: blur kernel of the masker")


def _class_output(model: nn.Module, target: int) -> nn.Module:
    """The model's logit for one class, as a one-output model."""
    from torch import nn

    class ClassOutput(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, x: Tensor) -> Tensor:
            return self.model(x)[:, target : target + 1]

    return ClassOutput().eval()


class Shap(AttributionMethod):
    name = "shap"
    Params = ShapParams
    title = "SHAP (expected gradients)"
    reference = "Lundberg & Lee 2017; shap.GradientExplainer / shap.Explainer"
    signed = True
    seeded = True
    needs_background = True

    def attribute(
        self, model: nn.Module, images: Tensor, targets: Tensor, p: ShapParams
    ) -> Attributions:  # type: ignore[override]
        import shap
        import torch

        if self.background is None:
            raise ValueError("SHAP needs a background sample of training images")
        out = np.zeros(tuple(images.shape), dtype=np.float32)
        for target in progress(torch.unique(targets).tolist(), "shap", unit="class"):
            rows = (targets == target).nonzero().flatten()
            single = _class_output(model, int(target))
            x = images[rows]
            if p.explainer == "gradient":
                explainer = shap.GradientExplainer(single, self.background, batch_size=p.batch_size)
                values = explainer.shap_values(x, nsamples=p.samples, rseed=self.seed)
                values = np.asarray(values).reshape(x.shape)
            else:
                values = _partition(single, x, p.max_evals, p.blur, p.batch_size)
            out[rows.numpy()] = values
        return Attributions(out)


def _partition(
    model: nn.Module, images: Tensor, max_evals: int, blur: int, batch_size: int
) -> np.ndarray:
    import shap
    import torch

    @torch.inference_mode()
    def predict(batch_hwc: np.ndarray) -> np.ndarray:
        x = torch.as_tensor(np.ascontiguousarray(batch_hwc)).permute(0, 3, 1, 2).float()
        return model(x).numpy()

    _, c, h, w = images.shape
    masker = shap.maskers.Image(f"blur({blur},{blur})", (h, w, c))
    explanation = shap.Explainer(predict, masker)(
        images.permute(0, 2, 3, 1).numpy(), max_evals=max_evals, batch_size=batch_size, silent=True
    )
    # N×H×W×C×outputs -> N×C×H×W
    return np.asarray(explanation.values)[..., 0].transpose(0, 3, 1, 2)
