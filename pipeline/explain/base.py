"""What every explanation is: one class that owns its name, its params model, its
metadata, its computation and its drawing.

Two kinds share this base:

- `AttributionMethod` (saliency, LIME, RISE, ...): one calling convention, as Captum's
  `attribute()`: `attribute(model, images, targets, params) -> Attributions`, with
  `images` float N×C×H×W in [0, 1] and one target class per image. What a method needs
  besides (the seed of a sampling method, SHAP's background sample) is given to the
  constructor, never through catch-all keyword arguments.
- `InsidePart` (feature maps, ICE, the Grand Tour, ...): looks inside the model or across
  training; `compute(inputs, params) -> Computed` (arrays and metrics),
  `draw(stored, params) -> figures`.

Subclasses live one per module in `pipeline.explain.methods` and `pipeline.explain.parts`
and are found by `pipeline.explain.registry`; nothing else lists them. Module imports
stay light (no torch, no captum at import time): params validation and figure stages
read the classes without loading torch.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from torch import Tensor, nn

    from pipeline.explain.stored import StoredAttributions
    from pipeline.selection import Selection

Direction = Literal["higher", "lower"]


class MethodParams(BaseModel):
    """Base of every explanation's params: unknown keys are errors (a renamed key must
    not be silently ignored), values are frozen once validated. Strict types: `true` is
    not the number 1 and `3.0` not the count 3 (an int is still a float); inf and nan
    are refused, as they pass every bound and break the computation later. The same
    settings as `pipeline.params._Strict`, which validates the other groups."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class BatchedParams(MethodParams):
    batch_size: int = Field(256, gt=0, description="images (or perturbations) per forward pass")


class LayerParams(BatchedParams):
    """Params of a method that reads one conv layer (Grad-CAM and its kind)."""

    layer: str = Field("conv", min_length=1, description="a conv layer: conv or a module path")


@dataclass(frozen=True)
class Score:
    """A number that ranks explanations, with the direction in which it is better
    (Quantus' convention: the metric carries its own direction)."""

    key: str
    label: str
    direction: Direction

    @property
    def arrow(self) -> str:
        return "↑" if self.direction == "higher" else "↓"

    def better(self, a: float, b: float) -> bool:
        """True when `a` is strictly better than `b`."""
        return a > b if self.direction == "higher" else a < b


class Explanation:
    """Common metadata of attribution methods and inside-the-model parts."""

    name: ClassVar[str]
    Params: ClassVar[type[MethodParams]]
    title: ClassVar[str]  # a few words for figure titles and the README table
    reference: ClassVar[str] = ""  # the paper or library it follows
    seeded: ClassVar[bool] = False  # uses the pipeline seed (sampling, initialisation)
    # its `layer` / `layers` params must name conv layers (N×C×H×W activations)
    needs_spatial_layer: ClassVar[bool] = False
    # ... and layers whose activations are never negative (after a ReLU or a max-pool)
    needs_nonnegative_layer: ClassVar[bool] = False
    # names its `layer` / `layers` params accept besides the classifier's layers
    extra_layer_names: ClassVar[tuple[str, ...]] = ()
    # metrics the computation reports, with the direction in which each is better
    scores: ClassVar[tuple[Score, ...]] = ()


@dataclass
class Attributions:
    """The result of `AttributionMethod.attribute`.

    `maps`: float32 N×C×H×W for pixel methods, N×1×H×W for methods that score regions.
    `extras`: per-image arrays the drawing needs besides the maps (first axis N), e.g.
    LIME's superpixels and their weights. `metrics`: per-image numbers the method
    reports about itself (first axis N), e.g. LIME's surrogate R²."""

    maps: np.ndarray
    extras: dict[str, np.ndarray] = field(default_factory=dict)
    metrics: dict[str, np.ndarray] = field(default_factory=dict)


class AttributionMethod(Explanation):
    """An attribution method: one importance per pixel (or region) for one class.

    Subclasses set the metadata and override `attribute`; `draw` has a default (image,
    map for the predicted class, map for the true class where they differ) that a
    method with a richer picture (LIME's superpixels) overrides."""

    signed: ClassVar[bool]  # maps carry evidence for (+) and against (-) the class
    # needs a sample of training images; its params then have a `background` count
    needs_background: ClassVar[bool] = False
    # replaces the backward pass of the model's nn.ReLU (and other non-linearity) modules
    # through hooks, which a TorchScript graph's compiled calls never reach: the flag
    # alone makes `attribute` refuse a model with a TorchScript part (__init_subclass__)
    hooks_nonlinearities: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """A method that sets `hooks_nonlinearities` gets its `attribute` guarded by
        refuse_compiled_graph, wherever it is called from (stage, evaluation, explorer,
        across-epochs part): the flag is the only thing such a method declares."""
        super().__init_subclass__(**kwargs)
        own = cls.__dict__.get("attribute")
        if not cls.hooks_nonlinearities or own is None:
            return

        @functools.wraps(own)
        def guarded(
            self: AttributionMethod, model: nn.Module, images: Tensor, targets: Tensor, p: Any
        ) -> Attributions:
            refuse_compiled_graph(model, self.name)
            return own(self, model, images, targets, p)

        cls.attribute = guarded  # type: ignore[method-assign]

    def __init__(self, seed: int = 0, background: Tensor | None = None) -> None:
        self.seed = seed
        self.background = background

    def attribute(
        self, model: nn.Module, images: Tensor, targets: Tensor, p: MethodParams
    ) -> Attributions:
        raise NotImplementedError

    @classmethod
    def is_signed(cls, p: MethodParams) -> bool:
        """Whether the maps of this configuration are signed (saliency: only with
        absolute = false)."""
        return cls.signed

    def draw(self, stored: StoredAttributions, shown: Shown, p: MethodParams) -> dict[str, Figure]:
        """One figure per group of instances (correct, misclassified), from stored arrays."""
        from pipeline.figures.attributions import plot_attribution_grid

        figures = {}
        for group, rows, true_index in shown.groups(stored):
            if len(rows) == 0:
                continue
            figures[f"{self.name}_{group}"] = plot_attribution_grid(
                shown.instances(rows),
                pixel_map(stored.predicted[rows]),
                {i: pixel_map(stored.true[[k]])[0] for i, k in true_index.items()},
                shown.class_names,
                self.name,
                self.is_signed(p),
            )
        return figures


