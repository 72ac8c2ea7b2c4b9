"""Our explanation and evaluation code against independent libraries, on the trained
classifier and the selected test images of a workspace where `dvc repro` has run:

1. Grad-CAM: ours (captum's LayerGradCam, `pipeline/explain/methods/gradcam.py`) against
   the `grad-cam` package's `GradCAM`, same layer, same target classes. The package
   scales each map to [0, 1] before resizing it, so both are min-max scaled before they
   are compared: Spearman ρ per map and the largest absolute difference.
2. Deletion: our deletion curve (`pipeline.evaluate.faithfulness.deletion_insertion`)
   against Quantus' `PixelFlipping` with the same settings: pixels / steps features per
   step, perturbation baseline = our `evaluate.deletion_value`, softmax probability of
   the predicted class, maps as they are (no abs, no normalisation). Quantus' curve has
   no point for the untouched image, so it gets the model's probability there and
   Quantus' own trapezoid AUC with a step of 1 / steps (ours: the trapezoid over the
   fractions 0..1). Pixels of equal attribution are ordered differently (ours: seeded
   random, Quantus: numpy's unstable argsort), which can change a curve only where a
   tie covers pixels of different values; the verdict uses the other maps and reports
   how many had ties.
3. Randomization: our cascading randomization
   (`pipeline.evaluate.sanity.cascading_randomization`) against Quantus' `MPRT`
   (top-down cascade, Spearman ρ of |maps| after every layer is random). Quantus
   re-initialises a layer with its `reset_parameters()` (PyTorch's default init, torch
   seeded with seed + 1 before each layer); ours draws N(0, 1/fan_in) weights and zero
   biases. Run once with Quantus' randomisation, the two implementations must give the
   same ρ per method; run with our own, the ranking of the methods by ρ after full
   randomization must agree (Spearman between the rankings).

    python benchmarks/cross_checks.py [--workspace .] [--images 50] [--sanity-images 12]
        [--flip-methods saliency integrated_gradients] [--methods ...]

Prints a table and a one-line verdict per check (with its tolerance), and exits 1 when a
check disagrees beyond tolerance. Needs the benchmark requirements
(`pip install --no-deps -r benchmarks/requirements.txt`).
"""

from __future__ import annotations

import argparse
import copy
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import pearsonr, spearmanr
from torch import Tensor, nn

from pipeline.data import Splits
from pipeline.evaluate.faithfulness import deletion_insertion
from pipeline.evaluate.sanity import cascade_layers, cascading_randomization, spearman_rows
from pipeline.explain.attribute_selection import background_sample
from pipeline.explain.base import pixel_map
from pipeline.explain.registry import method_class
from pipeline.inference import as_float_images
from pipeline.models.archs import resolve_layer
from pipeline.models.export import load_classifier
from pipeline.params import Params, load_params
from pipeline.selection import Selection
from pipeline.tables import markdown_table

# tolerances of the verdicts
GRADCAM_MAX_DIFFERENCE = 1e-4  # min-max scaled maps; float32 rounding is about 1e-7
GRADCAM_MIN_SPEARMAN = 0.999
DELETION_MAX_AUC_DIFFERENCE = 1e-4  # "equal to 4 decimals"
MPRT_MAX_DIFFERENCE = 1e-3  # mean ρ per method, same randomisation on both sides
MPRT_MIN_RANKING_SPEARMAN = 0.8  # rankings of the methods, each with its own randomisation


@dataclass
class Verdict:
    check: str
    agrees: bool
    line: str

    def __str__(self) -> str:
        return f"{self.check}: {'agree' if self.agrees else 'DISAGREE'}: {self.line}"


def import_quantus() -> ModuleType:
    """Quantus 0.6 still calls np.trapz, which NumPy 2.4 removed; the shim goes in
    before Quantus is imported (NumPy itself stays as pinned)."""
    if not hasattr(np, "trapz"):
        np.trapz = np.trapezoid  # type: ignore[attr-defined]
    import quantus

    return quantus


def minmax_scaled(maps: np.ndarray) -> np.ndarray:
    """Each map (first axis) scaled to [0, 1]; a constant map becomes zeros. The
    grad-cam package returns its maps so scaled."""
    flat = maps.reshape(len(maps), -1).astype(np.float64)
    low = flat.min(axis=1, keepdims=True)
    span = flat.max(axis=1, keepdims=True) - low
    scaled = np.divide(flat - low, span, out=np.zeros_like(flat), where=span > 0)
    return scaled.reshape(maps.shape)


