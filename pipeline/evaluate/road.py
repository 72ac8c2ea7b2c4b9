"""ROAD, RemOve And Debias (Rong, Leemann, Borisov, Kasneci & Kasneci, ICML 2022).

Deletion (faithfulness.py) fills removed pixels with a constant, and the shape of the
filled-in hole alone can tell the model which pixels were important ("class information
leakage"). ROAD fills them by *noisy linear imputation* instead, as the reference code
does (github.com/tleemann/road_evaluation, `road/imputations.py` NoisyLinearImputer):
every removed pixel is the weighted mean of its 8 neighbours inside the image (weight
1/6 for the 4 edge neighbours, 1/12 for the 4 diagonal ones, renormalised by the weight
of the neighbours that exist), kept pixels stay fixed, and the resulting sparse linear
system is solved exactly; then Gaussian noise (std 0.01 in the reference) is added to
the imputed pixels. Each channel is imputed on its own with the same mask.

The reference solves that system per image with scipy's sparse LU (a few ms each).
Here all systems are solved together by conjugate gradients on the image grid: with
the kept pixels moved to the right-hand side the matrix is diag(s) - W restricted to
the removed pixels (s = the weight of a pixel's neighbours inside the image, W the
symmetric neighbour weights), a weighted graph Laplacian with Dirichlet boundary. It is
symmetric, and positive definite whenever an image keeps at least one pixel (the
8-neighbour grid is connected, so every removed region touches a kept pixel), which is
what CG needs. The neighbour sums are a separable 3×3 stencil ([1,2,1]⊗[1,2,1] minus
the centre, /12) on a zero-padded grid.

Curves: the probability of the originally predicted class after removing the share p
of pixels, most relevant first (MoRF: should fall fast, low AUC is good) and least
relevant first (LeRF: should stay high, high AUC is good), for every p in
`percentages`, plus the unmodified image at p = 0 (no imputation, no noise: both curves
start at the original probability, as deletion's do). The x axis is the share of pixels
removed for both orders; the AUCs are trapezoids over it from 0 to the last percentage
(not rescaled: at most 0.9 with percentages 0.1..0.9). As in the reference, ⌊p·H·W⌋
pixels are removed. Where the reference differs: its LeRF at `th_p` removes all but the
top th_p, i.e. the share 1 - th_p (for percentages symmetric about 0.5, such as
0.1..0.9, the same images, read along the other direction); and it breaks ties by
adding 1e-4·N(0, 1) to the min-max normalised map, where we order exactly equal values
by a seeded random key (`pixel_ranks`, shared with deletion).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import torch
from torch import Tensor, nn

from pipeline.console import progress
from pipeline.evaluate.faithfulness import auc, class_probabilities, pixel_ranks
from pipeline.inference import inference_copy

# CG stops once the residual of every system (2-norm, in image units for values in
# [0, 1], relative to the largest |value| beyond that) is this small; tests/test_road.py
# checks that this puts the solution within 1e-5 of a sparse direct solve, far below the
# imputation noise (0.01)
CG_TOLERANCE = 1e-6
CG_MAX_ITERATIONS = 2000
# systems solved together: large enough to amortise Python's per-operation cost, small
# enough that one iteration's arrays stay in the CPU cache
CG_CHUNK = 256


@dataclass
class RoadCurves:
    fractions: np.ndarray  # 0, then the percentages: share of pixels removed
    morf: np.ndarray  # N×len(fractions) probabilities, most relevant removed first
    lerf: np.ndarray  # least relevant removed first

    @property
    def morf_auc(self) -> np.ndarray:
        return auc(self.fractions, self.morf)

    @property
    def lerf_auc(self) -> np.ndarray:
        return auc(self.fractions, self.lerf)


def _stencil(padded: Tensor, tmp: Tensor, out: Tensor) -> Tensor:
    """[1,2,1]⊗[1,2,1] sums of an M×(H+2)×(W+2) zero-padded grid into M×H×W `out`
    (12× the neighbour-weighted sum, plus 4× the centre), with no new allocations."""
    torch.add(padded[:, :-2], padded[:, 2:], out=tmp)
    tmp.add_(padded[:, 1:-1], alpha=2)
    torch.add(tmp[:, :, :-2], tmp[:, :, 2:], out=out)
    return out.add_(tmp[:, :, 1:-1], alpha=2)


def _solve_chunk(values: Tensor, removed: Tensor, tol: float) -> Tensor:
    """Linear imputation of M single-channel H×W grids (kept `values` fixed) by CG, in
    float32.

    Scaled by 12, the system for the removed pixels is a·x - S(x) = S(kept values),
    where S is the [1,2,1]⊗[1,2,1] stencil and a = S(1) (16 inside, 12 on an edge, 9 in
    a corner: 12·s + 4, the 4 cancelling the stencil's centre)."""
    m, h, w = values.shape
    mask = removed.to(values.dtype)
    padded = values.new_zeros(m, h + 2, w + 2)
    tmp = values.new_empty(m, h, w + 2)
    q = values.new_empty(m, h, w)
    one = values.new_zeros(1, h + 2, w + 2)
    one[:, 1:-1, 1:-1] = 1
    a = _stencil(one, values.new_empty(1, h, w + 2), values.new_empty(1, h, w))
    inner = padded[:, 1:-1, 1:-1]
    inner.copy_(values).mul_(1 - mask)
    kept = inner.clone()
    r = _stencil(padded, tmp, values.new_empty(m, h, w)).mul_(mask)  # residual at x = 0
    x = torch.zeros_like(r)
    p = r.clone()
    rr = torch.linalg.vecdot(r.view(m, -1), r.view(m, -1))
    limit = (12 * tol * max(1.0, float(values.abs().max()))) ** 2
    for _ in range(CG_MAX_ITERATIONS):
        if float(rr.max()) <= limit:
            return kept.add_(x)
        inner.copy_(p)
        _stencil(padded, tmp, q).addcmul_(a, p, value=-1).mul_(mask)  # q = -A p
        p_ap = -torch.linalg.vecdot(p.view(m, -1), q.view(m, -1))
        alpha = torch.where(p_ap > 0, rr / p_ap, 0).view(m, 1, 1)
        x.addcmul_(p, alpha)
        r.addcmul_(q, alpha)
        rr_next = torch.linalg.vecdot(r.view(m, -1), r.view(m, -1))
        beta = torch.where(rr > 0, rr_next / rr, 0).view(m, 1, 1)
        p.mul_(beta).add_(r)
        rr = rr_next
    raise RuntimeError(  # pragma: no cover - the system is SPD, CG converges long before
        f"linear imputation: CG did not converge in {CG_MAX_ITERATIONS} iterations"
    )


@torch.no_grad()
def linear_impute(images: Tensor, removed: Tensor, *, tol: float = CG_TOLERANCE) -> Tensor:
    """The noise-free part of `noisy_linear_impute`: N×C×H×W images whose `removed`
    (N×H×W bool) pixels are replaced by the solution of the reference's linear system."""
    _check_impute_args(images, removed)
    n, c, h, w = images.shape
    values = images.detach().float().reshape(n * c, h, w)
    mask = removed.repeat_interleave(c, dim=0)
    out = torch.empty_like(values)
    with _one_thread():
        for start in range(0, n * c, CG_CHUNK):
            part = slice(start, start + CG_CHUNK)
            out[part] = _solve_chunk(values[part], mask[part], tol)
    return out.reshape(n, c, h, w).to(images.dtype)


@contextmanager
def _one_thread() -> Iterator[None]:
    """Torch on one thread for the imputation: its operations are small (a few hundred
    thousand floats each), and splitting them over threads costs more in synchronisation
    than it saves (on a busy 2-core CPU: CG 4-8× slower with 2 threads than with 1)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def noisy_linear_impute(
    images: Tensor, removed: Tensor, *, noise: float, generator: torch.Generator
) -> Tensor:
    """ROAD's noisy linear imputation of N×C×H×W `images` at the N×H×W `removed` pixels:
    linear imputation plus N(0, noise²) on each imputed value (kept pixels unchanged)."""
    if not (math.isfinite(noise) and noise >= 0):
        raise ValueError(f"noise must be a finite number >= 0, got {noise}")
    with _one_thread():
        filled = linear_impute(images, removed)
        if noise > 0:
            draws = torch.randn(filled.shape, generator=generator, dtype=filled.dtype)
            filled.addcmul_(draws, removed.unsqueeze(1).to(filled.dtype), value=noise)
    return filled


def _check_impute_args(images: Tensor, removed: Tensor) -> None:
    if images.dim() != 4:
        raise ValueError(f"images must be N×C×H×W, got shape {tuple(images.shape)}")
    n, _, h, w = images.shape
    if removed.dtype != torch.bool or tuple(removed.shape) != (n, h, w):
        raise ValueError(
            f"removed must be a bool tensor of shape {(n, h, w)} (N×H×W of images), "
            f"got {removed.dtype} {tuple(removed.shape)}"
        )
    if n and bool(removed.reshape(n, -1).all(dim=1).any()):
        raise ValueError("removed: an image has all its pixels removed (nothing to impute from)")


def _removed_counts(percentages: list[float], pixels: int) -> list[int]:
    """Pixels removed at each share: ⌊p·pixels⌋ as the reference's `int(w*h*th_p)`
    (the 1e-9 keeps 0.29·100 from flooring to 28)."""
    return [math.floor(p * pixels + 1e-9) for p in percentages]


def _check_curve_args(
    images: Tensor, maps: np.ndarray, classes: Tensor, percentages: list[float]
) -> None:
    if images.dim() != 4:
        raise ValueError(f"images must be N×C×H×W, got shape {tuple(images.shape)}")
    n, _, h, w = images.shape
    if maps.shape != (n, h, w):
        raise ValueError(f"maps must have shape {(n, h, w)} (N×H×W of images), got {maps.shape}")
    if tuple(classes.shape) != (n,):
        raise ValueError(f"classes must have shape {(n,)}, got {tuple(classes.shape)}")
    if not percentages or any(not (0 < p < 1) for p in percentages):
        raise ValueError(f"percentages must be shares strictly between 0 and 1, got {percentages}")
    if any(b <= a for a, b in pairwise(percentages)):
        raise ValueError(f"percentages must be strictly increasing, got {percentages}")


@torch.inference_mode()
def road_curves(
    model: nn.Module,
    images: Tensor,
    maps: np.ndarray,
    classes: Tensor,
    *,
    percentages: tuple[float, ...] | list[float],
    noise: float,
    seed: int,
    batch_size: int = 1024,
) -> RoadCurves:
    """MoRF and LeRF curves for N images (float, N×C×H×W) and their N×H×W attribution
    maps: the softmax probability of `classes` (the original predictions) after the
    removed pixels are imputed. `seed` orders pixels of equal attribution and draws the
    noise; the result does not depend on `batch_size` (forward passes only)."""
    percentages = [float(p) for p in percentages]
    maps = np.asarray(maps)
    _check_curve_args(images, maps, classes, percentages)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    model = inference_copy(model)
    n, _, h, w = images.shape
    rank = torch.as_tensor(pixel_ranks(maps, seed).reshape(n, h, w))
    counts = _removed_counts(percentages, h * w)
    generator = torch.Generator().manual_seed(seed)
    # MoRF: the k top-ranked pixels, then LeRF: the k bottom-ranked pixels
    removals = [rank < k for k in counts] + [rank >= h * w - k for k in counts]
    imputed = [images]  # p = 0: the image itself
    for removed in progress(removals, "ROAD", unit="imputation"):
        imputed.append(noisy_linear_impute(images, removed, noise=noise, generator=generator))
    s = len(imputed)
    probs = (
        class_probabilities(model, torch.cat(imputed), classes.repeat(s), batch_size)
        .reshape(s, n)
        .T
    )
    steps = len(counts)
    original = probs[:, :1]
    morf = torch.cat([original, probs[:, 1 : 1 + steps]], dim=1)
    lerf = torch.cat([original, probs[:, 1 + steps :]], dim=1)
    fractions = np.array([0.0, *percentages])
    return RoadCurves(fractions, morf.numpy(), lerf.numpy())
