"""Lightning training shared by every model stage: in-memory loaders, per-epoch
checkpoints, resume after a kill, and reproducible epochs.

Reproducibility across a resume: each epoch's shuffling and dropout depend only on
(seed, epoch), never on how many epochs ran in this process, so a run killed after
epoch k and resumed ends with the same weights as one that was never interrupted, and
writes byte-identical checkpoints (`canonical`), so DVC reruns nothing downstream.

Early stopping (optional, `EarlyStop`): Lightning's EarlyStopping on the validation loss,
capped by a maximum number of epochs; its state (best loss, epochs without improvement)
is saved in every checkpoint, so a resumed run stops at the same epoch, and a run that
had already stopped trains no further. The best epoch's weights are what `fit` leaves in
the module.

Checkpoints are read with `weights_only=True` only (a checkpoint can come from a DVC
remote): one that holds anything else stops the training with one line (see
`prepare_checkpoint_dir`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import sys
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback, Checkpoint, EarlyStopping
from pytorch_lightning.plugins.io import TorchCheckpointIO
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from pipeline.checkpoint_files import epoch_checkpoint_name, epoch_checkpoints
from pipeline.console import is_terminal, numbers
from pipeline.errors import PipelineError
from pipeline.inference import channels_last
from pipeline.io import atomic_path, short_reason, write_text, write_torch
from pipeline.params import EPOCH_SEED_STRIDE, TrainerParams

log = logging.getLogger(__name__)

LAST = "last.ckpt"
FINGERPRINT = "fingerprint.json"


# ----------------------------------------------------------------------------- data


class InMemoryImages(Dataset):
    """uint8 images (plus labels and any extra per-image tensors, such as precomputed
    layer codes) held as whole tensors; indexed by a batch of indices at once, which
    avoids per-sample Python overhead and collation. Yields (images in [0, 1], labels,
    *extras)."""

    def __init__(
        self, images: np.ndarray | Tensor, labels: np.ndarray | Tensor, *extras: np.ndarray | Tensor
    ) -> None:
        self.images = torch.as_tensor(images)
        self.labels = torch.as_tensor(labels, dtype=torch.long)
        self.extras = [torch.as_tensor(e) for e in extras]
        if any(len(e) != len(self.labels) for e in self.extras):
            raise ValueError("every extra tensor needs one row per image")

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: Tensor) -> tuple[Tensor, ...]:
        # channels-last batches and weights (see fit): a ClaDec training step, decoder
        # plus frozen classifier, takes about 20% less time on the CPU
        images = self.images[index].float().div_(255.0)
        return (
            channels_last(images),
            self.labels[index],
            *(channels_last(e[index]) for e in self.extras),
        )


class BatchIndexSampler(Sampler[Tensor]):
    """Yields index batches; the order depends only on (seed, epoch), and each rank of a
    distributed run takes its own shard."""

    def __init__(
        self, n: int, batch_size: int, shuffle: bool, seed: int, rank: int = 0, world_size: int = 1
    ) -> None:
        self.n, self.batch_size, self.shuffle, self.seed = n, batch_size, shuffle, seed
        self.rank, self.world_size = rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _indices(self) -> Tensor:
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.randperm(self.n, generator=generator)
        else:
            order = torch.arange(self.n)
        return order[self.rank :: self.world_size]

    def __iter__(self) -> Iterator[Tensor]:
        yield from self._indices().split(self.batch_size)

    def __len__(self) -> int:
        per_rank = len(range(self.rank, self.n, self.world_size))
        return -(-per_rank // self.batch_size)


def make_loader(
    data: InMemoryImages,
    batch_size: int,
    *,
    shuffle: bool,
    seed: int,
    num_workers: int = 0,
    rank: int = 0,
    world_size: int = 1,
) -> DataLoader:
    sampler = BatchIndexSampler(len(data), batch_size, shuffle, seed, rank, world_size)
    return DataLoader(
        data,
        batch_size=None,
        sampler=sampler,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
    )


class ImageDataModule(pl.LightningDataModule):
    """Train/val loaders over in-memory uint8 arrays."""

    def __init__(
        self,
        train_set: InMemoryImages,
        val_set: InMemoryImages,
        batch_size: int,
        seed: int,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        self.train_set, self.val_set = train_set, val_set
        self.batch_size, self.seed, self.num_workers = batch_size, seed, num_workers

    def _shard(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def train_dataloader(self) -> DataLoader:
        rank, world = self._shard()
        return make_loader(
            self.train_set,
            self.batch_size,
            shuffle=True,
            seed=self.seed,
            num_workers=self.num_workers,
            rank=rank,
            world_size=world,
        )

    def val_dataloader(self) -> DataLoader:
        rank, world = self._shard()
        return make_loader(
            self.val_set,
            max(self.batch_size, 256),
            shuffle=False,
            seed=self.seed,
            num_workers=self.num_workers,
            rank=rank,
            world_size=world,
        )


# ------------------------------------------------------------------------ callbacks


class EpochSeed(Callback):
    """Reseed every RNG at the start of each epoch from (seed, epoch)."""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        pl.seed_everything(
            self.seed + EPOCH_SEED_STRIDE * trainer.current_epoch, workers=True, verbose=False
        )


class HistoryRecorder(Callback):
    """Keeps one row of epoch-level metrics per epoch; saved in checkpoints so a resumed
    run still reports the whole curve."""

    def __init__(self, keys: Sequence[str]) -> None:
        self.keys = list(keys)
        self.rows: list[dict[str, float]] = []

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        metrics = trainer.callback_metrics
        row = {"epoch": trainer.current_epoch + 1}
        row.update({k: float(metrics[k]) for k in self.keys if k in metrics})
        self.rows.append(row)

    def state_dict(self) -> dict[str, Any]:
        return {"rows": self.rows}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.rows = list(state_dict["rows"])


class EpochLines(Callback):
    """One log line per epoch with the numbers the progress bar would show: the bar's
    stand-in when the output is not a terminal, where each of its redraws would be one
    more line of the log. Reads metrics only (no RNG, no state): results do not change."""

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        shown = {k: float(v) for k, v in trainer.progress_bar_metrics.items() if k != "v_num"}
        log.info("epoch %d/%d: %s", trainer.current_epoch + 1, trainer.max_epochs, numbers(shown))


class EpochCheckpoint(Checkpoint):
    """`epoch-NNN.ckpt` after every epoch (1-based, kept) and an atomically replaced
    `last.ckpt`. A `Checkpoint` subclass, so Lightning runs it after the other
    callbacks and their state for this epoch is in the file. The files are written by
    `CanonicalCheckpointIO`: atomically, temporary files outside this folder."""

    def __init__(self, dirpath: str | Path) -> None:
        self.dirpath = Path(dirpath)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epoch_file = self.dirpath / epoch_checkpoint_name(trainer.current_epoch + 1)
        trainer.save_checkpoint(epoch_file, weights_only=False)
        if trainer.is_global_zero:
            with atomic_path(self.dirpath / LAST) as tmp:
                shutil.copyfile(epoch_file, tmp)
        trainer.strategy.barrier()


def canonical(payload: Any) -> Any:
    """The checkpoint with every string interned and every tuple rebuilt, in place where
    possible: pickle stores an object seen twice as a back-reference, so whether two
    equal strings (a history row's 'epoch' key and the checkpoint's) are one object or
    two changed the bytes. In a resumed run they came from the loaded file, in an
    uninterrupted one from the code: 128 bytes apart, and DVC reran every stage that
    reads the checkpoints folder."""
    if isinstance(payload, str):
        return sys.intern(str(payload))
    if isinstance(payload, dict):
        items = [(canonical(k), canonical(v)) for k, v in payload.items()]
        payload.clear()
        payload.update(items)
        extra = getattr(payload, "__dict__", None)  # a state_dict's `_metadata`
        if extra:
            for key, value in list(extra.items()):
                extra[key] = canonical(value)
        return payload
    if isinstance(payload, list):
        payload[:] = [canonical(v) for v in payload]
        return payload
    if type(payload) is tuple:
        return tuple(canonical(v) for v in payload)
    return payload


class CanonicalCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, with canonical bytes (`canonical`) and the
    pipeline's atomic writer (its temporary file never inside the checkpoints folder,
    so a kill leaves nothing there for DVC to record)."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        write_torch(path, canonical(checkpoint))


@dataclass(frozen=True)
class EarlyStop:
    """Stop when the validation loss has not fallen below the best so far by more than
    the fraction `min_delta` of it for `patience` epochs in a row, or after `max_epochs`.
    Relative, so one setting fits losses of any scale (a ClaDec's loss at alpha 0.999 is
    about 100 times smaller than at alpha 0)."""

    max_epochs: int
    patience: int
    min_delta: float = 0.0
    monitor: str = "val_loss"


class ResumableEarlyStopping(EarlyStopping):
    """Lightning's EarlyStopping (its state rides in every checkpoint), checked at the end
    of each training epoch, before `EpochCheckpoint` writes, so each epoch's file holds
    that epoch's decision. A run resumed from the checkpoint of an epoch that decided to
    stop trains no further: Lightning does not save `trainer.should_stop`, and without
    this the resumed run would train one more epoch than the uninterrupted one."""

    def __init__(self, setting: EarlyStop) -> None:
        super().__init__(
            monitor=setting.monitor,
            patience=setting.patience,
            mode="min",
            check_on_train_epoch_end=True,
        )
        self.relative_delta = setting.min_delta

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.stopped_epoch > 0 or self.wait_count >= self.patience:
            trainer.should_stop = True

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Lightning's check with its absolute `min_delta` (negative in "min" mode) set
        from the relative one and the best loss so far (restored from the checkpoint)."""
        best = float(self.best_score)
        self.min_delta = -self.relative_delta * abs(best) if np.isfinite(best) else 0.0
        super().on_train_epoch_end(trainer, pl_module)


