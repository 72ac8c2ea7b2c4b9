"""DeepLIFT: known answers on a model whose decision depends on one known square,
completeness, and the modules it refuses."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from known_models import (
    attribute,
    share,
)
from torch import nn

from pipeline.explain.registry import method_class


def test_deeplift_puts_its_mass_on_the_evidence(region_case) -> None:
    """From black, only pixels above 0.5 inside REGION change the logit."""
    model, images, evidence, targets = region_case
    maps = attribute("deeplift", model, images, targets)
    assert maps.shape == tuple(images.shape) and maps.dtype == np.float32
    assert share(maps, evidence).min() >= 0.99
    assert method_class("deeplift").signed


def test_deeplift_is_complete_without_max_pooling(region_case) -> None:
    """Through linear layers and ReLUs the attributions add up to f(x) - f(black)."""
    model, images, _, targets = region_case
    maps = attribute("deeplift", model, images, targets)
    with torch.no_grad():
        gap = model(images)[:, 1] - model(torch.zeros_like(images))[:, 1]
    np.testing.assert_allclose(maps.sum((1, 2, 3)), gap.numpy(), rtol=1e-4)


def test_deeplift_refuses_a_reused_relu_and_leaves_the_model_alone() -> None:
    class Reused(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Linear(4, 4)
            self.b = nn.Linear(4, 2)
            self.relu = nn.ReLU(inplace=True)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.b(self.relu(self.a(self.relu(x.flatten(1)))))

    model = Reused().eval()
    with pytest.raises(ValueError, match="reuses relu"):
        attribute("deeplift", model, torch.rand(2, 1, 2, 2), torch.tensor([0, 1]))
    assert model.relu.inplace  # the method works on a copy


def test_deeplift_runs_where_deterministic_algorithms_are_required() -> None:
    """The training stages ask torch for deterministic algorithms; captum's max-pool rule
    has no such flag. DeepLIFT still runs, and the caller's setting is restored."""
    from pipeline.models.archs import build_classifier

    model = build_classifier("small_cnn", (1, 28, 28), 10).eval()
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        maps = attribute("deeplift", model, torch.rand(2, 1, 28, 28), torch.tensor([1, 2]))
        assert np.isfinite(maps).all()
        assert torch.are_deterministic_algorithms_enabled()
        assert not torch.is_deterministic_algorithms_warn_only_enabled()
    finally:
        torch.use_deterministic_algorithms(before)
