"""Activation maximisation (feature visualisation by optimisation): from noise, climb the
mean activation of each filter of a layer, or each class logit, all filters (or classes)
optimised together as one batch, with the regularisers the field uses so that the
images show what the unit responds to rather than high-frequency adversarial noise.

Each step, in this order (the image returned has just had a gradient step):

1. L2 decay: every pixel is pulled toward the training set's mean pixel by the share
   `l2_decay` (Yosinski et al. 2015, "Understanding Neural Networks Through Deep
   Visualization", and their deep-visualization-toolbox `optimize/gradient_optimizer.py`:
   `xx *= 1 - decay` on the mean-subtracted image).
2. Total-variation decay: a step of `tv_decay` per unit of the (sub)gradient of the
   image's anisotropic total variation (the TV penalty of Mahendran & Vedaldi 2015;
   lucid's `objectives.total_variation`, which is `tf.image.total_variation`).
3. Blur: every `blur_every` steps a Gaussian blur of `blur_sigma` pixels (Yosinski et
   al.: `blur_radius`, `blur_every`, scipy's `gaussian_filter`).
4. Transformation robustness (Olah et al. 2017, "Feature Visualization", Distill; lucid's
   `optvis.transform.standard_transforms`: pad + `jitter`, `random_scale`,
   `random_rotate`): the objective is taken on a copy of every image shifted by a whole
   number of pixels up to `jitter`, scaled by up to ±`scale` and rotated by up to
   ±`rotate` degrees, drawn afresh per image and step (reflect padding), so that a
   pattern survives only if it does not hinge on exact pixel positions.
5. One Adam step of learning rate `step` on the pixels (lucid's `render_vis` uses Adam,
   0.05), then every pixel is clipped to [0, 1] (the classifier normalises inside).

Where we differ: the image is optimised in pixel space (lucid's default is a
decorrelated Fourier parameterisation; blur plays the role of its frequency penalty);
the L2 and TV terms are decoupled decays (Yosinski's form) rather than loss terms, so
their strength does not depend on the scale of the objective once Adam has normalised
its gradient; the transforms are one batched `affine_grid` / `grid_sample`. Every
random draw comes from one generator seeded with the pipeline seed: the same seed gives
the same images.

torch is imported inside the functions, so params validation and the figure stage read
this module without loading it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from pydantic import Field

from pipeline.explain.base import Computed, InsidePart, MethodParams, Score
from pipeline.skips import check_ascent_cost

if TYPE_CHECKING:
    from torch import Generator, Tensor, nn

    from pipeline.data import Splits
    from pipeline.models.archs import ImageShape

    class Inputs(Protocol):
        seed: int
        splits: Splits
        net: nn.Module
        class_names: list[str]


# every regulariser is off at 0 (`ActivationMaxParams.unregularised`)
REGULARISERS = ("jitter", "scale", "rotate", "blur_sigma", "l2_decay", "tv_decay")
START_NOISE = 0.1  # standard deviation of the starting noise around the mean pixel


class ActivationMaxParams(MethodParams):
    layer: str = Field(
        "conv", min_length=1, description="whose filters (every class logit is done too)"
    )
    iterations: int = Field(64, gt=0, description="optimisation steps")
    step: float = Field(0.05, gt=0, description="Adam learning rate, in pixel units")
    jitter: int = Field(2, ge=0, description="largest random shift per step, in pixels")
    scale: float = Field(0.05, ge=0, lt=1, description="largest random rescaling per step (share)")
    rotate: float = Field(
        5.0, ge=0, le=180, description="largest random rotation per step, degrees"
    )
    blur_sigma: float = Field(0.5, ge=0, description="Gaussian blur sigma in pixels; 0 = no blur")
    blur_every: int = Field(4, gt=0, description="blur once every this many steps")
    l2_decay: float = Field(
        0.01, ge=0, lt=1, description="share of the distance to the mean pixel removed per step"
    )
    tv_decay: float = Field(
        0.002, ge=0, description="step down the total-variation gradient, per step"
    )

    def unregularised(self) -> ActivationMaxParams:
        """The same optimisation with every regulariser off: the reference the metrics
        compare against."""
        off = {key: type(getattr(self, key))(0) for key in REGULARISERS}
        return self.model_validate({**self.model_dump(), **off})


@dataclass
class Ascent:
    images: np.ndarray  # B×C×H×W in [0, 1], one per filter or class
    start: np.ndarray  # B objective values at the starting noise
    end: np.ndarray  # B objective values on the returned images (untransformed)


def _layer_output(model: nn.Module, layer: str, x: Tensor) -> Tensor:
    """The layer's activation; the forward pass stops there (nothing after it runs)."""
    from pipeline.models.archs import LayerEncoder

    return LayerEncoder(model, layer)(x)


