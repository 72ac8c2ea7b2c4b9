"""DeepLIFT (Shrikumar et al. 2017), Rescale rule, against a black baseline, through
captum's `DeepLift`: each pixel's share of the difference between the class logit of
the image and that of the baseline. The shares add up to that difference exactly
through linear layers and ReLUs; captum's max-pool rule makes the sum approximate (a
few per cent off on small_cnn).

Why DeepLIFT and not LRP through zennit: captum is already a dependency, maintained
with the torch versions we pin. zennit would be a new one whose current release (1.0)
requires Python >= 3.11.11 and does not install in our 3.11.7 environment; the release
that does (0.5.1, February 2023) runs on our classifiers with torch 2.14 (checked), but
pins us to an old release and needs a per-architecture choice of composite and
canonizers (batch-norm merging for cladec_cnn and cifar_cnn). For plain
conv/ReLU/max-pool/linear networks DeepLIFT's Rescale rule is the same kind of
modified backward pass as LRP's rules.

captum's DeepLift keeps a module's input and output on the module between the forward
and the backward pass, so it fails (or, worse, reads the wrong tensors) when one
non-linearity module is called twice in a forward pass, and it needs out-of-place
ReLUs. `pipeline.models.archs` builds a new `nn.ReLU()` for every conv block and the
dense layer, none in place, so the real `ImageClassifier` has no reused module; the
method still runs on a copy whose ReLUs are made out-of-place, and refuses a model that
calls a non-linearity twice, naming it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipeline.explain.base import (
    AttributionMethod,
    Attributions,
    BatchedParams,
)

if TYPE_CHECKING:
    from torch import Tensor, nn


class DeepLiftParams(BatchedParams):
    pass


def reused_nonlinearities(model: nn.Module, image: Tensor) -> list[str]:
    """Names of the modules captum's DeepLift treats as non-linearities (ReLU,
    sigmoid, max-pool, ...) that one forward pass of `image` calls more than once."""
    import torch
    from captum.attr._core.deep_lift import SUPPORTED_NON_LINEAR

    calls: dict[str, int] = {}
    handles = []
    for name, module in model.named_modules():
        if type(module) in SUPPORTED_NON_LINEAR:

            def count(*_: object, key: str = name) -> None:
                calls[key] = calls.get(key, 0) + 1

            handles.append(module.register_forward_hook(count))
    try:
        with torch.no_grad():
            model(image)
    finally:
        for handle in handles:
            handle.remove()
    return sorted(name for name, k in calls.items() if k > 1)


class DeepLift(AttributionMethod):
    name = "deeplift"
    Params = DeepLiftParams
    title = "DeepLIFT"
    reference = "Shrikumar et al. 2017; captum.attr.DeepLift (Rescale rule, black baseline)"
    signed = True
    hooks_nonlinearities = True

    def attribute(
        self, model: nn.Module, images: Tensor, targets: Tensor, p: DeepLiftParams
    ) -> Attributions:  # type: ignore[override]
        import copy

        import numpy as np
        import torch
        from captum.attr import DeepLift as CaptumDeepLift
        from torch import nn

        if len(images) == 0:
            return Attributions(np.zeros(tuple(images.shape), np.float32))
        net = copy.deepcopy(model).eval()
        for module in net.modules():
            if isinstance(module, nn.ReLU):
                module.inplace = False
        reused = reused_nonlinearities(net, images[:1])
        if reused:
            raise ValueError(
                "DeepLIFT needs every non-linearity module to be called once per forward "
                f"pass; this model reuses {', '.join(reused)}: give each use its own module"
            )
        method = CaptumDeepLift(net)
        out = []
        # captum's max-pool rule calls max_unpool2d, which torch has no deterministic
        # flag for (it is deterministic on the CPU); a caller that asked for deterministic
        # algorithms (the training stages do) gets a warning for it instead of an error
        strict = torch.are_deterministic_algorithms_enabled()
        warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
        if strict:
            torch.use_deterministic_algorithms(True, warn_only=True)
        try:
            out = self._batches(method, images, targets, p.batch_size)
        finally:
            if strict:
                torch.use_deterministic_algorithms(True, warn_only=warn_only)
        return Attributions(torch.cat(out).numpy())

    @staticmethod
    def _batches(method: Any, images: Tensor, targets: Tensor, batch_size: int) -> list[Tensor]:
        import warnings

        import torch

        out = []
        for start in range(0, len(images), batch_size):
            x = images[start : start + batch_size].clone().requires_grad_(True)
            with torch.enable_grad(), warnings.catch_warnings():
                # captum announces its temporary hooks on every call; the unpooling notice
                warnings.filterwarnings("ignore", message="Setting forward, backward hooks")
                warnings.filterwarnings("ignore", message=".*max_unpool.*deterministic")
                attr = method.attribute(
                    x, baselines=torch.zeros_like(x), target=targets[start : start + batch_size]
                )
            out.append(attr.detach().float().cpu())
        return out
