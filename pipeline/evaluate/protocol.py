"""The evaluation protocol: what is measured per method on the evaluation set, and how
the per-image numbers become scores with intervals and verdicts.

Per method (`evaluate_method`, run by the method's explain stage):
- faithfulness on every image of the evaluation set: deletion and insertion curves
  (RISE), ROAD's most- and least-relevant-first curves; constant maps are left out;
- sanity (cascading randomization) on its first `sanity_images` images: the full
  cascade for the first seed, the fully randomized model for every seed; ρ per image on
  all pixels and on the foreground.
Across methods (`score_methods`, the evaluate stage): the random-attribution baseline on
the same images, bootstrap 95% intervals over images for every AUC and ρ, and verdicts
that follow the intervals — a method beats random only when its interval and the
baseline's do not overlap; it is flagged by the sanity check only when its interval lies
above the threshold, passes only when it lies below, and is inconclusive otherwise."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.console import progress
from pipeline.evaluate import DELETION, INSERTION, ROAD_LERF, ROAD_MORF, SANITY
from pipeline.evaluate import RANDOM_BASELINE as RANDOM
from pipeline.evaluate.intervals import Interval, bootstrap_interval, finite_mean, separated
from pipeline.io import read_npz, write_npz

if TYPE_CHECKING:
    from torch import Tensor, nn

    from pipeline.params import EvaluateParams

SANITY_KEYS = ("spearman", "spearman_foreground", "ssim")
FAITHFULNESS = (DELETION, INSERTION, ROAD_MORF, ROAD_LERF)
Explainer = Callable[["nn.Module"], np.ndarray]  # model -> N×C×H×W maps of fixed images


@dataclass
class MethodEvaluation:
    """One method's per-image results on the evaluation set (NaN = left out)."""

    method: str
    constant: np.ndarray  # N bools: the map was constant (left out of every score)
    fractions: np.ndarray  # deletion / insertion x axis, 0..1
    deletion: np.ndarray  # N×len(fractions) class probabilities
    insertion: np.ndarray
    road_fractions: np.ndarray  # ROAD's x axis: the shares of pixels removed
    road_morf: np.ndarray  # N×len(road_fractions)
    road_lerf: np.ndarray
    sanity_layers: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=str))
    cascade: np.ndarray = field(default_factory=lambda: np.zeros((0, 3, 0)))  # L×keys×n
    final: np.ndarray = field(default_factory=lambda: np.zeros((0, 3, 0)))  # seeds×keys×n

    def auc(self, key: str) -> np.ndarray:
        """Per-image area under a curve (NaN for left-out images)."""
        from pipeline.evaluate.faithfulness import auc

        x, curves = {
            DELETION.key: (self.fractions, self.deletion),
            INSERTION.key: (self.fractions, self.insertion),
            ROAD_MORF.key: (self.road_fractions, self.road_morf),
            ROAD_LERF.key: (self.road_fractions, self.road_lerf),
        }[key]
        return auc(x, curves)

    def mean_curve(self, kind: str) -> np.ndarray:
        """The mean curve over the images not left out."""
        curves = getattr(self, kind)
        return np.nanmean(curves, axis=0) if np.isfinite(curves).any() else curves[0]

    def final_per_image(self, key: str) -> np.ndarray:
        """Per image, the mean over seeds of the fully randomized model's similarity;
        NaN where it is undefined for every seed."""
        values = self.final[:, SANITY_KEYS.index(key)]
        finite = np.isfinite(values)
        counts = finite.sum(0)
        total = np.where(finite, values, 0.0).sum(0)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(counts > 0, total / np.maximum(counts, 1), np.nan)

    def cascade_means(self) -> list[dict[str, Any]]:
        """One row per cascade step: the layer and the mean similarity over images."""
        return [
            {
                "layer": str(layer),
                **{key: finite_mean(self.cascade[i, k]) for k, key in enumerate(SANITY_KEYS)},
            }
            for i, layer in enumerate(self.sanity_layers)
        ]

    def save(self, path: str | Path) -> None:
        write_npz(path, **{k: np.asarray(v) for k, v in self.__dict__.items()})

    @classmethod
    def load(cls, path: str | Path) -> MethodEvaluation:
        """A method's stored evaluation; missing or corrupt is a one-line error."""
        z = read_npz(
            path, stage=f"explain@{Path(path).stem}", required=tuple(cls.__dataclass_fields__)
        )
        return cls(**{k: (str(v) if k == "method" else v) for k, v in z.items()})


def _left_out(curves: np.ndarray, constant: np.ndarray) -> np.ndarray:
    return np.where(constant[:, None], np.nan, curves)


