"""Training and evaluating the generative models (VAE, ClaDec, RefAE): layer codes
computed once, the shared fit loop, test-split metrics (reconstruction, the frozen
classifier on the decodings, the VAE's ELBO), the sample reconstructions the figure
stage draws, and export. The networks are in `pipeline/models/generative_nets.py`, their
Lightning modules in `pipeline/models/generative_lightning.py`."""

from __future__ import annotations

import inspect
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pipeline import training
from pipeline.data import Splits
from pipeline.inference import as_float_images, batched, layer_codes
from pipeline.io import write_torch
from pipeline.models import archs, generative_lightning, generative_nets
from pipeline.models.archs import ImageClassifier, LayerEncoder
from pipeline.models.generative_lightning import ClaDecModule, RefAEModule, VAEModule
from pipeline.models.generative_nets import code_shape, kl_divergence
from pipeline.params import USER_ARCH, Params
from pipeline.skips import Skipped
from pipeline.training import EarlyStop, FitResult, InMemoryImages, fit

MODEL_CODE = [inspect.getfile(m) for m in (archs, generative_lightning, generative_nets, training)]
SAMPLES = 10  # test images in each model's reconstruction figure
HISTORY_KEYS = (
    "train_loss",
    "val_loss",
    "train_recon",
    "val_recon",
    "train_ce",
    "val_ce",
    "train_kl",
    "val_kl",
)


@torch.inference_mode()
def reconstruction_metrics(
    decoded: Tensor, images: np.ndarray, classifier: nn.Module, labels: np.ndarray
) -> dict[str, float]:
    """Reconstruction error both per pixel (MSE) and per image (sum of squared errors),
    and the frozen classifier's cross-entropy and accuracy on the reconstructions."""
    target = as_float_images(images)
    squared = (decoded - target).pow(2)
    logits = batched(classifier.eval(), decoded)
    y = torch.as_tensor(labels)
    return {
        "mse_per_pixel": float(squared.mean()),
        "sse_per_image": float(squared.flatten(1).sum(1).mean()),
        "classifier_ce": float(F.cross_entropy(logits, y)),
        "classifier_accuracy": float((logits.argmax(1) == y).float().mean()),
    }


@torch.inference_mode()
def elbo_terms(decoded: Tensor, images: Tensor, mean: Tensor, log_var: Tensor) -> dict[str, float]:
    """The VAE's test terms, per image: reconstruction binary cross-entropy summed over
    pixels, KL(q(z|x) || N(0, I)), and ELBO = -(BCE + KL) (beta 1, whatever beta trained
    the model, so VAEs of different beta compare on one scale). `decoded` are the
    decodings of the latent means (eval mode), images floats in [0, 1]."""
    recon = float(F.binary_cross_entropy(decoded, images, reduction="sum")) / len(images)
    kl = float(kl_divergence(mean, log_var))
    return {"test_recon_bce_per_image": recon, "test_kl": kl, "test_elbo": -(recon + kl)}


@torch.inference_mode()
def vae_test_metrics(vae: VAEModule, images: np.ndarray, decoded: Tensor) -> dict[str, float]:
    """elbo_terms() of a trained VAE on uint8 test images and their decodings."""
    vae.eval()
    floats = as_float_images(images)
    mean, log_var = batched(lambda x: torch.cat(vae.encode(x)[1:], 1), floats).tensor_split(2, 1)
    return elbo_terms(decoded, floats, mean, log_var)


def one_per_class(labels: np.ndarray, count: int) -> np.ndarray:
    """Indices of up to `count` images, cycling through the classes so each appears."""
    classes = np.unique(labels)
    picks: list[int] = []
    rank = 0
    while len(picks) < min(count, len(labels)):
        for c in classes:
            members = np.flatnonzero(labels == c)
            if rank < len(members) and len(picks) < count:
                picks.append(int(members[rank]))
        rank += 1
    return np.asarray(picks)


