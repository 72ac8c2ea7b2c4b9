"""DVC stage `ice`: concepts of a ReLU layer by non-negative matrix factorisation of its
activations (ICE, Zhang et al. 2020): concept maps, per-class presence and weights,
example images, and the fidelity of the factorisation per number of concepts."""

from __future__ import annotations

import logging
import warnings

import numpy as np
import torch

from pipeline.errors import PipelineError
from pipeline.explain.ice import (
    Concepts,
    class_presence,
    class_weights,
    concept_scores,
    fidelity,
    fit_concepts,
    top_images,
    upsample,
)
from pipeline.inference import as_float_images, layer_codes
from pipeline.io import write_json, write_npz
from pipeline.params import load_params
from pipeline.tracking import stage_run
from stages import paths
from stages.common import caption, load_inputs, spread
from stages.runner import run_stage

log = logging.getLogger("stages.ice")
PART = "ice"


def main() -> None:
    params = load_params()
    cfg = params.explain.ice
    inputs = load_inputs()
    splits, selection, net = inputs.splits, inputs.selection, inputs.net
    logged = {"seed": params.seed, f"explain.{PART}": cfg.model_dump()}
    with stage_run(PART, params.tracking.experiment, splits.dataset, logged) as run:
        rng = np.random.default_rng(params.seed)
        count = min(cfg.images, len(splits.x_test))
        rows = np.sort(rng.choice(len(splits.x_test), count, replace=False))
        images, labels = splits.x_test[rows], splits.y_test[rows]
        activations = layer_codes(net, cfg.layer, images).numpy()
        if activations.ndim != 4:
            raise PipelineError(
                f"params.yaml: explain.ice.layer = {cfg.layer!r}: ICE needs a convolutional "
                f"layer (N×C×H×W activations), this one gives {activations.shape[1:]}"
            )
        if activations.min() < 0:
            raise PipelineError(
                f"params.yaml: explain.ice.layer = {cfg.layer!r}: its activations are negative; "
                "ICE factorises non-negative (post-ReLU) activations"
            )
        channels = activations.shape[1]
        if cfg.concepts > channels:
            raise PipelineError(
                f"params.yaml: explain.ice.concepts = {cfg.concepts}: layer {cfg.layer!r} has "
                f"only {channels} channels"
            )
        floats = as_float_images(images)
        fidelity_rows = []
        fitted: dict[int, Concepts] = {}
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*Maximum number of iterations.*")
            for n in sorted(set(cfg.fidelity_concepts)):
                if n > channels:
                    log.warning(
                        "skipping %d concepts: layer %s has %d channels", n, cfg.layer, channels
                    )
                    continue
                fitted[n] = fit_concepts(activations, n, params.seed)
                fidelity_rows.append(
                    fidelity(net, cfg.layer, floats, activations, fitted[n], labels)
                )
            # the concept count shown is usually one of those measured: fit it once
            if cfg.concepts in fitted:
                concepts = fitted[cfg.concepts]
            else:
                concepts = fit_concepts(activations, cfg.concepts, params.seed)
        scores = concept_scores(activations, concepts)
        presence = class_presence(scores, labels, len(inputs.names), cfg.presence_threshold)
        weights = class_weights(net, cfg.layer, floats, activations, concepts)
        top, bottom = top_images(scores, cfg.examples)
        examples = np.unique(np.concatenate([top, bottom], None))
        size = splits.image_shape[1:]
        shown = spread(selection, 8)
        shown_images = splits.x_test[selection.indices[shown]]
        shown_scores = concept_scores(layer_codes(net, cfg.layer, shown_images).numpy(), concepts)
        write_npz(
            paths.part_dir(PART) / "concepts.npz",
            layer=np.array(cfg.layer),
            components=concepts.components,
            shown_images=shown_images,
            shown_captions=np.array([caption(selection, r) for r in shown]),
            shown_maps=upsample(shown_scores, size),
            presence=presence,
            weights=weights,
            images=images,
            top=top,
            bottom=bottom,
            example_maps=upsample(scores[examples], size),
            example_rows=examples,
            class_names=np.array(inputs.names),
        )
        write_json(paths.part_dir(PART) / "fidelity.json", fidelity_rows)
        metrics = {
            "layer_channels": channels,
            "concepts": cfg.concepts,
            "relative_activation_error": float(concepts.relative_error),
            "fidelity": {str(r["n_concepts"]): r for r in fidelity_rows},
        }
        write_json(paths.part_metrics(PART), metrics)
        run.log_metrics(metrics)
    for r in fidelity_rows:
        log.info(
            "%2d concepts: accuracy %.3f (original %.3f), relative logit error %.3f",
            r["n_concepts"],
            r["accuracy"],
            r["accuracy_original"],
            r["relative_logit_error"],
        )
    log.info("-> %s", paths.part_dir(PART))


if __name__ == "__main__":
    with torch.inference_mode():
        run_stage(PART, main)