@runtime_checkable
class ResumableLogger(Protocol):
    """A logger that wants to know which training it logs: `pipeline.tracking`'s, which
    continues the earlier MLflow run of a resumed training."""

    def continue_training(self, fingerprint: str, checkpoint_dir: Path, resumed: bool) -> None: ...


# --------------------------------------------------------------------- checkpoints


def fingerprint(
    config: dict[str, Any], arrays: Sequence[np.ndarray] = (), code: Sequence[str | Path] = ()
) -> str:
    """Hash of everything that determines a training run (params, data, model code):
    resuming is only safe when all of it matches the run that wrote the checkpoints."""
    digest = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode())
    for array in arrays:
        digest.update(np.ascontiguousarray(array).tobytes())
    for file in code:
        digest.update(Path(file).read_bytes())
    return digest.hexdigest()


def _stored_fingerprint(stamp: Path) -> str | None:
    """The fingerprint of the run that wrote the checkpoints; None when there is none or
    the file cannot be read (an empty one, from a kill under older code, crashed every
    later run with a JSONDecodeError): then the checkpoints are discarded."""
    if not stamp.is_file():
        return None
    try:
        value = json.loads(stamp.read_text()).get("fingerprint")
    except (OSError, ValueError, AttributeError) as exc:
        log.warning("%s is unreadable (%s): treating the checkpoints as another run's", stamp, exc)
        return None
    return value if isinstance(value, str) else None


