"""Attribution and evaluation figures: files are written and non-empty, and the LIME
overlay colours the right superpixels."""

from __future__ import annotations

import numpy as np

from pipeline.explain.base import Instance
from pipeline.figures.attributions import (
    lime_overlay,
    plot_attribution_grid,
    plot_lime_grid,
)
from pipeline.figures.common import message_figure, save_figure
from pipeline.figures.evaluation import plot_evaluation


def instances(n: int, channels: int = 1) -> list[Instance]:
    rng = np.random.default_rng(0)
    return [
        Instance(
            rng.integers(0, 255, (channels, 8, 8), dtype=np.uint8),
            label=i % 2,
            predicted=0,
            probabilities=np.array([0.7, 0.3]),
        )
        for i in range(n)
    ]


def test_lime_overlay_tints_pros_green_and_cons_red() -> None:
    segments = np.repeat(np.arange(4), 64).reshape(16, 16)  # four bands of four rows
    image = np.full((1, 16, 16), 128, dtype=np.uint8)
    weights = np.array([0.5, -0.4, 0.01, np.nan])
    rgb = lime_overlay(image, segments, weights, features=2)
    # the 16×16 image is enlarged 7× (boundaries stay thin); the middle rows of each band
    assert rgb.shape == (112, 112, 3)
    pro, con, neutral = rgb[7 * 1 : 7 * 3], rgb[7 * 5 : 7 * 7], rgb[7 * 9 : 7 * 11]
    assert (pro[..., 1] > pro[..., 0]).all()  # green band
    assert (con[..., 0] > con[..., 1]).all()  # red band
    assert np.allclose(neutral, 128 / 255, atol=1e-6)  # not among the top 2: untouched


def evaluation_row(value: float, half: float, rho: float | None = None) -> dict:
    """A row of metrics/evaluate.json: every AUC (and ρ) with its interval."""
    from pipeline.evaluate.intervals import Interval
    from pipeline.evaluate.protocol import FAITHFULNESS

    row: dict = {}
    for score in FAITHFULNESS:
        row.update(Interval(value, value - half, value + half, 20).as_dict(score.key))
    if rho is not None:
        for key in ("sanity_spearman_all", "sanity_spearman_foreground"):
            row.update(Interval(rho, rho - half, rho + half, 10).as_dict(key))
    return row


def test_figures_are_written(tmp_path) -> None:
    rng = np.random.default_rng(1)
    figures = {
        "grid_signed": plot_attribution_grid(
            instances(5),
            rng.normal(size=(5, 8, 8)),
            {1: rng.normal(size=(8, 8))},
            ["zero", "one"],
            "integrated_gradients",
            signed=True,
        ),
        "grid_rgb": plot_attribution_grid(
            instances(2, channels=3),
            rng.random((2, 8, 8)),
            {},
            ["zero", "one"],
            "gradcam",
            signed=False,
        ),
        "lime": plot_lime_grid(
            instances(3),
            np.repeat(np.arange(4), 16).reshape(1, 8, 8).repeat(3, 0),
            rng.normal(size=(3, 4)),
            {1: rng.normal(size=4)},
            ["zero", "one"],
            features=2,
        ),
        "message": message_figure("no misclassified instances were selected", "saliency"),
        "evaluation": plot_evaluation(
            {
                kind: (
                    np.linspace(0, 1, 5),
                    {"random": np.linspace(1, 0.5, 5), "saliency": np.linspace(1, 0.1, 5)},
                )
                for kind in ("deletion", "insertion", "road_morf", "road_lerf")
            },
            {"random": evaluation_row(0.7, 0.05), "saliency": evaluation_row(0.4, 0.03, rho=0.3)},
            {
                "saliency": [
                    {"layer": "logits", "spearman": 0.6},
                    {"layer": "conv", "spearman": 0.1},
                ]
            },
            threshold=0.5,
            title="test",
        ),
    }
    for name, fig in figures.items():
        path = save_figure(fig, tmp_path / f"{name}.png")
        assert path.stat().st_size > 2000, name
