"""DVC stages `cladec@<layer>-<alpha>` and `vcladec@<layer>`: a decoder of the frozen
classifier's activations at one layer (variational with --variational); skipped, saying
why in its outputs, when the images are larger than cladec.max_side (pipeline/skips.py).

Under DVC the stage name says which layer and alpha (stages/dvc_item.py: no params value
is ever part of a command); by hand, --layer and --alpha do."""

from __future__ import annotations

import argparse

from pipeline.data import Splits
from pipeline.errors import ParamsError
from pipeline.generative_training import train_cladec
from pipeline.models.export import load_classifier
from pipeline.params import check_runtime, load_params
from pipeline.tracking import stage_run
from stages import paths
from stages.dvc_item import dvc_member, dvc_names
from stages.generative import train_and_finish
from stages.runner import run_stage


def _by_hand(layer: str, written: str | None, layers: list[str]) -> tuple[str, float, str]:
    """(layer, alpha, name suffix) from --layer and --alpha."""
    if layer not in layers:
        raise ParamsError(f"layer {layer!r} is not in {layers} (params.yaml)")
    try:
        alpha = float(written)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ParamsError(f"--alpha must be a number in [0, 1], got {written!r}") from None
    if not 0.0 <= alpha <= 1.0:
        raise ParamsError(f"--alpha must lie in [0, 1], got {alpha}")
    return layer, alpha, f"{layer}-{written}"


def _from_dvc(layers: list[str], alphas: list[float]) -> tuple[str, float, str]:
    """(layer, alpha, name suffix) of the stage cladec@<layer>-<alpha> DVC runs: the
    suffix as DVC writes it (and so its output paths), the values as validated."""
    members = {
        f"{layer}-{written}": (layer, alpha)
        for layer in layers
        for alpha in alphas
        for written in dvc_names(alpha)
    }
    suffix, (layer, alpha) = dvc_member(
        "cladec", members, "cladec.layers x cladec.alphas", "--layer and --alpha"
    )
    return layer, alpha, suffix


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--layer", help="by hand; under DVC the stage name gives it")
    parser.add_argument("--alpha", help="by hand, as written in params.yaml; names the outputs")
    parser.add_argument("--variational", action="store_true")
    args = parser.parse_args()
    params = load_params()
    check_runtime(params)  # the accelerator and precision exist on this machine
    cfg, var = params.cladec, params.cladec.variational
    if args.variational:
        layer, alpha = args.layer, var.alpha
        if layer is None:
            layer, _ = dvc_member(
                "vcladec", {n: n for n in var.layers}, "cladec.variational.layers", "--layer"
            )
        elif layer not in var.layers:
            raise ParamsError(f"layer {layer!r} is not in {var.layers} (params.yaml)")
        suffix = layer
    elif args.layer is None:
        layer, alpha, suffix = _from_dvc(cfg.layers, cfg.alphas)
    else:
        layer, alpha, suffix = _by_hand(args.layer, args.alpha, cfg.layers)
    splits = Splits.load(paths.DATASET)
    classifier, model_names = load_classifier(paths.CLASSIFIER_MODEL)
    kind = "vcladec" if args.variational else "cladec"
    name, stage = f"{kind}/{suffix}", f"{kind}@{suffix}"
    extra = {"latent_dim": var.latent_dim, "beta": var.beta} if args.variational else {}
    config = {"kind": kind, "layer": layer, "alpha": alpha, **extra}
    logged = {
        "seed": params.seed,
        "cladec": cfg.model_dump(exclude={"layers", "alphas"}),
        "layer": layer,
        "alpha": alpha,
        "trainer": params.trainer.model_dump(),
    }
    with stage_run(stage, params.tracking.experiment, splits.dataset, logged) as run:
        train_and_finish(
            run,
            name,
            config,
            params,
            splits,
            classifier,
            model_names,
            lambda labelled: train_cladec(
                labelled,
                classifier,
                layer,
                alpha,
                params,
                paths.model_dir(name) / "checkpoints",
                run.lightning_logger(),
                latent_dim=extra.get("latent_dim"),
                beta=extra.get("beta", 1.0),
            ),
        )


if __name__ == "__main__":
    run_stage("cladec", main)
