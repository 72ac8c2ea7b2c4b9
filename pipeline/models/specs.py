"""The classifier architectures as plain data, without torch.

`pipeline.models.archs` builds the networks from these specs, and params validation
lists an arch's layer names from them, so that stages which only read arrays and draw
figures validate params.yaml without importing torch (2 s per stage on a 2-core CPU).
The small CNNs are `ARCHS`; the torchvision ResNets are `RESNETS`, described by their
module paths (torchvision's, so ImageNet state dicts load unchanged).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ALIASES = ("conv", "dense")  # conv: output of the last conv block; dense: penultimate layer


@dataclass(frozen=True)
class ConvBlock:
    """`convs` × (conv → optional batch norm → ReLU), then an optional 2×2 max-pool."""

    channels: int
    kernel: int
    batch_norm: bool
    pool: bool
    convs: int = 1

    def parts(self) -> list[str]:
        """The block's modules in order, as 'conv', 'bn', 'relu' and 'pool'."""
        one = ["conv", "bn", "relu"] if self.batch_norm else ["conv", "relu"]
        return one * self.convs + (["pool"] if self.pool else [])


@dataclass(frozen=True)
class Drop:
    """Dropout between blocks."""

    p: float


@dataclass(frozen=True)
class ArchSpec:
    features: tuple[tuple[str, ConvBlock | Drop], ...]
    conv_layer: str  # the feature block the `conv` alias names
    hidden: int  # width of the penultimate dense layer
    dropout: float  # before the logits


ARCHS: dict[str, ArchSpec] = {
    "small_cnn": ArchSpec(
        (
            ("block1", ConvBlock(16, 3, batch_norm=False, pool=True)),
            ("block2", ConvBlock(32, 3, batch_norm=False, pool=True)),
            ("block3", ConvBlock(64, 3, batch_norm=False, pool=False)),
        ),
        conv_layer="block3",
        hidden=128,
        dropout=0.0,
    ),
    "cladec_cnn": ArchSpec(
        (
            ("block1", ConvBlock(32, 5, batch_norm=True, pool=True)),
            ("block2", ConvBlock(64, 5, batch_norm=True, pool=True)),
            ("drop", Drop(0.25)),
        ),
        conv_layer="block2",
        hidden=128,
        dropout=0.5,
    ),
    "cifar_cnn": ArchSpec(
        (
            ("block1", ConvBlock(32, 3, batch_norm=True, pool=True, convs=2)),
            ("drop1", Drop(0.2)),
            ("block2", ConvBlock(64, 3, batch_norm=True, pool=True, convs=2)),
            ("drop2", Drop(0.3)),
            ("block3", ConvBlock(128, 3, batch_norm=True, pool=True, convs=2)),
            ("drop3", Drop(0.4)),
        ),
        conv_layer="block3",
        hidden=256,
        dropout=0.5,
    ),
}


@dataclass(frozen=True)
class ResNetSpec:
    """A torchvision ResNet (He et al. 2016): its residual block, the blocks of its four
    stages, and its stem. The standard stem (7×7 stride-2 conv, 3×3 max-pool) is made
    for 224 px images; the small one (3×3 stride-1 conv, no max-pool), as in the CIFAR
    ResNets, keeps 28–32 px images from shrinking to 1×1 before the last stage."""

    block: Literal["basic", "bottleneck"]
    blocks: tuple[int, int, int, int]
    small: bool
    weights: str  # the torchvision weights enum holding its ImageNet weights

    @property
    def expansion(self) -> int:
        """Output channels of a block per `planes` (torchvision's `expansion`)."""
        return 1 if self.block == "basic" else 4

    @property
    def features(self) -> int:
        """Width of `dense`: the pooled output of the last stage."""
        return 512 * self.expansion

    def has_downsample(self, stage: int, index: int) -> bool:
        """Whether block `index` of `stage` (1–4) has a projection shortcut: the first
        block of a stage that strides or widens (bottleneck stage 1 widens 64 → 256)."""
        return index == 0 and (stage > 1 or self.block == "bottleneck")

    def block_parts(self, stage: int, index: int) -> list[str]:
        """A block's modules in registration order; `relu` is the one after the sum."""
        if self.block == "basic":
            parts = ["conv1", "bn1", "relu1", "conv2", "bn2"]
        else:
            parts = ["conv1", "bn1", "relu1", "conv2", "bn2", "relu2", "conv3", "bn3"]
        if self.has_downsample(stage, index):
            parts += ["downsample", "downsample.0", "downsample.1"]
        return [*parts, "relu"]


