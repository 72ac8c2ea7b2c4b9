"""A user's TorchScript model as the classifier (`classifier.arch: torchscript`).

The contract: the pipeline feeds pixels in [0, 1] shaped (N, C, H, W) as `data.channels`
and `data.image_size` give them; the normalization is `classifier.mean`/`std` applied
by the wrapper here, or the file's own (null). The model returns logits (N, classes).

A loaded TorchScript module runs its forward in the TorchScript interpreter, so Python
forward hooks cannot be put on its submodules (`register_forward_hook` raises "not
supported on ScriptModules"), and every explanation that reads a layer (Grad-CAM, ClaDec's
codes, ICE) needs one. So the named layers (`classifier.layers`, e.g. `{conv: layer4,
dense: avgpool}`) are tapped: a copy of the forward graph gets, after each call of a
named top-level submodule, a call to the op `xai_pipeline::tap`, whose Python kernel
passes the value through an ordinary `nn.Module` (`Tap`). A hook on that module sees the
value with its autograd history, may replace it, or may stop the pass, as on an eager
model; the logits are unchanged (the op returns its input)."""

from __future__ import annotations

import copy
import io
import os
import threading
import warnings
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import Tensor, nn

from pipeline.errors import PipelineError
from pipeline.models.archs import Normalize

ARCH = "torchscript"
KEY = "classifier.weights"
OP = "xai_pipeline::tap"
_LIBRARY: list[torch.library.Library] = []  # defined once per process, kept alive
_ACTIVE = threading.local()  # the taps of the forward pass running in this thread


class Tap(nn.Module):
    """Identity: the module a hook is put on to read (or replace) a named layer's output."""

    def forward(self, x: Tensor) -> Tensor:
        return x


class _Pass:
    """One forward pass's taps, and an exception a hook raised (e.g. LayerEncoder's stop),
    kept to re-raise as itself: the interpreter would turn it into a RuntimeError."""

    def __init__(self, taps: Sequence[Tap]) -> None:
        self.taps = taps
        self.raised: BaseException | None = None


def _tap_kernel(x: Tensor, slot: int) -> Tensor:
    """The op's kernel: pass the value through the running pass's Tap module."""
    current: _Pass = _ACTIVE.stack[-1]
    try:
        return current.taps[slot](x)
    except BaseException as exc:
        current.raised = exc
        raise


def _define_op() -> None:
    """Register the tap op once; CompositeImplicitAutograd: the kernel runs above
    autograd, so the tensors it sees carry their history and gradients flow through."""
    if _LIBRARY:
        return
    library = torch.library.Library("xai_pipeline", "DEF")
    library.define("tap(Tensor x, int slot) -> Tensor")
    library.impl("tap", _tap_kernel, "CompositeImplicitAutograd")
    _LIBRARY.append(library)


def called_submodules(module: torch.jit.ScriptModule) -> list[str]:
    """The top-level submodules the forward graph calls: the layers that can be tapped."""
    graph = module.forward.graph
    names = [_called_attribute(graph, node) for node in graph.nodes()]
    return list(dict.fromkeys(n for n in names if n is not None))


def _called_attribute(graph: torch._C.Graph, node: torch._C.Node) -> str | None:
    """`name` when the node is `self.name.forward(...)` in the graph, else None."""
    if node.kind() != "prim::CallMethod" or node.s("name") != "forward":
        return None
    owner = node.inputsAt(0).node()
    this = next(iter(graph.inputs()))  # the module itself
    if owner.kind() != "prim::GetAttr" or owner.inputsAt(0).unique() != this.unique():
        return None
    return owner.s("name")


