"""ClaDec decodings of the selected instances (Schneider & Vlachos, "Explaining Neural
Networks by Decoding Layer Activations", 2021): per layer the original, the reference
autoencoder's reconstruction and the ClaDec reconstruction for each alpha; and the
variational ClaDec's decoded 2-D latent plane next to the reference VAE's (the
classifier's "prototypes"). The grids are scored by the frozen classifier
(`grid_scores`): how many classes its predictions over the cells cover and how sure it
is of them; a variational ClaDec shows prototypes when its grid covers most classes
with high confidence.

The decoders are trained by the cladec, vcladec, refae and refvae stages; `compute`
gets them through loader callables of its inputs and only decodes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import numpy as np
from pydantic import Field

from pipeline.explain.base import Computed, InsidePart, MethodParams
from pipeline.skips import Skipped, skipped_together

if TYPE_CHECKING:
    from collections.abc import Callable

    from torch import Tensor, nn

    from pipeline.data import Splits
    from pipeline.selection import Selection

    CodeShape = tuple[int, ...]

    class VAE(Protocol):
        def decode(self, latents: Tensor) -> Tensor: ...

    class Inputs(Protocol):
        splits: Splits
        net: nn.Module
        selection: Selection
        class_names: list[str]
        refvae: VAE
        param: Callable[[str], Any]  # a declared params.yaml key (see `reads`)
        refae: Callable[[str, CodeShape], nn.Module]  # (layer, code shape) -> images → images
        cladec_decoder: Callable[[str, float, CodeShape], nn.Module]  # codes → images
        vcladec_decoder: Callable[[str, int], nn.Module]  # (layer, latent dim) latents → images


class CladecDecodingsParams(MethodParams):
    instances: int = Field(8, gt=0, description="rows per layer figure (correct and misclassified)")
    grid: int = Field(12, ge=2, description="variational ClaDec / reference VAE latent grid size")


def latent_grid(size: int, span: float = 2.5) -> tuple[np.ndarray, np.ndarray]:
    """Points of a size×size grid over [-span, span]² (2-D latents), for decoding; rows
    from the top (largest z₂) down, as the figure draws them, and the axis values."""
    axis = np.linspace(-span, span, size)
    xx, yy = np.meshgrid(axis, axis[::-1])
    return np.stack([xx.ravel(), yy.ravel()], 1).astype(np.float32), axis


def grid_scores(probabilities: np.ndarray) -> dict[str, float]:
    """The frozen classifier's verdict on a decoded latent grid, from its class
    probabilities per cell (cells × classes): `classes_present`, the number of distinct
    predicted classes over the cells, and `mean_confidence`, the mean top probability."""
    if probabilities.ndim != 2 or not len(probabilities):
        raise ValueError(f"probabilities must be cells x classes, got shape {probabilities.shape}")
    return {
        "classes_present": float(len(np.unique(probabilities.argmax(1)))),
        "mean_confidence": float(probabilities.max(1).mean()),
    }


def grid_title(name: str, probabilities: np.ndarray, classes: int) -> str:
    """A latent grid's figure title with its scores."""
    scores = grid_scores(probabilities)
    return (
        f"{name}: {scores['classes_present']:.0f}/{classes} classes, "
        f"mean confidence {scores['mean_confidence']:.2f}"
    )


def _present(loads: dict[Any, tuple[Any, ...]], skipped: dict[str, str]) -> dict[Any, Any]:
    """{key: load(*args)} for every `key: (load, stage, *args)` whose stage trained a
    model; the reason of each one its stage skipped goes into `skipped` under the stage's
    name (its rows are left out; the other decoders still draw)."""
    found = {}
    for key, (load, stage, *args) in loads.items():
        try:
            found[key] = load(*args)
        except Skipped as why:
            skipped[stage] = str(why)
    return found


