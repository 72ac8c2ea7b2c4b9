"""The trained classifier's compact export: weights plus what rebuilds the net, loadable
with `weights_only=True` and without Lightning, so downstream stages start fast."""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from pathlib import Path

import torch

from pipeline.errors import PipelineError
from pipeline.io import write_torch
from pipeline.models.archs import ImageClassifier, ImageShape, build_classifier


def save_classifier(
    net: ImageClassifier, module_hparams: dict, class_names: Sequence[str], path: str | Path
) -> None:
    """Write weights plus everything needed to rebuild the net (loadable with weights_only)."""
    payload = {
        "arch": module_hparams["arch"],
        "input_shape": list(module_hparams["input_shape"]),
        "num_classes": int(module_hparams["num_classes"]),
        "class_names": list(class_names),
        "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()},
    }
    write_torch(path, payload)


def load_classifier(path: str | Path) -> tuple[ImageClassifier, list[str]]:
    """Rebuild the trained classifier in eval mode, with its class names."""
    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"{path} not found: run the classifier stage (`dvc repro classifier`)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        shape: ImageShape = tuple(payload["input_shape"])  # type: ignore[assignment]
        net = build_classifier(payload["arch"], shape, payload["num_classes"])
        net.load_state_dict(payload["state_dict"])
    except (RuntimeError, KeyError, EOFError, OSError, pickle.UnpicklingError) as exc:
        raise PipelineError(f"{path} is corrupt ({exc}); rerun `dvc repro -f classifier`") from None
    return net.eval(), list(payload["class_names"])
