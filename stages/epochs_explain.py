"""DVC stage `epochs_explain`: Grad-CAM (or saliency) of a few selected images with the
classifier of every saved epoch: how its attention settles during training."""

from __future__ import annotations

import logging

import numpy as np
import torch

from pipeline.explain.registry import attribute, pixel_map
from pipeline.inference import as_float_images
from pipeline.io import write_json, write_npz
from pipeline.params import load_params
from pipeline.restore import classifier_spec, epoch_checkpoints, load_epoch_classifier
from pipeline.tracking import stage_run
from stages import paths
from stages.common import caption, load_inputs, spread
from stages.runner import run_stage

log = logging.getLogger("stages.epochs_explain")
PART = "epochs"


def main() -> None:
    params = load_params()
    cfg = params.explain.epochs
    inputs = load_inputs()
    splits, selection = inputs.splits, inputs.selection
    spec = classifier_spec(paths.CLASSIFIER_MODEL)
    checkpoints = epoch_checkpoints(paths.CLASSIFIER_CKPTS)
    logged = {f"explain.{PART}": cfg.model_dump()}
    with stage_run("epochs_explain", params.tracking.experiment, splits.dataset, logged) as run:
        rows = spread(selection, cfg.instances)
        originals = splits.x_test[selection.indices[rows]]
        images = as_float_images(originals)
        maps, predicted, epochs = [], [], []
        kwargs = {"layer": params.explain.gradcam.layer} if cfg.method == "gradcam" else {}
        for epoch, path in checkpoints:
            net = load_epoch_classifier(path, spec)
            with torch.no_grad():
                pred = net(images).argmax(1)
            maps.append(pixel_map(attribute(cfg.method, net, images, pred, **kwargs)))
            predicted.append(pred.numpy())
            epochs.append(epoch)
        stacked = np.stack(maps)
        write_npz(
            paths.part_dir(PART) / "maps.npz",
            images=originals,
            captions=np.array([caption(selection, r) for r in rows]),
            maps=stacked,
            predicted=np.stack(predicted),
            epochs=np.array(epochs),
            method=np.array(cfg.method),
            class_names=np.array(inputs.names),
        )
        # how far each epoch's maps are from the final ones (1 - cosine similarity)
        final = np.abs(stacked[-1]).reshape(len(rows), -1)
        distance = []
        for m in stacked:
            flat = np.abs(m).reshape(len(rows), -1)
            norms = np.linalg.norm(flat, axis=1) * np.linalg.norm(final, axis=1)
            cosine = (flat * final).sum(1) / np.where(norms > 0, norms, 1)
            distance.append(float(1 - cosine.mean()))
        metrics = {
            "epochs": len(epochs),
            "distance_to_final": dict(zip(map(str, epochs), distance, strict=True)),
        }
        write_json(paths.part_metrics(PART), metrics)
        run.log_metrics(
            {"epochs": len(epochs), "distance_first_to_final": distance[0] if distance else 0.0}
        )
    log.info(
        "%s at %d epochs for %d images -> %s",
        cfg.method,
        len(epochs),
        len(rows),
        paths.part_dir(PART),
    )


if __name__ == "__main__":
    run_stage("epochs_explain", main)
