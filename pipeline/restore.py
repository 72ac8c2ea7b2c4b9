"""Rebuilding the trained generative models and per-epoch classifiers for the
explanation stages, without Lightning: plain modules with weights loaded
(`weights_only=True`)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from pipeline.checkpoint_files import epoch_checkpoints as epoch_checkpoints  # re-exported
from pipeline.errors import PipelineError
from pipeline.io import STORED_READ_ERRORS, corrupt_file_error
from pipeline.models.archs import ImageClassifier, ImageShape, LayerEncoder, build_classifier
from pipeline.models.generative_nets import CodeShape, ConvEncoder, GaussianHead, ImageDecoder
from pipeline.skips import Skipped, stored_reason

# torch's zip reader reports a cut-short file as RuntimeError; the weights-only
# unpickler refuses pickled code with UnpicklingError
TORCH_READ_ERRORS = (*STORED_READ_ERRORS, RuntimeError)


def _payload(path: str | Path, stage: str) -> dict[str, Any]:
    """A saved model's dict, loaded with `weights_only=True` (a file whose pickle would
    run code is refused); a missing or corrupt file is a one-line PipelineError, the
    marker of a skipped decoder stage `Skipped` with its reason."""
    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"{path} not found: run the {stage} stage (`dvc repro {stage}`)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except TORCH_READ_ERRORS as exc:
        raise corrupt_file_error(path, exc, stage) from None
    reason = stored_reason(payload)
    if reason is not None:  # the stage skipped this model (stages/generative.py: skip)
        raise Skipped(reason)
    if not isinstance(payload, dict) or not isinstance(payload.get("state_dict"), dict):
        raise corrupt_file_error(path, "no dict of weights under 'state_dict'", stage)
    return payload


@contextmanager
def _reading(path: str | Path, stage: str) -> Iterator[None]:
    """Turn a missing or malformed entry of a loaded payload into the corrupt-file error."""
    try:
        yield
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise corrupt_file_error(path, exc, stage) from None


def _part(state: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def _load(module: nn.Module, state: dict[str, Tensor], path: Path | str, stage: str) -> nn.Module:
    try:
        module.load_state_dict(state)
    except RuntimeError as exc:
        raise PipelineError(
            f"{path} does not fit the current params ({str(exc).splitlines()[0]}); "
            f"rerun `dvc repro {stage}`"
        ) from None
    return module.eval()


@dataclass
class VAE:
    """The trained VAE's encoder (to the latent mean) and decoder."""

    encoder: nn.Module
    head: GaussianHead
    decoder: ImageDecoder
    latent_dim: int

    @torch.inference_mode()
    def encode_mean(self, images: Tensor) -> Tensor:
        return self.head(self.encoder(images))[1]

    @torch.inference_mode()
    def decode(self, latents: Tensor) -> Tensor:
        return self.decoder(latents)


def load_vae(path: str | Path, image_shape: ImageShape, stage: str = "vae") -> VAE:
    payload = _payload(path, stage)
    with _reading(path, stage):
        latent = int(payload["config"]["latent_dim"])
    state = payload["state_dict"]
    encoder = ConvEncoder(image_shape)
    head = GaussianHead(encoder.out_features, latent)
    decoder = ImageDecoder((latent,), image_shape)
    _load(encoder, _part(state, "encoder."), path, stage)
    _load(head, _part(state, "head."), path, stage)
    _load(decoder, _part(state, "decoder."), path, stage)
    return VAE(encoder, head, decoder, latent)


def load_decoder(
    path: str | Path, code_shape: CodeShape, image_shape: ImageShape, stage: str
) -> ImageDecoder:
    """A ClaDec decoder (codes → images); for the variational ClaDec, code_shape is the
    latent size and the decoder maps latent points to images."""
    payload = _payload(path, stage)
    decoder = ImageDecoder(code_shape, image_shape)
    _load(decoder, _part(payload["state_dict"], "decoder."), path, stage)
    return decoder  # type: ignore[return-value]


@dataclass(frozen=True)
class ClassifierSpec:
    """What rebuilds the classifier's architecture (from its export, model.pt)."""

    arch: str
    input_shape: ImageShape
    num_classes: int


def classifier_spec(path: str | Path) -> ClassifierSpec:
    payload = _payload(path, "classifier")
    with _reading(path, "classifier"):
        return ClassifierSpec(
            str(payload["arch"]),
            tuple(int(d) for d in payload["input_shape"]),  # type: ignore[arg-type]
            int(payload["num_classes"]),
        )


def load_refae(
    path: str | Path,
    spec: ClassifierSpec,
    layer: str,
    code_shape: CodeShape,
    image_shape: ImageShape,
    stage: str,
) -> nn.Module:
    """The reference autoencoder: its own encoder (the architecture up to the layer) and
    decoder, as one images → images module."""
    payload = _payload(path, stage)
    state = payload["state_dict"]
    net = build_classifier(spec.arch, image_shape, spec.num_classes)
    encoder = _load(LayerEncoder(net, layer), _part(state, "encoder."), path, stage)
    decoder = _load(ImageDecoder(code_shape, image_shape), _part(state, "decoder."), path, stage)
    return nn.Sequential(encoder, decoder).eval()


def load_epoch_classifier(path: str | Path, spec: ClassifierSpec) -> ImageClassifier:
    """The classifier as it was at one epoch, from a Lightning checkpoint (`net.` weights)."""
    payload = _payload(path, "classifier")
    net = build_classifier(spec.arch, spec.input_shape, spec.num_classes)
    _load(net, _part(payload["state_dict"], "net."), path, "classifier")
    return net  # type: ignore[return-value]
