"""What the report says: its sections in order, each with a sentence or two on how to
read it, filled from the run's figures, tables and metrics (`ReportInputs`)."""

from __future__ import annotations

import fnmatch
import html
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pipeline.figures.grand_tour import QUIET_INTERRUPTED_ANIMATIONS
from pipeline.report import markup as h
from pipeline.report.interactive import (
    PlotlyArrays,
    grand_tour_divs,
    instanceflow_div,
    plotly_js,
)
from pipeline.tracking import UI_ADDRESS, flatten

GALLERY_PATTERN = "figures/gallery/*.png"  # the gallery stage's figures, under reports/


@dataclass(frozen=True)
class RunInfo:
    """Who made the run: the summary's first lines."""

    dataset: str
    arch: str
    commit: str
    dirty: bool | None = None
    mlflow_url: str = UI_ADDRESS
    mlflow_label: str = "the MLflow UI"


@dataclass(frozen=True)
class ReportInputs:
    """Everything the page shows, already loaded. `images` and `tables` are keyed by
    their names under `reports/` (e.g. `figures/evaluate.png`, `evaluate_table.md`);
    `params` and `defaults` are the validated params and the schema's defaults (nested,
    as `Params.model_dump()` gives them); `gallery` is `figures/gallery/gallery.json`;
    `tour` and `flow` the stored arrays of the Grand Tour and InstanceFlow."""

    run: RunInfo
    summary: Mapping[str, Any]
    params: Mapping[str, Any]
    defaults: Mapping[str, Any]
    images: Mapping[str, bytes] = field(default_factory=dict)
    tables: Mapping[str, str] = field(default_factory=dict)
    gallery: Mapping[str, Any] | None = None
    tour: PlotlyArrays | None = None
    flow: PlotlyArrays | None = None
    skipped: Mapping[str, str] = field(default_factory=dict)  # part -> why it was skipped


Part = Callable[["ReportInputs"], str]


@dataclass(frozen=True)
class Section:
    """A section of the page: anchor, navigation label, title, how to read it, what it
    shows (parts, in order) and the stage to run when it has nothing to show; `part`: the
    inside part (or `generative`: the decoders) whose skip reason (pipeline/skips.py) it
    shows first, or instead."""

    anchor: str
    label: str
    title: str
    guide: str
    parts: tuple[Part, ...]
    stage: str
    part: str | None = None


@dataclass(frozen=True)
class Images:
    """A part: the embedded images whose names match the glob patterns (under reports/)."""

    patterns: tuple[str, ...]

    def __call__(self, inputs: ReportInputs) -> str:
        names = matching(inputs.images, self.patterns)
        return "\n".join(h.figure(h.Image(n, inputs.images[n], _caption(n))) for n in names)


def images(*patterns: str) -> Images:
    """The part that embeds the images matching `patterns`, in that order."""
    return Images(patterns)


def markdown_table(name: str) -> Part:
    """One of the Markdown tables the pipeline writes (reports/<name>), as HTML."""

    def part(inputs: ReportInputs) -> str:
        return h.markdown(inputs.tables[name]) if name in inputs.tables else ""

    return part


INSTANCEFLOW = "instanceflow"  # a part shown inside the classifier section


def instanceflow(inputs: ReportInputs) -> str:
    """The interactive InstanceFlow Sankey, when its arrays are there; the reason, when
    the part was skipped (a model explained as it is has no epochs to follow)."""
    if INSTANCEFLOW in inputs.skipped:
        return h.missing(f"InstanceFlow skipped: {inputs.skipped[INSTANCEFLOW]}")
    if inputs.flow is None:
        return ""
    return f'<div class="plot">{instanceflow_div(inputs.flow)}</div>'


def grand_tour(inputs: ReportInputs) -> str:
    """The interactive Grand Tours, when their arrays are there."""
    if inputs.tour is None:
        return ""
    return "\n".join(f'<div class="plot">{div}</div>' for div in grand_tour_divs(inputs.tour))


def gallery(inputs: ReportInputs) -> str:
    """The gallery's figures in gallery.json's order, each with its caption."""
    captions = gallery_captions(inputs.gallery)
    return "\n".join(
        h.figure(h.Image(n, inputs.images[n], c)) for n, c in captions.items() if n in inputs.images
    )


