"""Classifier architectures. Each takes images in [0, 1] (normalization is inside) and
names its explainable layers: `conv` (output of the last conv block) and `dense` (the
penultimate dense layer, after its ReLU; for a ResNet the pooled features before `fc`).
Any other module path works too."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from pipeline.errors import ParamsError
from pipeline.models.specs import (
    ALIASES,
    ARCH_NAMES,
    ARCHS,
    RESNET_LAYERS,
    RESNETS,
    ArchSpec,
    ConvBlock,
    ResNetSpec,
)

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


class ResidualBlock(nn.Module):
    """torchvision's BasicBlock / Bottleneck (ResNet v1.5: the stride on the 3×3 conv),
    with its parameter names, so ImageNet state dicts load unchanged; unlike
    torchvision's, one ReLU module per use and no in-place op, so a hook on any module
    sees that module's own output (Grad-CAM, DeepLIFT, ClaDec's layer codes)."""

    def __init__(self, spec: ResNetSpec, inplanes: int, planes: int, stride: int, down: bool):
        super().__init__()
        out = planes * spec.expansion
        self.bottleneck = spec.block == "bottleneck"
        if self.bottleneck:
            self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(planes)
            self.relu1 = nn.ReLU()
            self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(planes)
            self.relu2 = nn.ReLU()
            self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
            self.bn3 = nn.BatchNorm2d(out)
        else:
            self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(planes)
            self.relu1 = nn.ReLU()
            self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = (
            nn.Sequential(nn.Conv2d(inplanes, out, 1, stride, bias=False), nn.BatchNorm2d(out))
            if down
            else None
        )
        self.relu = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        out = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        if self.bottleneck:
            out = self.bn3(self.conv3(self.relu2(out)))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(out + shortcut)


class ResNetClassifier(nn.Module):
    """normalize → stem → layer1..layer4 → avgpool → flatten (`dense`) → fc, with
    torchvision's module names (`conv` = layer4). `channels` sets the stem's input: 1
    for grey images. The modules are registered in the order they run."""

    def __init__(
        self,
        spec: ResNetSpec,
        channels: int,
        num_classes: int,
        mean: Sequence[float],
        std: Sequence[float],
    ) -> None:
        super().__init__()
        self.normalize = Normalize(mean, std)
        if spec.small:
            self.conv1 = nn.Conv2d(channels, 64, 3, 1, 1, bias=False)
        else:
            self.conv1 = nn.Conv2d(channels, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        if not spec.small:
            self.maxpool = nn.MaxPool2d(3, 2, 1)
        inplanes = 64
        for stage, (planes, count) in enumerate(
            zip((64, 128, 256, 512), spec.blocks, strict=True), start=1
        ):
            blocks = []
            for index in range(count):
                stride = 2 if stage > 1 and index == 0 else 1
                down = spec.has_downsample(stage, index)
                blocks.append(ResidualBlock(spec, inplanes, planes, stride, down))
                inplanes = planes * spec.expansion
            self.add_module(f"layer{stage}", nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(spec.features, num_classes)
        self.named_layers = dict(RESNET_LAYERS)
        self._init_like_torchvision()

    def _init_like_torchvision(self) -> None:
        """torchvision's initialisation, so training from scratch starts where theirs does."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: Tensor) -> Tensor:
        for module in self.children():  # registered in the order they run
            x = module(x)
        return x


Classifier = ImageClassifier | ResNetClassifier


def build_classifier(
    arch: str,
    input_shape: ImageShape,
    num_classes: int,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> Classifier:
    """Build a named architecture for images of `input_shape` (C, H, W); `mean` and
    `std` (per channel) are the normalization inside it."""
    if arch not in ARCH_NAMES:
        raise ParamsError(f"unknown arch {arch!r}; allowed: {', '.join(ARCH_NAMES)}")
    channels = input_shape[0]
    if min(input_shape[1:]) < 8:
        raise ParamsError(f"images of {input_shape[1]}x{input_shape[2]} are too small (min 8x8)")
    mean = mean if mean is not None else [0.0] * channels
    std = std if std is not None else [1.0] * channels
    if arch in RESNETS:
        return ResNetClassifier(RESNETS[arch], channels, num_classes, mean, std)
    spec = ARCHS[arch]
    return ImageClassifier(
        _features(spec, channels),
        spec.conv_layer,
        input_shape,
        num_classes,
        spec.hidden,
        spec.dropout,
        mean,
        std,
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
