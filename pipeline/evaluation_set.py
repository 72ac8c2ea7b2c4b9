"""The test images the attribution methods are scored on: a seeded, stratified sample
of the test split, separate from the handful of images chosen for the figures (which
are picked for being interesting — per class, most confidently wrong — and so are not
a sample of anything).

The images are ordered round-robin over the classes, so every prefix is stratified too:
the sanity check, which recomputes the maps many times, uses the first
`evaluate.sanity_images` of them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.io import corrupt_file_error, read_npz, write_npz

KEYS = ("indices", "labels", "predicted")


def stratified_order(labels: np.ndarray, count: int, seed: int) -> np.ndarray:
    """Up to `count` row indices: a seeded random permutation within each class, taken
    one class after another in turn (class 0's first, class 1's first, ..., class 0's
    second, ...); classes that run out drop out of the rotation."""
    if count < 1:
        raise ValueError(f"count must be positive, got {count}")
    rng = np.random.default_rng(seed)
    queues = [rng.permutation(np.flatnonzero(labels == c)) for c in np.unique(labels)]
    picks: list[int] = []
    depth = 0
    while len(picks) < min(count, len(labels)):
        for queue in queues:
            if depth < len(queue) and len(picks) < count:
                picks.append(int(queue[depth]))
        depth += 1
    return np.asarray(picks, dtype=np.int64)


@dataclass
class EvaluationSet:
    indices: np.ndarray  # rows of the test split
    labels: np.ndarray  # true classes
    predicted: np.ndarray  # the classifier's predictions: the classes explained

    def __len__(self) -> int:
        return len(self.indices)

    def save(self, path: str | Path) -> None:
        write_npz(
            path,
            compressed=False,
            indices=self.indices,
            labels=self.labels,
            predicted=self.predicted,
        )

    @classmethod
    def load(cls, path: str | Path) -> EvaluationSet:
        """The stored evaluation set; a missing or corrupt file is a one-line error."""
        z = read_npz(path, stage="select", required=KEYS)
        try:
            return cls(**{key: np.asarray(z[key], dtype=np.int64) for key in KEYS})
        except (TypeError, ValueError) as exc:
            raise corrupt_file_error(path, exc, "select") from None


def evaluation_set(
    labels: np.ndarray, predicted: np.ndarray, count: int, seed: int
) -> EvaluationSet:
    """`count` test images, stratified by true class and seeded (stratified_order)."""
    rows = stratified_order(labels, count, seed)
    return EvaluationSet(rows, labels[rows].astype(np.int64), predicted[rows].astype(np.int64))
