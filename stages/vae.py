"""DVC stages `vae` (the VAE for latent walks) and `refvae` (--reference: a VAE with the
variational ClaDec's latent size, its reference)."""

from __future__ import annotations

import argparse

from pipeline.data import Splits
from pipeline.generative_training import train_vae, vae_test_metrics
from pipeline.models.export import load_classifier
from pipeline.params import check_runtime, load_params
from pipeline.tracking import stage_run
from stages import paths
from stages.generative import finish, in_model_classes
from stages.runner import run_stage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reference", action="store_true")
    args = parser.parse_args()
    params = load_params()
    check_runtime(params)  # the accelerator and precision exist on this machine
    latent = params.cladec.variational.latent_dim if args.reference else params.vae.latent_dim
    name = "refvae" if args.reference else "vae"
    splits = Splits.load(paths.DATASET)
    classifier, model_names = load_classifier(paths.CLASSIFIER_MODEL)
    logged = {
        "seed": params.seed,
        "vae": params.vae.model_dump(),
        "latent_dim": latent,
        "trainer": params.trainer.model_dump(),
    }
    config = {"kind": name, "latent_dim": latent, "beta": params.vae.beta}
    with stage_run(name, params.tracking.experiment, splits.dataset, logged) as run:
        # the VAE trains on images alone; its classifier metrics need the model's classes
        splits, targets = in_model_classes(splits, classifier, model_names)
        trained = train_vae(
            splits, params, latent, paths.model_dir(name) / "checkpoints", run.lightning_logger()
        )
        elbo = vae_test_metrics(trained.module, splits.x_test, trained.decoded_test)
        finish(run, name, trained, splits, classifier, config, elbo, targets)


if __name__ == "__main__":
    run_stage("vae", main)
