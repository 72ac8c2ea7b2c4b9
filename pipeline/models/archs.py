"""Classifier architectures. Each takes images in [0, 1] (normalization is inside) and
names its explainable layers: `conv` (output of the last conv block) and `dense` (the
penultimate dense layer, after its ReLU). Any other module path works too."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from pipeline.errors import ParamsError

ImageShape = tuple[int, int, int]


class Normalize(nn.Module):
    """Per-channel standardisation kept with the weights, so callers feed raw [0, 1] pixels."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(-1, 1, 1))
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(-1, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std


class ImageClassifier(nn.Module):
    """normalize → features (conv blocks) → flatten → dense (Linear+ReLU) → dropout → logits."""

    def __init__(
        self,
        features: nn.Sequential,
        conv_layer: str,
        input_shape: ImageShape,
        num_classes: int,
        hidden: int,
        dropout: float,
        mean: Sequence[float],
        std: Sequence[float],
    ) -> None:
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.features = features
        with torch.no_grad():
            flat = features(torch.zeros(1, *input_shape)).numel()
        self.dense = nn.Sequential(nn.Flatten(), nn.Linear(flat, hidden), nn.ReLU())
        self.dropout = nn.Dropout(dropout)
        self.logits = nn.Linear(hidden, num_classes)
        self.named_layers = {"conv": f"features.{conv_layer}", "dense": "dense"}

    def forward(self, x: Tensor) -> Tensor:
        return self.logits(self.dropout(self.dense(self.features(self.normalize(x)))))


def _block(
    c_in: int,
    c_out: int,
    kernel: int,
    *,
    bn: bool,
    pool: bool,
    convs: int = 1,
    dropout: float = 0.0,
) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(convs):
        layers.append(nn.Conv2d(c_in if i == 0 else c_out, c_out, kernel, padding=kernel // 2))
        if bn:
            layers.append(nn.BatchNorm2d(c_out))
        layers.append(nn.ReLU())
    if pool:
        layers.append(nn.MaxPool2d(2))
    if dropout:
        layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


def _small_cnn(c: int) -> tuple[nn.Sequential, str, int, float]:
    blocks = OrderedDict(
        block1=_block(c, 16, 3, bn=False, pool=True),
        block2=_block(16, 32, 3, bn=False, pool=True),
        block3=_block(32, 64, 3, bn=False, pool=False),
    )
    return nn.Sequential(blocks), "block3", 128, 0.0


def _cladec_cnn(c: int) -> tuple[nn.Sequential, str, int, float]:
    blocks = OrderedDict(
        block1=_block(c, 32, 5, bn=True, pool=True),
        block2=_block(32, 64, 5, bn=True, pool=True),
        drop=nn.Dropout(0.25),
    )
    return nn.Sequential(blocks), "block2", 128, 0.5


def _cifar_cnn(c: int) -> tuple[nn.Sequential, str, int, float]:
    blocks = OrderedDict(
        block1=_block(c, 32, 3, bn=True, pool=True, convs=2),
        drop1=nn.Dropout(0.2),
        block2=_block(32, 64, 3, bn=True, pool=True, convs=2),
        drop2=nn.Dropout(0.3),
        block3=_block(64, 128, 3, bn=True, pool=True, convs=2),
        drop3=nn.Dropout(0.4),
    )
    return nn.Sequential(blocks), "block3", 256, 0.5


ARCH_BUILDERS: dict[str, Callable[[int], tuple[nn.Sequential, str, int, float]]] = {
    "small_cnn": _small_cnn,
    "cladec_cnn": _cladec_cnn,
    "cifar_cnn": _cifar_cnn,
}


def build_classifier(
    arch: str,
    input_shape: ImageShape,
    num_classes: int,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> ImageClassifier:
    """Build a named architecture for images of `input_shape` (C, H, W)."""
    if arch not in ARCH_BUILDERS:
        raise ParamsError(f"unknown arch {arch!r}; allowed: {', '.join(ARCH_BUILDERS)}")
    channels = input_shape[0]
    if min(input_shape[1:]) < 8:
        raise ParamsError(f"images of {input_shape[1]}x{input_shape[2]} are too small (min 8x8)")
    features, conv_layer, hidden, dropout = ARCH_BUILDERS[arch](channels)
    return ImageClassifier(
        features,
        conv_layer,
        input_shape,
        num_classes,
        hidden,
        dropout,
        mean if mean is not None else [0.0] * channels,
        std if std is not None else [1.0] * channels,
    )


def layer_names(model: nn.Module) -> list[str]:
    """The names `resolve_layer` accepts: the aliases first, then every module path."""
    aliases = list(getattr(model, "named_layers", {}))
    return aliases + [name for name, _ in model.named_modules() if name]


def resolve_layer(model: nn.Module, name: str) -> nn.Module:
    """Find a layer by alias (`conv`, `dense`) or by module path (`features.block1`)."""
    path = getattr(model, "named_layers", {}).get(name, name)
    try:
        return model.get_submodule(path) if path else model
    except AttributeError:
        aliases = ", ".join(getattr(model, "named_layers", {}))
        paths = ", ".join(n for n, _ in model.named_modules() if n and n.count(".") <= 1)
        raise ParamsError(
            f"unknown layer {name!r}; use {aliases} or a module path such as {paths}"
        ) from None
