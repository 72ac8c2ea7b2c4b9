"""The instances every explainer works on: a seeded, per-class choice of correctly
classified test images, the most confidently misclassified ones, and the class pairs
the classifier confuses most. One set for all methods, so their figures line up."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.errors import PipelineError
from pipeline.io import corrupt_file_error, read_npz, write_npz

SELECTION_KEYS = (
    "indices",
    "labels",
    "predicted",
    "probabilities",
    "misclassified",
    "pairs",
    "class_names",
)


@dataclass
class Selection:
    indices: np.ndarray  # rows of the test split
    labels: np.ndarray  # true classes
    predicted: np.ndarray
    probabilities: np.ndarray  # N×classes
    misclassified: np.ndarray  # bool per instance
    pairs: np.ndarray  # P×3: true class, predicted class, count (most confused first)
    class_names: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.indices)

    def spread(self, count: int) -> np.ndarray:
        """Up to `count` rows for a figure that shows only a few instances: correctly
        classified ones spread over the classes, and up to a third misclassified ones."""
        wrong = np.flatnonzero(self.misclassified)
        right = np.flatnonzero(~self.misclassified)
        n_wrong = min(len(wrong), count // 3)
        n_right = min(len(right), count - n_wrong)
        picked = (
            right[np.linspace(0, len(right) - 1, n_right).astype(int)] if n_right else right[:0]
        )
        return np.concatenate([np.unique(picked), wrong[:n_wrong]])

    def caption(self, row: int) -> str:
        """'7' for a correct prediction, '7→1' for a wrong one (true → predicted)."""
        true = self.class_names[self.labels[row]]
        predicted = self.class_names[self.predicted[row]]
        return true if true == predicted else f"{true}→{predicted}"

    def save(self, path: str | Path) -> None:
        write_npz(
            path,
            compressed=False,
            indices=self.indices,
            labels=self.labels,
            predicted=self.predicted,
            probabilities=self.probabilities,
            misclassified=self.misclassified,
            pairs=self.pairs.reshape(-1, 3),
            class_names=np.array(self.class_names),
        )

    @classmethod
    def load(cls, path: str | Path) -> Selection:
        """The stored selection; a missing or corrupt file is a one-line PipelineError."""
        path = Path(path)
        if not path.is_file():
            raise PipelineError(f"{path} not found: run the select stage (`dvc repro select`)")
        z = read_npz(path, stage="select", required=SELECTION_KEYS)
        try:
            return cls(
                **{key: z[key] for key in SELECTION_KEYS if key != "class_names"},
                class_names=tuple(str(c) for c in z["class_names"]),
            )
        except (TypeError, ValueError) as exc:
            raise corrupt_file_error(path, exc, "select") from None


def confused_pairs(
    labels: np.ndarray, predicted: np.ndarray, classes: int, count: int
) -> np.ndarray:
    """The `count` largest off-diagonal cells of the confusion matrix, as rows
    (true, predicted, number of test images); empty cells are left out."""
    matrix = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(matrix, (labels, predicted), 1)
    np.fill_diagonal(matrix, 0)
    flat = np.argsort(-matrix, axis=None, kind="stable")[:count]
    rows = [(i // classes, i % classes, matrix.flat[i]) for i in flat if matrix.flat[i] > 0]
    return np.array(rows, dtype=np.int64).reshape(-1, 3)


def select_instances(
    probabilities: np.ndarray,
    labels: np.ndarray,
    class_names: tuple[str, ...],
    *,
    per_class: int,
    misclassified: int,
    pairs: int,
    seed: int,
) -> Selection:
    """Per class up to `per_class` correctly classified images (a seeded random choice),
    then the `misclassified` wrong predictions with the highest confidence."""
    rng = np.random.default_rng(seed)
    predicted = probabilities.argmax(1)
    correct = predicted == labels
    chosen: list[int] = []
    for c in range(len(class_names)):
        candidates = np.flatnonzero(correct & (labels == c))
        take = min(per_class, len(candidates))
        chosen.extend(sorted(rng.choice(candidates, size=take, replace=False).tolist()))
    wrong = np.flatnonzero(~correct)
    confidence = probabilities[wrong, predicted[wrong]]
    chosen.extend(wrong[np.argsort(-confidence, kind="stable")][:misclassified].tolist())
    indices = np.array(chosen, dtype=np.int64)
    return Selection(
        indices=indices,
        labels=labels[indices],
        predicted=predicted[indices],
        probabilities=probabilities[indices].astype(np.float32),
        misclassified=~correct[indices],
        pairs=confused_pairs(labels, predicted, len(class_names), pairs),
        class_names=class_names,
    )
