"""DVC stage `figures@<part>`: draw one inside-the-model part from its stored arrays
(explanations/<part>/) into reports/figures/<part>/, recomputing nothing."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np

from pipeline.errors import PipelineError
from pipeline.figures.common import save_figure
from pipeline.io import read_npz, write_text
from pipeline.params import Params, load_params
from pipeline.tracking import stage_run
from stages import paths
from stages.runner import run_stage

log = logging.getLogger("stages.inside_figures")


def _load(part: str, name: str) -> dict[str, np.ndarray]:
    path = paths.part_dir(part) / name
    if not path.is_file():
        raise PipelineError(f"{path} not found: run the {part} stage first (see dvc.yaml)")
    return read_npz(path)


def feature_maps(params: Params, out: Path) -> list[Path]:
    from pipeline.explain.feature_maps import strongest_channels
    from pipeline.figures.inside import plot_feature_maps, plot_filters

    z = _load("feature_maps", "maps.npz")
    written = []
    for i, layer in enumerate(z["layers"]):
        maps = z[f"layer_{i}"]
        channels = strongest_channels(maps, params.explain.feature_maps.channels)
        fig = plot_feature_maps(
            z["images"], maps, channels.tolist(), list(z["captions"]), str(layer)
        )
        written.append(save_figure(fig, out / f"{i + 1}_{layer}.png"))
    filters = z["filters"]
    title = f"First conv layer: {filters.shape[0]} filters of {filters.shape[2]}×{filters.shape[3]}"
    written.append(save_figure(plot_filters(filters, title), out / "first_layer_filters.png"))
    return written


def activation_max(params: Params, out: Path) -> list[Path]:
    from pipeline.figures.inside import plot_tiles

    z = _load("activation_max", "ascent.npz")
    layer, iterations = str(z["layer"]), params.explain.activation_max.iterations
    filters = plot_tiles(
        z["filter_images"],
        [f"ch {i}" for i in range(len(z["filter_images"]))],
        f"Images that maximise each filter of {layer} ({iterations} gradient-ascent steps "
        "from noise)",
    )
    classes = plot_tiles(
        z["class_images"],
        [str(n) for n in z["class_names"]],
        f"Images that maximise each class logit ({iterations} steps from noise)",
    )
    return [save_figure(filters, out / "filters.png"), save_figure(classes, out / "classes.png")]


def instanceflow(params: Params, out: Path) -> list[Path]:
    from pipeline.figures.instanceflow import plot_sankey, plot_trajectories, sankey_html

    flow = record = _load("instanceflow", "flow.npz")
    names = [str(n) for n in record["class_names"]]
    classes = flow["classes"].tolist() or None
    args = (record["predictions"], record["epochs"], flow["epoch_rows"], names, classes)
    written = [save_figure(plot_sankey(*args), out / "sankey.png")]
    html = out / "sankey.html"
    write_text(html, sankey_html(*args))
    written.append(html)
    fig = plot_trajectories(
        record["probabilities"].astype(np.float32),
        record["predictions"],
        record["labels"],
        record["epochs"],
        flow["unstable"],
        names,
        record["test_indices"],
    )
    written.append(save_figure(fig, out / "unstable_instances.png"))
    return written


def vae_walks(params: Params, out: Path) -> list[Path]:
    from pipeline.explain.latent_walk import Walk, flip_steps
    from pipeline.figures.walks import plot_walks

    z = _load("vae_walks", "walks.npz")
    walks = [
        Walk(
            z["latents"][i],
            z["decoded"][i],
            z["probabilities"][i],
            z["probabilities"][i].argmax(1),
            flip_steps(z["probabilities"][i].argmax(1)),
        )
        for i in range(len(z["titles"]))
    ]
    if not walks:
        from pipeline.figures.common import message_figure

        return [
            save_figure(
                message_figure("no walks: too few test images", "VAE walks"), out / "walks.png"
            )
        ]
    fig = plot_walks(walks, [str(t) for t in z["titles"]], [str(n) for n in z["class_names"]])
    return [save_figure(fig, out / "walks.png")]


def cladec(params: Params, out: Path) -> list[Path]:
    from pipeline.figures.cladec_explain import plot_cladec_rows, plot_latent_grids

    z = _load("cladec", "decoded.npz")
    names = [str(n) for n in z["class_names"]]
    written = []
    for layer in z["layers"]:
        columns = [("RefAE", z[f"{layer}/refae"])]
        columns += [(f"ClaDec α={a:g}", z[f"{layer}/{a}"]) for a in z["alphas"]]
        fig = plot_cladec_rows(
            z["originals"],
            columns,
            list(z["captions"]),
            f"ClaDec explanations of layer {layer}: what the layer keeps of each image, "
            "against the reference autoencoder",
        )
        written.append(save_figure(fig, out / f"{layer}.png"))
    grids = []
    for key in sorted(k for k in z if k.startswith("vcladec/") and not k.endswith("/predicted")):
        grids.append(
            (
                f"variational ClaDec ({key.split('/')[1]})",
                z[key],
                [names[c] for c in z[f"{key}/predicted"]],
            )
        )
    if "refvae" in z:
        grids.append(("reference VAE", z["refvae"], [names[c] for c in z["refvae/predicted"]]))
    if grids:
        fig = plot_latent_grids(
            grids,
            z["grid_axis"],
            "Decoded over the 2-D latent plane (classifier's class in yellow): the classifier's "
            "prototypes against a plain VAE",
        )
        written.append(save_figure(fig, out / "latent_grids.png"))
    return written


def epochs(params: Params, out: Path) -> list[Path]:
    from pipeline.figures.epochs import plot_across_epochs

    z = _load("epochs", "maps.npz")
    fig = plot_across_epochs(
        z["images"],
        z["maps"],
        z["predicted"],
        z["epochs"].tolist(),
        list(z["captions"]),
        [str(n) for n in z["class_names"]],
        str(z["method"]),
    )
    return [save_figure(fig, out / f"{z['method']}_by_epoch.png")]


def ice(params: Params, out: Path) -> list[Path]:
    import json

    from pipeline.figures.ice import (
        plot_class_concepts,
        plot_concept_examples,
        plot_concept_heatmaps,
        plot_fidelity,
    )

    z = _load("ice", "concepts.npz")
    names = [str(n) for n in z["class_names"]]
    written = [
        save_figure(
            plot_concept_heatmaps(z["shown_images"], z["shown_maps"], list(z["shown_captions"])),
            out / "concept_heatmaps.png",
        ),
        save_figure(plot_class_concepts(z["presence"], z["weights"], names), out / "classes.png"),
    ]
    # example maps are stored for the example rows only: scatter them back by image row
    maps = np.zeros((len(z["images"]), *z["example_maps"].shape[1:]), dtype=np.float32)
    maps[z["example_rows"]] = z["example_maps"]
    written.append(
        save_figure(
            plot_concept_examples(z["images"], z["top"], z["bottom"], maps),
            out / "concept_examples.png",
        )
    )
    rows = json.loads((paths.part_dir("ice") / "fidelity.json").read_text())
    written.append(save_figure(plot_fidelity(rows), out / "fidelity.png"))
    return written


def grand_tour(params: Params, out: Path) -> list[Path]:
    from pipeline.figures.grand_tour import plot_tour_frames, save_tour_gif, tour_html

    z = _load("grand_tour", "tour.npz")
    labels, names = z["labels"], [str(n) for n in z["class_names"]]
    written: list[Path] = []
    for layer in z["layers"]:
        slug = str(layer).replace(".", "_")
        frames = list(z[f"{layer}/rotation"])
        titles = [f"Grand Tour of {layer}, t = {t:.2f}" for t in z[f"{layer}/times"]]
        written.append(save_tour_gif(frames, labels, names, titles, out / f"{slug}_rotation.gif"))
        html = out / f"{slug}_rotation.html"
        write_text(html, tour_html(frames, labels, names, titles, f"Grand Tour of {layer}"))
        written.append(html)
        picks = np.linspace(0, len(frames) - 1, min(8, len(frames))).astype(int)
        fig = plot_tour_frames(
            [frames[i] for i in picks],
            labels,
            names,
            [titles[i] for i in picks],
            title=f"Grand Tour of {layer}: rotating projections",
        )
        written.append(save_figure(fig, out / f"{slug}_rotation.png"))
        key = f"{layer}/epochs"
        if key in z:
            frames = list(z[key])
            titles = [f"{layer} after epoch {e}" for e in z["epochs"]]
            written.append(
                save_tour_gif(frames, labels, names, titles, out / f"{slug}_epochs.gif", fps=2)
            )
            html = out / f"{slug}_epochs.html"
            write_text(
                html,
                tour_html(
                    frames,
                    labels,
                    names,
                    titles,
                    f"{layer} across the training epochs (fixed projection)",
                ),
            )
            written.append(html)
    return written


PARTS: dict[str, Callable[[Params, Path], list[Path]]] = {
    "feature_maps": feature_maps,
    "activation_max": activation_max,
    "instanceflow": instanceflow,
    "vae_walks": vae_walks,
    "cladec": cladec,
    "epochs": epochs,
    "ice": ice,
    "grand_tour": grand_tour,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--part", required=True, choices=paths.INSIDE_PARTS)
    part = parser.parse_args().part
    params = load_params()
    out = paths.part_figures(part)
    with stage_run(f"figures@{part}", params.tracking.experiment, params.data.dataset, {}) as run:
        written = PARTS[part](params, out)
        for path in written:
            run.log_artifact(path, f"figures/{part}")
    log.info("%s: %s", part, ", ".join(str(p) for p in written))


if __name__ == "__main__":
    run_stage("figures", main)
