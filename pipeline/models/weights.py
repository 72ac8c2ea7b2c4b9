"""Where a classifier's starting weights come from (`classifier.weights`): `scratch`
(random, as the arch initialises itself), `imagenet` (torchvision's ImageNet weights for
a ResNet: the torch hub cache, else downloaded when `data.download` allows), or the path
of a state dict saved with `torch.save` (or, for arch torchscript, of a TorchScript file:
pipeline/models/user_model.py). Files are read with `weights_only=True` always:
a weights file may come from anywhere."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from torch import Tensor, nn

from pipeline.errors import PipelineError
from pipeline.io import STORED_READ_ERRORS
from pipeline.models.specs import RESNETS
from pipeline.models.user_model import ARCH as USER_ARCH
from pipeline.models.user_model import is_torchscript

log = logging.getLogger(__name__)

KEY = "classifier.weights"
# torchvision's ImageNet normalization (its `ImageClassification` transform): the
# statistics every torchvision ResNet state dict expects its inputs to have
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
OPTIONAL_KEYS = re.compile(r"(^normalize\.|\.num_batches_tracked$)")  # not in every file
HEADS = ("fc.", "logits.")  # the final layer: a ResNet's fc, a small CNN's logits


def _imagenet_enum(arch: str) -> Any:  # a torchvision WeightsEnum member
    """torchvision's default ImageNet weights for the arch (resnet50: IMAGENET1K_V2)."""
    import torchvision.models

    if arch not in RESNETS:
        raise PipelineError(f"{KEY} = 'imagenet': no ImageNet weights for arch {arch!r}")
    return getattr(torchvision.models, RESNETS[arch].weights).DEFAULT


def imagenet_file(arch: str) -> tuple[str, str]:
    """(file name, URL) of the arch's ImageNet weights, as torchvision names them."""
    url = _imagenet_enum(arch).url
    return Path(urlparse(url).path).name, url


def imagenet_class_names(arch: str) -> list[str]:
    """ImageNet's 1,000 class names, shipped inside torchvision (no download)."""
    return list(_imagenet_enum(arch).meta["categories"])


