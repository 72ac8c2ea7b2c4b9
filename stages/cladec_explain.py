"""DVC stage `cladec_explain`: ClaDec explanations of selected instances (original,
RefAE reconstruction, ClaDec reconstruction per alpha, per layer) and the variational
ClaDec's latent grid next to the reference VAE's."""

from __future__ import annotations

import logging

import numpy as np
import torch

from pipeline.figures.cladec_explain import latent_grid
from pipeline.inference import as_float_images, batched, layer_codes
from pipeline.io import write_json, write_npz
from pipeline.params import load_params
from pipeline.restore import classifier_spec, load_decoder, load_refae, load_vae
from pipeline.tracking import stage_run
from stages import paths
from stages.common import caption, load_inputs, spread
from stages.runner import run_stage

log = logging.getLogger("stages.cladec_explain")
PART = "cladec"


def main() -> None:
    params = load_params()
    cfg = params.explain.cladec
    inputs = load_inputs()
    splits, selection, net = inputs.splits, inputs.selection, inputs.net
    spec = classifier_spec(paths.CLASSIFIER_MODEL)
    shape = splits.image_shape
    logged = {f"explain.{PART}": cfg.model_dump(), "cladec.alphas": params.cladec.alphas}
    with stage_run("cladec_explain", params.tracking.experiment, splits.dataset, logged) as run:
        rows = spread(selection, cfg.instances)
        originals = splits.x_test[selection.indices[rows]]
        images = as_float_images(originals)
        arrays: dict[str, np.ndarray] = {
            "originals": originals,
            "captions": np.array([caption(selection, r) for r in rows]),
            "layers": np.array(params.cladec.layers),
            "alphas": np.array(params.cladec.alphas, dtype=np.float64),
        }
        metrics: dict[str, float] = {}
        for layer in params.cladec.layers:
            codes = layer_codes(net, layer, originals)
            code_shape = tuple(codes.shape[1:])
            refae = load_refae(
                paths.model_dir(f"refae/{layer}") / "model.pt",
                spec,
                layer,
                code_shape,
                shape,
                f"refae@{layer}",
            )
            arrays[f"{layer}/refae"] = batched(refae, images).numpy()
            for alpha in params.cladec.alphas:
                name = f"{layer}-{alpha}"
                decoder = load_decoder(
                    paths.model_dir(f"cladec/{name}") / "model.pt",
                    code_shape,
                    shape,
                    f"cladec@{name}",
                )
                decoded = batched(decoder, codes)
                arrays[f"{layer}/{alpha}"] = decoded.numpy()
                agrees = batched(net, decoded).argmax(1).numpy() == selection.predicted[rows]
                metrics[f"{layer}/alpha_{alpha}/same_prediction"] = float(agrees.mean())
        points, axis = latent_grid(cfg.grid)
        arrays["grid_axis"] = axis
        latent = params.cladec.variational.latent_dim
        for layer in params.cladec.variational.layers if latent == 2 else []:
            decoder = load_decoder(
                paths.model_dir(f"vcladec/{layer}") / "model.pt", (2,), shape, f"vcladec@{layer}"
            )
            decoded = batched(decoder, torch.as_tensor(points))
            arrays[f"vcladec/{layer}"] = decoded.numpy()
            arrays[f"vcladec/{layer}/predicted"] = batched(net, decoded).argmax(1).numpy()
        if params.cladec.variational.layers and latent == 2:
            refvae = load_vae(paths.model_dir("refvae") / "model.pt", shape, "refvae")
            decoded = refvae.decode(torch.as_tensor(points))
            arrays["refvae"] = decoded.numpy()
            arrays["refvae/predicted"] = batched(net, decoded).argmax(1).numpy()
        arrays["class_names"] = np.array(inputs.names)
        write_npz(paths.part_dir(PART) / "decoded.npz", **arrays)
        write_json(paths.part_metrics(PART), metrics)
        run.log_metrics(metrics)
    log.info("%d instances, layers %s -> %s", len(rows), params.cladec.layers, paths.part_dir(PART))


if __name__ == "__main__":
    with torch.inference_mode():
        run_stage("cladec_explain", main)
