"""Contrastive VAE latent walks (after Quint et al. 2020): encode two images of
different classes, walk the straight line between their latent means, decode every
step and classify it. Where the prediction flips, and what changes there, shows what
separates the two classes for the classifier.

torch is imported inside `latent_walk` only: the figure stage reads stored walks with
`Walk` and `flip_steps` and starts faster without it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from torch import Tensor


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