def faithfulness(
    model: nn.Module,
    images: Tensor,
    maps: np.ndarray,
    classes: Tensor,
    ev: EvaluateParams,
    seed: int,
    name: str,
) -> MethodEvaluation:
    """Deletion, insertion and ROAD curves of N×H×W maps on `images`; `seed` breaks
    ties and draws ROAD's noise. Constant maps are left out (NaN rows)."""
    from pipeline.evaluate.faithfulness import constant_maps, deletion_insertion
    from pipeline.evaluate.road import road_curves

    constant = constant_maps(maps)
    curves = deletion_insertion(
        model,
        images,
        maps,
        classes,
        steps=ev.steps,
        deletion_value=ev.deletion_value,
        blur_sigma=ev.insertion_blur_sigma,
        seed=seed,
    )
    road = road_curves(
        model,
        images,
        maps,
        classes,
        percentages=ev.road_percentages,
        noise=ev.road_noise,
        seed=seed,
    )
    return MethodEvaluation(
        method=name,
        constant=constant,
        fractions=curves.fractions,
        deletion=_left_out(curves.deletion, constant),
        insertion=_left_out(curves.insertion, constant),
        road_fractions=road.fractions,
        road_morf=_left_out(road.morf, constant),
        road_lerf=_left_out(road.lerf, constant),
    )


