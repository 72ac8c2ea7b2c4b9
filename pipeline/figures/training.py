"""Figures of a training run: learning curves and the confusion matrix."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator


def plot_training_curves(history: Sequence[dict[str, float]], title: str) -> Figure:
    """Loss and accuracy per training epoch, train against validation (rows as in
    plots/classifier/history.csv: `epoch`, `train_loss`, `val_acc`, ...)."""
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.8))
    if not history:  # a model explained as it is (classifier.train: false)
        for ax in (ax_loss, ax_acc):
            ax.set_axis_off()
        fig.suptitle(f"{title}: no training epochs (the weights explained as they are)")
        return fig
    epochs = [row["epoch"] for row in history]
    for ax, metric, label in ((ax_loss, "loss", "cross-entropy loss"), (ax_acc, "acc", "accuracy")):
        for split, style in (("train", "-o"), ("val", "-s")):
            values = [row.get(f"{split}_{metric}", np.nan) for row in history]
            ax.plot(epochs, values, style, markersize=3, label=split)
        ax.set_xlabel("training epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    ax_loss.set_title("Loss per training epoch")
    ax_acc.set_title("Accuracy per training epoch")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_confusion_matrix(
    matrix: Sequence[Sequence[int]], class_names: Sequence[str], title: str
) -> Figure:
    """Counts, with each cell's share of its true class as colour."""
    counts = np.asarray(matrix)
    rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    size = max(4.5, 0.55 * len(class_names) + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    ticks = np.arange(len(class_names))
    ax.set_xticks(ticks, class_names, rotation=45, ha="right")
    ax.set_yticks(ticks, class_names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    if len(class_names) <= 20:
        for i in range(counts.shape[0]):
            for j in range(counts.shape[1]):
                ax.text(
                    j,
                    i,
                    str(counts[i, j]),
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if rates[i, j] > 0.5 else "black",
                )
    accuracy = np.trace(counts) / max(counts.sum(), 1)
    ax.set_title(f"{title}\naccuracy {accuracy:.3f} on {counts.sum()} test images")
    fig.tight_layout()
    return fig


def plot_predicted_classes(most_predicted: Mapping[str, int], why: str, title: str) -> Figure:
    """In place of the confusion matrix when the dataset's classes are not the model's
    (an ImageNet model on a folder of other classes, or no labels): how many test images
    the model put in each of its most predicted classes."""
    names = list(most_predicted)[::-1]  # the most predicted on top
    counts = [most_predicted[n] for n in names]
    fig, ax = plt.subplots(figsize=(7, max(2.5, 0.35 * len(names) + 1.5)))
    ax.barh(names, counts, color="tab:blue")
    ax.set_xlabel("test images predicted as the class")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(axis="x", alpha=0.3)
    ax.set_title(f"{title}\nno confusion matrix: {why}; the model's most predicted classes")
    fig.tight_layout()
    return fig
