"""DVC stage `vae_walks`: contrastive latent walks of the VAE between instances of the
most confused class pairs; where the classifier's prediction flips."""

from __future__ import annotations

import logging

import numpy as np
import torch

from pipeline.explain.latent_walk import latent_walk, walk_metrics
from pipeline.inference import as_float_images
from pipeline.io import write_json, write_npz
from pipeline.params import load_params
from pipeline.restore import load_vae
from pipeline.tracking import stage_run
from stages import paths
from stages.common import load_inputs
from stages.runner import run_stage

log = logging.getLogger("stages.vae_walks")
PART = "vae_walks"


def main() -> None:
    params = load_params()
    cfg = params.explain.vae_walks
    inputs = load_inputs()
    splits, selection, net = inputs.splits, inputs.selection, inputs.net
    vae = load_vae(paths.model_dir("vae") / "model.pt", splits.image_shape)
    logged = {"seed": params.seed, f"explain.{PART}": cfg.model_dump()}
    with stage_run(PART, params.tracking.experiment, splits.dataset, logged) as run:
        rng = np.random.default_rng(params.seed)
        predicted = net.eval()(as_float_images(splits.x_test)).argmax(1).numpy()
        correct = predicted == splits.y_test
        pairs = selection.pairs[:, :2] if len(selection.pairs) else np.array([[0, 1]])
        walks, titles, ends = [], [], []
        for a, b in pairs:
            from_a = np.flatnonzero(correct & (splits.y_test == a))
            from_b = np.flatnonzero(correct & (splits.y_test == b))
            count = min(cfg.pairs_per_class_pair, len(from_a), len(from_b))
            for i, j in zip(
                rng.choice(from_a, count, replace=False),
                rng.choice(from_b, count, replace=False),
                strict=True,
            ):
                images = as_float_images(splits.x_test[[i, j]])
                walk = latent_walk(
                    vae.encode_mean, vae.decode, net, images[0], images[1], cfg.steps
                )
                walks.append(walk)
                ends.append((int(i), int(j)))
                titles.append(f"{inputs.names[a]} #{i} → {inputs.names[b]} #{j}")
        write_npz(
            paths.part_dir(PART) / "walks.npz",
            titles=np.array(titles),
            ends=np.array(ends).reshape(-1, 2),
            decoded=np.stack([w.decoded for w in walks]) if walks else np.zeros(0),
            probabilities=np.stack([w.probabilities for w in walks]) if walks else np.zeros(0),
            latents=np.stack([w.latents for w in walks]) if walks else np.zeros(0),
            class_names=np.array(inputs.names),
        )
        metrics = walk_metrics(walks)
        write_json(paths.part_metrics(PART), metrics)
        run.log_metrics(metrics)
    log.info("%d walks: %s -> %s", len(walks), metrics, paths.part_dir(PART))


if __name__ == "__main__":
    with torch.inference_mode():
        run_stage(PART, main)
