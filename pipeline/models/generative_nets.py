"""The plain torch networks of the generative models (no Lightning, no training): an
image decoder that fits any code shape, the VAE's convolutional encoder and Gaussian
head, and the KL term. The Lightning modules that train them are in
`generative_lightning.py`; `restore.py` rebuilds them from saved weights."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pipeline.models.archs import ImageShape, LayerEncoder

CodeShape = tuple[int, ...]
MIN_CHANNELS = 8  # of the decoder's up-sampling layers
MAX_FLAT_START = 8  # side of the first feature map a flat code is projected to


def _up(c_in: int, c_out: int) -> nn.Sequential:
    """Double the resolution."""
    return nn.Sequential(
        nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1), nn.BatchNorm2d(c_out), nn.ReLU()
    )


class ImageDecoder(nn.Module):
    """Code → image in [0, 1]. A flat code is projected to a small feature map (at most
    MAX_FLAT_START a side); a
    spatial code starts from its own resolution; transposed convolutions double the
    size until the image size is reached, halving the channels down to MIN_CHANNELS (the
    full-resolution layers dominate the cost: 8 rather than 16 channels there makes a
    2-core training epoch 12–20% shorter); a sigmoid ends it."""

    def __init__(self, code_shape: CodeShape, image_shape: ImageShape, width: int = 32) -> None:
        super().__init__()
        channels, height, _ = image_shape
        self.image_shape = image_shape
        if len(code_shape) == 1:
            # a quarter of the image side, at most MAX_FLAT_START: 7 for MNIST, 8 for
            # CIFAR, and 8 (not 56) for a 224 px photo, where the projection of a 2,048-d
            # code onto 32 x 56 x 56 would hold 205 million weights
            start = min(max(2, math.ceil(height / 4)), MAX_FLAT_START)
            self.stem: nn.Module = nn.Sequential(
                nn.Linear(code_shape[0], width * start * start),
                nn.ReLU(),
                nn.Unflatten(1, (width, start, start)),
            )
        elif len(code_shape) == 3:
            start = code_shape[1]
            self.stem = nn.Sequential(
                nn.Conv2d(code_shape[0], width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU()
            )
        else:
            raise ValueError(f"codes must be flat or C×H×W, got shape {code_shape}")
        ups, c, size = [], width, start
        while size < height:
            ups.append(_up(c, max(c // 2, MIN_CHANNELS)))
            c, size = max(c // 2, MIN_CHANNELS), size * 2
        self.ups = nn.Sequential(*ups)
        self.head = nn.Conv2d(c, channels, 3, padding=1)

    def forward(self, code: Tensor) -> Tensor:
        x = self.head(self.ups(self.stem(code)))
        if x.shape[-2:] != self.image_shape[1:]:
            x = F.interpolate(x, size=self.image_shape[1:], mode="bilinear", align_corners=False)
        return torch.sigmoid(x)


def code_shape(encoder: LayerEncoder, image_shape: ImageShape) -> CodeShape:
    """The shape of one image's code at the encoder's layer (what a decoder starts from)."""
    with torch.no_grad():
        was = encoder.training
        encoder.eval()
        shape = tuple(encoder(torch.zeros(1, *image_shape)).shape[1:])
        encoder.train(was)
    return shape


class ConvEncoder(nn.Module):
    """Images → flat features: strided convolutions, the VAE's encoder."""

    def __init__(self, image_shape: ImageShape, widths: Sequence[int] = (32, 64)) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = image_shape[0]
        for w in widths:
            layers += [nn.Conv2d(c, w, 4, stride=2, padding=1), nn.BatchNorm2d(w), nn.ReLU()]
            c = w
        self.body = nn.Sequential(*layers, nn.Flatten())
        with torch.no_grad():
            self.out_features = self.body(torch.zeros(1, *image_shape)).shape[1]

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)


class GaussianHead(nn.Module):
    """Features → (mean, log-variance) of a diagonal Gaussian, and a reparameterised sample."""

    def __init__(self, in_features: int, latent_dim: int) -> None:
        super().__init__()
        self.mean = nn.Linear(in_features, latent_dim)
        self.log_var = nn.Linear(in_features, latent_dim)

    def forward(self, features: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        mean, log_var = self.mean(features), self.log_var(features).clamp(-10, 10)
        sample = mean + torch.randn_like(mean) * torch.exp(0.5 * log_var) if self.training else mean
        return sample, mean, log_var


def kl_divergence(mean: Tensor, log_var: Tensor) -> Tensor:
    """KL(N(mean, var) || N(0, 1)), summed over latent dimensions, averaged over the batch."""
    return (-0.5 * (1 + log_var - mean.pow(2) - log_var.exp()).sum(1)).mean()
