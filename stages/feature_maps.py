"""DVC stage `feature_maps`: the activation maps of every conv layer for a few selected
images, and the first conv layer's filters."""

from __future__ import annotations

import logging

import numpy as np

from pipeline.explain.feature_maps import feature_maps, first_conv_filters
from pipeline.inference import as_float_images
from pipeline.io import write_json, write_npz
from pipeline.params import load_params
from pipeline.tracking import stage_run
from stages import paths
from stages.common import caption, load_inputs, spread
from stages.runner import run_stage

log = logging.getLogger("stages.feature_maps")
PART = "feature_maps"


def main() -> None:
    params = load_params()
    cfg = params.explain.feature_maps
    inputs = load_inputs()
    logged = {f"explain.{PART}": cfg.model_dump()}
    with stage_run(PART, params.tracking.experiment, inputs.splits.dataset, logged) as run:
        rows = spread(inputs.selection, cfg.instances)
        images = inputs.splits.x_test[inputs.selection.indices[rows]]
        maps = feature_maps(inputs.net, as_float_images(images))
        layers = list(maps)
        write_npz(
            paths.part_dir(PART) / "maps.npz",
            images=images,
            captions=np.array([caption(inputs.selection, r) for r in rows]),
            layers=np.array(layers),
            filters=first_conv_filters(inputs.net),
            **{f"layer_{i}": maps[name] for i, name in enumerate(layers)},
        )
        metrics = {
            "layers": len(layers),
            "per_layer": {
                name: {
                    "channels": int(m.shape[1]),
                    "mean_activation": float(m.mean()),
                    # channels silent on every shown image at every position
                    "silent_channels": int((m.max(axis=(0, 2, 3)) <= 0).sum()),
                }
                for name, m in maps.items()
            },
        }
        write_json(paths.part_metrics(PART), metrics)
        run.log_metrics(metrics)
    log.info("%d conv layers, %d images -> %s", len(layers), len(rows), paths.part_dir(PART))


if __name__ == "__main__":
    run_stage(PART, main)
