"""Lightning's training overhead: epoch time of our Lightning classifier training against a
plain PyTorch loop over the same model, data, sampler, optimiser and batch size,
measured side by side in one process (interleaved, so machine load hits both alike).

    python benchmarks/lightning_overhead.py [--epochs 4] [--rounds 3] [--batch-size 64]

Prints the median epoch time of each and their ratio (goal: Lightning / plain <= 1.15).
The first epoch of every run is discarded as warm-up.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.callbacks import Callback

from pipeline.data import load_dataset, split_dataset
from pipeline.models.classifier import ClassifierModule
from pipeline.params import Params
from pipeline.training import EpochSeed, ImageDataModule, InMemoryImages, make_loader, make_trainer


class EpochTimer(Callback):
    def __init__(self) -> None:
        self.times: list[float] = []

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.times.append(time.perf_counter() - self._start)


def lightning_epochs(splits, params: Params, epochs: int) -> list[float]:
    cfg = params.classifier
    pl.seed_everything(params.seed, verbose=False)
    module = ClassifierModule(cfg.arch, splits.image_shape, splits.num_classes, cfg.lr)
    data = ImageDataModule(
        InMemoryImages(splits.x_train, splits.y_train),
        InMemoryImages(splits.x_val, splits.y_val),
        cfg.batch_size,
        params.seed,
    )
    timer = EpochTimer()
    trainer = make_trainer(
        params.trainer, epochs, [EpochSeed(params.seed), timer], progress_bar=False
    )
    trainer.limit_val_batches = 0  # compare training epochs only
    trainer.fit(module, datamodule=data)
    return timer.times[1:]


def plain_epochs(splits, params: Params, epochs: int) -> list[float]:
    cfg = params.classifier
    pl.seed_everything(params.seed, verbose=False)
    torch.use_deterministic_algorithms(params.trainer.deterministic)
    net = ClassifierModule(cfg.arch, splits.image_shape, splits.num_classes, cfg.lr).net
    optimiser = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    loader = make_loader(
        InMemoryImages(splits.x_train, splits.y_train),
        cfg.batch_size,
        shuffle=True,
        seed=params.seed,
    )
    times = []
    net.train()
    for epoch in range(epochs):
        pl.seed_everything(params.seed + 7919 * epoch, verbose=False)
        loader.sampler.set_epoch(epoch)
        start = time.perf_counter()
        for x, y in loader:
            optimiser.zero_grad()
            logits = net(x)
            loss = F.cross_entropy(logits, y)
            loss.backward()
            optimiser.step()
            # the same per-step bookkeeping Lightning's self.log does for us
            (logits.argmax(1) == y).float().mean().item()
        times.append(time.perf_counter() - start)
    return times[1:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=None)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    params = Params()
    if args.batch_size:
        params = params.model_copy(
            update={
                "classifier": params.classifier.model_copy(update={"batch_size": args.batch_size})
            }
        )
    splits = split_dataset(load_dataset(params.data), params.data, params.seed, "mnist_embedded")
    lightning, plain = [], []
    for _ in range(args.rounds):
        plain += plain_epochs(splits, params, args.epochs)
        lightning += lightning_epochs(splits, params, args.epochs)
    result = {
        "batch_size": params.classifier.batch_size,
        "train_images": len(splits.y_train),
        "epochs_measured_each": len(plain),
        "plain_median_s": round(statistics.median(plain), 4),
        "lightning_median_s": round(statistics.median(lightning), 4),
        "ratio_lightning_over_plain": round(
            statistics.median(lightning) / statistics.median(plain), 3
        ),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