def gradients_in_batches(
    fn: Callable[[Tensor, Tensor], Tensor], images: Tensor, targets: Tensor, batch_size: int
) -> np.ndarray:
    """Run a gradient attribution over slices of `batch_size` images (bounded memory,
    gradients on even under an outer no_grad); float32 numpy out."""
    import torch

    out = []
    for start in range(0, len(images), batch_size):
        x = images[start : start + batch_size].clone().requires_grad_(True)
        with torch.enable_grad():
            out.append(fn(x, targets[start : start + batch_size]).detach().float().cpu())
    return torch.cat(out).numpy()


def pixel_map(attributions: np.ndarray) -> np.ndarray:
    """N×C×H×W -> N×H×W, summing the channels (signed): one importance per pixel, the
    form every evaluation and figure uses."""
    return np.asarray(attributions, dtype=np.float32).sum(axis=1)


@dataclass
class Instance:
    """One selected test image with what the figures print about it."""

    image: np.ndarray  # C×H×W uint8
    label: int
    predicted: int
    probabilities: np.ndarray


@dataclass
class Shown:
    """What the attribution figures show besides the maps: the selected images with
    their labels, predictions and probabilities."""

    images: np.ndarray  # N×C×H×W uint8
    selection: Selection

    @property
    def class_names(self) -> list[str]:
        return self.selection.class_names

    def groups(self, stored: StoredAttributions) -> list[tuple[str, np.ndarray, dict[int, int]]]:
        """(group, selection rows, {position in rows: row of the true-class arrays}) for
        the correctly classified and the misclassified instances."""
        true_row = {int(r): k for k, r in enumerate(stored.true_rows)}
        out = []
        for group, rows in (
            ("correct", np.flatnonzero(~self.selection.misclassified)),
            ("misclassified", np.flatnonzero(self.selection.misclassified)),
        ):
            out.append(
                (
                    group,
                    rows,
                    {i: true_row[int(r)] for i, r in enumerate(rows) if int(r) in true_row},
                )
            )
        return out

    def instances(self, rows: np.ndarray) -> list[Instance]:
        s = self.selection
        return [
            Instance(self.images[r], int(s.labels[r]), int(s.predicted[r]), s.probabilities[r])
            for r in rows
        ]


@dataclass
class Computed:
    """What an inside-the-model part computes: named arrays files and metrics."""

    arrays: dict[str, dict[str, np.ndarray]]  # file stem -> arrays
    metrics: dict[str, Any]


class InsidePart(Explanation):
    """A view inside the model or across its training. `compute` gets the stage's
    loaded inputs (an object whose attributes the part reads: `splits`, `net`,
    `selection`, ...), `draw` only the stored arrays."""

    # params.yaml keys outside its own `inside.<part>` block that it reads (the stage
    # logs them and refuses any other); `{name}` is the value of its own param `name`
    reads: ClassVar[tuple[str, ...]] = ()

    def compute(self, inputs: Any, p: MethodParams) -> Computed:
        raise NotImplementedError

    def draw(self, stored: dict[str, dict[str, np.ndarray]], p: MethodParams) -> dict[str, Any]:
        """file name -> what to write there: a matplotlib Figure (`.png`), text (`.html`,
        `.csv`) or bytes (`.gif`)."""
        raise NotImplementedError


def compiled_parts(model: nn.Module) -> list[str]:
    """Names of the model's TorchScript parts ('' for the model itself): where module
    hooks never reach the calls inside."""
    import torch

    return [name for name, m in model.named_modules() if isinstance(m, torch.jit.ScriptModule)]


def refuse_compiled_graph(model: nn.Module, method: str) -> None:
    """Stop a method that hooks the model's non-linearity modules on a model with a
    TorchScript part: its ReLUs are calls inside compiled code, so the hooks would never
    run and the map would silently be another method's (measured: guided backprop
    gives the plain gradient, DeepLIFT input x gradient, exactly)."""
    from pipeline.errors import PipelineError

    scripted = compiled_parts(model)
    if scripted:
        raise PipelineError(
            f"{method} changes the backward pass of the model's non-linearity modules, "
            f"which a TorchScript graph ({scripted[0] or 'the model'}) does not expose: its "
            "maps would silently be another method's (guided backprop's the plain gradient, "
            "DeepLIFT's input x gradient); use another method on a TorchScript model"
        )
