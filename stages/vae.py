"""DVC stages `vae` (the VAE for latent walks) and `refvae` (--reference: a VAE with the
variational ClaDec's latent size, its reference)."""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from pipeline.data import Splits
from pipeline.decode import train_vae
from pipeline.inference import as_float_images, batched
from pipeline.models.export import load_classifier
from pipeline.models.generative import kl_divergence
from pipeline.params import load_params
from pipeline.tracking import stage_run
from stages import paths
from stages.generative import finish
from stages.runner import run_stage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reference", action="store_true")
    args = parser.parse_args()
    params = load_params()
    latent = params.cladec.variational.latent_dim if args.reference else params.vae.latent_dim
    name = "refvae" if args.reference else "vae"
    splits = Splits.load(paths.DATASET)
    classifier, _ = load_classifier(paths.CLASSIFIER_MODEL)
    logged = {
        "seed": params.seed,
        "vae": params.vae.model_dump(),
        "latent_dim": latent,
        "trainer": params.trainer.model_dump(),
    }
    with stage_run(name, params.tracking.experiment, splits.dataset, logged) as run:
        trained = train_vae(
            splits, params, latent, paths.model_dir(name) / "checkpoints", run.lightning_logger()
        )
        with torch.inference_mode():
            vae = trained.module.eval()
            images = as_float_images(splits.x_test)
            mean, log_var = batched(lambda x: torch.cat(vae.encode(x)[1:], 1), images).split(
                latent, dim=1
            )
            recon = F.binary_cross_entropy(trained.decoded_test, images, reduction="sum")
            recon = float(recon) / len(images)
            kl = float(kl_divergence(mean, log_var))
            config = {
                "kind": name,
                "latent_dim": latent,
                "beta": params.vae.beta,
                "test_recon_bce_per_image": recon,
                "test_kl": kl,
                "test_elbo": -(recon + kl),
            }
            finish(run, name, trained, splits, classifier, config, f"VAE with a {latent}-D latent")
            run.log_metrics({"test_elbo": -(recon + kl), "test_kl": kl})


if __name__ == "__main__":
    run_stage("vae", main)
