"""Originals above their reconstructions: what a decoder keeps of each image. Drawn
from the arrays a generative stage stores (`generative_training.sample_reconstructions`),
never from the model."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from pipeline.chance import TARGETS_KEY
from pipeline.figures.common import to_display


def plot_reconstructions(
    originals: np.ndarray,
    rows: Sequence[tuple[str, np.ndarray]],
    captions: Sequence[str],
    title: str,
) -> Figure:
    """First row the originals, then one row per named reconstruction (same images)."""
    n = len(originals)
    all_rows = [("original", originals), *rows]
    fig, axes = plt.subplots(
        len(all_rows),
        n,
        figsize=(n * 1.0 + 1.5, len(all_rows) * 1.2 + 0.6),
        squeeze=False,
        layout="constrained",
    )
    for r, (name, images) in enumerate(all_rows):
        for c in range(n):
            ax = axes[r, c]
            array, cmap = to_display(images[c])
            ax.imshow(array, cmap=cmap, vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(captions[c], fontsize=8)
            if c == 0:
                ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=9)
    fig.suptitle(title)
    return fig


def reconstruction_title(config: Mapping[str, Any]) -> str:
    """What the model is, in words, from its stored config (kind, layer, alpha, latent)."""
    kind = config.get("kind")
    if kind in ("vae", "refvae"):
        prefix = "Reference VAE" if kind == "refvae" else "VAE"
        return f"{prefix} with a {config['latent_dim']}-D latent"
    if kind == "refae":
        return f"Reference autoencoder, layer {config['layer']}"
    title = f"ClaDec of layer {config['layer']}, alpha {config['alpha']:g}"
    if kind == "vcladec":
        title = f"Variational {title}, {config['latent_dim']}-D latent"
    return title


def plot_stored_reconstructions(stored: Mapping[str, np.ndarray]) -> Figure:
    """One model's stored sample: originals above decodings, each captioned with the true
    class and the frozen classifier's prediction on the decoding, both named by the
    classifier's classes (the stage stores them so). With TARGETS_KEY stored, the "true"
    class is the classifier's prediction on the original (the data's classes are not its
    own), and the title says so."""
    names = [str(n) for n in stored["class_names"]]
    captions = [
        f"{names[int(t)]}→{names[int(p)]}"
        for t, p in zip(stored["labels"], stored["predicted"], strict=True)
    ]
    config = json.loads(str(stored["config"]))
    first = "classifier on original" if TARGETS_KEY in stored else "true"
    return plot_reconstructions(
        stored["originals"],
        [(str(stored["name"]), stored["decoded"])],
        captions,
        f"{reconstruction_title(config)} (caption: {first} → classifier on decoded)",
    )
