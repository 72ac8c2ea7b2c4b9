"""DVC stage `grand_tour`: the Grand Tour (Li, Zhao, Scheidegger, Distill 2020) of layer
activations of test instances: projections rotating smoothly through the activation
space, and the same projection across the training epochs."""

from __future__ import annotations

import logging

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.explain.grand_tour import GrandTour, normalise, project
from pipeline.inference import as_float_images, batched, layer_codes
from pipeline.io import write_json, write_npz
from pipeline.params import load_params
from pipeline.restore import classifier_spec, epoch_checkpoints, load_epoch_classifier
from pipeline.tracking import stage_run
from stages import paths
from stages.common import load_inputs
from stages.runner import run_stage

log = logging.getLogger("stages.grand_tour")
PART = "grand_tour"
TOUR_LENGTH = 3.0  # the rotation parameter t runs from 0 to this over the animation


def activations(net: torch.nn.Module, layer: str, images: np.ndarray) -> np.ndarray:
    """N×D activations of a layer; `softmax` is the model's softmax output."""
    if layer == "softmax":
        return F.softmax(batched(net.eval(), as_float_images(images)), dim=1).numpy()
    return layer_codes(net, layer, images).flatten(1).numpy()


def main() -> None:
    params = load_params()
    cfg = params.explain.grand_tour
    inputs = load_inputs(selection=False)
    splits = inputs.splits
    spec = classifier_spec(paths.CLASSIFIER_MODEL)
    checkpoints = epoch_checkpoints(paths.CLASSIFIER_CKPTS)
    logged = {"seed": params.seed, f"explain.{PART}": cfg.model_dump()}
    with stage_run(PART, params.tracking.experiment, splits.dataset, logged) as run:
        rng = np.random.default_rng(params.seed)
        count = min(cfg.instances, len(splits.x_test))
        rows = np.sort(rng.choice(len(splits.x_test), count, replace=False))
        images, labels = splits.x_test[rows], splits.y_test[rows]
        epoch_nets = [load_epoch_classifier(path, spec) for _, path in checkpoints]
        epochs = [epoch for epoch, _ in checkpoints]
        arrays: dict[str, np.ndarray] = {
            "labels": labels,
            "test_indices": rows,
            "layers": np.array(cfg.layers),
            "epochs": np.array(epochs),
            "class_names": np.array(inputs.names),
        }
        metrics: dict[str, float] = {}
        for layer in cfg.layers:
            final = activations(inputs.net, layer, images)
            tour = GrandTour(final.shape[1], params.seed)
            times = np.linspace(0, TOUR_LENGTH, cfg.frames)
            rotations = [tour.rotation(float(t)) for t in times]
            arrays[f"{layer}/rotation"] = np.stack(
                normalise([project(final, r) for r in rotations])
            )
            arrays[f"{layer}/times"] = times
            # one fixed projection for every epoch, so only the model changes between frames
            fixed = rotations[len(rotations) // 3]
            per_epoch = [project(activations(net, layer, images), fixed) for net in epoch_nets]
            if per_epoch:
                arrays[f"{layer}/epochs"] = np.stack(normalise(per_epoch))
            metrics[f"{layer}/dimensions"] = float(final.shape[1])
        write_npz(paths.part_dir(PART) / "tour.npz", **arrays)
        write_json(paths.part_metrics(PART), {**metrics, "instances": count, "epochs": len(epochs)})
        run.log_metrics(metrics)
    log.info(
        "%d instances, layers %s, %d epochs -> %s",
        count,
        cfg.layers,
        len(epochs),
        paths.part_dir(PART),
    )


if __name__ == "__main__":
    with torch.inference_mode():
        run_stage(PART, main)
