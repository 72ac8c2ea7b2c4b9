"""What the convolutional layers compute: the activation maps of every conv layer for
given images (after the layer's ReLU), and the first layer's filter weights.

torch is imported inside the functions that inspect a network: the figure stage only
needs `strongest_channels` and starts faster without it."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from torch import Tensor, nn


def conv_activation_layers(model: nn.Module) -> list[str]:
    """For every Conv2d, the module path of the first ReLU after it (the map a person
    would look at), or the convolution itself when no ReLU follows before the next one."""
    from torch import nn

    names: list[str] = []
    pending: str | None = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            if pending is not None:
                names.append(pending)
            pending = name
        elif isinstance(module, nn.ReLU) and pending is not None:
            names.append(name)
            pending = None
    if pending is not None:
        names.append(pending)
    return names


def feature_maps(model: nn.Module, images: Tensor) -> dict[str, np.ndarray]:
    """layer path -> N×C×h×w activations, for every conv layer, in one forward pass."""
    import torch

    model.eval()
    captured: dict[str, np.ndarray] = {}
    handles = []
    for name in conv_activation_layers(model):

        def hook(module: nn.Module, inputs: object, output: Tensor, name: str = name) -> None:
            captured[name] = output.detach().float().cpu().numpy()

        handles.append(model.get_submodule(name).register_forward_hook(hook))
    try:
        with torch.inference_mode():
            model(images)
    finally:
        for handle in handles:
            handle.remove()
    return captured


def strongest_channels(maps: np.ndarray, count: int) -> np.ndarray:
    """Channel indices by mean activation over the images and positions, strongest first."""
    return np.argsort(-maps.mean(axis=(0, 2, 3)), kind="stable")[:count]


def first_conv_filters(model: nn.Module) -> np.ndarray:
    """out×in×k×k weights of the first Conv2d."""
    from torch import nn

    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            return module.weight.detach().cpu().numpy()
    raise ValueError("the model has no convolution layer")
