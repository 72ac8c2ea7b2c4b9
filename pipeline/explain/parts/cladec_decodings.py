"""ClaDec decodings of the selected instances (Schneider & Vlachos, "Explaining Neural
Networks by Decoding Layer Activations", 2021): per layer the original, the reference
autoencoder's reconstruction and the ClaDec reconstruction for each alpha; and the
variational ClaDec's decoded 2-D latent plane next to the reference VAE's (the
classifier's "prototypes").

The decoders are trained by the cladec, vcladec, refae and refvae stages; `compute`
gets them through loader callables of its inputs and only decodes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import numpy as np
from pydantic import Field

from pipeline.explain.base import Computed, InsidePart, MethodParams

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
        the classifier gives every cell (`.../predicted`). Metrics: per layer and alpha,
        the share of decodings the classifier puts in the class it gave the original."""
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
        with torch.inference_mode():
            # every model loaded before any decoding: a missing one stops the stage at once
            codes = {layer: layer_codes(net, layer, originals) for layer in layers}
            shapes = {layer: tuple(c.shape[1:]) for layer, c in codes.items()}
            refaes = {layer: inputs.refae(layer, shapes[layer]) for layer in layers}
            decoders = {
                (layer, alpha): inputs.cladec_decoder(layer, alpha, shapes[layer])
                for layer in layers
                for alpha in alphas
            }
            latent = {
                layer: inputs.vcladec_decoder(layer, variational.latent_dim) for layer in grids
            }
            refvae = inputs.refvae if grids else None
            images = as_float_images(originals)
            for layer in layers:
                arrays[f"{layer}/refae"] = batched(refaes[layer], images).numpy()
                for alpha in alphas:
                    decoded = batched(decoders[layer, alpha], codes[layer])
                    arrays[f"{layer}/{alpha}"] = decoded.numpy()
                    agrees = batched(net, decoded).argmax(1).numpy() == selection.predicted[rows]
                    metrics[f"{layer}/alpha_{alpha}/same_prediction"] = float(agrees.mean())
            for layer, decoder in latent.items():
                decoded = batched(decoder, torch.as_tensor(points))
                arrays[f"vcladec/{layer}"] = decoded.numpy()
                arrays[f"vcladec/{layer}/predicted"] = batched(net, decoded).argmax(1).numpy()
            if refvae is not None:
                decoded = refvae.decode(torch.as_tensor(points))
                arrays["refvae"] = decoded.numpy()
                arrays["refvae/predicted"] = batched(net, decoded).argmax(1).numpy()
        arrays["class_names"] = np.array(inputs.class_names)
        return Computed({"decoded": arrays}, metrics)

    def draw(
        self, stored: dict[str, dict[str, np.ndarray]], p: CladecDecodingsParams
    ) -> dict[str, Any]:  # type: ignore[override]
        """`<layer>.png` per layer; `latent_grids.png` when the variational ClaDec has a
        2-D latent."""
        from pipeline.figures.cladec_decodings import plot_cladec_rows, plot_latent_grids

        z = stored["decoded"]
        names = [str(n) for n in z["class_names"]]
        figures: dict[str, Any] = {}
        for layer in z["layers"]:
            columns = [("RefAE", z[f"{layer}/refae"])]
            columns += [(f"ClaDec α={a:g}", z[f"{layer}/{a}"]) for a in z["alphas"]]
            figures[f"{layer}.png"] = plot_cladec_rows(
                z["originals"],
                columns,
                list(z["captions"]),
                f"ClaDec explanations of layer {layer}: what the layer keeps of each image, "
                "against the reference autoencoder",
            )
        grids = [
            (
                f"variational ClaDec ({key.split('/')[1]})",
                z[key],
                [names[c] for c in z[f"{key}/predicted"]],
            )
            for key in sorted(
                k for k in z if k.startswith("vcladec/") and not k.endswith("/predicted")
            )
        ]
        if "refvae" in z:
            grids.append(("reference VAE", z["refvae"], [names[c] for c in z["refvae/predicted"]]))
        if grids:
            figures["latent_grids.png"] = plot_latent_grids(
                grids,
                z["grid_axis"],
                "Decoded over the 2-D latent plane (classifier's class in yellow): the "
                "classifier's prototypes against a plain VAE",
            )
        return figures