@torch.inference_mode()
def sample_reconstructions(
    name: str,
    config: Mapping[str, Any],
    decoded: Tensor,
    splits: Splits,
    classifier: nn.Module,
    count: int = SAMPLES,
) -> dict[str, np.ndarray]:
    """The arrays a reconstruction figure is drawn from, so that drawing never needs the
    model: `count` test images (one per class in turn), their decodings, true labels, the
    frozen classifier's prediction on each decoding, the class names, the dataset, the
    model's name and its config as JSON (the figure's title comes from it)."""
    picks = one_per_class(splits.y_test, count)
    chosen = decoded[picks]
    return {
        "name": np.array(name),
        "config": np.array(json.dumps(dict(config), sort_keys=True)),
        "test_indices": picks,
        "originals": splits.x_test[picks],
        "decoded": chosen.float().numpy(),
        "labels": splits.y_test[picks],
        "predicted": classifier.eval()(chosen).argmax(1).numpy(),
        "class_names": np.array(splits.class_names),
        "dataset": np.array(splits.dataset),
    }


@dataclass
class Trained:
    """A trained generative model, its history per training epoch and its test-split
    decodings; with early stopping, whether it stopped before its cap and the epoch whose
    weights it kept."""

    module: pl.LightningModule
    history: list[dict[str, float]]
    decoded_test: Tensor  # reconstructions of the test split, in [0, 1]
    resumed_from: Path | None
    stopped_early: bool | None = None  # None: trained a fixed number of epochs
    best_epoch: int | None = None

    def training_record(self) -> dict[str, Any]:
        """What the metrics file says about the training: epochs run, and with early
        stopping whether it stopped before its cap and the epoch it kept."""
        record: dict[str, Any] = {"training_epochs": len(self.history)}
        if self.stopped_early is not None:
            record.update(stopped_early=self.stopped_early, best_epoch=self.best_epoch)
        return record


def _early_stop(params: Params) -> EarlyStop:
    """The decoders' early-stopping setting (cladec.max_epochs, patience, min_delta)."""
    cfg = params.cladec
    return EarlyStop(max_epochs=cfg.max_epochs, patience=cfg.patience, min_delta=cfg.min_delta)


def _training_settings(params: Params) -> dict[str, Any]:
    """The cladec params a decoder's training depends on, for its checkpoints' fingerprint
    (not max_side: it decides whether a decoder trains, not how)."""
    return params.cladec.model_dump(exclude={"layers", "alphas", "variational", "max_side"})


def _fit(
    module: pl.LightningModule,
    train: InMemoryImages,
    val: InMemoryImages,
    params: Params,
    group: Any,
    checkpoint_dir: str | Path,
    config: dict[str, Any],
    logger: Any,
    early_stop: EarlyStop | None = None,
) -> FitResult:
    """fit() with the settings of a params group (vae: its epochs; cladec: early stopping)."""
    return fit(
        module,
        train,
        val,
        trainer_params=params.trainer,
        seed=params.seed,
        epochs=early_stop.max_epochs if early_stop else group.epochs,
        batch_size=group.batch_size,
        checkpoint_dir=checkpoint_dir,
        config=config,
        code=MODEL_CODE,
        history_keys=HISTORY_KEYS,
        logger=logger,
        early_stop=early_stop,
    )


def _trained(module: pl.LightningModule, result: FitResult, decoded: Tensor) -> Trained:
    """A Trained from fit()'s result and the test decodings."""
    stopped = result.stopped_early if result.best_epoch is not None else None
    return Trained(module, result.history, decoded, result.resumed_from, stopped, result.best_epoch)


def _image_sets(
    splits: Splits, train_codes: Tensor | None = None, val_codes: Tensor | None = None
) -> tuple[InMemoryImages, InMemoryImages]:
    """The training and validation sets of a split, with layer codes when given."""
    train_extra = () if train_codes is None else (train_codes,)
    val_extra = () if val_codes is None else (val_codes,)
    return (
        InMemoryImages(splits.x_train, splits.y_train, *train_extra),
        InMemoryImages(splits.x_val, splits.y_val, *val_extra),
    )


