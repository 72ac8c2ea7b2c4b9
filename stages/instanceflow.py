"""DVC stage `instanceflow`: how every tracked test instance's prediction moves between
classes over the training epochs (InstanceFlow, Pühringer et al. 2020)."""

from __future__ import annotations

import logging

import numpy as np

from pipeline.errors import PipelineError
from pipeline.explain.instanceflow import (
    instance_table,
    most_unstable,
    select_epochs,
    visited_classes,
)
from pipeline.io import read_npz, write_csv, write_json, write_npz
from pipeline.params import load_params
from pipeline.tracking import stage_run
from stages import paths
from stages.runner import run_stage

log = logging.getLogger("stages.instanceflow")
PART = "instanceflow"


def main() -> None:
    params = load_params()
    cfg = params.explain.instanceflow
    if not paths.EPOCH_PREDICTIONS.is_file():
        raise PipelineError(f"{paths.EPOCH_PREDICTIONS} not found: run `dvc repro classifier`")
    record = read_npz(paths.EPOCH_PREDICTIONS)
    names = [str(n) for n in record["class_names"]]
    if cfg.classes is not None and max(cfg.classes) >= len(names):
        raise PipelineError(
            f"params.yaml: explain.instanceflow.classes = {cfg.classes}: "
            f"class indices must be below {len(names)}"
        )
    logged = {f"explain.{PART}": cfg.model_dump()}
    with stage_run(PART, params.tracking.experiment, params.data.dataset, logged) as run:
        predictions, labels = record["predictions"], record["labels"]
        table = instance_table(predictions, labels)
        epoch_rows = select_epochs(record["epochs"], cfg.epochs)
        unstable = most_unstable(table, cfg.unstable)
        visited = visited_classes(predictions)
        rows = [
            {
                "test_index": int(record["test_indices"][i]),
                "label": names[labels[i]],
                "final_prediction": names[predictions[-1, i]],
                "fraction_misclassified": round(float(table["fraction_misclassified"][i]), 4),
                "class_changes": int(table["class_changes"][i]),
                "classes_visited": " ".join(names[c] for c in visited[i]),
            }
            for i in range(len(labels))
        ]
        write_csv(paths.part_dir(PART) / "instances.csv", rows, list(rows[0]) if rows else [])
        write_npz(
            paths.part_dir(PART) / "flow.npz",
            compressed=False,
            epoch_rows=epoch_rows,
            unstable=unstable,
            classes=np.array(cfg.classes if cfg.classes is not None else [], dtype=int),
            **record,  # the per-epoch predictions themselves: the figures read only this
        )
        metrics = {
            "instances": len(labels),
            "epochs": len(record["epochs"]),
            "mean_class_changes": float(table["class_changes"].mean()),
            "share_ever_misclassified": float((table["fraction_misclassified"] > 0).mean()),
            "share_changing_class": float((table["class_changes"] > 0).mean()),
            "share_final_correct": float(table["final_correct"].mean()),
        }
        write_json(paths.part_metrics(PART), metrics)
        run.log_metrics(metrics)
    log.info(
        "%d instances over %d epochs: %s -> %s",
        len(labels),
        metrics["epochs"],
        metrics,
        paths.part_dir(PART),
    )


if __name__ == "__main__":
    run_stage(PART, main)