def prepare_checkpoint_dir(dirpath: str | Path, run_fingerprint: str) -> Path | None:
    """Make the directory ready and return the checkpoint to resume from, if any.

    Checkpoints written by a run with other params or data are removed, not resumed. A
    truncated checkpoint (a kill during a write under older code) is skipped; one that
    a weights-only load refuses (pickled objects, which could run code) stops the
    training with a PipelineError: it was not written by this pipeline."""
    dirpath = Path(dirpath)
    dirpath.mkdir(parents=True, exist_ok=True)
    for leftover in dirpath.glob(".*.tmp"):  # temporary files of older code's writers
        leftover.unlink(missing_ok=True)
    stamp = dirpath / FINGERPRINT
    if _stored_fingerprint(stamp) != run_fingerprint:
        stale = list(dirpath.glob("*.ckpt"))
        if stale:
            log.info(
                "params or data changed: removing %d old checkpoints in %s", len(stale), dirpath
            )
        for file in stale:
            file.unlink()
        write_text(stamp, json.dumps({"fingerprint": run_fingerprint}) + "\n")
        return None
    candidates = [dirpath / LAST, *(path for _, path in reversed(epoch_checkpoints(dirpath)))]
    for candidate in candidates:
        if not candidate.is_file():
            continue
        try:
            torch.load(candidate, map_location="cpu", weights_only=True, mmap=True)
        except Exception as exc:
            if "Weights only load failed" in str(exc):
                raise PipelineError(
                    f"{candidate}: {short_reason(exc)}; it was not written by this pipeline: "
                    f"delete it (or {dirpath}) to resume from an earlier checkpoint or "
                    "train from scratch"
                ) from None
            log.warning("skipping unreadable checkpoint %s (%s)", candidate, short_reason(exc))
            continue
        return candidate
    return None


@dataclass
class FitResult:
    history: list[dict[str, float]]  # one row of epoch metrics per epoch
    resumed_from: Path | None
    stopped_early: bool = False  # early stopping ended it before its maximum of epochs
    best_epoch: int | None = None  # with early stopping: the epoch whose weights it kept


def best_epoch(history: Sequence[dict[str, float]], monitor: str = "val_loss") -> int:
    """The (first) epoch with the lowest monitored value: the weights early stopping keeps."""
    scored = [(row[monitor], int(row["epoch"])) for row in history if monitor in row]
    if not scored:
        raise ValueError(f"no epoch recorded {monitor!r}: early stopping needs it")
    return min(scored)[1]


