"""ICE, Invertible Concept-based Explanations (Zhang et al. 2021, arXiv 2006.15417).

A ReLU layer's activations, N×C×H×W, are read as N·H·W feature vectors of C non-negative
channels and factorised by non-negative matrix factorisation into n concepts:
activations ≈ scores @ components. Each component is a direction in channel space; its
scores at every spatial position form a concept map. Because the factorisation is
(approximately) invertible, putting the reconstruction back into the network tells how
much of the model's behaviour the n concepts keep (`fidelity`), and moving the
activations along a concept tells how each class logit depends on it (`class_weights`).

Fidelity, two ways, side by side. The reference code (InvertibleCE, ICE/Explainer.py,
`Explainer._train_reducer`) fits one NMF reducer on the activations of all the target
classes' images together, rebuilds each class's activations from it (`transform`, then
`inverse_transform` = scores @ components) and reports per class k, over the images of
class k, mean |Δ logit k| / (|mean logit k| + 1e-4), Δ the change of that class's own
logit: `fidelity_reference` here (`reference_fidelity`). We follow it in: one reducer for
all classes, scores of the fitted images re-solved against the fixed components (NMF
transform), the per-class error and its 1e-4. We differ in: the reference fits and
measures on the training images of a few chosen classes (its MNIST demo: 3 and 8, 6
concepts, 0.086), we on `images` random test images of every class, and summarise the
classes by their mean; its NMF runs sklearn's defaults (200 iterations), ours nndsvda
with 400. Our own `relative_logit_error` is ‖logits_rec − logits‖ / ‖logits‖ over all
logits of all images (Frobenius), which also counts the other classes' logits and
weighs images with large logits more; `agreement` and `accuracy` say how many
predictions the concepts keep.

torch and scikit-learn are imported inside the functions, so params validation and the
figure stage read this module without loading them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Protocol

import numpy as np
from pydantic import Field

from pipeline.errors import ParamsError
from pipeline.explain.base import Computed, InsidePart, MethodParams, Score

if TYPE_CHECKING:
    from torch import Tensor, nn

    from pipeline.data import Splits
    from pipeline.selection import Selection

    ArrayLike = np.ndarray | Tensor

    class Inputs(Protocol):
        seed: int
        splits: Splits
        net: nn.Module
        selection: Selection
        class_names: list[str]
        model_labels: np.ndarray | None


log = logging.getLogger(__name__)
SHOWN = 8  # selected images in the concept heatmap figure


class IceParams(MethodParams):
    layer: str = Field(
        "conv", min_length=1, description="a ReLU conv layer (non-negative N×C×H×W activations)"
    )
    concepts: int = Field(5, gt=0, description="concepts in the figures")
    fidelity_concepts: list[Annotated[int, Field(gt=0)]] = Field(
        [2, 3, 5, 8, 12], min_length=1, description="concept counts whose fidelity is measured"
    )
    images: int = Field(500, ge=10, description="test images the factorisation is fitted on")
    presence_threshold: float = Field(
        0.5, gt=0, le=1, description="present: image max >= this share of the concept's max"
    )
    examples: int = Field(5, gt=0, description="top and bottom images shown per concept")


@dataclass
class Concepts:
    """A fitted concept basis: enough to score and reconstruct new activations."""

    components: np.ndarray  # n×C, non-negative concept directions in channel space
    n_concepts: int
    max_iter: int = 400  # solver settings reused when scoring new activations
    tol: float = 1e-4
    relative_error: float = float("nan")  # ‖X − S·W‖ / ‖X‖ on the fitted activations

    @property
    def channels(self) -> int:
        return int(self.components.shape[1])

    @property
    def directions(self) -> np.ndarray:
        """Unit-norm components: moving by 1 along one changes the activation by norm 1."""
        norms = np.linalg.norm(self.components, axis=1, keepdims=True)
        return self.components / np.maximum(norms, np.finfo(self.components.dtype).tiny)


def _plain(values: ArrayLike) -> np.ndarray:
    """A tensor (on any device) or an array as a numpy array."""
    return values.detach().cpu().numpy() if hasattr(values, "detach") else np.asarray(values)


def _as_numpy(activations: ArrayLike) -> np.ndarray:
    array = _plain(activations)
    if array.ndim != 4:
        raise ValueError(f"activations must be N×C×H×W, got shape {array.shape}")
    return array


def _rows(activations: np.ndarray) -> np.ndarray:
    """N×C×H×W -> (N·H·W)×C: every spatial position is one sample of the C channels."""
    n, c, h, w = activations.shape
    return activations.transpose(0, 2, 3, 1).reshape(n * h * w, c)


def _unrows(rows: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    n, _, h, w = shape
    return rows.reshape(n, h, w, -1).transpose(0, 3, 1, 2)


def _check_non_negative(array: np.ndarray) -> None:
    if not np.isfinite(array).all():
        raise ValueError("activations contain NaN or infinite values")
    if array.size and array.min() < 0:
        raise ValueError(
            f"activations must be non-negative for NMF (min {array.min():.3g}); "
            "use the output of a ReLU layer"
        )


def fit_concepts(
    activations: ArrayLike, n_concepts: int, seed: int, max_iter: int = 400
) -> Concepts:
    """Factorise N×C×H×W non-negative activations into `n_concepts` channel directions."""
    from sklearn.decomposition import NMF

    array = _as_numpy(activations)
    channels = array.shape[1]
    if n_concepts < 1:
        raise ValueError(f"n_concepts must be at least 1, got {n_concepts}")
    if n_concepts > channels:
        raise ValueError(f"n_concepts ({n_concepts}) cannot exceed the layer's {channels} channels")
    _check_non_negative(array)
    x = _rows(array).astype(np.float64 if array.dtype == np.float64 else np.float32)
    nmf = NMF(n_components=n_concepts, init="nndsvda", random_state=seed, max_iter=max_iter)
    scores = nmf.fit_transform(x)
    norm = float(np.linalg.norm(x))
    error = float(np.linalg.norm(x - scores @ nmf.components_)) / norm if norm else 0.0
    return Concepts(
        components=nmf.components_,
        n_concepts=n_concepts,
        max_iter=max_iter,
        tol=nmf.tol,
        relative_error=error,
    )


def concept_scores(activations: ArrayLike, concepts: Concepts) -> np.ndarray:
    """N×n×H×W concept maps: the non-negative scores that best rebuild each position's
    channels from the fixed components (non-negative least squares, as NMF.transform)."""
    from sklearn.decomposition import non_negative_factorization

    array = _as_numpy(activations)
    if array.shape[1] != concepts.channels:
        raise ValueError(
            f"activations have {array.shape[1]} channels, the concepts {concepts.channels}"
        )
    _check_non_negative(array)
    components = concepts.components
    scores, _, _ = non_negative_factorization(
        _rows(array).astype(components.dtype),
        H=components,
        n_components=concepts.n_concepts,
        update_H=False,
        max_iter=concepts.max_iter,
        tol=concepts.tol,
    )
    return _unrows(scores, array.shape)


def reconstruct(activations: ArrayLike, concepts: Concepts) -> np.ndarray:
    """N×C×H×W activations rebuilt from their concept scores (scores @ components)."""
    array = _as_numpy(activations)
    scores = _rows(concept_scores(array, concepts))
    return _unrows(scores @ concepts.components, array.shape).astype(np.float32)


def replace_layer_output(
    model: nn.Module,
    layer: str,
    images: Tensor,
    activations: ArrayLike,
    batch_size: int = 512,
) -> Tensor:
    """Logits (float, on the CPU) of the model in eval mode when `layer` outputs
    `activations` instead of its own, for N×C×H×W float images in [0, 1]."""
    import torch

    from pipeline.models.archs import resolve_layer

    replacement = torch.as_tensor(activations)
    if len(replacement) != len(images):
        raise ValueError(f"{len(images)} images but {len(replacement)} activations")
    target = resolve_layer(model, layer)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    current: list[Tensor] = []

    def hook(module: nn.Module, inputs: object, output: Tensor) -> Tensor:
        new = current[0]
        if new.shape != output.shape:
            raise ValueError(
                f"layer {layer!r} outputs {tuple(output.shape)}, got {tuple(new.shape)}"
            )
        return new.to(device=output.device, dtype=output.dtype)

    handle = target.register_forward_hook(hook)
    out = []
    try:
        with torch.inference_mode():
            for start in range(0, len(images), batch_size):
                current[:] = [replacement[start : start + batch_size]]
                batch = images[start : start + batch_size].to(device)
                out.append(model(batch).float().cpu())
    finally:
        handle.remove()
        model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0)


def _logits(model: nn.Module, images: Tensor, batch_size: int = 512) -> Tensor:
    import torch

    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    try:
        with torch.inference_mode():
            out = [
                model(images[i : i + batch_size].to(device)).float().cpu()
                for i in range(0, len(images), batch_size)
            ]
    finally:
        model.train(was_training)
    return torch.cat(out)


FIDELITY_KEYS = (  # the scalars of one fidelity row
    "n_concepts",
    "accuracy",
    "accuracy_original",
    "relative_logit_error",
    "agreement",
    "relative_activation_error",
    "fidelity_reference",
)
PER_CLASS = "fidelity_reference_per_class"  # K values per row
PREDICTED_CLASSES = "classes_are_predictions"  # stored only when the labels are unknown
PREDICTED_SHORT = "classes = the model's predictions: accuracy = agreement, original accuracy 1"
PREDICTED_NOTE = (
    "the test labels are not the model's classes, so each image counts for the class the "
    "model predicts: accuracy then equals agreement, and the original accuracy is 1"
)
REFERENCE_EPSILON = 1e-4  # the reference's Explainer(epsilon=1e-4)


def reference_fidelity(
    logits: ArrayLike, logits_rec: ArrayLike, labels: ArrayLike, epsilon: float = REFERENCE_EPSILON
) -> np.ndarray:
    """K: ICE's fidelity error as the reference computes it: per class k, over the images
    labelled k, mean |logit_rec k − logit k| / (|mean logit k| + epsilon). Only the class's
    own logit counts, so the number reads "how far the concepts move the class's score".
    0 when the reconstruction keeps every own logit; NaN for a class without images."""
    logits = np.asarray(_plain(logits), dtype=np.float64)
    rebuilt = np.asarray(_plain(logits_rec), dtype=np.float64)
    labels = np.asarray(_plain(labels))
    if logits.ndim != 2 or rebuilt.shape != logits.shape or labels.shape != logits.shape[:1]:
        raise ValueError(
            f"need N×K logits, reconstructed logits and N labels; got {logits.shape}, "
            f"{rebuilt.shape}, {labels.shape}"
        )
    out = np.full(logits.shape[1], np.nan)
    for k in range(logits.shape[1]):
        own = labels == k
        if own.any():
            change = np.abs(rebuilt[own, k] - logits[own, k]).mean()
            out[k] = change / (abs(logits[own, k].mean()) + epsilon)
    return out


def fidelity(
    model: nn.Module,
    layer: str,
    images: Tensor,
    activations: ArrayLike,
    concepts: Concepts,
    labels: ArrayLike,
    logits: Tensor | None = None,
) -> dict[str, Any]:
    """How much of the model the concepts keep: the model run on reconstructed activations
    against the original (accuracy of both, prediction agreement, our relative logit error
    and the reference's per-class fidelity with its mean over the classes). `logits`: the
    model's own on `images` when the caller has them, to run it once for several counts."""
    import torch

    array = _as_numpy(activations)
    rebuilt = reconstruct(array, concepts)
    if logits is None:
        logits = _logits(model, images)
    logits_rec = replace_layer_output(model, layer, images, torch.from_numpy(rebuilt))
    target = torch.as_tensor(np.asarray(labels)).long()
    predicted, predicted_rec = logits.argmax(1), logits_rec.argmax(1)
    norm = float(torch.linalg.norm(logits))
    act_norm = float(np.linalg.norm(array))
    per_class = reference_fidelity(logits, logits_rec, target)
    return {
        "n_concepts": concepts.n_concepts,
        "accuracy": float((predicted_rec == target).float().mean()),
        "accuracy_original": float((predicted == target).float().mean()),
        "relative_logit_error": float(torch.linalg.norm(logits_rec - logits)) / norm
        if norm
        else 0.0,
        "agreement": float((predicted_rec == predicted).float().mean()),
        "relative_activation_error": float(np.linalg.norm(rebuilt - array)) / act_norm
        if act_norm
        else 0.0,
        "fidelity_reference": float(np.nanmean(per_class)),
        PER_CLASS: per_class,
    }


def metrics_row(row: dict[str, Any], class_names: list[str]) -> dict[str, Any]:
    """A fidelity row for metrics JSON: the scalars, and the reference fidelity per class
    by class name (null for a class without images: JSON has no NaN)."""
    out: dict[str, Any] = {key: row[key] for key in FIDELITY_KEYS}
    out[PER_CLASS] = {
        name: None if np.isnan(value) else float(value)
        for name, value in zip(class_names, row[PER_CLASS], strict=True)
    }
    return out


def class_presence(
    scores: np.ndarray, labels: ArrayLike, num_classes: int, threshold: float = 0.5
) -> np.ndarray:
    """K×n: per class, the share of its images in which each concept is present, i.e. the
    image's strongest score of the concept reaches `threshold` × the concept's strongest
    score over all images. NaN for a class without images; 0 for a concept never active."""
    if not 0 <= threshold <= 1:
        raise ValueError(f"threshold must lie in [0, 1], got {threshold}")
    scores = np.asarray(scores)
    labels = np.asarray(labels)
    if scores.ndim != 4 or len(scores) != len(labels):
        raise ValueError(f"scores must be N×n×H×W for {len(labels)} labels, got {scores.shape}")
    peak = scores.max(axis=(2, 3))  # N×n
    overall = peak.max(axis=0) if len(peak) else np.zeros(scores.shape[1])
    present = (peak >= threshold * overall) & (overall > 0)
    out = np.full((num_classes, scores.shape[1]), np.nan)
    for k in range(num_classes):
        members = labels == k
        if members.any():
            out[k] = present[members].mean(axis=0)
    return out


def class_weights(
    model: nn.Module,
    layer: str,
    images: Tensor,
    activations: ArrayLike,
    concepts: Concepts,
    epsilon: float = 0.01,
) -> np.ndarray:
    """K×n: how each class logit changes per unit move of the activations along each
    concept (unit-norm direction added at every spatial position), averaged over images.
    A finite difference, so it holds for the ReLU network around these activations."""
    import torch

    if epsilon <= 0:
        raise ValueError(f"epsilon must be positive, got {epsilon}")
    base = torch.as_tensor(_as_numpy(activations)).float()
    if base.shape[1] != concepts.channels:
        raise ValueError(
            f"activations have {base.shape[1]} channels, the concepts {concepts.channels}"
        )
    logits = replace_layer_output(model, layer, images, base)
    columns = []
    for direction in torch.from_numpy(concepts.directions).float():
        moved = base + epsilon * direction.view(1, -1, 1, 1)
        shifted = replace_layer_output(model, layer, images, moved)
        columns.append(((shifted - logits).mean(0) / epsilon).numpy())
    return np.stack(columns, axis=1)


def top_images(scores: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Per concept (n×count each) the images with the highest and with the lowest mean
    concept score, strongest or weakest first; ties keep the lower index first."""
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    mean = np.asarray(scores).mean(axis=(2, 3)).T  # n×N
    count = min(count, mean.shape[1])
    top = np.argsort(-mean, axis=1, kind="stable")[:, :count]
    bottom = np.argsort(mean, axis=1, kind="stable")[:, :count]
    return top, bottom


def upsample(scores: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Concept maps N×n×h×w bilinearly resized to the image size, for overlays."""
    import torch
    import torch.nn.functional as F

    maps = torch.as_tensor(np.asarray(scores, dtype=np.float32))
    return F.interpolate(maps, size=size, mode="bilinear", align_corners=False).numpy()


def check_layer(activations: np.ndarray, p: IceParams) -> None:
    """ICE's preconditions on the layer, as one params error each: spatial maps,
    non-negative activations, at least as many channels as concepts shown."""
    if activations.ndim != 4:
        raise ParamsError(
            f"params.yaml: inside.ice.layer = {p.layer!r}: ICE needs a convolutional layer "
            f"(N×C×H×W activations), this one gives {activations.shape[1:]}"
        )
    if activations.min() < 0:
        raise ParamsError(
            f"params.yaml: inside.ice.layer = {p.layer!r}: its activations are negative; "
            "ICE factorises non-negative (post-ReLU) activations"
        )
    if p.concepts > activations.shape[1]:
        raise ParamsError(
            f"params.yaml: inside.ice.concepts = {p.concepts}: layer {p.layer!r} has only "
            f"{activations.shape[1]} channels"
        )


class Ice(InsidePart):
    name = "ice"
    Params = IceParams
    title = "ICE concepts"
    reference = "Zhang et al. 2021, Invertible Concept-based Explanations (arXiv 2006.15417)"
    seeded = True  # the fitted images and the NMF initialisation
    needs_spatial_layer = True
    needs_nonnegative_layer = True  # NMF factorises non-negative activations
    scores = (
        Score("relative_activation_error", "NMF reconstruction error of the activations", "lower"),
        Score(
            "relative_logit_error", "‖Δ logits‖ / ‖logits‖ with the concepts shown (ours)", "lower"
        ),
        Score(
            "fidelity_reference",
            "ICE reference fidelity error, mean over classes, with the concepts shown",
            "lower",
        ),
        Score("fidelity_accuracy", "accuracy with the concepts shown", "higher"),
        Score("fidelity_agreement", "predictions kept with the concepts shown", "higher"),
    )

    def compute(self, inputs: Inputs, p: IceParams) -> Computed:  # type: ignore[override]
        """`concepts`: the concept basis, heatmaps over a few selected images, per-class
        presence and weights, top and bottom example images, and how many predictions the
        concepts shown keep; `fidelity`: one row per measured concept count (accuracy,
        agreement, our logit error and the reference's per-class fidelity)."""
        import warnings

        import torch

        from pipeline.inference import as_float_images, layer_codes

        splits, selection, net = inputs.splits, inputs.selection, inputs.net
        rng = np.random.default_rng(inputs.seed)
        count = min(p.images, len(splits.x_test))
        rows = np.sort(rng.choice(len(splits.x_test), count, replace=False))
        images = splits.x_test[rows]
        with torch.inference_mode():
            activations = layer_codes(net, p.layer, images).numpy()
            check_layer(activations, p)
            channels = activations.shape[1]
            floats = as_float_images(images)
            logits = _logits(net, floats)  # once, for every concept count
            # the classes are the labels; without labels in the model's classes (a model
            # explained as it is on a folder of others), the model's own predictions
            known = inputs.model_labels
            labels = known[rows] if known is not None else logits.argmax(1).numpy()
            fitted: dict[int, Concepts] = {}
            sweep: list[dict[str, Any]] = []
            shown_fidelity: dict[str, Any] = {}
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*Maximum number of iterations.*")
                for n in sorted(set(p.fidelity_concepts) | {p.concepts}):
                    if n > channels:
                        log.warning(
                            "skipping %d concepts: layer %s has %d channels", n, p.layer, channels
                        )
                        continue
                    # the concept count shown is usually one of those measured: fitted once
                    fitted[n] = fit_concepts(activations, n, inputs.seed)
                    row = fidelity(net, p.layer, floats, activations, fitted[n], labels, logits)
                    if n in p.fidelity_concepts:
                        sweep.append(row)
                    if n == p.concepts:
                        shown_fidelity = row
            concepts = fitted[p.concepts]
            scores = concept_scores(activations, concepts)
            presence = class_presence(scores, labels, len(inputs.class_names), p.presence_threshold)
            weights = class_weights(net, p.layer, floats, activations, concepts)
            top, bottom = top_images(scores, p.examples)
            examples = np.unique(np.concatenate([top, bottom], None))
            size = splits.image_shape[1:]
            shown = selection.spread(SHOWN)
            shown_images = splits.x_test[selection.indices[shown]]
            shown_scores = concept_scores(layer_codes(net, p.layer, shown_images).numpy(), concepts)
        arrays = {
            "concepts": {
                "layer": np.array(p.layer),
                "components": concepts.components,
                "shown_images": shown_images,
                "shown_captions": np.array([selection.caption(r) for r in shown]),
                "shown_maps": upsample(shown_scores, size),
                "presence": presence,
                "weights": weights,
                "images": images,
                "top": top,
                "bottom": bottom,
                "example_maps": upsample(scores[examples], size),
                "example_rows": examples,
                "class_names": np.array(inputs.class_names),
                # what the concepts shown keep of the model, for the figures' titles
                "kept_accuracy": np.array(shown_fidelity["accuracy"]),
                "kept_agreement": np.array(shown_fidelity["agreement"]),
                "accuracy_original": np.array(shown_fidelity["accuracy_original"]),
                **({} if known is not None else {PREDICTED_CLASSES: np.array(True)}),
            },
            "fidelity": {
                key: np.array([r[key] for r in sweep]) for key in (*FIDELITY_KEYS, PER_CLASS)
            },
        }
        metrics = {
            "layer_channels": channels,
            "concepts": p.concepts,
            "relative_activation_error": float(concepts.relative_error),
            "relative_logit_error": shown_fidelity["relative_logit_error"],
            "fidelity_reference": shown_fidelity["fidelity_reference"],
            "fidelity_accuracy": shown_fidelity["accuracy"],
            "fidelity_agreement": shown_fidelity["agreement"],
            "accuracy_original": shown_fidelity["accuracy_original"],
            "fidelity": {str(r["n_concepts"]): metrics_row(r, inputs.class_names) for r in sweep},
        }
        if known is None:
            metrics["classes"] = PREDICTED_NOTE
            log.info("ICE classes: %s", PREDICTED_NOTE)
        for r in sweep:
            log.info(
                "%2d concepts: accuracy %.3f (original %.3f), agreement %.3f, "
                "relative logit error (ours) %.3f, reference fidelity (class mean) %.3f",
                r["n_concepts"],
                r["accuracy"],
                r["accuracy_original"],
                r["agreement"],
                r["relative_logit_error"],
                r["fidelity_reference"],
            )
        return Computed(arrays, metrics)

    def draw(self, stored: dict[str, dict[str, np.ndarray]], p: IceParams) -> dict[str, Any]:  # type: ignore[override]
        """`concept_heatmaps.png`, `classes.png`, `concept_examples.png`, `fidelity.png`."""
        from pipeline.figures.ice import (
            classes_note,
            drawn_classes,
            kept_note,
            plot_class_concepts,
            plot_concept_examples,
            plot_concept_heatmaps,
            plot_fidelity,
        )

        z = stored["concepts"]
        chosen = drawn_classes(z["presence"], z["weights"])
        names = [str(z["class_names"][k]) for k in chosen]
        predicted = PREDICTED_CLASSES in z
        # example maps are stored for the example rows only: scatter them back by image row
        maps = np.zeros((len(z["images"]), *z["example_maps"].shape[1:]), dtype=np.float32)
        maps[z["example_rows"]] = z["example_maps"]
        table = stored["fidelity"]
        rows = [
            {key: table[key][i].item() for key in FIDELITY_KEYS}
            for i in range(len(table["n_concepts"]))
        ]
        kept = kept_note(
            len(z["components"]),
            float(z["kept_accuracy"]),
            float(z["kept_agreement"]),
            float(z["accuracy_original"]),
            predicted,
        )
        some = classes_note(z["presence"], len(chosen))
        with_classes = kept if some is None else f"{kept}\n{some}"
        per_class = table[PER_CLASS][:, chosen] if len(table[PER_CLASS]) else table[PER_CLASS]
        return {
            "concept_heatmaps.png": plot_concept_heatmaps(
                z["shown_images"], z["shown_maps"], list(z["shown_captions"]), kept
            ),
            "classes.png": plot_class_concepts(
                z["presence"][chosen], z["weights"][chosen], names, with_classes
            ),
            "concept_examples.png": plot_concept_examples(
                z["images"], z["top"], z["bottom"], maps, kept
            ),
            "fidelity.png": plot_fidelity(
                rows,
                per_class,
                names,
                len(z["components"]),
                str(z["layer"]),
                "\n".join(n for n in (PREDICTED_SHORT if predicted else None, some) if n) or None,
            ),
        }