def _objective(model: nn.Module, layer: str | None, x: Tensor, units: Tensor) -> Tensor:
    """Per image b: mean activation of channel units[b] at `layer`, or logit units[b]."""
    import torch

    if layer is None:
        return model(x).gather(1, units[:, None]).flatten()
    picked = _layer_output(model, layer, x)[torch.arange(len(units)), units]
    return picked.flatten(1).mean(1) if picked.dim() > 1 else picked


def unit_count(model: nn.Module, layer: str | None, image_shape: ImageShape) -> int:
    """Channels of `layer` (or classes, for layer=None)."""
    import torch

    with torch.no_grad():
        probe = torch.zeros(1, *image_shape)
        out = model(probe) if layer is None else _layer_output(model, layer, probe)
    return int(out.shape[1])


def total_variation(images: Tensor) -> Tensor:
    """Per image: the sum of absolute differences between vertical and horizontal
    neighbours, over all channels (`tf.image.total_variation`'s definition)."""
    down = (images[..., 1:, :] - images[..., :-1, :]).abs().flatten(1).sum(1)
    across = (images[..., :, 1:] - images[..., :, :-1]).abs().flatten(1).sum(1)
    return down + across


def total_variation_of(images: np.ndarray) -> np.ndarray:
    """`total_variation` for numpy images."""
    import torch

    return total_variation(torch.as_tensor(images)).numpy()


def _uniform(n: int, bound: float, generator: Generator) -> Tensor:
    """n draws from U(-bound, bound)."""
    import torch

    return (2 * torch.rand(n, generator=generator) - 1) * bound


def random_transform(images: Tensor, p: ActivationMaxParams, generator: Generator) -> Tensor:
    """Every image shifted by whole pixels in [-jitter, jitter], scaled by a factor in
    [1 - scale, 1 + scale] and rotated by [-rotate, rotate] degrees, one draw per image,
    reflect padding; differentiable in the images. No transform: the images themselves."""
    import torch
    import torch.nn.functional as F

    if not (p.jitter or p.scale or p.rotate):
        return images
    n, _, h, w = images.shape
    shift = torch.randint(-p.jitter, p.jitter + 1, (n, 2), generator=generator).float()
    zoom = 1 + _uniform(n, p.scale, generator)
    angle = torch.deg2rad(_uniform(n, p.rotate, generator))
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    # affine_grid maps output to input coordinates in [-1, 1]: one pixel is 2 / size
    theta = torch.stack(
        [
            torch.stack([cos, -sin * h / w, 2 * shift[:, 0] / w], 1),
            torch.stack([sin * w / h, cos, 2 * shift[:, 1] / h], 1),
        ],
        1,
    ).to(images)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, padding_mode="reflection", align_corners=False)