def package_gradcam(model: nn.Module, layer: str, images: Tensor, targets: Tensor) -> np.ndarray:
    """The grad-cam package's GradCAM maps (N×H×W) of `layer` for `targets`, on a frozen
    copy of the model. The package's context manager swallows IndexErrors, so its hooks
    are released in a `finally` instead."""
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    net = copy.deepcopy(model).eval().requires_grad_(False)
    cam = GradCAM(net, [resolve_layer(net, layer)])
    try:
        with torch.enable_grad():
            return cam(
                input_tensor=images.clone().requires_grad_(True),
                targets=[ClassifierOutputTarget(int(t)) for t in targets],
            )
    finally:
        cam.activations_and_grads.release()


@dataclass
class Workspace:
    """What the checks read from a repository where `dvc repro` has run."""

    params: Params
    splits: Splits
    net: nn.Module
    selection: Selection

    @classmethod
    def load(cls, root: Path) -> Workspace:
        net, _ = load_classifier(root / "models/classifier/model.pt")
        return cls(
            load_params(root / "params.yaml"),
            Splits.load(root / "data/dataset.npz"),
            net,
            Selection.load(root / "explanations/selection.npz"),
        )

    def selected(self, rows: np.ndarray) -> tuple[Tensor, Tensor]:
        """Rows of the selection: the test images (floats) and their predicted classes,
        the class every method explains."""
        images = as_float_images(self.splits.x_test[self.selection.indices[rows]])
        return images, torch.as_tensor(self.selection.predicted[rows])

    def maps(self, name: str, model: nn.Module, images: Tensor, targets: Tensor) -> np.ndarray:
        """Our method `name` as the explain stage runs it (its params, the pipeline
        seed, SHAP's background sample), on `model`: N×C×H×W attributions."""
        params = self.params
        cls, p = method_class(name), getattr(params.explain, name)
        background = (
            background_sample(self.splits.x_train, p.background, params.seed)
            if cls.needs_background
            else None
        )
        method = cls(seed=params.seed, background=background)
        with torch.enable_grad():
            return method.attribute(model.eval(), images, targets, p).maps


def check_gradcam(ws: Workspace, images: Tensor, targets: Tensor) -> Verdict:
    """Check 1: our Grad-CAM against the grad-cam package's, min-max scaled."""
    params, net = ws.params, ws.net
    ours = minmax_scaled(pixel_map(ws.maps("gradcam", net, images, targets)))
    theirs = minmax_scaled(package_gradcam(net, params.explain.gradcam.layer, images, targets))
    n = len(ours)
    rho = spearman_rows(ours.reshape(n, -1), theirs.reshape(n, -1))
    constant = ~np.isfinite(rho)
    difference = float(np.abs(ours - theirs).max())
    print(f"\n## 1. Grad-CAM (layer {params.explain.gradcam.layer!r}) vs grad-cam GradCAM\n")
    print(
        markdown_table(
            ["images", "constant maps", "Spearman mean", "Spearman min", "max |difference|"],
            [
                [
                    n,
                    int(constant.sum()),
                    f"{np.nanmean(rho):.6f}",
                    f"{np.nanmin(rho):.6f}",
                    f"{difference:.2e}",
                ]
            ],
        )
    )
    agrees = bool(np.nanmin(rho) >= GRADCAM_MIN_SPEARMAN and difference <= GRADCAM_MAX_DIFFERENCE)
    return Verdict(
        "Grad-CAM",
        agrees,
        f"Spearman min {np.nanmin(rho):.6f} (tolerance >= {GRADCAM_MIN_SPEARMAN}), "
        f"max |difference| {difference:.2e} (tolerance <= {GRADCAM_MAX_DIFFERENCE:g})",
    )


