"""InstanceFlow (Pühringer et al., 2020): how each tracked test instance's prediction
moves between classes over the training epochs.

The input is a prediction table E×N (predicted class of N tracked test instances after
each of E epochs). From it come per-instance stability numbers (to find the instances the
model keeps changing its mind about) and the class-to-class flows between selected epochs
that a Sankey diagram draws. Everything here is plain NumPy: cheap to test, and the
figure stage loads no torch.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Protocol

import numpy as np
from pydantic import Field

from pipeline.errors import ParamsError
from pipeline.explain.base import Computed, InsidePart, MethodParams
from pipeline.skips import Skipped


class InstanceFlowParams(MethodParams):
    epochs: int = Field(
        6, ge=2, description="Sankey columns (first and last epoch always included)"
    )
    classes: list[Annotated[int, Field(ge=0)]] | None = Field(
        None,
        min_length=1,  # [] would merge every class into one node; null = all
        description="class indices shown as nodes (others merged); null = all",
    )
    unstable: int = Field(
        8, gt=0, description="most unstable instances drawn with their trajectories"
    )


class Inputs(Protocol):
    # the classifier stage's record: test_indices, labels, epochs, probabilities
    # (E×N×K), predictions (E×N), class_names
    epoch_predictions: dict[str, np.ndarray]


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
    outcome: str | None = None  # one of OUTCOMES when flows() is given the true labels


OUTCOMES = ("correct → correct", "correct → wrong", "wrong → correct", "wrong → wrong")
"""Whether a band's instances are classified correctly at its earlier → later epoch."""


def outcome(correct_before: bool, correct_after: bool) -> str:
    """The OUTCOMES entry of an instance right (or not) at two consecutive columns."""
    return OUTCOMES[2 * (not correct_before) + (not correct_after)]


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
    predictions: np.ndarray,
    epoch_rows: np.ndarray,
    classes: Sequence[int] | None,
    labels: np.ndarray | None = None,
) -> list[Flow]:
    """Class-to-class instance counts between each pair of consecutive selected epochs,
    sorted by column, source node and target node; counts leaving a column sum to N.
    With the true `labels`, each class-to-class flow is split by its instances' outcome
    (right or wrong at the earlier and at the later epoch, OUTCOMES order), so a band
    says whether the move was a correction or a new mistake."""
    table = _check_table(predictions)
    rows = np.asarray(epoch_rows)
    truth = None if labels is None else np.asarray(labels)
    if truth is not None and truth.shape != (table.shape[1],):
        raise ValueError(f"labels must have shape ({table.shape[1]},), got {truth.shape}")
    result: list[Flow] = []
    for column in range(len(rows) - 1):
        before, after = table[rows[column]], table[rows[column + 1]]
        keys = [_merged(before, classes).tolist(), _merged(after, classes).tolist()]
        if truth is not None:
            keys += [(before == truth).tolist(), (after == truth).tolist()]
        groups = Counter(zip(*keys, strict=True))
        order = lambda g: (node_order(g[0]), node_order(g[1]), tuple(not c for c in g[2:]))  # noqa: E731
        for key in sorted(groups, key=order):
            kind = outcome(key[2], key[3]) if truth is not None else None
            result.append(Flow(column, key[0], column + 1, key[1], groups[key], kind))
    return result


def most_unstable(table: dict[str, np.ndarray], count: int) -> np.ndarray:
    """Indices of the `count` instances whose prediction changed most often, then those
    wrong most often; ties go to the lower index so the choice is reproducible."""
    changes = np.asarray(table["class_changes"])
    wrong = np.asarray(table["fraction_misclassified"], dtype=np.float64)
    order = np.lexsort((np.arange(len(changes)), -wrong, -changes))
    return order[: max(count, 0)].astype(np.int64)


CSV_COLUMNS = (
    "test_index",
    "label",
    "final_prediction",
    "fraction_misclassified",
    "class_changes",
    "classes_visited",
)