def _regularise(x: Tensor, p: ActivationMaxParams, centre: Tensor, step: int) -> None:
    """In place, before the gradient step: L2 decay toward `centre`, TV decay, and the
    Gaussian blur on every `blur_every`-th step."""
    import torch

    from pipeline.explain.perturb import gaussian_blur

    if p.l2_decay:
        x.sub_(p.l2_decay * (x - centre))
    if p.tv_decay:
        with torch.enable_grad():
            leaf = x.detach().requires_grad_(True)
            (tv_grad,) = torch.autograd.grad(total_variation(leaf).sum(), leaf)
        x.sub_(p.tv_decay * tv_grad)
    if p.blur_sigma and step % p.blur_every == 0:
        x.copy_(gaussian_blur(x, p.blur_sigma))


def maximize(
    model: nn.Module,
    image_shape: ImageShape,
    p: ActivationMaxParams,
    *,
    layer: str | None,
    units: list[int] | None = None,
    seed: int = 0,
    centre: Sequence[float] | float = 0.5,
) -> Ascent:
    """Regularised gradient ascent (the module docstring's steps) for every unit at once
    (`layer=None`: the class logits; `p.layer` is not read here). `centre`: the mean
    pixel (one value or one per channel), where the starting noise is centred and what
    the L2 decay pulls toward."""
    import torch

    model.eval()
    for weight in model.parameters():
        weight.requires_grad_(False)
    if units is None:
        units = list(range(unit_count(model, layer, image_shape)))
    index = torch.as_tensor(units)
    mean = torch.as_tensor(centre, dtype=torch.float32).reshape(-1, 1, 1)
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(len(units), *image_shape, generator=generator)
    x = (mean + START_NOISE * noise).clamp(0, 1).requires_grad_(True)
    optimizer = torch.optim.Adam([x], lr=p.step)
    with torch.no_grad():
        start = _objective(model, layer, x, index)
    for i in range(p.iterations):
        with torch.no_grad():
            _regularise(x, p, mean, i)
        with torch.enable_grad():
            seen = random_transform(x, p, generator)
            loss = -_objective(model, layer, seen, index).sum()
            optimizer.zero_grad()
            loss.backward()
        optimizer.step()
        with torch.no_grad():
            x.clamp_(0, 1)
    with torch.no_grad():
        end = _objective(model, layer, x, index)
    for weight in model.parameters():
        weight.requires_grad_(True)
    return Ascent(x.detach().numpy(), start.numpy(), end.numpy())


def class_probabilities(model: nn.Module, images: np.ndarray) -> np.ndarray:
    """Softmax probability of class b for class image b (in float64: float32 rounds
    anything above 1 - 6e-8 to 1)."""
    import torch

    with torch.no_grad():
        probs = torch.softmax(model(torch.as_tensor(images)).double(), dim=1)
    return probs[torch.arange(len(images)), torch.arange(len(images))].numpy()


def _mean_pixel(splits: Splits) -> list[float]:
    """Per-channel mean of the training images in [0, 1] (Yosinski et al. decay toward
    the data mean)."""
    return (splits.x_train.mean(axis=(0, 2, 3)) / 255.0).tolist()


