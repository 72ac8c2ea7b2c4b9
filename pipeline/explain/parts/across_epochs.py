"""One attribution method over the same selected images with the classifier of every
saved epoch: how the model's attention settles during training.

The method runs by name through the registry, with its own params from
`explain.<method>`, so any registered attribution method that needs no background
sample of training images can be followed across the epochs (not SHAP: its background
would be one more thing that changes between epochs)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import numpy as np
from pydantic import Field, field_validator

from pipeline.explain.base import Computed, InsidePart, MethodParams, pixel_map

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from torch import nn

    from pipeline.data import Splits
    from pipeline.selection import Selection

    class Inputs(Protocol):
        seed: int
        splits: Splits
        selection: Selection
        class_names: list[str]
        param: Callable[[str], Any]  # a declared params.yaml key (see `reads`)

        def epoch_classifiers(self) -> Iterator[tuple[int, nn.Module]]: ...


def usable_methods() -> list[str]:
    """The registered attribution methods that need no background sample."""
    from pipeline.explain.registry import attribution_methods

    return [name for name, cls in attribution_methods().items() if not cls.needs_background]


class AcrossEpochsParams(MethodParams):
    method: str = Field(
        "gradcam",
        description="an attribution method that needs no background sample (its params: "
        "explain.<method>)",
    )
    instances: int = Field(6, gt=0, description="selected images shown")

    @field_validator("method")
    @classmethod
    def _usable(cls, value: str) -> str:
        usable = usable_methods()
        if value not in usable:
            raise ValueError(
                f"use one of {', '.join(usable)} (a registered attribution method that needs "
                "no background sample)"
            )
        return value


def distance_to_final(maps: np.ndarray) -> list[float]:
    """Per epoch, 1 − the mean cosine similarity of |map| with the last epoch's |map|,
    image by image (E×N×H×W maps): 0 once the explanation has settled."""
    final = np.abs(maps[-1]).reshape(maps.shape[1], -1)
    distance = []
    for m in maps:
        flat = np.abs(m).reshape(maps.shape[1], -1)
        norms = np.linalg.norm(flat, axis=1) * np.linalg.norm(final, axis=1)
        cosine = (flat * final).sum(1) / np.where(norms > 0, norms, 1)
        distance.append(float(1 - cosine.mean()))
    return distance


# what the stage runs besides this module, for the code-dependency check of dvc.yaml
# (tests/dvc_deps.py): the attribution method this part's params name
RUNS_MODULES = ("pipeline/explain/methods/{inside.across_epochs.method}.py",)


class AcrossEpochs(InsidePart):
    name = "across_epochs"
    Params = AcrossEpochsParams
    title = "explanations across the training epochs"
    seeded = True  # handed to the method (LIME samples with it)
    # the method's own params; `{method}` is this part's `method` param
    reads: ClassVar[tuple[str, ...]] = ("explain.{method}",)

    def compute(self, inputs: Inputs, p: AcrossEpochsParams) -> Computed:  # type: ignore[override]
        """`maps`: the shown images and captions, per epoch the pixel maps (E×N×H×W) for
        the class that epoch's classifier predicts, and that class. Metrics: per epoch,
        how far its maps are from the last epoch's."""
        import torch

        from pipeline.explain.registry import method_class
        from pipeline.inference import as_float_images

        selection = inputs.selection
        epoch_nets = inputs.epoch_classifiers()  # checked now, loaded one at a time later
        rows = selection.spread(p.instances)
        originals = inputs.splits.x_test[selection.indices[rows]]
        images = as_float_images(originals)
        method = method_class(p.method)(seed=inputs.seed)
        method_params = inputs.param(f"explain.{p.method}")
        maps, predicted, epochs = [], [], []
        for epoch, net in epoch_nets:
            with torch.no_grad():
                pred = net(images).argmax(1)
            maps.append(pixel_map(method.attribute(net, images, pred, method_params).maps))
            predicted.append(pred.numpy())
            epochs.append(epoch)
        stacked = np.stack(maps)
        distance = distance_to_final(stacked)
        arrays = {
            "images": originals,
            "captions": np.array([selection.caption(r) for r in rows]),
            "maps": stacked,
            "predicted": np.stack(predicted),
            "epochs": np.array(epochs),
            "method": np.array(p.method),
            "class_names": np.array(inputs.class_names),
        }
        metrics = {
            "epochs": len(epochs),
            "distance_first_to_final": distance[0],
            "distance_to_final": dict(zip(map(str, epochs), distance, strict=True)),
        }
        return Computed({"maps": arrays}, metrics)

    def draw(
        self, stored: dict[str, dict[str, np.ndarray]], p: AcrossEpochsParams
    ) -> dict[str, Any]:  # type: ignore[override]
        """`<method>_by_epoch.png`."""
        from pipeline.figures.across_epochs import plot_across_epochs

        z = stored["maps"]
        method = str(z["method"])
        return {
            f"{method}_by_epoch.png": plot_across_epochs(
                z["images"],
                z["maps"],
                z["predicted"],
                z["epochs"].tolist(),
                list(z["captions"]),
                [str(n) for n in z["class_names"]],
                method,
            )
        }
