"""Our vectorised LIME against the `lime` package's LimeImageExplainer, side by side in
one process on the same images, the same superpixels (our scikit-image segmentation is
passed to lime as its segmentation_fn), the same number of samples, the same fill
(hidden superpixels black), kernel width and batch size.

    python benchmarks/lime_vs_package.py [--images 10] [--samples 1000] [--rounds 2]

Reports the median time per image of each and their ratio (goal: lime / ours >= 3),
for lime with its own default batch size (10 images per model call) and with ours, for
lime calling the same in-place-ReLU copy of the network our LIME runs, and for lime with
numpy's BLAS limited to one thread as our LIME runs it (lime's ridge regressions then
stop competing with the forward passes for the cores). Ours is timed
as the explain stage calls it, all images in one call, divided by their number.
Agreement is the Spearman rank correlation of the superpixel weights (goal >= 0.8):
once with our LIME replaying the exact on/off patterns lime draws (same samples, so
any difference is the implementation), and once with independent draws (there the
many superpixels of plain background, whose true weight is 0, rank at random), next to
lime against itself with another seed, the best independent draws can agree.
Needs the classifier stage's outputs (models/classifier/model.pt, data/dataset.npz).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import time
import warnings
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import spearmanr
from threadpoolctl import threadpool_limits

from pipeline.data import Splits
from pipeline.explain.methods.lime import LimeParams, explain, segment
from pipeline.inference import as_float_images, inference_copy
from pipeline.models.export import load_classifier


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=10)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--segments", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=512)  # explain.lime.batch_size
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    from lime.lime_image import LimeImageExplainer

    splits = Splits.load("data/dataset.npz")
    net, _ = load_classifier("models/classifier/model.pt")
    images = as_float_images(splits.x_test[: args.images])
    with torch.inference_mode():
        targets = net(images).argmax(1)
    settings = LimeParams(
        segments=args.segments,
        samples=args.samples,
        fill="black",
        kernel_width=0.25,
        batch_size=args.batch_size,
    )
    segments = np.stack([segment(im.numpy(), settings) for im in images])

    def lime_classifier_fn(network: torch.nn.Module) -> Callable[[np.ndarray], np.ndarray]:
        """lime's classifier_fn for a network: lime hands over H×W×3 images, and our grey
        classifier takes the first channel."""

        @torch.inference_mode()
        def classify(batch: np.ndarray) -> np.ndarray:
            x = torch.as_tensor(batch[..., : images.shape[1]], dtype=torch.float32)
            return F.softmax(network(x.permute(0, 3, 1, 2)), dim=1).numpy()

        return classify

    classifier_fn = lime_classifier_fn(net)
    # the same network as our LIME runs it (in-place ReLUs), to show how much of the gap
    # is the implementation rather than the forward pass
    fast_classifier_fn = lime_classifier_fn(inference_copy(net))

    def lime_patterns(seed: int, features: int) -> np.ndarray:
        # LimeImageExplainer draws a segmentation seed first (even when a segmentation_fn
        # is given), then its on/off patterns in data_labels, exactly like this
        state = np.random.RandomState(seed)
        state.randint(0, high=1000)
        data = state.randint(0, 2, args.samples * features)
        data = data.reshape((args.samples, features))
        data[0, :] = 1
        return data

    times: dict[str, list[float]] = {
        "ours": [],
        "lime_batch_default": [],
        "lime_batch_equal": [],
        "lime_batch_default_inplace_model": [],
        "lime_batch_default_blas_1_thread": [],
    }
    same_patterns: list[float] = []
    independent: list[float] = []
    lime_vs_lime: list[float] = []
    max_weight_gap: list[float] = []
    features = [int(s.max()) + 1 for s in segments]

    def lime_weights(i: int, seed: int, batch_size: int, fn: Callable) -> np.ndarray:
        """The package's weight of every superpixel of image i for its target class."""
        rgb = np.repeat(images[i].numpy().transpose(1, 2, 0), 3, axis=2).astype(np.float64)
        explainer = LimeImageExplainer(kernel_width=0.25, random_state=seed)
        with contextlib.redirect_stderr(io.StringIO()):  # lime's progress bar per image
            result = explainer.explain_instance(
                rgb,
                fn,
                labels=(int(targets[i]),),
                top_labels=None,
                hide_color=0,
                num_features=100000,
                num_samples=args.samples,
                batch_size=batch_size,
                segmentation_fn=lambda _image: segments[i],
            )
        weights = np.zeros(features[i])
        for feature, weight in result.local_exp[int(targets[i])]:
            weights[feature] = weight
        return weights

    for round_ in range(args.rounds):
        seeds = [round_ * 1000 + i for i in range(len(images))]
        # ours runs as the explain stage runs it: all selected images in one call
        start = time.perf_counter()
        ours = explain(net, images, targets, settings, seed=round_, segment_maps=segments)
        times["ours"].append((time.perf_counter() - start) / len(images))
        replayed = explain(
            net,
            images,
            targets,
            settings,
            segment_maps=segments,
            patterns=[lime_patterns(s, f) for s, f in zip(seeds, features, strict=True)],
        )
        for i, seed in enumerate(seeds):
            variants = (
                ("lime_batch_default", 10, classifier_fn, None),  # the package's default
                ("lime_batch_equal", args.batch_size, classifier_fn, None),
                ("lime_batch_default_inplace_model", 10, fast_classifier_fn, None),
                ("lime_batch_default_blas_1_thread", 10, classifier_fn, 1),
            )
            for key, batch_size, fn, blas_threads in variants:
                start = time.perf_counter()
                with threadpool_limits(limits=blas_threads, user_api="blas"):
                    theirs = lime_weights(i, seed, batch_size, fn)
                times[key].append(time.perf_counter() - start)
            same_patterns.append(float(spearmanr(replayed.weights[i], theirs).statistic))
            independent.append(float(spearmanr(ours.weights[i], theirs).statistic))
            max_weight_gap.append(float(np.abs(replayed.weights[i] - theirs).max()))
            # the same package with another seed: how far independent draws agree at best
            other_seed = lime_weights(i, seed + 10_000, 10, classifier_fn)
            lime_vs_lime.append(float(spearmanr(other_seed, theirs).statistic))
    median = {k: statistics.median(v) for k, v in times.items()}
    report = {
        "images": len(images),
        "samples": args.samples,
        "superpixels_mean": float(np.mean([s.max() + 1 for s in segments])),
        "seconds_per_image": median,
        "speedup_vs_lime_default_batch": median["lime_batch_default"] / median["ours"],
        "speedup_vs_lime_equal_batch": median["lime_batch_equal"] / median["ours"],
        "speedup_vs_lime_default_batch_inplace_model": median["lime_batch_default_inplace_model"]
        / median["ours"],
        "speedup_vs_lime_default_batch_blas_1_thread": median["lime_batch_default_blas_1_thread"]
        / median["ours"],
        "spearman_same_patterns_mean": float(np.mean(same_patterns)),
        "spearman_same_patterns_min": float(np.min(same_patterns)),
        "max_weight_difference_same_patterns": float(np.max(max_weight_gap)),
        "spearman_independent_draws_mean": float(np.mean(independent)),
        "spearman_lime_vs_lime_other_seed_mean": float(np.mean(lime_vs_lime)),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