def train_vae(
    splits: Splits, params: Params, latent_dim: int, checkpoint_dir: str | Path, logger: Any = False
) -> Trained:
    """The VAE on the images alone."""
    cfg = params.vae
    pl.seed_everything(params.seed, workers=True, verbose=False)
    module = VAEModule(splits.image_shape, latent_dim, cfg.beta, cfg.lr)
    result = _fit(
        module,
        *_image_sets(splits),
        params,
        cfg,
        checkpoint_dir,
        {"vae": cfg.model_dump(), "latent_dim": latent_dim},
        logger,
    )
    return _trained(module, result, batched(module.eval(), as_float_images(splits.x_test)))


def train_cladec(
    splits: Splits,
    classifier: ImageClassifier,
    layer: str,
    alpha: float,
    params: Params,
    checkpoint_dir: str | Path,
    logger: Any = False,
    latent_dim: int | None = None,
    beta: float = 1.0,
) -> Trained:
    """A ClaDec decoder for one (layer, alpha); with latent_dim, the variational ClaDec."""
    cfg = params.cladec
    pl.seed_everything(params.seed, workers=True, verbose=False)
    codes = {
        part: layer_codes(classifier, layer, getattr(splits, f"x_{part}"))
        for part in ("train", "val", "test")
    }
    module = ClaDecModule(
        classifier,
        tuple(codes["train"].shape[1:]),
        splits.image_shape,
        alpha,
        cfg.lr,
        latent_dim=latent_dim,
        beta=beta,
        reconstruction=cfg.reconstruction,
    )
    result = _fit(
        module,
        *_image_sets(splits, codes["train"], codes["val"]),
        params,
        cfg,
        checkpoint_dir,
        {
            "cladec": _training_settings(params),
            "layer": layer,
            "alpha": alpha,
            "latent_dim": latent_dim,
            "beta": beta,
        },
        logger,
        _early_stop(params),
    )
    return _trained(module, result, batched(module.eval(), codes["test"]))


def train_refae(
    splits: Splits,
    classifier: ImageClassifier,
    layer: str,
    params: Params,
    checkpoint_dir: str | Path,
    logger: Any = False,
) -> Trained:
    """The reference autoencoder for a layer: same architecture, fresh weights. Skipped
    for a TorchScript classifier: its file gives no architecture to build afresh."""
    cfg = params.cladec
    arch = params.classifier.arch
    if arch == USER_ARCH:
        raise Skipped(
            "RefAE trains a fresh copy of the classifier's architecture up to the layer, and "
            "a TorchScript file (classifier.arch: torchscript) gives no architecture Python "
            "can rebuild; the ClaDec decoders still run (they need only the model's "
            "activations)"
        )
    pl.seed_everything(params.seed, workers=True, verbose=False)
    shape = code_shape(LayerEncoder(classifier, layer), splits.image_shape)
    module = RefAEModule(
        arch,
        splits.image_shape,
        splits.num_classes,
        layer,
        shape,
        cfg.lr,
        classifier.normalize.mean.flatten().tolist(),
        classifier.normalize.std.flatten().tolist(),
        cfg.reconstruction,
    )
    result = _fit(
        module,
        *_image_sets(splits),
        params,
        cfg,
        checkpoint_dir,
        {
            "cladec": _training_settings(params),
            "arch": arch,
            "layer": layer,
        },
        logger,
        _early_stop(params),
    )
    return _trained(module, result, batched(module.eval(), as_float_images(splits.x_test)))


def save_module(
    module: nn.Module, config: dict[str, Any], path: str | Path, skip_prefix: str = "classifier."
) -> None:
    """Weights (without the frozen classifier's, which live in its own file) plus config."""
    state = {
        k: v.detach().cpu() for k, v in module.state_dict().items() if not k.startswith(skip_prefix)
    }
    write_torch(path, {"config": config, "state_dict": state})