def instance_rows(record: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """One row per tracked instance for the CSV table: its test index, label, final
    prediction, how often it was wrong, how often it changed class, which classes."""
    names = [str(n) for n in record["class_names"]]
    predictions, labels = record["predictions"], record["labels"]
    table = instance_table(predictions, labels)
    visited = visited_classes(predictions)
    return [
        {
            "test_index": int(record["test_indices"][i]),
            "label": names[labels[i]],
            "final_prediction": names[predictions[-1, i]],
            "fraction_misclassified": round(float(table["fraction_misclassified"][i]), 4),
            "class_changes": int(table["class_changes"][i]),
            "classes_visited": " ".join(names[c] for c in visited[i]),
        }
        for i in range(len(labels))
    ]


def csv_text(rows: list[dict[str, Any]], columns: Sequence[str] = CSV_COLUMNS) -> str:
    """Rows of dicts as CSV text (a figure stage writes it beside the figures)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


class InstanceFlow(InsidePart):
    name = "instanceflow"
    Params = InstanceFlowParams
    title = "InstanceFlow"
    reference = (
        "Pühringer et al. 2020, InstanceFlow: Visualizing the Evolution of Classifier Confusion"
    )

    def compute(self, inputs: Inputs, p: InstanceFlowParams) -> Computed:  # type: ignore[override]
        """`flow`: the classifier's per-epoch record itself, the epochs shown as Sankey
        columns, the most unstable instances and the classes shown as nodes."""
        record = inputs.epoch_predictions
        if len(record["epochs"]) < 2:
            raise Skipped(
                f"the classifier's record holds {len(record['epochs'])} epoch (a model "
                "explained as it is, classifier.train: false): InstanceFlow follows "
                "predictions from one training epoch to the next"
            )
        classes = len(record["class_names"])
        if p.classes is not None and max(p.classes, default=0) >= classes:
            raise ParamsError(
                f"params.yaml: inside.instanceflow.classes = {p.classes}: class indices must "
                f"be below {classes}"
            )
        predictions, labels = record["predictions"], record["labels"]
        table = instance_table(predictions, labels)
        arrays = {
            **record,
            "epoch_rows": select_epochs(record["epochs"], p.epochs),
            "unstable": most_unstable(table, p.unstable),
            "classes": np.array(p.classes if p.classes is not None else [], dtype=int),
        }
        metrics = {
            "instances": len(labels),
            "epochs": len(record["epochs"]),
            "mean_class_changes": float(table["class_changes"].mean()),
            "share_ever_misclassified": float((table["fraction_misclassified"] > 0).mean()),
            "share_changing_class": float((table["class_changes"] > 0).mean()),
            "share_final_correct": float(table["final_correct"].mean()),
        }
        return Computed({"flow": arrays}, metrics)

    def draw(
        self, stored: dict[str, dict[str, np.ndarray]], p: InstanceFlowParams
    ) -> dict[str, Any]:  # type: ignore[override]
        """`sankey.png`, `sankey.html` (interactive, offline), `unstable_instances.png`,
        and `instances.csv`, the per-instance table."""
        from pipeline.figures.instanceflow import plot_sankey, plot_trajectories, sankey_html

        flow = stored["flow"]
        names = [str(n) for n in flow["class_names"]]
        classes = flow["classes"].tolist() or None
        args = (
            flow["predictions"],
            flow["labels"],
            flow["epochs"],
            flow["epoch_rows"],
            names,
            classes,
        )
        return {
            "sankey.png": plot_sankey(*args),
            "sankey.html": sankey_html(*args),
            "unstable_instances.png": plot_trajectories(
                flow["probabilities"].astype(np.float32),
                flow["predictions"],
                flow["labels"],
                flow["epochs"],
                flow["unstable"],
                names,
                flow["test_indices"],
            ),
            "instances.csv": csv_text(instance_rows(flow)),
        }
