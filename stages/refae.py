"""DVC stage `refae@<layer>`: the reference autoencoder for a layer (same architecture
up to the layer, fresh weights, same decoder, reconstruction only); skipped, saying why
in its outputs, for images larger than cladec.max_side and for a TorchScript classifier
(whose architecture Python cannot copy)."""

from __future__ import annotations

import argparse

from pipeline.data import Splits
from pipeline.errors import ParamsError
from pipeline.generative_training import train_refae
from pipeline.models.export import load_classifier
from pipeline.params import check_runtime, load_params
from pipeline.tracking import stage_run
from stages import paths
from stages.dvc_item import dvc_member
from stages.generative import train_and_finish
from stages.runner import run_stage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--layer", help="by hand; under DVC the stage name refae@<layer> gives it")
    args = parser.parse_args()
    params = load_params()
    check_runtime(params)  # the accelerator and precision exist on this machine
    layers = params.cladec.layers
    if args.layer is None:  # no params value is ever part of a command: stages/dvc_item.py
        args.layer, _ = dvc_member("refae", {n: n for n in layers}, "cladec.layers", "--layer")
    elif args.layer not in layers:
        raise ParamsError(f"layer {args.layer!r} is not in cladec.layers {layers}")
    splits = Splits.load(paths.DATASET)
    classifier, model_names = load_classifier(paths.CLASSIFIER_MODEL)
    name = f"refae/{args.layer}"
    logged = {
        "seed": params.seed,
        "cladec": params.cladec.model_dump(exclude={"alphas", "layers", "variational"}),
        "layer": args.layer,
        "trainer": params.trainer.model_dump(),
    }
    with stage_run(
        f"refae@{args.layer}", params.tracking.experiment, splits.dataset, logged
    ) as run:
        train_and_finish(
            run,
            name,
            {"kind": "refae", "layer": args.layer, "alpha": None},
            params,
            splits,
            classifier,
            model_names,
            lambda labelled: train_refae(
                labelled,
                classifier,
                args.layer,
                params,
                paths.model_dir(name) / "checkpoints",
                run.lightning_logger(),
            ),
        )


if __name__ == "__main__":
    run_stage("refae", main)