def image_patterns() -> list[str]:
    """Every glob pattern (under reports/) whose images the page embeds, for the stage
    to read: the gallery's folder and each section's figures."""
    found = [GALLERY_PATTERN]
    for section in SECTIONS:
        for part in section.parts:
            if isinstance(part, Images):
                found += [p for p in part.patterns if p not in found]
    return found


def params_diff(
    params: Mapping[str, Any], defaults: Mapping[str, Any]
) -> list[tuple[str, Any, Any]]:
    """(key, default, value) for every params.yaml key whose value differs from the
    schema default, sorted by key; a key only one side has shows None on the other."""
    ours, base = flatten(params), flatten(defaults)
    return [
        (key, base.get(key), ours.get(key))
        for key in sorted(set(ours) | set(base))
        if ours.get(key) != base.get(key) or (key in ours) != (key in base)
    ]


def matching(images: Mapping[str, bytes], patterns: Sequence[str]) -> list[str]:
    """The image names matching the patterns: in pattern order, sorted within one."""
    names: list[str] = []
    for pattern in patterns:
        names += [n for n in sorted(images) if fnmatch.fnmatch(n, pattern) and n not in names]
    return names


def _caption(name: str) -> str:
    """`figures/generative/vae.png` -> `generative/vae`."""
    return name.removeprefix("figures/").rsplit(".", 1)[0]


def _show(value: Any) -> str:
    return "—" if value is None else str(value)


def _changed(default: Any, value: Any) -> str:
    """A changed value; a list that only reorders the default's items says so."""
    reordered = isinstance(default, list) and isinstance(value, list)
    if reordered and sorted(map(repr, default)) == sorted(map(repr, value)):
        return f"{_show(value)} (the default's items in another order)"
    return _show(value)


def summary(inputs: ReportInputs) -> str:
    """The run's facts, headline numbers, params that differ and the MLflow link."""
    run, numbers = inputs.run, inputs.summary
    checked = [m for m, row in numbers.get("methods", {}).items() if "sanity" in row]
    flagged = numbers.get("sanity_flagged")
    facts = [
        ("dataset", run.dataset),
        ("architecture", run.arch),
        ("test accuracy", numbers.get("test_accuracy", numbers.get("test_note"))),
        ("commit", run.commit + (" (uncommitted changes)" if run.dirty else "")),
        ("methods flagged by the sanity check", f"{flagged} of {len(checked)}"),
    ]
    cladec = numbers.get("cladec")
    if cladec:
        holds = f"{cladec['properties_hold']} of {cladec['properties']}"
        facts.append(("ClaDec: the reference's properties that hold", holds))
    ice = numbers.get("ice")
    if ice:
        error = ice.get("relative_logit_error")
        facts.append(("ICE: relative logit error (lower is better)", error))
    changed = params_diff(inputs.params, inputs.defaults)
    diff = (
        h.table(
            ["param", "default", "this run"], [(k, _show(d), _changed(d, v)) for k, d, v in changed]
        )
        if changed
        else "<p>Every param is at its default.</p>"
    )
    link = (
        f'<p>MLflow: <a href="{html.escape(run.mlflow_url)}">{h.text(run.mlflow_label)}</a> '
        f"(start the UI with <code>make ui</code>; it serves {UI_ADDRESS}).</p>"
    )
    heading = "<h3>Params that differ from the defaults</h3>"
    return "\n".join([h.table([], facts), link, heading, diff])


def gallery_captions(gallery: Mapping[str, Any] | None) -> dict[str, str]:
    """{image name under reports/: caption} from gallery.json's entries."""
    if not gallery:
        return {}
    return {
        GALLERY_PATTERN.replace("*.png", str(entry["file"])): str(
            entry.get("caption", entry["file"])
        )
        for entry in gallery.get("images", [])
    }