def hub_checkpoints() -> Path:
    """Where torch.hub keeps downloaded weights: $TORCH_HOME/hub/checkpoints."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def locate_weights(weights: str, arch: str, download: bool) -> Path | None:
    """The file `classifier.weights` names, found (or downloaded) before any work; None
    for scratch. A missing file is one line naming the file and where it was looked for."""
    if weights == "scratch":
        return None
    if weights != "imagenet":
        path = Path(weights).expanduser()
        if not path.is_file():
            wanted = (
                "a TorchScript file (torch.jit.save)"
                if arch == USER_ARCH
                else "a state dict saved with torch.save, or use imagenet or scratch"
            )
            raise PipelineError(
                f"{KEY} = {weights!r}: no such file (looked at {path.resolve()}); give the "
                f"path of {wanted}"
            )
        return path
    name, url = imagenet_file(arch)
    cached = hub_checkpoints() / name
    if cached.is_file():
        return cached
    if not download:
        raise PipelineError(
            f"{KEY} = 'imagenet': {name} is not in the torch hub cache {cached.parent} and "
            f"data.download is false; download {url} into that folder (or point TORCH_HOME "
            f"at a cache that has it), or set {KEY} to the file's path"
        )
    return _download(url, cached)


def _download(url: str, target: Path) -> Path:
    """torch.hub's download, checked against the hash prefix in torchvision's file name."""
    match = torch.hub.HASH_REGEX.search(target.name)
    target.parent.mkdir(parents=True, exist_ok=True)
    log.info("downloading %s to %s", url, target)
    try:
        torch.hub.download_url_to_file(
            url, str(target), hash_prefix=match.group(1) if match else None, progress=False
        )
    except (OSError, RuntimeError) as exc:  # no network (URLError is an OSError); bad hash
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise PipelineError(
            f"{KEY} = 'imagenet': {target.name} is not in the torch hub cache "
            f"{target.parent} and downloading {url} failed ({reason}); put the file there, "
            f"or set {KEY} to its path"
        ) from None
    return target


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """A state dict from a file, read with `weights_only=True`: a plain dict of tensors
    (torch.save(model.state_dict())), or a dict holding one under 'state_dict' (this
    pipeline's model.pt)."""
    if is_torchscript(path):
        raise PipelineError(
            f"{KEY}: {path} is a TorchScript file, not a state dict: set classifier.arch "
            "to torchscript (and classifier.train to false) to explain it as it is"
        )
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (*STORED_READ_ERRORS, RuntimeError) as exc:  # RuntimeError: a cut-short zip
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise PipelineError(
            f"{KEY}: {path} cannot be read as a state dict with weights_only=True ({reason})"
        ) from None
    if isinstance(payload, Mapping) and isinstance(payload.get("state_dict"), Mapping):
        payload = payload["state_dict"]
    if not isinstance(payload, Mapping) or not all(
        isinstance(k, str) and isinstance(v, Tensor) for k, v in payload.items()
    ):
        raise PipelineError(f"{KEY}: {path} holds no state dict (a dict of name -> tensor)")
    return dict(payload)


def _adapt_stem(arch: str, state: dict[str, Tensor], own: Mapping[str, Tensor]) -> list[str]:
    """Fit ImageNet's stem to this net: grey images take the sum of the RGB filters (a
    grey pixel is R = G = B); the small stem (3×3) cannot take 7×7 filters at all."""
    if arch not in RESNETS or "conv1.weight" not in state:
        return []
    theirs, ours = state["conv1.weight"], own["conv1.weight"]
    if theirs.shape[2:] != ours.shape[2:]:
        del state["conv1.weight"]
        return [
            f"the small-input stem (3x3 conv1, stride 1, no max-pool) does not take the "
            f"{theirs.shape[2]}x{theirs.shape[3]} ImageNet stem weights: conv1 starts "
            "from random values"
        ]
    if theirs.shape[1] == 3 and ours.shape[1] == 1:
        state["conv1.weight"] = theirs.sum(1, keepdim=True)
        return ["grey images: conv1 takes the sum of its RGB filters (a grey pixel is R = G = B)"]
    return []


def _new_head(state: dict[str, Tensor], own: Mapping[str, Tensor]) -> list[str]:
    """Fine-tuning: a head shaped for another class count is left out (starts random)."""
    head = [k for k in state if k.startswith(HEADS) and k in own]
    if all(state[k].shape == own[k].shape for k in head):
        return []
    theirs = next(state[k].shape[0] for k in head if k.endswith("weight"))
    ours = next(own[k].shape[0] for k in head if k.endswith("weight"))
    for key in head:
        del state[key]
    return [f"the final layer ({head[0].split('.')[0]}) is new: {ours} classes, not {theirs}"]


Stats = tuple[Sequence[float], Sequence[float]]  # per-channel mean and std


def _normalization(
    arch: str, state: dict[str, Tensor], own: Mapping[str, Tensor], given: Stats | None
) -> list[str]:
    """The normalization inside the net: `classifier.mean`/`std` when given (what the
    weights were trained with); else the file's `normalize` buffers (this pipeline's
    files); else, for a ResNet, ImageNet's (a torchvision file; their mean over RGB for
    grey). A small CNN's file without them keeps the net's own."""
    channels = own["normalize.mean"].shape[0]
    if given is not None:
        mean, std = torch.tensor(given[0]), torch.tensor(given[1])
        if mean.numel() != channels or std.numel() != channels:
            raise PipelineError(
                f"classifier.mean / classifier.std: {mean.numel()} and {std.numel()} "
                f"values for images of {channels} channel(s); give one per channel"
            )
        note = f"inputs are normalized with classifier.mean {given[0]} and std {given[1]}"
    elif "normalize.mean" in state or arch not in RESNETS:
        return []
    else:
        mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
        if channels == 1:
            mean, std = mean.mean(0, keepdim=True), std.mean(0, keepdim=True)
        note = "inputs are normalized with ImageNet's mean and std (torchvision's convention)"
    state["normalize.mean"] = mean.float().view(-1, 1, 1)
    state["normalize.std"] = std.float().view(-1, 1, 1)
    return [note]


def fit_state(
    net: nn.Module,
    arch: str,
    state: Mapping[str, Tensor],
    fine_tune: bool,
    normalization: Stats | None = None,
) -> tuple[dict[str, Tensor], list[str]]:
    """The file's tensors made to fit `net` (an arch of this pipeline), with what was
    adapted, for the log: the ResNet stem adapted, the normalization set (`normalization`
    is params' mean and std; see `_normalization`) and, when fine-tuning, a head of
    another class count left out. Any other key missing, unknown or of another shape
    is an error naming the key."""
    own = net.state_dict()
    state = dict(state)
    given = set(state)
    notes = _adapt_stem(arch, state, own)
    if fine_tune:
        notes += _new_head(state, own)
    left_out = given - set(state)  # these start from the net's own initialisation
    if fine_tune:  # a file without a head (a backbone) is fine: the head is new anyway
        left_out |= {k for k in own if k.startswith(HEADS) and k not in given}
    notes += _normalization(arch, state, own, normalization)
    unknown = [k for k in state if k not in own]
    if unknown:
        raise PipelineError(
            f"{KEY}: the file has keys that arch {arch!r} does not: {', '.join(unknown[:5])}"
        )
    for key, value in state.items():
        if value.shape != own[key].shape:
            raise PipelineError(
                f"{KEY}: {key} has shape {tuple(value.shape)} in the file, arch {arch!r} "
                f"needs {tuple(own[key].shape)}"
            )
    missing = [
        k for k in own if k not in state and k not in left_out and not OPTIONAL_KEYS.search(k)
    ]
    if missing:
        raise PipelineError(
            f"{KEY}: the file lacks keys that arch {arch!r} has: {', '.join(missing[:5])}"
        )
    return state, notes


def load_weights(
    net: nn.Module, arch: str, state: Mapping[str, Tensor], fine_tune: bool
) -> list[str]:
    """`fit_state`, then copy the tensors into `net`; returns the notes for the log."""
    fitted, notes = fit_state(net, arch, state, fine_tune)
    net.load_state_dict({**net.state_dict(), **fitted})
    return notes


class StartFrom(Callback):
    """Copies the starting weights (from `fit_state`) into the module's `net` at setup:
    before Lightning restores a checkpoint, so a resumed run goes on from its own last
    epoch, and a fresh one starts from the file."""

    def __init__(self, state: Mapping[str, Tensor]) -> None:
        self.state = dict(state)

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        net = pl_module.net
        net.load_state_dict({**net.state_dict(), **self.state})
