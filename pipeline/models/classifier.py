"""The classifier as a LightningModule, and its compact export for downstream stages."""

from __future__ import annotations

from collections.abc import Sequence

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor

from pipeline.models.archs import build_classifier
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
