"""Feature maps: what the convolutional layers compute for a few selected images (the
activation maps after each conv layer's ReLU), and the first layer's filter weights.

torch is imported inside the functions that inspect a network, so params validation
and the figure stage read this module without loading it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from pydantic import Field

from pipeline.explain.base import Computed, InsidePart, MethodParams

if TYPE_CHECKING:
    from torch import Tensor, nn

    from pipeline.data import Splits
    from pipeline.selection import Selection

    class Inputs(Protocol):
        splits: Splits
        net: nn.Module
        selection: Selection


class FeatureMapsParams(MethodParams):
    instances: int = Field(6, gt=0, description="selected images shown (spread over the selection)")
    channels: int = Field(12, gt=0, description="strongest channels shown per conv layer")


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


class FeatureMaps(InsidePart):
    name = "feature_maps"
    Params = FeatureMapsParams
    title = "feature maps and first-layer filters"

    def compute(self, inputs: Inputs, p: FeatureMapsParams) -> Computed:  # type: ignore[override]
        """`maps`: the shown images, their captions, the conv layers' paths, the first
        layer's filters and `layer_<i>` (N×C×h×w) per layer."""
        from pipeline.inference import as_float_images

        selection = inputs.selection
        rows = selection.spread(p.instances)
        images = inputs.splits.x_test[selection.indices[rows]]
        maps = feature_maps(inputs.net, as_float_images(images))
        layers = list(maps)
        metrics = {
            "layers": len(layers),
            "per_layer": {
                name: {
                    "channels": int(m.shape[1]),
                    "mean_activation": float(m.mean()),
                    # channels silent on every shown image at every position
                    "silent_channels": int((m.max(axis=(0, 2, 3)) <= 0).sum()),
                }
                for name, m in maps.items()
            },
        }
        arrays = {
            "images": images,
            "captions": np.array([selection.caption(r) for r in rows]),
            "layers": np.array(layers),
            "filters": first_conv_filters(inputs.net),
            **{f"layer_{i}": maps[name] for i, name in enumerate(layers)},
        }
        return Computed({"maps": arrays}, metrics)

    def draw(
        self, stored: dict[str, dict[str, np.ndarray]], p: FeatureMapsParams
    ) -> dict[str, Any]:  # type: ignore[override]
        """`conv_layer_<n>.png` per conv layer (n = 1 nearest the input; named by position,
        not by module path, so the names stay when the architecture changes),
        `first_layer_filters.png`."""
        from pipeline.figures.feature_maps import plot_feature_maps, plot_filters

        z = stored["maps"]
        figures: dict[str, Any] = {}
        n_layers = len(z["layers"])
        for i, layer in enumerate(z["layers"]):
            maps = z[f"layer_{i}"]
            channels = strongest_channels(maps, p.channels)
            figures[f"conv_layer_{i + 1}.png"] = plot_feature_maps(
                z["images"],
                maps,
                channels.tolist(),
                list(z["captions"]),
                f"conv layer {i + 1} of {n_layers} ({layer})",
            )
        count, _, height, width = z["filters"].shape
        figures["first_layer_filters.png"] = plot_filters(
            z["filters"], f"First conv layer: {count} filters of {height}×{width}"
        )
        return figures
