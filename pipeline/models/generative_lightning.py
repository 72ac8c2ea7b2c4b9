"""The generative models as LightningModules (loss, optimiser, per-epoch logging): the
VAE, ClaDec (plain and variational) and the reference autoencoder (RefAE). Their
networks are in `generative_nets.py`; `pipeline/generative_training.py` trains them.

ClaDec (Schneider & Vlachos, arXiv 2005.13630): a frozen classifier's activation at a
layer is decoded to an image with
    loss = (1 - alpha) * reconstruction + alpha * cross_entropy(classifier(decoded), label)
where reconstruction is, as in the reference code (cladec-mnist), the sum of squared
errors per image ("sse", averaged over the batch), or the per-pixel mean ("mse"), which
weights the cross-entropy pixels-times more for the same alpha (784x on MNIST).
RefAE: a fresh copy of the classifier up to the layer plus the same decoder, trained on
the same reconstruction term only; the difference between the two is the explanation.
"""

from __future__ import annotations

from typing import Any, Literal

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pipeline.models.archs import ImageShape, LayerEncoder, build_classifier
from pipeline.models.epoch_logging import log_epoch
from pipeline.models.generative_nets import (
    CodeShape,
    ConvEncoder,
    GaussianHead,
    ImageDecoder,
    kl_divergence,
)

Batch = tuple[Tensor, ...]
Reconstruction = Literal["sse", "mse"]
RECONSTRUCTIONS: tuple[Reconstruction, ...] = ("sse", "mse")


def reconstruction_error(decoded: Tensor, images: Tensor, kind: Reconstruction) -> Tensor:
    """Squared error summed over each image's pixels ("sse", the reference's) or averaged
    over them ("mse"), then averaged over the batch."""
    if kind == "sse":
        return (decoded - images).pow(2).flatten(1).sum(1).mean()
    if kind == "mse":
        return F.mse_loss(decoded, images)
    raise ValueError(f"reconstruction must be one of {RECONSTRUCTIONS}, got {kind!r}")


def kl_weight(kind: Reconstruction, image_numel: int) -> float:
    """The KL term's scale beside the reconstruction: per image next to a per-image SSE
    (ELBO-like); per pixel next to a per-pixel MSE (a per-image KL beside it would
    collapse the latent to the prior)."""
    return 1.0 if kind == "sse" else 1.0 / image_numel


def cladec_loss(
    decoded: Tensor,
    images: Tensor,
    logits: Tensor | None,
    labels: Tensor,
    alpha: float,
    reconstruction: Reconstruction = "sse",
) -> tuple[Tensor, Tensor, Tensor]:
    """(total, reconstruction error, cross-entropy of the classifier on the decoded
    images). At alpha 0 the cross-entropy is not computed at all (logits may be None)."""
    recon = reconstruction_error(decoded, images, reconstruction)
    if logits is None:
        ce = torch.zeros((), device=decoded.device)
    else:
        ce = F.cross_entropy(logits, labels)
    return (1 - alpha) * recon + alpha * ce, recon, ce


class _GenerativeModule(pl.LightningModule):
    """Shared logging and optimiser; subclasses return (loss, named parts) per batch."""

    lr: float

    def losses(self, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        raise NotImplementedError

    def _step(self, batch: Batch, stage: str) -> Tensor:
        loss, parts = self.losses(batch)
        log_epoch(self, stage, {"loss": loss, **parts}, len(batch[0]))
        return loss

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._step(batch, "val")

    def trainable(self) -> Any:
        return self.parameters()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.trainable(), lr=self.lr)