def tie_kinds(maps: np.ndarray, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per map (N×H×W, images N×C×H×W): whether some attribution value repeats, and
    whether a repeated value covers pixels of different colours (only then can the
    order within the tie change a deletion curve)."""
    any_ties, relevant = [], []
    for m, x in zip(maps, images, strict=True):
        values = m.reshape(-1)
        distinct = len(np.unique(values))
        with_colour = np.column_stack([values, x.reshape(len(x), -1).T])
        any_ties.append(distinct < values.size)
        relevant.append(len(np.unique(with_colour, axis=0)) > distinct)
    return np.array(any_ties), np.array(relevant)


def quantus_deletion_auc(
    quantus: ModuleType,
    net: nn.Module,
    images: Tensor,
    maps: np.ndarray,
    classes: Tensor,
    steps: int,
    deletion_value: float,
) -> np.ndarray:
    """Per-image deletion AUC from Quantus' PixelFlipping curve, over the fractions
    0..1 like ours: the untouched image's probability first, then Quantus' points."""
    n, c, h, w = images.shape
    if (h * w) % steps:
        raise SystemExit(f"evaluate.steps={steps} does not divide the {h}×{w} pixels")
    metric = quantus.PixelFlipping(
        features_in_step=c * h * w // steps,
        abs=False,
        normalise=False,
        perturb_baseline=float(deletion_value),
        disable_warnings=True,
    )
    with warnings.catch_warnings():  # one "perturbation caused no change" per black pixel
        warnings.simplefilter("ignore")
        curves = metric(
            model=net.eval(),
            x_batch=images.numpy(),
            y_batch=classes.numpy(),
            a_batch=maps[:, None],
            channel_first=True,
            softmax=True,
            device="cpu",
            batch_size=n,
        )
    with torch.inference_mode():
        untouched = F.softmax(net(images), dim=1).gather(1, classes[:, None]).numpy()
    full = np.concatenate([untouched, np.asarray(curves)], axis=1)
    return quantus.helpers.utils.calculate_auc(full, dx=1.0 / steps, batched=True)


def check_deletion(
    ws: Workspace, quantus: ModuleType, images: Tensor, classes: Tensor, methods: list[str]
) -> Verdict:
    """Check 2: our deletion AUC against Quantus' PixelFlipping, per image."""
    params, net = ws.params, ws.net
    ev = params.evaluate
    rows, worst, compared = [], 0.0, 0
    for name in methods:
        maps = pixel_map(ws.maps(name, net, images, classes))
        ours = deletion_insertion(
            net,
            images,
            maps,
            classes,
            steps=ev.steps,
            deletion_value=ev.deletion_value,
            blur_sigma=ev.insertion_blur_sigma,
            seed=params.seed,
        ).deletion_auc
        theirs = quantus_deletion_auc(
            quantus, net, images, maps, classes, ev.steps, ev.deletion_value
        )
        any_ties, relevant = tie_kinds(maps, images.numpy())
        kept = ~relevant
        gap = np.abs(ours - theirs)
        kept_gap = float(gap[kept].max()) if kept.any() else float("nan")
        worst = max(worst, kept_gap) if kept.any() else worst
        compared += int(kept.sum())
        r = pearsonr(ours[kept], theirs[kept]).statistic if kept.sum() > 2 else float("nan")
        rows.append(
            [
                name,
                len(maps),
                int(any_ties.sum()),
                int(relevant.sum()),
                f"{ours[kept].mean():.4f}",
                f"{theirs[kept].mean():.4f}",
                f"{kept_gap:.2e}",
                f"{r:.6f}",
                f"{float(gap.max()):.2e}",
            ]
        )
    print(f"\n## 2. Deletion AUC vs Quantus PixelFlipping ({ev.steps} steps)\n")
    print(
        markdown_table(
            [
                "method",
                "maps",
                "with ties",
                "ties over different pixels",
                "AUC ours (compared)",
                "AUC Quantus (compared)",
                "max |AUC difference|",
                "Pearson r",
                "max |difference|, all maps",
            ],
            rows,
        )
    )
    agrees = compared > 0 and worst <= DELETION_MAX_AUC_DIFFERENCE
    return Verdict(
        "Deletion AUC",
        agrees,
        f"max |AUC difference| {worst:.2e} over {compared} maps whose ties cannot matter "
        f"(tolerance <= {DELETION_MAX_AUC_DIFFERENCE:g})",
    )


def quantus_layer_names(model: nn.Module) -> list[str]:
    """The modules Quantus' MPRT re-initialises, top first."""
    return [n for n, m in model.named_modules() if hasattr(m, "reset_parameters")][::-1]


def quantus_randomise(seed: int) -> Callable[[nn.Module, torch.Generator], None]:
    """Our cascade's `randomise` doing what Quantus does to each layer."""

    def randomise(module: nn.Module, _generator: torch.Generator) -> None:
        torch.manual_seed(seed + 1)
        module.reset_parameters()

    return randomise


def check_randomization(
    ws: Workspace, quantus: ModuleType, images: Tensor, classes: Tensor, methods: list[str]
) -> Verdict:
    """Check 3: our cascading randomization against Quantus' MPRT: equal ρ with the same
    randomisation, the same ranking of the methods with each its own."""
    params, net = ws.params, ws.net
    seed = params.seed
    ours_layers, their_layers = cascade_layers(net), quantus_layer_names(net)
    print(f"\n## 3. Cascading randomization vs Quantus MPRT ({len(images)} images)\n")
    print(f"layers, top first: ours {ours_layers}; Quantus {their_layers}\n")
    final: dict[str, dict[str, float]] = {}
    for name in methods:

        def explain(model: nn.Module, name: str = name) -> np.ndarray:
            return ws.maps(name, model, images, classes)

        def explain_func(
            model: nn.Module, inputs: np.ndarray, targets: np.ndarray, name: str = name, **_: object
        ) -> np.ndarray:
            """Quantus' explain_func: numpy in, N×1×H×W pixel maps out."""
            x, t = torch.as_tensor(inputs), torch.as_tensor(targets)
            return pixel_map(ws.maps(name, model, x, t))[:, None]

        own = cascading_randomization(net, explain, seed=seed)
        same = cascading_randomization(
            net, explain, layers=their_layers, seed=seed, randomise=quantus_randomise(seed)
        )
        metric = quantus.MPRT(
            layer_order="top_down", seed=seed, return_last_correlation=True, disable_warnings=True
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            scores = metric(
                model=net.eval(),
                x_batch=images.numpy(),
                y_batch=classes.numpy(),
                a_batch=None,
                explain_func=explain_func,
                channel_first=True,
                device="cpu",
                batch_size=len(images),
            )
        final[name] = {
            "ours": float(own[-1]["spearman"]),
            "ours_quantus_init": float(same[-1]["spearman"]),
            "quantus": float(np.nanmean(scores)),
        }
        print(
            f"  {name}: " + ", ".join(f"{k} {v:.4f}" for k, v in final[name].items()),
            file=sys.stderr,
        )
    names = list(final)
    ours = np.array([final[m]["ours"] for m in names])
    same = np.array([final[m]["ours_quantus_init"] for m in names])
    theirs = np.array([final[m]["quantus"] for m in names])
    rank_ours = len(names) - np.argsort(np.argsort(ours))  # 1 = most similar
    rank_theirs = len(names) - np.argsort(np.argsort(theirs))
    threshold = params.evaluate.sanity_threshold
    print(
        markdown_table(
            [
                "method",
                "ρ ours",
                "ρ ours, Quantus' init",
                "ρ Quantus MPRT",
                "rank ours (1 = least changed)",
                "rank Quantus",
                f"ρ < {threshold}: ours / Quantus",
            ],
            [
                [
                    m,
                    f"{ours[i]:.4f}",
                    f"{same[i]:.4f}",
                    f"{theirs[i]:.4f}",
                    rank_ours[i],
                    rank_theirs[i],
                    f"{'yes' if ours[i] < threshold else 'no'} / "
                    f"{'yes' if theirs[i] < threshold else 'no'}",
                ]
                for i, m in enumerate(names)
            ],
        )
    )
    ranking = float(spearmanr(ours, theirs).statistic)
    difference = float(np.nanmax(np.abs(same - theirs)))
    agrees = (
        ours_layers == their_layers
        and difference <= MPRT_MAX_DIFFERENCE
        and ranking >= MPRT_MIN_RANKING_SPEARMAN
    )
    return Verdict(
        "Randomization",
        agrees,
        f"same init: max |ρ difference| {difference:.2e} (tolerance <= {MPRT_MAX_DIFFERENCE:g}); "
        f"own inits: Spearman of the method rankings {ranking:.3f} over {len(names)} methods "
        f"(tolerance >= {MPRT_MIN_RANKING_SPEARMAN}); same layers: {ours_layers == their_layers}",
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workspace", type=Path, default=Path("."))
    parser.add_argument("--images", type=int, default=50, help="selected images, checks 1-2")
    parser.add_argument("--sanity-images", type=int, default=12, help="images for check 3")
    parser.add_argument("--flip-methods", nargs="+", default=["saliency", "integrated_gradients"])
    parser.add_argument("--methods", nargs="+", help="check 3 (default: explain.methods)")
    args = parser.parse_args()
    # captum announces every guided-backprop hook (as pyproject's pytest settings ignore)
    warnings.filterwarnings("ignore", "Setting backward hooks on ReLU activations")
    quantus = import_quantus()
    ws = Workspace.load(args.workspace)
    count = len(ws.selection)
    images, classes = ws.selected(np.arange(min(args.images, count)))
    print(f"workspace {args.workspace.resolve()}: {len(images)} selected test images")
    # check 3 on fewer images, spread over the selection (and so over the classes)
    spread = np.unique(np.linspace(0, count - 1, min(count, args.sanity_images)).astype(int))
    methods = args.methods or list(ws.params.explain.methods)
    verdicts = [
        check_gradcam(ws, images, classes),
        check_deletion(ws, quantus, images, classes, args.flip_methods),
        check_randomization(ws, quantus, *ws.selected(spread), methods),
    ]
    print()
    for verdict in verdicts:
        print(verdict)
    sys.exit(0 if all(v.agrees for v in verdicts) else 1)


if __name__ == "__main__":
    main()
