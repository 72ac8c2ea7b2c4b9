"""What the explanation stages share: loading the data, the classifier and the
selection, and picking a few selected instances spread over the classes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.data import Splits
from pipeline.models.archs import ImageClassifier
from pipeline.models.export import load_classifier
from pipeline.selection import Selection
from stages import paths


@dataclass
class Inputs:
    splits: Splits
    net: ImageClassifier
    names: list[str]
    selection: Selection


def load_inputs(selection: bool = True) -> Inputs:
    splits = Splits.load(paths.DATASET)
    net, names = load_classifier(paths.CLASSIFIER_MODEL)
    chosen = Selection.load(paths.SELECTION) if selection else None
    return Inputs(splits, net, names, chosen)  # type: ignore[arg-type]


def spread(selection: Selection, count: int) -> np.ndarray:
    """Up to `count` rows of the selection: correctly classified ones spread over the
    classes, and up to a third misclassified ones."""
    wrong = np.flatnonzero(selection.misclassified)
    right = np.flatnonzero(~selection.misclassified)
    n_wrong = min(len(wrong), count // 3)
    n_right = min(len(right), count - n_wrong)
    picked = right[np.linspace(0, len(right) - 1, n_right).astype(int)] if n_right else right[:0]
    return np.concatenate([np.unique(picked), wrong[:n_wrong]])


def caption(selection: Selection, row: int) -> str:
    """'7' for a correct prediction, '7→1' for a wrong one (true → predicted)."""
    names = selection.class_names
    true, pred = names[selection.labels[row]], names[selection.predicted[row]]
    return true if true == pred else f"{true}→{pred}"
