"""ROAD's cost per map set, and our batched CG imputation against the reference's
per-image sparse direct solve (github.com/tleemann/road_evaluation NoisyLinearImputer:
its system, as tests/test_road.py writes it, solved by scipy's spsolve image by image).

    python benchmarks/road_speed.py [--images 200] [--subset 20] [--rounds 3]

On the classifier stage's test images (MNIST-size in the default run) with input-gradient
maps: the median wall and CPU seconds of `road_curves` for one map set (9 percentages ×
MoRF and LeRF, goal: under ~2 s), split into imputation and forward passes; then, on
`--subset` images (and on random 3×32×32 images, CIFAR's size), seconds per image of
both solvers on the same masks, their ratio and the largest difference (goal <= 1e-4).
Needs data/dataset.npz and models/classifier/model.pt (or --data/--model).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from scipy.sparse.linalg import spsolve

from pipeline.data import Splits
from pipeline.evaluate.faithfulness import pixel_ranks
from pipeline.evaluate.road import _removed_counts, linear_impute, road_curves
from pipeline.inference import as_float_images, inference_copy
from pipeline.models.export import load_classifier

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_road import reference_system  # the reference system, written once

PERCENTAGES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def timed(fn: Callable[[], object]) -> tuple[float, float]:
    """(wall, CPU) seconds of one call: the CPU time shows the work when the machine is
    shared (wall time then includes waiting for a core)."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def median_timing(fn: Callable[[], object], rounds: int) -> tuple[float, float]:
    runs = [timed(fn) for _ in range(rounds)]
    return statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)


def gradient_maps(model: torch.nn.Module, images: torch.Tensor, classes: torch.Tensor):
    """|d score / d pixel| summed over channels: a real attribution with ties only where
    the gradient is exactly zero."""
    x = images.clone().requires_grad_(True)
    model(x).gather(1, classes[:, None]).sum().backward()
    return x.grad.abs().sum(1).numpy()


def road_masks(maps: np.ndarray, seed: int = 0) -> list[torch.Tensor]:
    """The 2×9 removed-pixel masks road_curves builds (MoRF then LeRF)."""
    n, h, w = maps.shape
    rank = torch.as_tensor(pixel_ranks(maps, seed).reshape(n, h, w))
    counts = _removed_counts(list(PERCENTAGES), h * w)
    return [rank < k for k in counts] + [rank >= h * w - k for k in counts]


def reference_impute(image: np.ndarray, removed: np.ndarray) -> np.ndarray:
    """NoisyLinearImputer(noise=0)(image, mask) of the reference, float64."""
    a, b = reference_system(image.astype(np.float64), ~removed)
    out = image.reshape(len(image), -1).astype(np.float64)
    out[:, removed.reshape(-1)] = spsolve(a, b).reshape(len(b), -1).T
    return out.reshape(image.shape)


def compare_solvers(images: torch.Tensor, masks: list[torch.Tensor], label: str) -> None:
    """Both solvers on the same images and masks: seconds per imputed image, max |diff|."""
    ours: list[torch.Tensor] = []
    wall, cpu = timed(lambda: ours.extend(linear_impute(images, m) for m in masks))
    x = images.numpy()
    ref_wall, ref_cpu, diff = 0.0, 0.0, 0.0
    for m, out in zip(masks, ours, strict=True):
        for i in range(len(x)):
            start_wall, start_cpu = time.perf_counter(), time.process_time()
            expected = reference_impute(x[i], m[i].numpy())
            ref_wall += time.perf_counter() - start_wall
            ref_cpu += time.process_time() - start_cpu
            diff = max(diff, float(np.abs(out[i].numpy() - expected).max()))
    count = len(x) * len(masks)
    print(
        f"{label}: {count} imputations; ms per image, ours (batched CG) "
        f"{1e3 * wall / count:.3f} wall / {1e3 * cpu / count:.3f} CPU, "
        f"reference (spsolve per image) {1e3 * ref_wall / count:.3f} wall / "
        f"{1e3 * ref_cpu / count:.3f} CPU; reference / ours (CPU) {ref_cpu / cpu:.1f}×; "
        f"max |difference| {diff:.2e}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="data/dataset.npz")
    parser.add_argument("--model", default="models/classifier/model.pt")
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--subset", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    splits = Splits.load(args.data)
    model, _ = load_classifier(args.model)
    images = as_float_images(splits.x_test[: args.images])
    with torch.no_grad():
        classes = model(images).argmax(1)
    maps = gradient_maps(model, images, classes)
    print(
        f"{splits.dataset}: {len(images)} images {tuple(images.shape[1:])}, "
        f"{len(PERCENTAGES)} percentages × MoRF and LeRF, torch threads {torch.get_num_threads()}"
    )

    wall, cpu = median_timing(
        lambda: road_curves(
            model, images, maps, classes, percentages=PERCENTAGES, noise=0.01, seed=0
        ),
        args.rounds,
    )
    print(f"road_curves, one map set: {wall:.2f} s wall, {cpu:.2f} s CPU (median of {args.rounds})")
    masks = road_masks(maps)
    wall, cpu = median_timing(lambda: [linear_impute(images, m) for m in masks], args.rounds)
    print(
        f"  of which imputation ({len(masks)} × {len(images)} images): {wall:.2f} s wall, "
        f"{cpu:.2f} s CPU"
    )
    fast = inference_copy(model)
    stacked = torch.cat([images] * (len(masks) + 1))
    with torch.inference_mode():
        wall, cpu = median_timing(
            lambda: [fast(stacked[i : i + 1024]) for i in range(0, len(stacked), 1024)],
            args.rounds,
        )
    print(
        f"  forward passes ({len(stacked)} images, batches of 1024): {wall:.2f} s wall, "
        f"{cpu:.2f} s CPU"
    )

    subset = slice(0, args.subset)
    compare_solvers(images[subset], [m[subset] for m in masks], f"{splits.dataset} subset")
    rng = np.random.default_rng(0)
    colour = torch.as_tensor(rng.random((args.subset, 3, 32, 32)).astype(np.float32))
    smooth = torch.nn.functional.avg_pool2d(torch.rand(args.subset, 1, 40, 40), 9, 1)
    compare_solvers(colour, road_masks(smooth[:, 0].numpy()), "random 3×32×32 (CIFAR size)")
    colour = torch.as_tensor(rng.random((args.images, 3, 32, 32)).astype(np.float32))
    smooth = torch.nn.functional.avg_pool2d(torch.rand(args.images, 1, 40, 40), 9, 1)
    masks = road_masks(smooth[:, 0].numpy())
    wall, cpu = median_timing(lambda: [linear_impute(colour, m) for m in masks], args.rounds)
    print(
        f"imputation alone, {len(masks)} × {args.images} random 3×32×32 images: "
        f"{wall:.2f} s wall, {cpu:.2f} s CPU"
    )


if __name__ == "__main__":
    main()
