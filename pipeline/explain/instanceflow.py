"""InstanceFlow (Pühringer et al., 2020): how each tracked test instance's prediction
moves between classes over the training epochs.

The input is a prediction table E×N (predicted class of N tracked test instances after
each of E epochs). From it come per-instance stability numbers (to find the instances the
model keeps changing its mind about) and the class-to-class flows between selected epochs
that a Sankey diagram draws. Everything here is plain NumPy, so it is cheap to test.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

OTHER = -1
"""Class id of the merged node for classes left out of a diagram."""


@dataclass(frozen=True)
class Flow:
    """`count` instances predicted `from_class` in diagram column `from_column` and
    `to_class` in column `to_column` (columns index the selected epochs, not epochs)."""

    from_column: int
    from_class: int
    to_column: int
    to_class: int
    count: int


def _check_table(predictions: np.ndarray) -> np.ndarray:
    table = np.asarray(predictions)
    if table.ndim != 2 or table.shape[0] < 1:
        raise ValueError(f"predictions must be E×N with E ≥ 1, got shape {table.shape}")
    return table


def instance_table(predictions: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    """Per-instance stability over training: how often it was wrong, how often its
    predicted class changed, how many classes it visited, and whether it ends correct."""
    table = _check_table(predictions)
    truth = np.asarray(labels)
    if truth.shape != (table.shape[1],):
        raise ValueError(f"labels must have shape ({table.shape[1]},), got {truth.shape}")
    changes = (table[1:] != table[:-1]).sum(axis=0)
    visited = np.array([len(v) for v in visited_classes(table)], dtype=np.int64)
    return {
        "fraction_misclassified": (table != truth[None, :]).mean(axis=0),
        "class_changes": changes.astype(np.int64),
        "classes_visited": visited,
        "final_correct": table[-1] == truth,
    }


def visited_classes(predictions: np.ndarray) -> list[list[int]]:
    """Sorted distinct predicted classes of each instance (one list per column)."""
    table = _check_table(predictions)
    return [sorted(int(c) for c in np.unique(table[:, i])) for i in range(table.shape[1])]


def select_epochs(epochs: np.ndarray, count: int) -> np.ndarray:
    """Row indices of at most `count` epochs spread evenly over training, always the first
    and the last, so a diagram stays readable however long the run was."""
    total = len(np.asarray(epochs))
    if total == 0:
        raise ValueError("no epochs to select from")
    if count >= total:
        return np.arange(total)
    if count < 2:
        raise ValueError(f"count must be ≥ 2 to keep the first and last epoch, got {count}")
    # spacing ≥ 1, so rounding half up keeps the positions distinct
    return np.floor(np.linspace(0, total - 1, count) + 0.5).astype(np.int64)


def node_order(cls: int) -> tuple[bool, int]:
    """Sort key that puts class ids in order and the merged "other" node last."""
    return (cls == OTHER, cls)


def _merged(row: np.ndarray, classes: Sequence[int] | None) -> np.ndarray:
    values = np.asarray(row).astype(np.int64)
    if classes is None:
        return values
    return np.where(np.isin(values, np.asarray(list(classes), dtype=np.int64)), values, OTHER)


def column_counts(
    predictions: np.ndarray, epoch_rows: np.ndarray, classes: Sequence[int] | None = None
) -> list[dict[int, int]]:
    """Instances per predicted class (node sizes) in each selected epoch, in node order;
    classes outside `classes` (when given) count towards OTHER."""
    table = _check_table(predictions)
    result = []
    for row in np.asarray(epoch_rows):
        counts = Counter(int(c) for c in _merged(table[row], classes))
        result.append({c: counts[c] for c in sorted(counts, key=node_order)})
    return result


def flows(
    predictions: np.ndarray, epoch_rows: np.ndarray, classes: Sequence[int] | None
) -> list[Flow]:
    """Class-to-class instance counts between each pair of consecutive selected epochs,
    sorted by column, source node and target node; counts leaving a column sum to N."""
    table = _check_table(predictions)
    rows = np.asarray(epoch_rows)
    result: list[Flow] = []
    for column in range(len(rows) - 1):
        source = _merged(table[rows[column]], classes)
        target = _merged(table[rows[column + 1]], classes)
        pairs = Counter(zip(source.tolist(), target.tolist(), strict=True))
        for a, b in sorted(pairs, key=lambda p: (node_order(p[0]), node_order(p[1]))):
            result.append(Flow(column, a, column + 1, b, pairs[(a, b)]))
    return result


def most_unstable(table: dict[str, np.ndarray], count: int) -> np.ndarray:
    """Indices of the `count` instances whose prediction changed most often, then those
    wrong most often; ties go to the lower index so the choice is reproducible."""
    changes = np.asarray(table["class_changes"])
    wrong = np.asarray(table["fraction_misclassified"], dtype=np.float64)
    order = np.lexsort((np.arange(len(changes)), -wrong, -changes))
    return order[: max(count, 0)].astype(np.int64)