def sanity(
    model: nn.Module,
    explain: Explainer,
    foreground: np.ndarray,
    seeds: Sequence[int],
    desc: str = "sanity",
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(layers, cascade L×keys×n, final seeds×keys×n): per-image similarity between the
    trained model's maps and the maps after each cascade step (first seed) and after
    full randomization (every seed); `desc` names the progress bar."""
    from pipeline.evaluate.sanity import (
        cascade_layers,
        cascade_steps,
        fully_randomized,
        per_image_similarity,
    )

    def compare(randomized: nn.Module) -> np.ndarray:
        values = per_image_similarity(reference, explain(randomized), foreground)
        return np.stack([values[key] for key in SANITY_KEYS])

    reference = explain(model)
    layers = cascade_layers(model)
    # the cascade for the first seed, then full randomization for the others, made one
    # at a time in this order as before (one seeded generator for the whole cascade)
    models = chain(
        (randomized for _, randomized in cascade_steps(model, layers, seeds[0])),
        (fully_randomized(model, layers, s) for s in seeds[1:]),
    )
    total = len(layers) + len(seeds) - 1
    compared = [compare(m) for m in progress(models, desc, total=total, unit="model")]
    cascade, final = compared[: len(layers)], [compared[len(layers) - 1], *compared[len(layers) :]]
    return layers, np.stack(cascade), np.stack(final)


def evaluate_method(
    name: str,
    model: nn.Module,
    images: Tensor,
    classes: Tensor,
    maps: np.ndarray,
    attribute: Callable[[nn.Module, Tensor, Tensor], np.ndarray],
    ev: EvaluateParams,
    seed: int,
) -> MethodEvaluation:
    """Faithfulness of `maps` (N×C×H×W attributions of `images` for `classes`) and the
    sanity check, recomputing attributions with `attribute(model, images, classes)` on
    the first `ev.sanity_images` images."""
    import torch

    from pipeline.evaluate.sanity import foreground_mask
    from pipeline.explain.base import pixel_map

    result = faithfulness(model, images, pixel_map(maps), classes, ev, seed, name)
    count = min(ev.sanity_images, len(images))
    subset, subset_classes = images[:count], classes[:count]

    def explain(m: nn.Module) -> np.ndarray:
        with torch.enable_grad():
            return attribute(m.eval(), subset, subset_classes)

    foreground = foreground_mask(subset.numpy(), ev.foreground_tolerance)
    seeds = [seed + k for k in range(ev.sanity_seeds)]
    layers, result.cascade, result.final = sanity(
        model, explain, foreground, seeds, f"{name}: sanity"
    )
    result.sanity_layers = np.array(layers)
    return result


def random_baseline(
    model: nn.Module, images: Tensor, classes: Tensor, ev: EvaluateParams, seed: int
) -> MethodEvaluation:
    """Uniform random maps, `ev.random_seeds` draws, curves averaged per image."""
    from pipeline.evaluate.faithfulness import random_maps

    n, _, h, w = images.shape
    draws = [
        faithfulness(model, images, random_maps((n, h, w), seed + k), classes, ev, seed + k, RANDOM)
        for k in progress(range(ev.random_seeds), "random baseline", unit="draw")
    ]
    first = draws[0]
    mean = {
        kind: np.mean([getattr(d, kind) for d in draws], axis=0)
        for kind in ("deletion", "insertion", "road_morf", "road_lerf")
    }
    return MethodEvaluation(
        RANDOM, first.constant, first.fractions, road_fractions=first.road_fractions, **mean
    )


def score_methods(
    evaluations: Mapping[str, MethodEvaluation],
    random: MethodEvaluation,
    *,
    threshold: float,
    seed: int,
    resamples: int,
) -> dict[str, dict[str, Any]]:
    """Every method's flat scores with 95% intervals and verdicts (module docstring);
    the random baseline first."""

    def interval(values: np.ndarray) -> Interval:
        return bootstrap_interval(values, seed=seed, resamples=resamples)

    baseline = {s.key: interval(random.auc(s.key)) for s in FAITHFULNESS}
    scores: dict[str, dict[str, Any]] = {RANDOM: {}}
    for s in FAITHFULNESS:
        scores[RANDOM].update(baseline[s.key].as_dict(s.key))
    for name, ev in evaluations.items():
        row: dict[str, Any] = {
            "images": len(ev.constant),
            "constant_maps": int(ev.constant.sum()),
        }
        for s in FAITHFULNESS:
            own = interval(ev.auc(s.key))
            row.update(own.as_dict(s.key))
            row[f"beats_random_{s.key.removesuffix('_auc')}"] = separated(
                own, baseline[s.key], s.direction
            )
        if len(ev.sanity_layers):
            rho = interval(ev.final_per_image("spearman"))
            rho_fg = interval(ev.final_per_image("spearman_foreground"))
            row.update(rho.as_dict(SANITY.key))
            row.update(rho_fg.as_dict("sanity_spearman_foreground"))
            row["sanity_ssim_all"] = finite_mean(ev.final_per_image("ssim"))
            row["sanity_spearman_top"] = finite_mean(ev.cascade[0, 0])
            row["sanity_seeds"] = len(ev.final)
            row["sanity_left_out"] = int(np.isnan(ev.final[:, 0]).sum())
            row["sanity_flagged"] = rho.n > 0 and rho.low > threshold
            row["sanity_passed"] = rho.n > 0 and rho.high < threshold
            row["sanity_flagged_foreground"] = rho_fg.n > 0 and rho_fg.low > threshold
            row["sanity_passed_foreground"] = rho_fg.n > 0 and rho_fg.high < threshold
        scores[name] = row
    return scores


def markdown_scores(scores: Mapping[str, Mapping[str, Any]]) -> str:
    """The evaluation table: means with 95% intervals; arrows from each score's
    direction."""
    from pipeline.tables import markdown_table

    def cell(row: Mapping[str, Any], key: str) -> str:
        n = row.get(f"{key}_n")
        if n is None:
            return "—"
        return Interval(row[key], row[f"{key}_low"], row[f"{key}_high"], n).text()

    header = [
        "method",
        *(f"{s.label} {s.arrow}" for s in FAITHFULNESS),
        "beats random (del / ins / MoRF / LeRF)",
        f"{SANITY.label} {SANITY.arrow}",
        "ρ on foreground ↓",
        "sanity (all / foreground)",
        "images (constant maps)",
    ]
    yes = {True: "yes", False: "no"}
    rows = []
    for name, s in scores.items():
        beats = (
            "—"
            if name == RANDOM
            else " / ".join(
                yes[s[f"beats_random_{f.key.removesuffix('_auc')}"]] for f in FAITHFULNESS
            )
        )
        has_sanity = f"{SANITY.key}_n" in s
        rows.append(
            [
                name,
                *(cell(s, f.key) for f in FAITHFULNESS),
                beats,
                cell(s, SANITY.key),
                cell(s, "sanity_spearman_foreground"),
                f"{sanity_word(s, '')} / {sanity_word(s, '_foreground')}" if has_sanity else "—",
                "—" if name == RANDOM else f"{s['images']} ({s['constant_maps']})",
            ]
        )
    return markdown_table(header, rows)


def sanity_word(row: Mapping[str, Any], which: str) -> str:
    """The sanity verdict on all pixels (which='') or the foreground ('_foreground'):
    FLAGGED when the ρ interval lies above the threshold, passed when below,
    inconclusive when it straddles it."""
    key = SANITY.key if not which else "sanity_spearman_foreground"
    if row.get(f"{key}_n", 0) == 0:
        return "—"
    if row[f"sanity_flagged{which}"]:
        return "FLAGGED"
    return "passed" if row[f"sanity_passed{which}"] else "inconclusive"
