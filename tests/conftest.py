"""Shared fixtures: small synthetic datasets whose labels are known by construction."""

from __future__ import annotations

import os

import numpy as np
import pytest
from browser import browser  # noqa: F401 (the headless Chromium fixture)

from pipeline.data import Splits
from pipeline.params import Params, parse_params

os.environ.setdefault("MPLBACKEND", "Agg")


def make_square_images(
    n: int, classes: int = 3, size: int = 16, channels: int = 1, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Class k = a bright square in the k-th horizontal band of a noisy image: learnable
    in a few steps, so training tests stay fast and their outcome is known."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes
    images = rng.integers(0, 40, size=(n, channels, size, size), dtype=np.uint8)
    band = size // classes
    for i, label in enumerate(labels):
        top = label * band + rng.integers(0, max(band - 4, 1))
        left = rng.integers(0, size - 4)
        images[i, :, top : top + 4, left : left + 4] = 230
    return images, labels.astype(np.int64)


@pytest.fixture
def tiny_splits() -> Splits:
    x, y = make_square_images(240, classes=3, size=16, seed=1)
    return Splits(
        x_train=x[:150],
        y_train=y[:150],
        x_val=x[150:195],
        y_val=y[150:195],
        x_test=x[195:],
        y_test=y[195:],
        class_names=("top", "middle", "bottom"),
        dataset="synthetic",
    )


@pytest.fixture
def tiny_params() -> Params:
    return parse_params(
        {
            "seed": 3,
            "classifier": {
                "arch": "small_cnn",
                "epochs": 3,
                "batch_size": 32,
                "lr": 0.003,
                "tracked_instances": 20,
            },
            "trainer": {"accelerator": "cpu", "devices": 1},
        }
    )


@pytest.fixture(scope="module")
def region_case():
    """RegionModel, 12 images with evidence and a distractor, their evidence masks and
    the class every image belongs to (1): the right explanation is known."""
    import torch
    from known_models import RegionModel, region_images

    model = RegionModel().eval()
    images, evidence = region_images(12, seed=3)
    with torch.no_grad():
        assert (model(images).argmax(1) == 1).all()  # the construction is what we claim
    return model, images, evidence, torch.ones(12, dtype=torch.long)