class ActivationMax(InsidePart):
    name = "activation_max"
    Params = ActivationMaxParams
    title = "activation maximisation"
    reference = "Erhan et al. 2009; Yosinski et al. 2015; Olah et al., Distill 2017"
    seeded = True  # the starting noise and the random transforms
    scores = (
        Score("filters_raised", "share of filters whose activation the ascent raised", "higher"),
        Score("classes_raised", "share of class logits the ascent raised", "higher"),
        Score("class_probability_min", "lowest softmax probability of a class image", "higher"),
    )

    def compute(self, inputs: Inputs, p: ActivationMaxParams) -> Computed:  # type: ignore[override]
        """`ascent`: the image found for every filter of `p.layer` and every class logit,
        with the objective before and after, the class images' probabilities, and the
        class images of the same optimisation without regularisers for comparison."""
        shape = inputs.splits.image_shape
        # every filter, and every class twice (with and without regularisers)
        images = unit_count(inputs.net, p.layer, shape) + 2 * len(inputs.class_names)
        check_ascent_cost(images, p.iterations, shape[1], shape[2])
        common: dict[str, Any] = {"seed": inputs.seed, "centre": _mean_pixel(inputs.splits)}
        filters = maximize(inputs.net, shape, p, layer=p.layer, **common)
        classes = maximize(inputs.net, shape, p, layer=None, **common)
        plain = maximize(inputs.net, shape, p.unregularised(), layer=None, **common)
        probability = class_probabilities(inputs.net, classes.images)
        plain_probability = class_probabilities(inputs.net, plain.images)
        tv = total_variation_of(classes.images)
        plain_tv = total_variation_of(plain.images)
        arrays = {
            "layer": np.array(p.layer),
            "filter_images": filters.images,
            "filter_start": filters.start,
            "filter_end": filters.end,
            "class_images": classes.images,
            "class_start": classes.start,
            "class_end": classes.end,
            "class_probability": probability,
            "class_tv": tv,
            "plain_class_images": plain.images,
            "plain_class_probability": plain_probability,
            "plain_class_tv": plain_tv,
            "class_names": np.array(inputs.class_names),
        }
        names = [str(n) for n in inputs.class_names]
        metrics = {
            "filters": len(filters.end),
            "filters_raised": float((filters.end > filters.start).mean()),
            "filter_gain_mean": float((filters.end - filters.start).mean()),
            "classes_raised": float((classes.end > classes.start).mean()),
            "class_logit_gain_mean": float((classes.end - classes.start).mean()),
            "class_probability": dict(zip(names, probability.tolist(), strict=True)),
            "class_probability_mean": float(probability.mean()),
            "class_probability_min": float(probability.min()),
            "unregularised_class_probability_mean": float(plain_probability.mean()),
            "unregularised_class_probability_min": float(plain_probability.min()),
            "class_tv_mean": float(tv.mean()),
            "unregularised_class_tv_mean": float(plain_tv.mean()),
        }
        return Computed({"ascent": arrays}, metrics)

    def draw(
        self, stored: dict[str, dict[str, np.ndarray]], p: ActivationMaxParams
    ) -> dict[str, Any]:  # type: ignore[override]
        """`filters.png`, `classes.png`."""
        from pipeline.figures.activation_max import plot_class_images, plot_tiles

        z = stored["ascent"]
        layer = str(z["layer"])
        names = [str(n) for n in z["class_names"]]
        return {
            "filters.png": plot_tiles(
                z["filter_images"],
                [f"ch {i}" for i in range(len(z["filter_images"]))],
                f"Images that maximise the mean activation of each filter of {layer}",
                "Each tile: the image that the ascent from noise found for one channel, the "
                "pattern it responds to most; a flat tile: the ascent could not raise it. "
                f"{p.iterations} steps, {_recipe(p)}.",
            ),
            "classes.png": plot_class_images(
                [
                    (
                        f"regularised\n(TV {z['class_tv'].mean():.0f})",
                        z["class_images"],
                        z["class_probability"],
                    ),
                    (
                        f"unregularised\n(TV {z['plain_class_tv'].mean():.0f})",
                        z["plain_class_images"],
                        z["plain_class_probability"],
                    ),
                ],
                names,
                f"Images that maximise each class logit ({p.iterations} steps from noise)",
                f"Top row: {_recipe(p)}; bottom row: the same optimisation without "
                "regularisers. Under each image: the classifier's softmax probability "
                "for that class. TV: mean total variation of the row (lower = smoother).",
            ),
        }


def _recipe(p: ActivationMaxParams) -> str:
    """The regularisers in a few words, for the figure captions."""
    return (
        f"Adam lr {p.step:g}, jitter ±{p.jitter} px, scale ±{p.scale:g}, rotate "
        f"±{p.rotate:g}°, blur σ {p.blur_sigma:g} every {p.blur_every} steps, "
        f"L2 decay {p.l2_decay:g}, TV decay {p.tv_decay:g}"
    )
