"""Classifier architectures. Each takes images in [0, 1] (normalization is inside) and
names its explainable layers: `conv` (output of the last conv block) and `dense` (the
penultimate dense layer, after its ReLU). Any other module path works too."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from pipeline.errors import ParamsError
from pipeline.models.specs import ALIASES, ARCHS, ArchSpec, ConvBlock

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
        self.named_layers = dict(zip(ALIASES, (f"features.{conv_layer}", "dense"), strict=True))

    def forward(self, x: Tensor) -> Tensor:
        return self.logits(self.dropout(self.dense(self.features(self.normalize(x)))))


def _block(c_in: int, block: ConvBlock) -> nn.Sequential:
    layers: list[nn.Module] = []
    c = c_in
    for part in block.parts():
        if part == "conv":
            layers.append(nn.Conv2d(c, block.channels, block.kernel, padding=block.kernel // 2))
            c = block.channels
        elif part == "bn":
            layers.append(nn.BatchNorm2d(block.channels))
        elif part == "relu":
            layers.append(nn.ReLU())
        else:
            layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


def _features(spec: ArchSpec, channels: int) -> nn.Sequential:
    modules: OrderedDict[str, nn.Module] = OrderedDict()
    for name, part in spec.features:
        if isinstance(part, ConvBlock):
            modules[name] = _block(channels, part)
            channels = part.channels
        else:
            modules[name] = nn.Dropout(part.p)
    return nn.Sequential(modules)


def build_classifier(
    arch: str,
    input_shape: ImageShape,
    num_classes: int,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> ImageClassifier:
    """Build a named architecture for images of `input_shape` (C, H, W)."""
    if arch not in ARCHS:
        raise ParamsError(f"unknown arch {arch!r}; allowed: {', '.join(ARCHS)}")
    channels = input_shape[0]
    if min(input_shape[1:]) < 8:
        raise ParamsError(f"images of {input_shape[1]}x{input_shape[2]} are too small (min 8x8)")
    spec = ARCHS[arch]
    return ImageClassifier(
        _features(spec, channels),
        spec.conv_layer,
        input_shape,
        num_classes,
        spec.hidden,
        spec.dropout,
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


class LayerEncoder(nn.Module):
    """The part of a classifier up to a named layer: its activation is the code (what
    ClaDec decodes, what ICE and activation maximisation read)."""

    def __init__(self, classifier: nn.Module, layer: str) -> None:
        super().__init__()
        self.classifier = classifier
        self.layer = layer
        self._target = resolve_layer(classifier, layer)

    def forward(self, x: Tensor) -> Tensor:
        captured: list[Tensor] = []

        def hook(module: nn.Module, inputs: object, output: Tensor) -> None:
            captured.append(output)
            raise _Stop

        handle = self._target.register_forward_hook(hook)
        try:
            self.classifier(x)
        except _Stop:
            pass
        finally:
            handle.remove()
        return captured[0]


class _Stop(Exception):
    """Ends a forward pass once the wanted layer has produced its output."""
