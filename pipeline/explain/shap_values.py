"""SHAP attributions through the shap library.

- `gradient` (default): expected gradients (shap.GradientExplainer) against a
  background sample of training images.
- `partition`: the Partition explainer with a blur masker (shap.maskers.Image, which
  needs opencv): model-agnostic, hierarchical Owen values over image regions.

shap explains every output of a model; to explain one class per image, instances are
grouped by target class and each group sees a model whose only output is that class.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn


class _ClassOutput(nn.Module):
    """The model's logit for one class, as a one-output model."""

    def __init__(self, model: nn.Module, target: int) -> None:
        super().__init__()
        self.model, self.target = model, target

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)[:, self.target : self.target + 1]


def attribute(
    model: nn.Module,
    images: Tensor,
    targets: Tensor,
    *,
    background: Tensor,
    explainer: str = "gradient",
    samples: int = 200,
    max_evals: int = 500,
    blur: int = 7,
    batch_size: int = 256,
    seed: int = 0,
) -> np.ndarray:
    """SHAP values of each image for its target class, N×C×H×W (background: M×C×H×W)."""
    import shap

    out = np.zeros(tuple(images.shape), dtype=np.float32)
    for target in torch.unique(targets).tolist():
        rows = (targets == target).nonzero().flatten()
        single = _ClassOutput(model, int(target)).eval()
        x = images[rows]
        if explainer == "gradient":
            values = shap.GradientExplainer(single, background, batch_size=batch_size).shap_values(
                x, nsamples=samples, rseed=seed
            )
            values = np.asarray(values).reshape(x.shape)
        elif explainer == "partition":
            values = _partition(single, x, max_evals, blur, batch_size)
        else:
            raise ValueError(f"unknown SHAP explainer {explainer!r}: use gradient or partition")
        out[rows.numpy()] = values
    return out


def _partition(
    model: nn.Module, images: Tensor, max_evals: int, blur: int, batch_size: int
) -> np.ndarray:
    import shap

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
