"""The classifier architectures as plain data, without torch.

`pipeline.models.archs` builds the networks from these specs, and params validation
lists an arch's layer names from them, so that stages which only read arrays and draw
figures validate params.yaml without importing torch (2 s per stage on a 2-core CPU).
"""

from __future__ import annotations

from dataclasses import dataclass

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


def arch_layer_names(arch: str) -> list[str]:
    """What `resolve_layer` accepts for a network of this arch: the aliases, then every
    module path in the order `named_modules()` lists them."""
    names = [*ALIASES, "normalize", "features"]
    for name, part in ARCHS[arch].features:
        names.append(f"features.{name}")
        if isinstance(part, ConvBlock):
            names += [f"features.{name}.{i}" for i in range(len(part.parts()))]
    return [*names, "dense", "dense.0", "dense.1", "dense.2", "dropout", "logits"]


def spatial_layer_names(arch: str) -> list[str]:
    """The layers whose output keeps its spatial maps (N×C×H×W): `conv` and the feature
    blocks; Grad-CAM, ICE and feature maps need one of these."""
    return ["conv", *(n for n in arch_layer_names(arch) if n.startswith(("normalize", "features")))]