def tapped_forward(module: torch.jit.ScriptModule, paths: Sequence[str]) -> torch._C.ScriptFunction:
    """A function (self, x) -> logits: the forward graph with a tap after each call of
    the submodules `paths` (slot i for paths[i])."""
    _define_op()
    usable = called_submodules(module)
    missing = [p for p in paths if p not in usable]
    if missing:
        raise PipelineError(
            f"classifier.layers: {', '.join(missing)} is not a submodule the TorchScript "
            f"forward calls directly; use one of {', '.join(usable) or '(none)'}"
        )
    graph = module.forward.graph.copy()
    for node in list(graph.nodes()):
        name = _called_attribute(graph, node)
        if name not in paths:
            continue
        slot = graph.insertConstant(paths.index(name))
        tap = graph.create(OP, [node.output(), slot])
        tap.insertAfter(node)
        slot.node().moveBefore(tap)
        node.output().replaceAllUsesAfterNodeWith(tap, tap.output())
    return torch._C._create_function_from_graph("tapped_forward", graph)


class UserModel(nn.Module):
    """normalize (when mean/std are given) → the TorchScript module, with its named
    layers (`conv`, `dense` and their module paths) resolvable like an eager arch's."""

    def __init__(
        self,
        net: torch.jit.ScriptModule,
        layers: Mapping[str, str],
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        self.layers, self.mean, self.std = dict(layers), mean, std
        self.script = b""  # the file's bytes (build_user_model sets them)
        self.normalize = Normalize(mean, std) if mean is not None and std is not None else None
        self.net = net
        self.paths = list(dict.fromkeys(layers.values()))
        self.taps = nn.ModuleDict({p.replace(".", "_"): Tap() for p in self.paths})
        keys = list(self.taps)
        self.named_layers = {
            **{alias: f"taps.{keys[self.paths.index(p)]}" for alias, p in layers.items()},
            **{p: f"taps.{k}" for p, k in zip(self.paths, keys, strict=True)},
        }
        self._forward = tapped_forward(net, self.paths) if self.paths else None

    def __deepcopy__(self, memo: dict) -> UserModel:
        """A copy with its own weights (the sanity check randomizes one) and taps."""
        net = copy.deepcopy(self.net, memo)
        # a ScriptModule's deepcopy clones each parameter with its autograd history (a
        # non-leaf tensor): make them leaves again, or requires_grad_ and optimizers fail
        for tensor in (*net.parameters(), *net.buffers()):
            wanted = tensor.requires_grad
            tensor.detach_().requires_grad_(wanted)
        twin = UserModel(net, self.layers, self.mean, self.std)
        twin.script = self.script
        return twin.train(self.training)

    def forward(self, x: Tensor) -> Tensor:
        if self.normalize is not None:
            x = self.normalize(x)
        if self._forward is None:
            return self.net(x)
        with _running(_Pass(list(self.taps.values()))) as current:
            try:
                return self._forward(self.net._c, x)
            except RuntimeError:
                if current.raised is not None:
                    raise current.raised from None
                raise


@contextmanager
def _running(current: _Pass) -> Iterator[_Pass]:
    stack = _ACTIVE.__dict__.setdefault("stack", [])
    stack.append(current)
    try:
        yield current
    finally:
        stack.pop()


def is_torchscript(source: bytes | str | Path) -> bool:
    """Whether the bytes (or file) are a TorchScript archive (a zip with a `code/`
    folder), as opposed to a `torch.save` pickle: to tell which loader a file needs."""
    try:
        with zipfile.ZipFile(io.BytesIO(source) if isinstance(source, bytes) else source) as zf:
            return any("/code/" in f"/{name}" for name in zf.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def read_script(path: str | Path) -> bytes:
    """The bytes of a TorchScript file, checked to be one (one line naming the file if
    not): they are loaded again by every downstream stage from the export."""
    path = Path(path)
    data = path.read_bytes()
    if not is_torchscript(data):
        raise PipelineError(
            f"{KEY}: {path} is not a TorchScript file (save one with "
            "torch.jit.save(torch.jit.script(model), path)); for a state dict, set "
            "classifier.arch to its architecture"
        )
    return data


TRUST_ENV = "XAI_TRUST_TORCHSCRIPT"  # "1": the person running the pipeline trusts the file


def check_trusted(source: str | Path) -> None:
    """A TorchScript file is a program: its code runs at every forward pass. The pipeline
    never runs what it reads on a params value alone (params.yaml may come from anyone,
    models/classifier/model.pt from a DVC remote), so loading one needs the person who
    runs the stages to say so in the environment, where neither can reach."""
    if os.environ.get(TRUST_ENV) != "1":
        raise PipelineError(
            f"{KEY}: {source} is a TorchScript program, and loading it runs its code at "
            f"every forward pass (README: Threat model); if you trust it, run the "
            f"pipeline with {TRUST_ENV}=1 in the environment (`{TRUST_ENV}=1 dvc repro`)"
        )


def load_script(data: bytes, source: str | Path) -> torch.jit.ScriptModule:
    """torch.jit.load on CPU, in eval mode, once the environment trusts TorchScript
    (`check_trusted`). It runs no Python pickle, but the file's TorchScript code runs at
    every forward: see the README's threat model."""
    check_trusted(source)
    try:
        with warnings.catch_warnings():  # torch 2.9+: "torch.jit.load is deprecated"
            warnings.simplefilter("ignore", FutureWarning)
            module = torch.jit.load(io.BytesIO(data), map_location="cpu")
    except RuntimeError as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else "RuntimeError"
        raise PipelineError(
            f"{KEY}: {source} cannot be loaded with torch.jit.load ({reason})"
        ) from None
    return module.eval()


def build_user_model(
    data: bytes,
    source: str | Path,
    layers: Mapping[str, str],
    mean: Sequence[float] | None,
    std: Sequence[float] | None,
) -> UserModel:
    """The TorchScript bytes as a classifier: loaded, wrapped, its layers tapped."""
    model = UserModel(load_script(data, source), layers, mean, std).eval()
    model.script = data  # what the export stores: the bytes that were loaded
    return model


def check_output(
    model: nn.Module, image_shape: tuple[int, int, int], num_classes: int | None, source: str
) -> int:
    """One forward pass on a zero image of the data's shape: the model must take it and
    return logits (1, classes); returns the class count. One line naming the file and the
    data params when it does not."""
    hint = "set data.image_size and data.channels to the input the model was made for"
    try:
        with torch.no_grad():
            out = model(torch.zeros(1, *image_shape))
    except RuntimeError as exc:
        reason = _last_line(str(exc))
        raise PipelineError(
            f"{KEY}: {source} does not take images of shape {image_shape} ({reason}); {hint}"
        ) from None
    if not isinstance(out, Tensor) or out.dim() != 2 or out.shape[0] != 1:
        shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise PipelineError(
            f"{KEY}: {source} returns {shape} for one image; the pipeline needs logits "
            "shaped (images, classes)"
        )
    if num_classes is not None and out.shape[1] != num_classes:
        raise PipelineError(
            f"{KEY}: {source} has {out.shape[1]} outputs; the dataset has {num_classes} classes"
        )
    return int(out.shape[1])


def _last_line(message: str) -> str:
    """The interpreter's error, whose cause is its last non-empty line."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    return lines[-1] if lines else "RuntimeError"


def user_model_payload(
    model: UserModel, image_shape: Sequence[int], class_names: Sequence[str]
) -> dict:
    """The export (models/classifier/model.pt) of a TorchScript classifier: the file's
    bytes as a uint8 tensor, so the export loads with `weights_only=True` and stays the
    model that was explained even when the user's file changes; `state_dict` is empty."""
    return {
        "arch": ARCH,
        "input_shape": list(image_shape),
        "num_classes": len(class_names),
        "class_names": list(class_names),
        "script": torch.frombuffer(bytearray(model.script), dtype=torch.uint8),
        "layers": dict(model.layers),
        "mean": None if model.mean is None else list(model.mean),
        "std": None if model.std is None else list(model.std),
        "state_dict": {},
    }


def user_model_from_payload(payload: Mapping, source: str | Path) -> UserModel:
    """The classifier an export of `user_model_payload` holds."""
    data = payload["script"].numpy().tobytes()
    return build_user_model(data, source, dict(payload["layers"]), payload["mean"], payload["std"])
