"""The cheap parts of benchmarks/cross_checks.py: our Grad-CAM equal to the grad-cam
package's on a freshly initialised classifier, and the helpers the benchmark's
comparisons rest on. (The Quantus comparisons stay in the benchmark: Quantus is not a
dependency of the project.)"""

from __future__ import annotations

import numpy as np
import torch
from known_models import attribute

from benchmarks.cross_checks import minmax_scaled, package_gradcam, tie_kinds
from pipeline.explain.base import pixel_map
from pipeline.models.archs import build_classifier


def test_our_gradcam_equals_the_grad_cam_package() -> None:
    """Same definition (channel weights = mean gradient, ReLU, bilinear up-sampling),
    two implementations: equal after the package's per-map [0, 1] scaling, for the
    predicted class and for other classes, on a random untrained CNN."""
    torch.manual_seed(0)
    model = build_classifier("small_cnn", (1, 16, 16), 3).eval()
    images = torch.rand(12, 1, 16, 16)
    targets = torch.arange(12) % 3
    ours = minmax_scaled(pixel_map(attribute("gradcam", model, images, targets, layer="conv")))
    theirs = minmax_scaled(package_gradcam(model, "conv", images, targets))
    assert ours.shape == theirs.shape == (12, 16, 16)
    # the comparison means something: most maps are not flat (a flat map scales to 0)
    assert (ours.max(axis=(1, 2)) == 1.0).sum() >= 8
    np.testing.assert_allclose(ours, theirs, atol=1e-5)
    # ... and would notice another class's map
    other = minmax_scaled(package_gradcam(model, "conv", images, (targets + 1) % 3))
    assert np.abs(ours - other).max() > 0.1


def test_package_gradcam_leaves_the_model_as_it_was() -> None:
    torch.manual_seed(1)
    model = build_classifier("small_cnn", (1, 16, 16), 3).eval()
    package_gradcam(model, "conv", torch.rand(2, 1, 16, 16), torch.tensor([0, 1]))
    for module in model.modules():
        assert not module._forward_hooks and not module._backward_hooks
    assert all(p.grad is None for p in model.parameters())


def test_minmax_scaled_per_map() -> None:
    maps = np.array([[[2.0, 4.0], [6.0, 3.0]], [[5.0, 5.0], [5.0, 5.0]]])
    expected = np.array([[[0.0, 0.5], [1.0, 0.25]], [[0.0, 0.0], [0.0, 0.0]]])
    np.testing.assert_allclose(minmax_scaled(maps), expected)


def test_tie_kinds() -> None:
    """A tie matters only where it covers pixels of different colours: there the order
    of the tied pixels decides which colour a deletion step removes."""
    maps = np.array(
        [
            [[4.0, 3.0], [2.0, 1.0]],  # no ties
            [[1.0, 1.0], [2.0, 3.0]],  # tied pixels of one colour (below)
            [[1.0, 1.0], [2.0, 3.0]],  # tied pixels of two colours
        ]
    )
    images = np.array(
        [
            [[[0.1, 0.2], [0.3, 0.4]]],
            [[[0.0, 0.0], [0.3, 0.4]]],
            [[[0.0, 0.9], [0.3, 0.4]]],
        ]
    )
    any_ties, relevant = tie_kinds(maps, images)
    assert any_ties.tolist() == [False, True, True]
    assert relevant.tolist() == [False, False, True]
