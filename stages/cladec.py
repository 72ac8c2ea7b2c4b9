"""DVC stages `cladec@<layer>-<alpha>` and `vcladec@<layer>`: a decoder of the frozen
classifier's activations at one layer (variational with --variational)."""

from __future__ import annotations

import argparse

from pipeline.data import Splits
from pipeline.errors import ParamsError
from pipeline.generative_training import train_cladec
from pipeline.models.export import load_classifier
from pipeline.params import load_params
from pipeline.tracking import stage_run
from stages import paths
from stages.generative import finish
from stages.runner import run_stage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--layer", required=True)
    parser.add_argument("--alpha", help="as written in params.yaml; names the outputs")
    parser.add_argument("--variational", action="store_true")
    args = parser.parse_args()
    params = load_params()
    cfg, var = params.cladec, params.cladec.variational
    layers = var.layers if args.variational else cfg.layers
    if args.layer not in layers:
        raise ParamsError(f"layer {args.layer!r} is not in {layers} (params.yaml)")
    try:
        alpha = var.alpha if args.variational else float(args.alpha)
    except (TypeError, ValueError):
        raise ParamsError(f"--alpha must be a number in [0, 1], got {args.alpha!r}") from None
    if not 0.0 <= alpha <= 1.0:
        raise ParamsError(f"--alpha must lie in [0, 1], got {alpha}")
    splits = Splits.load(paths.DATASET)
    classifier, _ = load_classifier(paths.CLASSIFIER_MODEL)
    if args.variational:
        name, stage = f"vcladec/{args.layer}", f"vcladec@{args.layer}"
        extra = {"latent_dim": var.latent_dim, "beta": var.beta}
    else:
        name, stage = f"cladec/{args.layer}-{args.alpha}", f"cladec@{args.layer}-{args.alpha}"
        extra = {}
    config = {"kind": name.split("/")[0], "layer": args.layer, "alpha": alpha, **extra}
    logged = {
        "seed": params.seed,
        "cladec": cfg.model_dump(exclude={"layers", "alphas"}),
        "layer": args.layer,
        "alpha": alpha,
        "trainer": params.trainer.model_dump(),
    }
    with stage_run(stage, params.tracking.experiment, splits.dataset, logged) as run:
        trained = train_cladec(
            splits,
            classifier,
            args.layer,
            alpha,
            params,
            paths.model_dir(name) / "checkpoints",
            run.lightning_logger(),
            latent_dim=extra.get("latent_dim"),
            beta=extra.get("beta", 1.0),
        )
        finish(run, name, trained, splits, classifier, config)


if __name__ == "__main__":
    run_stage("cladec", main)
