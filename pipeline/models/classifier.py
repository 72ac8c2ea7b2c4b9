"""The classifier as a LightningModule, and its compact export for downstream stages."""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from pathlib import Path

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor

from pipeline.errors import PipelineError
from pipeline.io import atomic_path
from pipeline.models.archs import ImageClassifier, ImageShape, build_classifier
from pipeline.models.epoch_logging import log_epoch


class ClassifierModule(pl.LightningModule):
    """Cross-entropy training of a named architecture with Adam."""

    def __init__(
        self,
        arch: str,
        input_shape: Sequence[int],
        num_classes: int,
        lr: float,
        weight_decay: float = 0.0,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        # logger=False: the stage logs params.yaml keys itself, under their full names
        self.save_hyperparameters(logger=False)
        self.net = build_classifier(arch, tuple(input_shape), num_classes, mean, std)  # type: ignore[arg-type]

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def _step(self, batch: tuple[Tensor, Tensor], stage: str) -> Tensor:
        x, y = batch
        logits = self(x)
        loss = F.cross_entropy(logits, y)
        acc = (logits.argmax(1) == y).float().mean()
        log_epoch(self, stage, {"loss": loss, "acc": acc}, len(y), progress=("loss", "acc"))
        return loss

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._step(batch, "val")

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(
            self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay
        )


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
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


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
