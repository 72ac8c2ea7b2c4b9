"""Models and images whose right explanation is known by construction."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

SIZE = 16
REGION = (slice(2, 8), slice(2, 8))  # the only pixels the model looks at


class RegionModel(nn.Module):
    """Two classes. logit 1 = 4 · Σ over REGION of relu(x - 0.5), logit 0 = 1: the
    decision depends on bright pixels inside REGION and on nothing else."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 1)
        self.relu = nn.ReLU()
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(SIZE * SIZE, 2)
        with torch.no_grad():
            self.conv.weight.fill_(1.0)
            self.conv.bias.fill_(-0.5)
            mask = torch.zeros(SIZE, SIZE)
            mask[REGION] = 4.0
            self.fc.weight.zero_()
            self.fc.weight[1] = mask.flatten()
            self.fc.bias.copy_(torch.tensor([1.0, 0.0]))

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.flatten(self.relu(self.conv(x))))


def region_images(n: int, seed: int = 0, distractor: bool = True) -> tuple[Tensor, np.ndarray]:
    """Noise below 0.3 everywhere, a bright 3×3 square somewhere inside REGION (the
    evidence for class 1) and, optionally, an equally bright square outside it that
    the model ignores. Returns images N×1×H×W and the evidence masks N×H×W."""
    rng = np.random.default_rng(seed)
    images = rng.uniform(0, 0.3, size=(n, 1, SIZE, SIZE)).astype(np.float32)
    evidence = np.zeros((n, SIZE, SIZE), dtype=bool)
    for i in range(n):
        top, left = rng.integers(2, 6, size=2)
        images[i, 0, top : top + 3, left : left + 3] = 0.95
        evidence[i, top : top + 3, left : left + 3] = True
        if distractor:
            top, left = rng.integers(10, 13, size=2)
            images[i, 0, top : top + 3, left : left + 3] = 0.95
    return torch.from_numpy(images), evidence


def attribute(
    name: str,
    model: nn.Module,
    images: Tensor,
    targets: Tensor,
    *,
    seed: int = 0,
    background: Tensor | None = None,
    **params: object,
) -> np.ndarray:
    """A registered method's maps, its params its defaults with `params` overriding them
    (an unknown key is a validation error, as in params.yaml)."""
    from pipeline.explain.registry import method_class

    cls = method_class(name)
    method = cls(seed=seed, background=background)
    return method.attribute(model.eval(), images, targets, cls.Params(**params)).maps


def share(maps: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per image: the share of the positive attribution mass that lies on `mask`."""
    from pipeline.explain.base import pixel_map

    positive = np.clip(pixel_map(maps), 0, None)
    return (positive * mask).sum((1, 2)) / positive.sum((1, 2))


def dilated(mask: np.ndarray, pixels: int) -> np.ndarray:
    """`mask` (N×H×W) widened by `pixels` in every direction."""
    from scipy.ndimage import binary_dilation

    return binary_dilation(mask, np.ones((1, 2 * pixels + 1, 2 * pixels + 1), bool))


def region_mask() -> np.ndarray:
    """1×H×W: True on REGION, the only pixels RegionModel looks at."""
    mask = np.zeros((1, SIZE, SIZE), bool)
    mask[(0, *REGION)] = True
    return mask
