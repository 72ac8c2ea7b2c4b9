"""The trained classifier's compact export: weights plus what rebuilds the net, loadable
with `weights_only=True` and without Lightning, so downstream stages start fast."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from pipeline.errors import ParamsError, PipelineError
from pipeline.io import STORED_READ_ERRORS, corrupt_file_error, write_torch
from pipeline.models.archs import ImageClassifier, ImageShape, build_classifier
from pipeline.models.user_model import ARCH as USER_ARCH
from pipeline.models.user_model import user_model_from_payload


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
    """Rebuild the trained classifier in eval mode, with its class names. Loaded with
    `weights_only=True`: a file whose pickle would run code is refused, and a missing,
    cut-short or overwritten file is a one-line PipelineError naming the stage to rerun."""
    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"{path} not found: run the classifier stage (`dvc repro classifier`)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        shape: ImageShape = tuple(int(d) for d in payload["input_shape"])  # type: ignore[assignment]
        if payload["arch"] == USER_ARCH:  # a user's TorchScript file, as given
            net = user_model_from_payload(payload, path)
        else:
            net = build_classifier(str(payload["arch"]), shape, int(payload["num_classes"]))
            net.load_state_dict(payload["state_dict"])
        names = [str(name) for name in payload["class_names"]]
    except (*STORED_READ_ERRORS, RuntimeError, AttributeError) as exc:
        raise corrupt_file_error(path, exc, "classifier") from None
    except ParamsError as exc:  # an arch or shape this code does not build
        raise corrupt_file_error(path, str(exc), "classifier") from None
    return net.eval(), names
