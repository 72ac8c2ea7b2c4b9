"""Epoch-level metric logging shared by every LightningModule of the pipeline."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import pytorch_lightning as pl
from torch import Tensor


def log_epoch(
    module: pl.LightningModule,
    stage: str,
    values: Mapping[str, Tensor],
    batch_size: int,
    progress: Iterable[str] = ("loss",),
) -> None:
    """Log `<stage>_<name>` averaged over the epoch (synchronised across devices outside
    training); the names in `progress` also show on the progress bar."""
    shown = set(progress)
    for name, value in values.items():
        module.log(
            f"{stage}_{name}",
            value,
            on_step=False,
            on_epoch=True,
            prog_bar=name in shown,
            batch_size=batch_size,
            sync_dist=stage != "train",
        )