SECTIONS = (
    Section(
        "summary",
        "Summary",
        "Summary",
        "The run at a glance: the data, the classifier and its test accuracy, the commit, "
        "the headline numbers of `metrics/summary.json`, and every param that differs from "
        "its default in `pipeline/params.py` (all others are at their defaults). The MLflow "
        "link opens this run's stages, params and artifacts while `make ui` runs.",
        (summary, images("figures/data_samples.png")),
        "data_figures",
    ),
    Section(
        "classifier",
        "Classifier",
        "The classifier",
        "Curves: loss and accuracy per epoch on the training and validation splits (a "
        "validation loss rising while the training loss falls means overfitting). "
        "Confusion matrix: test images by true class (rows) and predicted class (columns); "
        "off-diagonal cells are the mistakes. InstanceFlow follows the tracked test images "
        "through the epochs: each column is an epoch, each node a predicted class, each band "
        "carries images to their class at the next epoch and is coloured by outcome (key "
        "under the plot; hover for counts); the last figure shows the probability "
        "trajectories of the images that changed class most often.",
        (
            images("figures/classifier_curves.png", "figures/classifier_confusion.png"),
            instanceflow,
            # not sankey.png: the interactive Sankey above shows the same
            images("figures/instanceflow/unstable_instances.png"),
        ),
        "classifier_figures",
    ),
    Section(
        "gallery",
        "Gallery",
        "Every method on the same image",
        "One figure per selected test image, correct and misclassified ones: the image with "
        "its true and predicted class, then every attribution method side by side in one "
        "colour convention (signed maps diverging around 0, unsigned maps one sequential "
        "scale), LIME's pros and cons, Grad-CAM across epochs, the ClaDec decodings against "
        "RefAE and the latent walk, where the image has them (the caption says which rows "
        "are left out). Methods that agree on an image point at evidence the model uses; "
        "check their trust scores in the next section.",
        (gallery,),
        "gallery",
    ),
    Section(
        "faithfulness",
        "Faithfulness & sanity",
        "Faithfulness and sanity of the attribution methods",
        "Each method scored on the evaluation images, with the bootstrap 95% interval in "
        "brackets and the number of images. Deletion and ROAD MoRF remove the pixels a map "
        "ranks most relevant first (lower AUC: the map found what the model uses); insertion "
        "and ROAD LeRF are higher-is-better; a method beats the random baseline only where "
        "the intervals do not overlap. Sanity (model randomization): the rank correlation of "
        "a map before and after the model's layers are randomized; FLAGGED means a high "
        "correlation, so the map hardly depends on what the model learned. The figure "
        "overlays the curves of every method.",
        (markdown_table("evaluate_table.md"), images("figures/evaluate.png")),
        "evaluate",
    ),
    Section(
        "cladec",
        "ClaDec trade-off",
        "ClaDec: decoding a layer, and the alpha trade-off",
        "ClaDec decodes a classifier layer's activations back into an image; alpha weighs "
        "the classifier's cross-entropy against the reconstruction error. Per layer and "
        "alpha: the reconstruction error (SSE per image) and the classifier's loss and "
        "accuracy on the decodings, beside the reference implementation's MNIST numbers "
        "(compare shapes, not values), then the reference's qualitative properties checked "
        "on this run. The figure plots each quantity against alpha, RefAE dashed.",
        (markdown_table("cladec_table.md"), images("figures/cladec_alpha_tradeoff.png")),
        "generative_figures",
    ),
    Section(
        "generative",
        "Reconstructions",
        "Generative reconstructions",
        "Test images and their decodings by each generative model (VAE, reference VAE, "
        "ClaDec per layer and alpha, RefAE); under each decoding the classifier's class. "
        "RefAE shows what the decoder alone can rebuild from a layer; what ClaDec adds or "
        "drops against it is what the classifier's layer keeps. As alpha grows the "
        "cross-entropy dominates and the decoder draws texture the classifier accepts rather "
        "than a digit: with the default SSE loss only at the largest alphas, but with "
        "`cladec.reconstruction: mse` (per-pixel mean, 784 times lighter on MNIST) already "
        "at alpha 0.5, which then behaves like alpha 0.998 with SSE. Noise-like decodings "
        "there are what the loss asks for, not a failure. The latent grids decode a 2-D "
        "latent plane, each cell labelled with the classifier's class.",
        (images("figures/generative/*.png", "figures/cladec_decodings/*.png"),),
        "generative_figures",
        part="generative",  # the decoders skipped (generative_figures writes why)
    ),
    Section(
        "ice",
        "ICE",
        "ICE concepts",
        "ICE factorises the layer's activations into a few non-negative concepts (NMF). The "
        "heatmaps show where each concept is present on selected images, the class chart how "
        "often each concept appears per class and how much it moves the class logit, the "
        "examples the images where a concept is strongest and weakest; fidelity says how "
        "much of the model the concepts keep (the model run on the concepts' reconstruction "
        "of the layer: lower error and higher agreement are better).",
        (images("figures/ice/*.png"),),
        "inside_figures",
        part="ice",
    ),
    Section(
        "feature-maps",
        "Feature maps",
        "Feature maps",
        "The activation maps of each conv layer for a few selected images, the strongest "
        "channels first (bright: strongly active), and the first layer's filters. Early "
        "layers answer to strokes and edges at their place in the image, later layers to "
        "coarser parts.",
        (images("figures/feature_maps/*.png"),),
        "inside_figures",
        part="feature_maps",
    ),
    Section(
        "activation-max",
        "Activation max",
        "Activation maximisation",
        "Images made by gradient ascent on the pixels, starting from noise, to excite one "
        "filter or one class logit as much as possible, with and without regularisers. They "
        "show what drives the unit, not what a class looks like: a network answers most "
        "strongly to high-frequency patterns no real image holds, so without regularisers "
        "the images look like noise, and even with them (blur, total variation, jitter) the "
        "class images are stroke textures the classifier rates near probability 1.",
        (images("figures/activation_max/*.png"),),
        "inside_figures",
        part="activation_max",
    ),
    Section(
        "grand-tour",
        "Grand Tour",
        "Grand Tour",
        "Each point is a test image's activation vector projected to 2-D, coloured by its "
        "true class; a cross marks a misclassified image. Per layer, the first plot rotates "
        "the projection smoothly through the activation space (Play, or drag the slider over "
        "t), the second keeps one projection and steps through the training epochs, so you "
        "watch the classes separate as the model learns. Hover a point for its instance and "
        "classes; separate clusters mean the layer tells the classes apart.",
        (grand_tour,),
        "grand_tour",
        part="grand_tour",
    ),
    Section(
        "across-epochs",
        "Across epochs",
        "Attributions across the training epochs",
        "One attribution method (Grad-CAM by default, `inside.across_epochs.method`) on the "
        "same images with the classifier of every saved epoch, left to right: how the "
        "model's evidence settles as it trains. Maps that stop changing early mean the "
        "model found its evidence early.",
        (images("figures/across_epochs/*.png"),),
        "inside_figures",
        part="across_epochs",
    ),
    Section(
        "latent-walks",
        "Latent walks",
        "Latent walks between confused classes",
        "Each row walks the VAE's latent space in steps from a test image of one class to one "
        "of a class the classifier confuses it with; every decoded step is classified, the "
        "step where the class flips is marked, and the difference image across the flip "
        "shows the strokes the classifier's decision turns on.",
        (images("figures/vae_walks/*.png"),),
        "inside_figures",
        part="vae_walks",
    ),
)


