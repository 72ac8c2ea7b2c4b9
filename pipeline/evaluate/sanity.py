"""Model-parameter randomization test (Adebayo et al. 2018, "Sanity Checks for
Saliency Maps"): re-initialise the classifier's layers one after another from the top
(logits first), recompute the attributions after each step, and compare them with the
trained model's by Spearman rank correlation of absolute values and by SSIM. An
explanation that barely changes when the model is destroyed does not explain the model.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from pipeline.explain.base import pixel_map

Explainer = Callable[[nn.Module], np.ndarray]  # model -> N×C×H×W attributions


def cascade_layers(model: nn.Module) -> list[str]:
    """Module paths with their own weights (conv, linear, norm), top layer first."""
    names = [
        name
        for name, module in model.named_modules()
        if name and any(True for _ in module.parameters(recurse=False))
    ]
    return names[::-1]


def reinitialise(module: nn.Module, generator: torch.Generator) -> None:
    """Fresh random weights, N(0, 0.01²)-scaled like a new layer, bias zero; seeded."""
    with torch.no_grad():
        for name, p in module.named_parameters(recurse=False):
            if name == "weight" and p.dim() > 1:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=generator) * (1.0 / fan_in) ** 0.5)
            elif name == "weight":
                p.fill_(1.0)
            else:
                p.zero_()


def spearman_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman correlation of each row pair (N×D, N×D), average ranks for ties."""
    from scipy.stats import rankdata

    ra = rankdata(a, axis=1) - (a.shape[1] + 1) / 2
    rb = rankdata(b, axis=1) - (b.shape[1] + 1) / 2
    denominator = np.sqrt((ra**2).sum(1) * (rb**2).sum(1))
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = (ra * rb).sum(1) / denominator
    # a constant map carries no ranking: correlation 0 unless both are constant
    return np.where(denominator > 0, rho, np.where((ra**2).sum(1) + (rb**2).sum(1) == 0, 1.0, 0.0))


def ssim_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """SSIM of each pair of maps (N×H×W), each min-max scaled to [0, 1] first."""
    from skimage.metrics import structural_similarity

    def scaled(m: np.ndarray) -> np.ndarray:
        span = m.max() - m.min()
        return (m - m.min()) / span if span > 0 else np.zeros_like(m)

    side = min(a.shape[1:])
    win = max(3, min(7, side if side % 2 else side - 1))
    return np.array(
        [
            structural_similarity(scaled(x), scaled(y), data_range=1.0, win_size=win)
            for x, y in zip(a, b, strict=True)
        ]
    )


def similarity(reference: np.ndarray, other: np.ndarray) -> tuple[float, float]:
    """(mean Spearman of |maps|, mean SSIM of |maps|) between two N×C×H×W attributions."""
    ref = np.abs(pixel_map(reference))
    oth = np.abs(pixel_map(other))
    rho = spearman_rows(ref.reshape(len(ref), -1), oth.reshape(len(oth), -1))
    return float(rho.mean()), float(ssim_rows(ref, oth).mean())


def cascading_randomization(
    model: nn.Module,
    explain: Explainer,
    *,
    layers: list[str] | None = None,
    seed: int = 0,
    randomise: Callable[[nn.Module, torch.Generator], None] = reinitialise,
) -> list[dict[str, float | str]]:
    """One row per step: the layer randomized last (all above it already are), the
    Spearman and SSIM against the trained model's attributions. The model is not
    modified (a copy is randomized)."""
    reference = explain(model)
    layers = cascade_layers(model) if layers is None else layers
    randomized = copy.deepcopy(model).eval()
    generator = torch.Generator().manual_seed(seed)
    rows: list[dict[str, float | str]] = []
    for layer in layers:
        randomise(randomized.get_submodule(layer), generator)
        rho, ssim = similarity(reference, explain(randomized))
        rows.append({"layer": layer, "spearman": rho, "ssim": ssim})
    return rows