def restore_epoch(module: pl.LightningModule, checkpoint_dir: str | Path, epoch: int) -> None:
    """Load the weights an epoch's checkpoint holds into the module (weights only),
    through the module's `on_load_checkpoint` as Lightning's own restore does."""
    path = Path(checkpoint_dir) / epoch_checkpoint_name(epoch)
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    module.on_load_checkpoint(checkpoint)
    module.load_state_dict(checkpoint["state_dict"])


def fit(
    module: pl.LightningModule,
    train: InMemoryImages,
    val: InMemoryImages,
    *,
    trainer_params: TrainerParams,
    seed: int,
    epochs: int,
    batch_size: int,
    checkpoint_dir: str | Path,
    config: dict[str, Any],
    code: Sequence[str | Path],
    history_keys: Sequence[str],
    logger: Any = False,
    callbacks: Sequence[Callback] = (),
    early_stop: EarlyStop | None = None,
) -> FitResult:
    """Train with a checkpoint per epoch, resuming an interrupted run whose fingerprint
    (config, seed, precision, early stopping, training and validation tensors, model
    code) matches; every model stage trains through here. Without `early_stop`, exactly
    `epochs` epochs and the last weights; with it, at most `early_stop.max_epochs`
    (`epochs` is ignored) and the module ends with the best validation epoch's weights:
    the epochs after it only confirmed the plateau, and the last ones would make the
    exported decoder depend on the patience."""
    datamodule = ImageDataModule(train, val, batch_size, seed, trainer_params.num_workers)
    settings = {"seed": seed, **config, "precision": trainer_params.precision}
    if early_stop is not None:  # only then: runs without it keep their fingerprints
        settings["early_stop"] = asdict(early_stop)
        epochs = early_stop.max_epochs
    run_fingerprint = fingerprint(
        settings,
        arrays=(train.images, train.labels, *train.extras, val.images),
        code=code,
    )
    pl.seed_everything(seed, workers=True, verbose=False)
    module.to(memory_format=torch.channels_last)  # conv weights to match the batches
    resume = prepare_checkpoint_dir(checkpoint_dir, run_fingerprint)
    if isinstance(logger, ResumableLogger):
        logger.continue_training(run_fingerprint, Path(checkpoint_dir), resume is not None)
    history = HistoryRecorder(history_keys)
    stopper = [] if early_stop is None else [ResumableEarlyStopping(early_stop)]
    trainer = make_trainer(
        trainer_params,
        epochs,
        [EpochSeed(seed), history, *callbacks, *stopper, EpochCheckpoint(checkpoint_dir)],
        logger=logger,
    )
    # weights_only=True reaches torch.load through Lightning's checkpoint IO (2.6)
    trainer.fit(module, datamodule=datamodule, ckpt_path=resume, weights_only=True)
    if early_stop is None:
        return FitResult(history=history.rows, resumed_from=resume)
    best = best_epoch(history.rows, early_stop.monitor)
    restore_epoch(module, checkpoint_dir, best)
    return FitResult(
        history=history.rows,
        resumed_from=resume,
        stopped_early=len(history.rows) < early_stop.max_epochs,
        best_epoch=best,
    )


def make_trainer(
    params: TrainerParams,
    max_epochs: int,
    callbacks: Sequence[Callback],
    logger: Any = False,
    progress_bar: bool | None = None,
) -> pl.Trainer:
    """A Trainer whose hardware settings all come from params.yaml's `trainer` group.

    `progress_bar` None: Lightning's bar in a terminal, one line per epoch (`EpochLines`)
    otherwise; True / False: the bar or nothing.

    Checkpointing is on only when our `EpochCheckpoint` is among the callbacks: with
    `enable_checkpointing=True` and no checkpoint callback, Lightning adds its default
    `ModelCheckpoint`, which writes `checkpoints/*.ckpt` into the working directory (a
    benchmark once committed three of them at the repository root)."""
    callbacks = list(callbacks)
    if progress_bar is None:
        progress_bar = is_terminal()
        if not progress_bar:
            callbacks.append(EpochLines())
    return pl.Trainer(
        max_epochs=max_epochs,
        accelerator=params.accelerator,
        devices=params.devices,
        strategy=params.strategy,
        precision=params.precision,
        deterministic=params.deterministic,
        callbacks=callbacks,
        logger=logger,
        plugins=[CanonicalCheckpointIO()],
        enable_checkpointing=any(isinstance(c, EpochCheckpoint) for c in callbacks),
        enable_progress_bar=progress_bar,
        enable_model_summary=False,
        use_distributed_sampler=False,  # our samplers shard by rank themselves
        num_sanity_val_steps=0,
        log_every_n_steps=1,
    )
