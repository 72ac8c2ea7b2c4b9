"""Grad-CAM++: known answers, its definition computed by hand, and a model left as it
was."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from known_models import (
    SIZE,
    RegionModel,
    attribute,
    region_images,
    share,
)
from torch import nn

from pipeline.explain.registry import method_class


def test_gradcam_pp_marks_the_evidence_without_distractors() -> None:
    """Like Grad-CAM it weighs whole channels: without a distractor exciting the same
    channel, only the evidence is lit."""
    model = RegionModel().eval()
    images, evidence = region_images(8, seed=4, distractor=False)
    cam = attribute("gradcam_pp", model, images, torch.ones(8, dtype=torch.long), layer="relu")
    assert cam.shape == (8, 1, SIZE, SIZE) and cam.dtype == np.float32
    cls = method_class("gradcam_pp")
    assert cls.needs_spatial_layer and not cls.signed
    assert cam.min() >= 0 and np.allclose(cam.max((1, 2, 3)), 1.0, atol=1e-5)
    assert share(cam, evidence).min() >= 0.99


class _PooledLinear(nn.Module):
    """2×2 average pooling (the explained layer), then a linear head."""

    def __init__(self, head: torch.Tensor) -> None:
        super().__init__()
        self.pool = nn.AvgPool2d(2)
        self.head = nn.Linear(head.shape[1], head.shape[0], bias=False)
        with torch.no_grad():
            self.head.weight.copy_(head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(x).flatten(1))


def test_gradcam_pp_matches_its_definition_by_hand() -> None:
    """Activations A (2 channels, 2×2) and a linear head, so the gradients g are the
    head's weights. Grad-CAM++ weights w_k = Σ relu(g) · g² / (2g² + ΣA_k · g³):
    channel 0: A = [[1, 0], [0, 1]], g = 1 everywhere: 4 · 1/(2 + 2) = 1;
    channel 1: A = [[0, 2], [0, 0]], g = [[0, 1], [0, -1]]: 1 · 1/(2 + 2) = 1/4 (the
    negative gradient counts for nothing). CAM = A_0 + A_1 / 4 = [[1, .5], [0, 1]],
    already in [0, 1], then bilinearly resized to the 4×4 image. (Grad-CAM's mean
    gradients 1 and 0 would give [[1, 0], [0, 1]].)"""
    activations = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[0.0, 2.0], [0.0, 0.0]]])
    image = activations.repeat_interleave(2, 1).repeat_interleave(2, 2)[None]  # 1×2×4×4
    head = torch.zeros(2, 8)
    head[1] = torch.tensor([1.0, 1, 1, 1, 0, 1, 0, -1])
    model = _PooledLinear(head).eval()
    cam = attribute("gradcam_pp", model, image, torch.tensor([1]), layer="pool")
    by_hand = torch.tensor([[[[1.0, 0.5], [0.0, 1.0]]]])
    expected = torch.nn.functional.interpolate(by_hand, size=(4, 4), mode="bilinear")
    np.testing.assert_allclose(cam, expected.numpy(), atol=1e-5)
    assert cam[0, 0, 0, 0] == pytest.approx(1.0) and cam[0, 0, 3, 0] == pytest.approx(0.0)


def test_gradcam_pp_of_a_flat_layer_is_refused() -> None:
    model = RegionModel().eval()
    images, _ = region_images(2)
    with pytest.raises(ValueError, match="spatial layer"):
        attribute("gradcam_pp", model, images, torch.ones(2, dtype=torch.long), layer="fc")


def test_gradcam_pp_leaves_the_model_as_it_was() -> None:
    """No hooks left behind, no gradients on the caller's parameters, even when the
    computation fails (the package's context manager would swallow an IndexError)."""
    model = RegionModel().eval()
    images, _ = region_images(4, seed=2)
    attribute("gradcam_pp", model, images, torch.ones(4, dtype=torch.long), layer="relu")
    with pytest.raises(IndexError):
        attribute("gradcam_pp", model, images, torch.full((4,), 7), layer="relu")
    for module in model.modules():
        assert not module._forward_hooks and not module._backward_hooks
    assert all(p.grad is None for p in model.parameters())