def _guide(section: Section, inputs: ReportInputs) -> str:
    """The section's guide; the gallery's own when gallery.json brings one."""
    if section.anchor == "gallery" and inputs.gallery and inputs.gallery.get("how_to_read"):
        return str(inputs.gallery["how_to_read"])
    return section.guide


def _body(section: Section, inputs: ReportInputs) -> str:
    """A section's parts, or a line saying which stage to run when all are empty; the
    reason its part was skipped first (the generative section: the decoders skipped
    beside the models that ran)."""
    shown = [html_ for part in section.parts if (html_ := part(inputs)).strip()]
    if section.part in inputs.skipped:
        shown.insert(0, h.missing(f"Skipped: {inputs.skipped[section.part]}"))
    if not shown:
        return h.missing(f"Nothing to show: run `dvc repro {section.stage}` first.")
    return "\n".join(shown)


def build_report(inputs: ReportInputs, title: str = "XAI pipeline report") -> str:
    """The whole page as one HTML string, every section in `SECTIONS` order."""
    sections = []
    for section in SECTIONS:
        content = h.section(
            section.anchor, section.title, _guide(section, inputs), _body(section, inputs)
        )
        sections.append((section.anchor, section.label, content))
    interactive = inputs.tour is not None or inputs.flow is not None
    heading = f"{title}: {inputs.run.dataset}, {inputs.run.arch}"
    script = plotly_js() + "\n" + QUIET_INTERRUPTED_ANIMATIONS if interactive else ""
    return h.page(heading, sections, script)
