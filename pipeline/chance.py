"""The near-chance guardrail: a classifier no better than always answering the most
common class has learnt nothing worth explaining (every attribution then explains a
constant), so the select stage refuses it before any explanation stage spends time on it.

Chance is the accuracy of the best constant classifier on the test split: the share of
its majority class. The threshold is relative, a share of the way from chance to perfect
accuracy, so it means the same for 2 balanced classes (chance 0.5) as for a test split
with 95% of one class (chance 0.95), where an absolute margin of 0.1 could never be met.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from pipeline.errors import PipelineError

if TYPE_CHECKING:
    from pipeline.data import Splits


@dataclass(frozen=True)
class ChanceCheck:
    """What the check measured on the test split."""

    accuracy: float  # the classifier's test accuracy
    chance: float  # the best constant classifier's: the majority class's share
    majority_class: str
    most_predicted: str  # the class the classifier answers most often
    most_predicted_count: int
    images: int

    def required(self, above_chance: float) -> float:
        """The lowest passing accuracy: `above_chance` of the way from chance to 1."""
        return self.chance + above_chance * (1.0 - self.chance)

    def as_dict(self) -> dict[str, float | int | str]:
        return asdict(self)


def _folded(name: str) -> str:
    return name.lower().replace("_", " ")


def labels_in_model_classes(
    model_names: Sequence[str], data_names: Sequence[str], labels: np.ndarray
) -> np.ndarray | None:
    """The data's labels as indices of the model's classes, matched by name (case and
    `_` / space aside); None when some data class is not one of the model's (then no
    accuracy can be measured)."""
    if list(model_names) == list(data_names):
        return labels
    index = {_folded(n): i for i, n in enumerate(model_names)}
    mapped = [index.get(_folded(n)) for n in data_names]
    if any(m is None for m in mapped):
        return None
    return np.asarray(mapped)[labels]


TARGETS_KEY = "targets"
"""The key, in a stage's stored arrays, of PREDICTED_TARGETS when it applies."""
PREDICTED_TARGETS = (
    "the data's classes are not the model's: each image's class is the model's "
    "prediction on it, so the classifier's accuracy on decodings is their agreement"
)


def splits_in_model_classes(
    splits: Splits,
    model_names: Sequence[str],
    predict: Callable[[np.ndarray], np.ndarray],
) -> tuple[Splits, str | None]:
    """The splits labelled in the model's classes and named by them, for stages whose
    classifier term or metric compares the model's outputs with labels: unchanged when
    the classes are the model's; matched by name; or, when the data's classes are not
    the model's (ImageNet's model on a folder of other photographs), the model's own
    predictions (`predict`: uint8 images → class indices) on every split, with
    PREDICTED_TARGETS as the reason (else None)."""
    if list(model_names) == list(splits.class_names):
        return splits, None
    names = tuple(str(n) for n in model_names)
    mapped = {
        part: labels_in_model_classes(names, splits.class_names, getattr(splits, f"y_{part}"))
        for part in ("train", "val", "test")
    }
    if all(labels is not None for labels in mapped.values()):
        labels = {f"y_{part}": mapped[part] for part in mapped}
        return replace(splits, class_names=names, **labels), None
    labels = {f"y_{part}": predict(getattr(splits, f"x_{part}")) for part in mapped}
    return replace(splits, class_names=names, **labels), PREDICTED_TARGETS


def skipped_check(
    reason: str, predicted: np.ndarray, class_names: Sequence[str]
) -> dict[str, str | int]:
    """What classifier_check.json holds when no accuracy exists: why, and what the
    model answers most (a constant answer is still visible)."""
    answers = np.bincount(np.asarray(predicted), minlength=len(class_names))
    return {
        "skipped": reason,
        "most_predicted": class_names[int(answers.argmax())],
        "most_predicted_count": int(answers.max()),
        "images": len(predicted),
    }


def measure_chance(
    labels: np.ndarray, predicted: np.ndarray, class_names: tuple[str, ...]
) -> ChanceCheck:
    """The classifier's test accuracy next to the best constant classifier's."""
    labels, predicted = np.asarray(labels), np.asarray(predicted)
    if labels.size == 0 or labels.shape != predicted.shape:
        raise ValueError(f"labels {labels.shape} and predictions {predicted.shape} must match")
    counts = np.bincount(labels, minlength=len(class_names))
    answers = np.bincount(predicted, minlength=len(class_names))
    return ChanceCheck(
        accuracy=float((labels == predicted).mean()),
        chance=float(counts.max() / labels.size),
        majority_class=class_names[int(counts.argmax())],
        most_predicted=class_names[int(answers.argmax())],
        most_predicted_count=int(answers.max()),
        images=int(labels.size),
    )


def refuse_near_chance(check: ChanceCheck, above_chance: float | None, key: str) -> None:
    """Raise a one-line PipelineError when the accuracy falls short of the threshold
    `above_chance` (params `key`); None or 0 turns the check off."""
    if not above_chance:
        return
    required = check.required(above_chance)
    if check.accuracy >= required:
        return
    raise PipelineError(
        f"test accuracy {check.accuracy:.3f} is at or near chance: always answering the "
        f"majority class '{check.majority_class}' scores {check.chance:.3f}, and the "
        f"classifier answers '{check.most_predicted}' for {check.most_predicted_count} of "
        f"{check.images} test images. {key} = {above_chance:g} asks for at least "
        f"{required:.3f} (chance + {above_chance:g} x (1 - chance)), so the pipeline stops "
        "before the explanation stages: explanations of this classifier would mean nothing. "
        "Train a better classifier (README: Datasets, your own images) or override with "
        f"`dvc exp run -S {key}=0` (or set {key} in params.yaml)"
    )