_BLOCKS: dict[str, tuple[Literal["basic", "bottleneck"], tuple[int, int, int, int], str]] = {
    "resnet18": ("basic", (2, 2, 2, 2), "ResNet18_Weights"),
    "resnet50": ("bottleneck", (3, 4, 6, 3), "ResNet50_Weights"),
}
RESNETS: dict[str, ResNetSpec] = {
    f"{name}{suffix}": ResNetSpec(block, blocks, small=bool(suffix), weights=weights)
    for name, (block, blocks, weights) in _BLOCKS.items()
    for suffix in ("", "_small")
}
ARCH_NAMES = (*ARCHS, *RESNETS)  # every arch `classifier.arch` takes
RESNET_LAYERS = {"conv": "layer4", "dense": "flatten"}  # the aliases' module paths


def _resnet_layer_names(spec: ResNetSpec) -> list[str]:
    """A ResNet's module paths in `named_modules()` order, aliases first."""
    names = [*ALIASES, "normalize", "conv1", "bn1", "relu", *([] if spec.small else ["maxpool"])]
    for stage, count in enumerate(spec.blocks, start=1):
        names.append(f"layer{stage}")
        for index in range(count):
            block = f"layer{stage}.{index}"
            names += [block, *(f"{block}.{part}" for part in spec.block_parts(stage, index))]
    return [*names, "avgpool", "flatten", "fc"]


def arch_layer_names(arch: str) -> list[str]:
    """What `resolve_layer` accepts for a network of this arch: the aliases, then every
    module path in the order `named_modules()` lists them."""
    if arch in RESNETS:
        return _resnet_layer_names(RESNETS[arch])
    names = [*ALIASES, "normalize", "features"]
    for name, part in ARCHS[arch].features:
        names.append(f"features.{name}")
        if isinstance(part, ConvBlock):
            names += [f"features.{name}.{i}" for i in range(len(part.parts()))]
    return [*names, "dense", "dense.0", "dense.1", "dense.2", "dropout", "logits"]


def spatial_layer_names(arch: str) -> list[str]:
    """The layers whose output keeps its spatial maps (N×C×H×W): `conv` and the feature
    blocks; Grad-CAM, ICE and feature maps need one of these. For a ResNet: `conv`, the
    stem and the four stages (its pooled 1×1 output and after are not maps)."""
    if arch in RESNETS:
        names = arch_layer_names(arch)
        return ["conv", *names[len(ALIASES) : names.index("avgpool")]]
    return ["conv", *(n for n in arch_layer_names(arch) if n.startswith(("normalize", "features")))]


def nonnegative_layer_names(arch: str) -> list[str]:
    """The spatial layers whose activations are never negative. Small CNNs: `conv`, the
    feature blocks (each ends in a ReLU or a max-pool after one), dropout between them,
    and inside a block its ReLUs and max-pools (not its convolutions or batch norms, nor
    `normalize`). ResNets: `conv`, the stem's ReLU and max-pool, every stage and block
    (each ends in a ReLU) and the ReLUs inside blocks."""
    if arch in RESNETS:
        last = ("relu", "relu1", "relu2", "maxpool")
        return [
            n
            for n in spatial_layer_names(arch)
            if n == "conv"
            or n.split(".")[-1] in last
            or (n.startswith("layer") and n.count(".") <= 1)
        ]
    names = ["conv", "features"]
    for name, part in ARCHS[arch].features:
        names.append(f"features.{name}")
        if isinstance(part, ConvBlock):
            names += [
                f"features.{name}.{i}"
                for i, kind in enumerate(part.parts())
                if kind in ("relu", "pool")
            ]
    return names