class CladecDecodings(InsidePart):
    name = "cladec_decodings"
    Params = CladecDecodingsParams
    title = "ClaDec decodings"
    reference = "Schneider & Vlachos 2021, Explaining Neural Networks by Decoding Layer Activations"
    # the decoders it loads: one per layer and alpha, and the variational ones
    reads: ClassVar[tuple[str, ...]] = ("cladec.layers", "cladec.alphas", "cladec.variational")

    def compute(self, inputs: Inputs, p: CladecDecodingsParams) -> Computed:  # type: ignore[override]
        """`decoded`: the shown originals and captions; `<layer>/refae` and
        `<layer>/<alpha>` reconstructions; with a 2-D variational latent,
        `vcladec/<layer>` and `refvae` decoded over the latent grid, each with the class
        the classifier gives every cell (`.../predicted`) and its probabilities
        (`.../probabilities`). Metrics: per layer and alpha, the share of decodings the
        classifier puts in the class it gave the original; per grid, `grid_scores` as
        `<grid>/latent_grid.classes_present` and `.../latent_grid.mean_confidence`. A
        decoder whose stage was skipped (pipeline/skips.py) leaves its arrays out, named
        with the reason in `skipped` / `skipped_reasons`; with every one skipped the part
        is skipped."""
        import torch

        from pipeline.inference import as_float_images, batched, layer_codes

        splits, selection, net = inputs.splits, inputs.selection, inputs.net
        layers: list[str] = inputs.param("cladec.layers")
        alphas: list[float] = inputs.param("cladec.alphas")
        variational = inputs.param("cladec.variational")
        rows = selection.spread(p.instances)
        originals = splits.x_test[selection.indices[rows]]
        arrays: dict[str, np.ndarray] = {
            "originals": originals,
            "captions": np.array([selection.caption(r) for r in rows]),
            "layers": np.array(layers),
            "alphas": np.array(alphas, dtype=np.float64),
        }
        metrics: dict[str, float] = {}
        points, axis = latent_grid(p.grid)
        arrays["grid_axis"] = axis
        grids = variational.layers if variational.latent_dim == 2 else []
        skipped: dict[str, str] = {}  # stage -> why it trained no decoder
        with torch.inference_mode():
            # every model loaded before any decoding: a missing one stops the stage at once
            codes = {layer: layer_codes(net, layer, originals) for layer in layers}
            shapes = {layer: tuple(c.shape[1:]) for layer, c in codes.items()}
            refaes = _present(
                {layer: (inputs.refae, f"refae@{layer}", layer, shapes[layer]) for layer in layers},
                skipped,
            )
            decoders = _present(
                {
                    (layer, alpha): (
                        inputs.cladec_decoder,
                        f"cladec@{layer}-{alpha}",
                        layer,
                        alpha,
                        shapes[layer],
                    )
                    for layer in layers
                    for alpha in alphas
                },
                skipped,
            )
            latent = _present(
                {
                    layer: (
                        inputs.vcladec_decoder,
                        f"vcladec@{layer}",
                        layer,
                        variational.latent_dim,
                    )
                    for layer in grids
                },
                skipped,
            )
            if not (refaes or decoders or latent):
                raise Skipped(f"every decoder it draws was skipped ({skipped_together(skipped)})")
            if skipped:  # the rows it could not draw, for the figures and the gallery
                arrays["skipped"] = np.array(list(skipped))
                arrays["skipped_reasons"] = np.array(list(skipped.values()))
            refvae = inputs.refvae if latent else None
            images = as_float_images(originals)
            for layer in layers:
                if layer in refaes:
                    arrays[f"{layer}/refae"] = batched(refaes[layer], images).numpy()
                for alpha in [a for a in alphas if (layer, a) in decoders]:
                    decoded = batched(decoders[layer, alpha], codes[layer])
                    arrays[f"{layer}/{alpha}"] = decoded.numpy()
                    agrees = batched(net, decoded).argmax(1).numpy() == selection.predicted[rows]
                    metrics[f"{layer}/alpha_{alpha}/same_prediction"] = float(agrees.mean())
            grid_decodings = {
                f"vcladec/{layer}": batched(decoder, torch.as_tensor(points))
                for layer, decoder in latent.items()
            }
            if refvae is not None:
                grid_decodings["refvae"] = refvae.decode(torch.as_tensor(points))
            for key, decoded in grid_decodings.items():
                probabilities = batched(net, decoded).softmax(1).numpy()
                arrays[key] = decoded.numpy()
                arrays[f"{key}/predicted"] = probabilities.argmax(1)
                arrays[f"{key}/probabilities"] = probabilities
                for score, value in grid_scores(probabilities).items():
                    metrics[f"{key}/latent_grid.{score}"] = value
        arrays["class_names"] = np.array(inputs.class_names)
        return Computed({"decoded": arrays}, metrics)

    def draw(
        self, stored: dict[str, dict[str, np.ndarray]], p: CladecDecodingsParams
    ) -> dict[str, Any]:  # type: ignore[override]
        """`<layer>.png` per layer with a decoder (the title names the skipped ones);
        `latent_grids.png` when the variational ClaDec has a 2-D latent."""
        from pipeline.figures.cladec_decodings import plot_cladec_rows, plot_latent_grids

        z = stored["decoded"]
        names = [str(n) for n in z["class_names"]]
        figures: dict[str, Any] = {}
        skipped = [str(name) for name in z.get("skipped", [])]
        for layer in z["layers"]:
            named = [("RefAE", f"{layer}/refae")]
            named += [(f"ClaDec α={a:g}", f"{layer}/{a}") for a in z["alphas"]]
            columns = [(name, z[key]) for name, key in named if key in z]
            if not columns:  # every decoder of the layer was skipped
                continue
            left_out = [
                name
                for name in skipped
                if name == f"refae@{layer}" or name.startswith(f"cladec@{layer}-")
            ]
            note = f"\n(not drawn, their stages skipped: {', '.join(left_out)})" if left_out else ""
            figures[f"{layer}.png"] = plot_cladec_rows(
                z["originals"],
                columns,
                list(z["captions"]),
                f"ClaDec explanations of layer {layer}: what the layer keeps of each image, "
                f"against the reference autoencoder{note}",
            )
        keys = sorted(k for k in z if k.startswith("vcladec/") and k.count("/") == 1)
        named = [(f"variational ClaDec ({key.split('/')[1]})", key) for key in keys]
        if "refvae" in z:
            named.append(("reference VAE", "refvae"))
        grids = [
            (
                grid_title(name, z[f"{key}/probabilities"], len(names)),
                z[key],
                [names[c] for c in z[f"{key}/predicted"]],
            )
            for name, key in named
        ]
        if grids:
            figures["latent_grids.png"] = plot_latent_grids(
                grids,
                z["grid_axis"],
                "Decoded over the 2-D latent plane (classifier's class in yellow; classes "
                "its predictions cover, their mean top probability): the classifier's "
                "prototypes against a plain VAE",
            )
        return figures
