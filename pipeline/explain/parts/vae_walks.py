"""Contrastive VAE latent walks (after Quint et al. 2020): encode two images of
different classes, walk the straight line between their latent means, decode every
step and classify it. Where the prediction flips, and what changes there, shows what
separates the two classes for the classifier.

torch is imported inside `latent_walk` and `compute` only: the figure stage rebuilds
stored walks with `Walk` and `flip_steps` without loading it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from pydantic import Field

from pipeline.explain.base import Computed, InsidePart, MethodParams
from pipeline.skips import Skipped

if TYPE_CHECKING:
    from torch import Tensor, nn

    from pipeline.data import Splits
    from pipeline.selection import Selection

    class VAE(Protocol):
        def encode_mean(self, images: Tensor) -> Tensor: ...
        def decode(self, latents: Tensor) -> Tensor: ...

    class Inputs(Protocol):
        seed: int
        splits: Splits
        net: nn.Module
        selection: Selection
        class_names: list[str]
        vae: VAE
        model_labels: np.ndarray | None


class VaeWalksParams(MethodParams):
    steps: int = Field(12, ge=2, description="points on each walk, both ends included")
    pairs_per_class_pair: int = Field(
        2, gt=0, description="walks per confused class pair (from the selection)"
    )


@dataclass
class Walk:
    latents: np.ndarray  # T×D, from the first image's mean to the second's
    decoded: np.ndarray  # T×C×H×W
    probabilities: np.ndarray  # T×K
    predicted: np.ndarray  # T
    flips: np.ndarray  # steps i where predicted[i] != predicted[i - 1]

    @property
    def first_flip(self) -> int | None:
        return int(self.flips[0]) if len(self.flips) else None

    def difference_at_flip(self) -> np.ndarray | None:
        """decoded[flip] − decoded[flip − 1]: what changed the decision."""
        if self.first_flip is None:
            return None
        return self.decoded[self.first_flip] - self.decoded[self.first_flip - 1]


def flip_steps(predicted: np.ndarray) -> np.ndarray:
    """Indices i ≥ 1 where the predicted class differs from step i − 1."""
    predicted = np.asarray(predicted)
    return np.flatnonzero(predicted[1:] != predicted[:-1]) + 1


def latent_walk(
    encode: Callable[[Tensor], Tensor],
    decode: Callable[[Tensor], Tensor],
    classifier: Callable[[Tensor], Tensor],
    first: Tensor,
    second: Tensor,
    steps: int,
) -> Walk:
    """`steps` ≥ 2 points from encode(first) to encode(second), both ends included."""
    import torch

    if steps < 2:
        raise ValueError(f"a walk needs at least 2 steps, got {steps}")
    with torch.inference_mode():
        a, b = encode(first[None])[0], encode(second[None])[0]
        t = torch.linspace(0, 1, steps)[:, None]
        latents = (1 - t) * a + t * b
        decoded = decode(latents)
        probabilities = torch.softmax(classifier(decoded), dim=1)
    predicted = probabilities.argmax(1).numpy()
    return Walk(
        latents.numpy(), decoded.numpy(), probabilities.numpy(), predicted, flip_steps(predicted)
    )


def walk_metrics(walks: list[Walk]) -> dict[str, float]:
    """Mean position of the first flip (0 = start, 1 = end; walks without a flip left
    out), the share of walks that flip exactly once, and the share that flip at all."""
    if not walks:
        return {"walks": 0}
    positions = [w.first_flip / (len(w.predicted) - 1) for w in walks if w.first_flip is not None]
    return {
        "walks": len(walks),
        "mean_flip_position": float(np.mean(positions)) if positions else float("nan"),
        "share_flipping_once": float(np.mean([len(w.flips) == 1 for w in walks])),
        "share_flipping": float(np.mean([len(w.flips) > 0 for w in walks])),
    }


# a VAE whose decodings of different images vary less than this share of the images'
# own variation has learned about one picture (posterior collapse, or too little training
# for its image size): its walks would show that picture at every step
MIN_DECODED_SPREAD = 0.05
SPREAD_IMAGES = 64  # test images the check decodes


def decoded_spread(originals: np.ndarray, decoded: np.ndarray) -> float:
    """How much the VAE's decodings of different images differ, as a share of how much
    the images differ: mean per-pixel standard deviation across images, decoded over
    original (1: as varied as the images, 0: one picture for all)."""
    spread = float(np.asarray(originals, np.float64).std(0).mean())
    return float(np.asarray(decoded, np.float64).std(0).mean()) / spread if spread else 1.0


def check_decodings_vary(originals: np.ndarray, decoded: np.ndarray) -> None:
    """Raise Skipped when the VAE decodes every image to nearly the same picture."""
    share = decoded_spread(originals, decoded)
    if share < MIN_DECODED_SPREAD:
        raise Skipped(
            f"the VAE decodes {len(decoded)} different test images to nearly one picture "
            f"(their decodings vary {share:.2%} as much as the images, under the "
            f"{MIN_DECODED_SPREAD:.0%} a walk needs): every step of a walk would show it; "
            "train the VAE longer (vae.epochs) or on smaller images (data.image_size)"
        )


class VaeWalks(InsidePart):
    name = "vae_walks"
    Params = VaeWalksParams
    title = "contrastive VAE latent walks"
    reference = "after Quint et al. 2020 (contrastive latent walks)"
    seeded = True  # the walks' end images

    def compute(self, inputs: Inputs, p: VaeWalksParams) -> Computed:  # type: ignore[override]
        """`walks`: for correctly classified test images of each confused class pair of
        the selection (or classes 0 and 1 when there is none), the walk's latents,
        decoded images and class probabilities, with a title and the two end images."""
        import torch

        from pipeline.inference import as_float_images, predict_proba

        splits, net, names, labels = (
            inputs.splits,
            inputs.net,
            inputs.class_names,
            inputs.model_labels,
        )
        if labels is None:
            raise Skipped(
                "the test labels are not the model's classes (a model explained as it is on "
                "a folder of other classes): a walk runs between correctly classified images "
                "of two of its classes"
            )
        vae = inputs.vae
        pairs = inputs.selection.pairs[:, :2] if len(inputs.selection.pairs) else [(0, 1)]
        rng = np.random.default_rng(inputs.seed)
        correct = predict_proba(net, splits.x_test).argmax(1) == labels
        walks, titles, ends = [], [], []
        with torch.inference_mode():
            sample = as_float_images(splits.x_test[:SPREAD_IMAGES])
            check_decodings_vary(sample.numpy(), vae.decode(vae.encode_mean(sample)).numpy())
            for a, b in pairs:
                from_a = np.flatnonzero(correct & (labels == a))
                from_b = np.flatnonzero(correct & (labels == b))
                count = min(p.pairs_per_class_pair, len(from_a), len(from_b))
                for i, j in zip(
                    rng.choice(from_a, count, replace=False),
                    rng.choice(from_b, count, replace=False),
                    strict=True,
                ):
                    images = as_float_images(splits.x_test[[i, j]])
                    walks.append(
                        latent_walk(vae.encode_mean, vae.decode, net, images[0], images[1], p.steps)
                    )
                    ends.append((int(i), int(j)))
                    titles.append(f"{names[a]} #{i} → {names[b]} #{j}")
        arrays = {
            "titles": np.array(titles),
            "ends": np.array(ends).reshape(-1, 2),
            "decoded": np.stack([w.decoded for w in walks]) if walks else np.zeros(0),
            "probabilities": np.stack([w.probabilities for w in walks]) if walks else np.zeros(0),
            "latents": np.stack([w.latents for w in walks]) if walks else np.zeros(0),
            "class_names": np.array(names),
        }
        return Computed({"walks": arrays}, walk_metrics(walks))

    def draw(self, stored: dict[str, dict[str, np.ndarray]], p: VaeWalksParams) -> dict[str, Any]:  # type: ignore[override]
        """`walks.png` (a short message in its place when there is no walk)."""
        from pipeline.figures.common import message_figure
        from pipeline.figures.vae_walks import plot_walks

        z = stored["walks"]
        walks = []
        for i in range(len(z["titles"])):
            predicted = z["probabilities"][i].argmax(1)
            walks.append(
                Walk(
                    z["latents"][i],
                    z["decoded"][i],
                    z["probabilities"][i],
                    predicted,
                    flip_steps(predicted),
                )
            )
        if not walks:
            return {"walks.png": message_figure("no walks: too few test images", "VAE walks")}
        names = [str(n) for n in z["class_names"]]
        return {"walks.png": plot_walks(walks, [str(t) for t in z["titles"]], names)}
