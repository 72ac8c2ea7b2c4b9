"""The same protocol for every attribution method: deletion / insertion against a
random-attribution baseline, and the cascading randomization sanity check."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm import tqdm

from pipeline.evaluate import DELETION, INSERTION, SANITY
from pipeline.evaluate import RANDOM_BASELINE as RANDOM
from pipeline.evaluate.faithfulness import deletion_insertion, random_maps
from pipeline.evaluate.sanity import cascading_randomization
from pipeline.explain.base import pixel_map


@dataclass
class Evaluation:
    fractions: np.ndarray
    deletion_curves: dict[str, np.ndarray] = field(default_factory=dict)  # method -> mean curve
    insertion_curves: dict[str, np.ndarray] = field(default_factory=dict)
    scores: dict[str, dict[str, Any]] = field(default_factory=dict)  # method -> numbers
    sanity: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # method -> rows

    def metrics(self) -> dict[str, Any]:
        """The DVC / MLflow metrics: per method AUCs, whether they beat the random
        baseline, the sanity correlations and whether the method passes."""
        return {"methods": self.scores}


def evaluate_attributions(
    model: nn.Module,
    images: Tensor,
    classes: Tensor,
    attributions: Mapping[str, np.ndarray],
    *,
    steps: int,
    deletion_value: float,
    blur_sigma: float,
    random_seeds: int,
    seed: int,
    explainers: Mapping[str, Callable[[nn.Module], np.ndarray]] | None = None,
    sanity_threshold: float = 0.5,
) -> Evaluation:
    """Score every method's attributions (N×C'×H×W for `images`, explaining `classes`).
    `explainers` recompute a method's attributions for a given model (on a subset of
    the images): each is run through the cascading randomization test."""
    model.eval()
    curve_args = {"steps": steps, "deletion_value": deletion_value, "blur_sigma": blur_sigma}
    maps = {name: pixel_map(a) for name, a in attributions.items()}
    n, h, w = next(iter(maps.values())).shape
    random_curves = [
        deletion_insertion(model, images, random_maps((n, h, w), seed + k), classes, **curve_args)
        for k in range(random_seeds)
    ]
    result = Evaluation(fractions=random_curves[0].fractions)
    random_del = np.mean([c.deletion_auc for c in random_curves], axis=0)
    random_ins = np.mean([c.insertion_auc for c in random_curves], axis=0)
    result.deletion_curves[RANDOM] = np.mean([c.deletion.mean(0) for c in random_curves], axis=0)
    result.insertion_curves[RANDOM] = np.mean([c.insertion.mean(0) for c in random_curves], axis=0)
    result.scores[RANDOM] = {
        "deletion_auc": float(random_del.mean()),
        "insertion_auc": float(random_ins.mean()),
    }
    for name in tqdm(list(maps), desc="deletion/insertion", unit="method"):
        curves = deletion_insertion(model, images, maps[name], classes, **curve_args)
        result.deletion_curves[name] = curves.deletion.mean(0)
        result.insertion_curves[name] = curves.insertion.mean(0)
        result.scores[name] = {
            "deletion_auc": float(curves.deletion_auc.mean()),
            "insertion_auc": float(curves.insertion_auc.mean()),
            # share of instances where the map beats the random maps of the same image
            "deletion_wins": float(
                np.mean(list(map(DELETION.better, curves.deletion_auc, random_del)))
            ),
            "insertion_wins": float(
                np.mean(list(map(INSERTION.better, curves.insertion_auc, random_ins)))
            ),
            "beats_random_deletion": DELETION.better(
                float(curves.deletion_auc.mean()), float(random_del.mean())
            ),
            "beats_random_insertion": INSERTION.better(
                float(curves.insertion_auc.mean()), float(random_ins.mean())
            ),
        }
    for name, explain in tqdm(
        list((explainers or {}).items()), desc="randomization", unit="method"
    ):
        rows = cascading_randomization(model, explain, seed=seed)
        result.sanity[name] = rows
        final = rows[-1]["spearman"] if rows else float("nan")
        result.scores.setdefault(name, {}).update(
            {
                "sanity_spearman_top": rows[0]["spearman"] if rows else float("nan"),
                "sanity_spearman_all": final,
                "sanity_ssim_all": rows[-1]["ssim"] if rows else float("nan"),
                # fails: the map barely changes when every layer is random
                "sanity_passed": SANITY.better(final, sanity_threshold),
            }
        )
    return result


def subset_explainer(
    attribute: Callable[[nn.Module, Tensor, Tensor], np.ndarray], images: Tensor, classes: Tensor
) -> Callable[[nn.Module], np.ndarray]:
    """model -> attributions of a fixed subset, for the randomization test."""

    def explain(model: nn.Module) -> np.ndarray:
        with torch.enable_grad():
            return attribute(model.eval(), images, classes)

    return explain


def markdown_scores(scores: Mapping[str, Mapping[str, Any]]) -> str:
    """The evaluation table; column arrows come from each score's direction."""
    from pipeline.tables import markdown_table

    header = [
        "method",
        f"{DELETION.label} {DELETION.arrow}",
        f"{INSERTION.label} {INSERTION.arrow}",
        "beats random (del / ins)",
        f"{SANITY.label} {SANITY.arrow}",
        "sanity",
    ]
    rows = []
    for name, s in scores.items():
        yes = {True: "yes", False: "no"}
        beats = (
            "—"
            if name == RANDOM
            else f"{yes[s['beats_random_deletion']]} / {yes[s['beats_random_insertion']]}"
        )
        rho = s.get(SANITY.key)
        rows.append(
            [
                name,
                f"{s[DELETION.key]:.4f}",
                f"{s[INSERTION.key]:.4f}",
                beats,
                "—" if rho is None else f"{rho:.3f}",
                "—" if rho is None else ("passed" if s["sanity_passed"] else "FAILED"),
            ]
        )
    return markdown_table(header, rows)