class VAEModule(_GenerativeModule):
    """Convolutional VAE: strided-conv encoder, Gaussian latent, mirrored decoder.
    Loss per image: binary cross-entropy summed over pixels + beta * KL."""

    def __init__(self, image_shape: ImageShape, latent_dim: int, beta: float, lr: float) -> None:
        super().__init__()
        self.save_hyperparameters(logger=False)
        self.lr = lr
        self.encoder = ConvEncoder(image_shape)
        self.head = GaussianHead(self.encoder.out_features, latent_dim)
        self.decoder = ImageDecoder((latent_dim,), image_shape)

    def encode(self, images: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return self.head(self.encoder(images))

    def forward(self, images: Tensor) -> Tensor:
        return self.decoder(self.encode(images)[0])

    def losses(self, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        images = batch[0]
        sample, mean, log_var = self.encode(images)
        decoded = self.decoder(sample)
        recon = F.binary_cross_entropy(decoded, images, reduction="sum") / len(images)
        kl = kl_divergence(mean, log_var)
        return recon + self.hparams.beta * kl, {"recon": recon, "kl": kl}


class ClaDecModule(_GenerativeModule):
    """Decoder of a frozen classifier's layer codes. Batches are (images, labels, codes):
    the codes are computed once before training, since the frozen encoder never changes.
    With `latent_dim`, a variational bottleneck (code → Gaussian latent → decoder) is
    added and beta * KL joins the loss (per image with "sse", per pixel with "mse": see
    `kl_weight`): the variational ClaDec."""

    def __init__(
        self,
        classifier: nn.Module,
        code_shape: CodeShape,
        image_shape: ImageShape,
        alpha: float,
        lr: float,
        latent_dim: int | None = None,
        beta: float = 1.0,
        reconstruction: Reconstruction = "sse",
    ) -> None:
        super().__init__()
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
        self.alpha, self.lr, self.beta = alpha, lr, beta
        self.reconstruction = reconstruction
        self.classifier = classifier.eval()
        for p in self.classifier.parameters():
            p.requires_grad_(False)
        self.latent_dim = latent_dim
        if latent_dim is None:
            self.bottleneck: nn.Module | None = None
            self.decoder = ImageDecoder(code_shape, image_shape)
        else:
            flat = int(torch.tensor(code_shape).prod())
            self.bottleneck = nn.Sequential(
                nn.Flatten(), nn.Linear(flat, 64), nn.ReLU(), GaussianHead(64, latent_dim)
            )
            self.decoder = ImageDecoder((latent_dim,), image_shape)

    def train(self, mode: bool = True) -> ClaDecModule:
        """Lightning switches modules to train mode each epoch: keep the classifier in eval
        (no dropout, no batch-norm statistics updates)."""
        super().train(mode)
        self.classifier.eval()
        return self

    def trainable(self) -> Any:
        return [p for n, p in self.named_parameters() if not n.startswith("classifier.")]

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Leave the frozen classifier out of every epoch's checkpoint: its weights live
        in models/classifier/model.pt, and carrying them made each checkpoint 4.3 MB
        instead of the decoder's size (800 MB of ClaDec checkpoints per run)."""
        checkpoint["state_dict"] = {
            k: v for k, v in checkpoint["state_dict"].items() if not k.startswith("classifier.")
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Put the frozen classifier's own weights back before Lightning loads the state."""
        checkpoint["state_dict"].update(
            {f"classifier.{k}": v for k, v in self.classifier.state_dict().items()}
        )

    def decode(self, codes: Tensor) -> tuple[Tensor, Tensor | None, Tensor | None]:
        if self.bottleneck is None:
            return self.decoder(codes), None, None
        sample, mean, log_var = self.bottleneck(codes)
        return self.decoder(sample), mean, log_var

    def forward(self, codes: Tensor) -> Tensor:
        return self.decode(codes)[0]

    def losses(self, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        images, labels, codes = batch
        decoded, mean, log_var = self.decode(codes)
        logits = self.classifier(decoded) if self.alpha > 0 else None
        loss, recon, ce = cladec_loss(
            decoded, images, logits, labels, self.alpha, self.reconstruction
        )
        parts = {"recon": recon, "ce": ce}
        if mean is not None and log_var is not None:
            kl = kl_divergence(mean, log_var)
            loss = loss + self.beta * kl_weight(self.reconstruction, images[0].numel()) * kl
            parts["kl"] = kl
        return loss, parts


class RefAEModule(_GenerativeModule):
    """Reference autoencoder: a freshly initialised copy of the classifier's architecture
    up to the layer, and the same decoder as ClaDec, trained on reconstruction only."""

    def __init__(
        self,
        arch: str,
        image_shape: ImageShape,
        num_classes: int,
        layer: str,
        code_shape: CodeShape,
        lr: float,
        mean: list[float],
        std: list[float],
        reconstruction: Reconstruction = "sse",
    ) -> None:
        super().__init__()
        self.save_hyperparameters(logger=False)
        self.lr, self.reconstruction = lr, reconstruction
        self.encoder = LayerEncoder(
            build_classifier(arch, image_shape, num_classes, mean, std), layer
        )
        self.decoder = ImageDecoder(code_shape, image_shape)

    def forward(self, images: Tensor) -> Tensor:
        return self.decoder(self.encoder(images))

    def losses(self, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        images = batch[0]
        recon = reconstruction_error(self(images), images, self.reconstruction)
        return recon, {"recon": recon}
