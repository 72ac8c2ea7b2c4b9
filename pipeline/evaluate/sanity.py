"""Model-parameter randomization test (Adebayo et al. 2018, "Sanity Checks for
Saliency Maps"): re-initialise the classifier's layers one after another from the top
(logits first), recompute the attributions after each step, and compare them with the
trained model's by Spearman rank correlation of absolute values and by SSIM. An
explanation that barely changes when the model is destroyed does not explain the model.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator

import numpy as np
import torch
from torch import nn

from pipeline.evaluate.intervals import finite_mean
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
    """Spearman correlation of each row pair (N×D, N×D), average ranks for ties; NaN
    where either row is constant (no ranking to compare)."""
    from scipy.stats import rankdata

    ra = rankdata(a, axis=1) - (a.shape[1] + 1) / 2
    rb = rankdata(b, axis=1) - (b.shape[1] + 1) / 2
    denominator = np.sqrt((ra**2).sum(1) * (rb**2).sum(1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, (ra * rb).sum(1) / denominator, np.nan)


def spearman_masked(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """spearman_rows() of each row pair restricted to the row's True entries of `mask`
    (N×D each); NaN where fewer than two entries are True."""
    return np.array(
        [
            spearman_rows(x[m][None], y[m][None])[0] if m.sum() >= 2 else np.nan
            for x, y, m in zip(a, b, mask, strict=True)
        ]
    )


def foreground_mask(images: np.ndarray, tolerance: float) -> np.ndarray:
    """N×H×W booleans: pixels whose colour differs by more than `tolerance` (in any
    channel, images in [0, 1], N×C×H×W) from the image's background colour, taken as
    the median of its border pixels. On MNIST: the digit's strokes."""
    border = np.concatenate(
        [images[:, :, 0, :], images[:, :, -1, :], images[:, :, :, 0], images[:, :, :, -1]], axis=2
    )
    background = np.median(border, axis=2)[:, :, None, None]
    return (np.abs(images - background) > tolerance).any(axis=1)


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


def per_image_similarity(
    reference: np.ndarray, other: np.ndarray, foreground: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """Per image: Spearman ρ of |maps| on all pixels (`spearman`), on the foreground
    pixels (`spearman_foreground`, when a N×H×W mask is given) and SSIM (`ssim`), between
    two N×C×H×W attributions; NaN where either map is constant."""
    ref = np.abs(pixel_map(reference))
    oth = np.abs(pixel_map(other))
    flat_ref, flat_oth = ref.reshape(len(ref), -1), oth.reshape(len(oth), -1)
    rho = spearman_rows(flat_ref, flat_oth)
    result = {"spearman": rho, "ssim": np.where(np.isfinite(rho), ssim_rows(ref, oth), np.nan)}
    if foreground is not None:
        mask = foreground.reshape(len(ref), -1)
        result["spearman_foreground"] = np.where(
            np.isfinite(rho), spearman_masked(flat_ref, flat_oth, mask), np.nan
        )
    return result


def similarity(reference: np.ndarray, other: np.ndarray) -> tuple[float, float]:
    """(mean Spearman of |maps|, mean SSIM of |maps|) between two N×C×H×W attributions,
    over the images whose maps are not constant."""
    values = per_image_similarity(reference, other)
    return finite_mean(values["spearman"]), finite_mean(values["ssim"])


def cascade_steps(
    model: nn.Module,
    layers: list[str],
    seed: int,
    randomise: Callable[[nn.Module, torch.Generator], None] = reinitialise,
) -> Iterator[tuple[str, nn.Module]]:
    """(layer, model) after each layer is randomized, top first, all above it already
    random: a copy of the model, one seeded generator for the whole cascade (so the
    last step of seed s is the fully randomized model of seed s)."""
    randomized = copy.deepcopy(model).eval()
    generator = torch.Generator().manual_seed(seed)
    for layer in layers:
        randomise(randomized.get_submodule(layer), generator)
        yield layer, randomized


def fully_randomized(
    model: nn.Module,
    layers: list[str],
    seed: int,
    randomise: Callable[[nn.Module, torch.Generator], None] = reinitialise,
) -> nn.Module:
    """The model with every layer in `layers` randomized: the cascade's last step."""
    steps = list(cascade_steps(model, layers, seed, randomise))
    return steps[-1][1] if steps else copy.deepcopy(model).eval()


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
    rows: list[dict[str, float | str]] = []
    for layer, randomized in cascade_steps(model, layers, seed, randomise):
        rho, ssim = similarity(reference, explain(randomized))
        rows.append({"layer": layer, "spearman": rho, "ssim": ssim})
    return rows
