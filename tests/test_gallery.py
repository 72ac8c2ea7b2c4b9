"""The per-instance gallery: the rows an image gets follow from what each part covers
(known by construction here), signed maps are coloured with symmetric limits, file
names are safe, and the stage's gallery.json lists exactly the figures it wrote."""

from __future__ import annotations

import json

import matplotlib
import numpy as np
import pytest
from test_stages import run_stage, write_params

from pipeline.data import Splits
from pipeline.explain.stored import StoredAttributions
from pipeline.figures.gallery import (
    COLOUR_BARS,
    Decodings,
    EpochMaps,
    Gallery,
    LimePros,
    MethodMaps,
    Walks,
    safe_name,
)
from pipeline.io import write_npz
from pipeline.selection import Selection

SIDE = 8  # image side; panels enlarge it by 112 // 8 = 14
NAMES = ("T-shirt/top", "Pull over", "seven")
# test split: labels by index; the selection is test images 1, 3, 4
Y_TEST = np.array([1, 0, 2, 1, 1, 0])
ROWS = {  # selection row -> the rows it must get, from the parts built below
    0: ["attributions_predicted", "across_epochs", "latent_walk"],  # a walk's end
    1: ["attributions_predicted", "cladec_conv"],  # correct, no walk ends at it
    2: ["attributions_predicted", "attributions_true", "across_epochs", "latent_walk"],
}


def x_test() -> np.ndarray:
    """Six distinct test images (pixels unique per image: matching by pixels is exact)."""
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(6, 1, SIDE, SIDE), dtype=np.uint8)


def selection() -> Selection:
    """Rows 0 and 1 correct; row 2 a 'Pull over' taken for a 'seven'."""
    probabilities = np.array(
        [[0.9, 0.05, 0.05], [0.1, 0.8, 0.1], [0.05, 0.25, 0.7]], dtype=np.float32
    )
    return Selection(
        indices=np.array([1, 3, 4]),
        labels=np.array([0, 1, 1]),
        predicted=np.array([0, 1, 2]),
        probabilities=probabilities,
        misclassified=np.array([False, False, True]),
        pairs=np.array([[1, 2, 1]]),
        class_names=NAMES,
    )


def signed_maps() -> np.ndarray:
    """Row 0's map: -2 at pixel (0, 0), +1 at (0, 1), 0 elsewhere."""
    maps = np.zeros((3, SIDE, SIDE), dtype=np.float32)
    maps[0, 0, 0], maps[0, 0, 1] = -2.0, 1.0
    return maps


def walk_arrays() -> dict[str, np.ndarray]:
    """Walk 0 ends at test image 1 (selection row 0) and never flips; walk 1 joins
    classes 1 and 2 (row 2's true and predicted class) and flips at step 2."""
    probabilities = np.zeros((2, 4, 3), dtype=np.float32)
    probabilities[0, :, 0] = 1
    probabilities[1, [0, 1], 1] = 1
    probabilities[1, [2, 3], 2] = 1
    return {
        "titles": np.array(["T-shirt/top #1 → T-shirt/top #5", "Pull over #0 → seven #2"]),
        "ends": np.array([[1, 5], [0, 2]]),
        "decoded": np.random.default_rng(1).random((2, 4, 1, SIDE, SIDE)).astype(np.float32),
        "probabilities": probabilities,
        "class_names": np.array(NAMES),
    }


def part_arrays(images: np.ndarray) -> dict[str, dict[str, np.ndarray]]:
    """Across epochs follows rows 0 and 2, ClaDec decodes row 1 (both store images)."""
    rng = np.random.default_rng(2)
    decoded = {
        f"conv/{key}": rng.random((1, 1, SIDE, SIDE)).astype(np.float32)
        for key in ("refae", 0.0, 0.5)
    }
    return {
        "across_epochs": {
            "images": images[[2, 0]],
            "captions": np.array(["Pull over→seven", "T-shirt/top"]),
            "maps": rng.random((3, 2, SIDE, SIDE)).astype(np.float32),
            "predicted": np.array([[1, 0], [2, 0], [2, 0]]),
            "epochs": np.array([1, 2, 3]),
            "method": np.array("gradcam"),
            "class_names": np.array(NAMES),
        },
        "cladec_decodings": {
            "originals": images[[1]],
            "captions": np.array(["Pull over"]),
            "layers": np.array(["conv"]),
            "alphas": np.array([0.0, 0.5]),
            **decoded,
            "class_names": np.array(NAMES),
        },
    }


def lime_stored() -> StoredAttributions:
    segments = np.repeat(np.arange(4), 16).reshape(1, SIDE, SIDE).repeat(3, 0)
    weights = np.array([[1.0, -1.0, 0.5, np.nan]] * 3)
    return StoredAttributions(
        "lime",
        predicted=np.zeros((3, 1, SIDE, SIDE), dtype=np.float32),
        true=np.zeros((1, 1, SIDE, SIDE), dtype=np.float32),
        true_rows=np.array([2]),
        extras={
            "segments": segments,
            "weights": weights,
            "true_segments": segments[[2]],
            "true_weights": -weights[[2]],
        },
    )


def gallery(**parts: bool) -> Gallery:
    """The gallery of the three selected images, with the parts named true."""
    s = selection()
    images = x_test()[s.indices]
    stored = part_arrays(images)
    unsigned = np.random.default_rng(3).random((3, SIDE, SIDE)).astype(np.float32)
    methods = [
        MethodMaps("signed_method", True, signed_maps(), {2: -signed_maps()[0]}),
        MethodMaps("plain", False, unsigned, {2: unsigned[0]}),
    ]
    return Gallery(
        images,
        s,
        methods if parts.get("signed", True) else methods[1:],
        lime=LimePros.from_stored(lime_stored(), 2) if parts.get("lime", True) else None,
        epochs=EpochMaps.from_stored(stored["across_epochs"], images, False)
        if parts.get("epochs", True)
        else None,
        decodings=Decodings.from_stored(stored["cladec_decodings"], images)
        if parts.get("decodings", True)
        else None,
        walks=Walks.from_stored(walk_arrays(), Y_TEST) if parts.get("walks", True) else None,
    )


@pytest.mark.parametrize("row", sorted(ROWS))
def test_each_image_gets_exactly_the_rows_its_parts_cover(row: int) -> None:
    assert [r.key for r in gallery().rows(row)] == ROWS[row]


def test_a_walk_belongs_by_its_end_or_by_the_confused_classes() -> None:
    g = gallery()
    rows = {r.key: r for r in g.rows(0)}
    assert "T-shirt/top #1 → T-shirt/top #5" in rows["latent_walk"].title
    assert len(rows["latent_walk"].panels) == 4  # no flip: no difference panel
    walk = {r.key: r for r in g.rows(2)}["latent_walk"]
    assert "Pull over #0 → seven #2" in walk.title
    assert [p.frame is not None for p in walk.panels] == [False, False, True, False, False]
    assert walk.panels[-1].kind == "signed"  # the difference across the flip


def test_rows_follow_the_methods_and_lime_panels() -> None:
    g = gallery()
    predicted, true = g.rows(2)[:2]
    # image, two methods, LIME; the true-class row leaves the image's column blank
    assert [p.top for p in predicted.panels] == [
        "true Pull over",
        "signed method",
        "plain",
        "LIME pros\n(green), cons (red)",
    ]
    assert predicted.panels[0].frame is not None  # a wrong prediction is framed
    assert (true.panels[0].pixels == 1).all()
    assert [p.kind for p in true.panels] == [None, "signed", "unsigned", None]
    without = gallery(lime=False).rows(2)[0]
    assert len(without.panels) == 3


def test_captions_say_what_is_left_out() -> None:
    g = gallery()
    captions = {r: g.caption(r, g.rows(r)) for r in ROWS}
    assert "not among the 2 images followed across epochs" in captions[1]
    assert "no latent walk starts or ends at it." in captions[1]
    assert "ClaDec decodings of conv" in captions[1]
    assert "not among the 1 image ClaDec decodes" in captions[0]
    assert "not among" not in captions[2].split(";", 1)[0]
    assert "predicted seven with probability 0.70 (wrong)" in captions[2]
    assert "for the predicted and the true class" in captions[2]
    assert gallery(epochs=False, decodings=False, walks=False).missing(1, []) == []


def test_signed_maps_are_coloured_with_symmetric_limits() -> None:
    """Values -2 and +1: the limits are ±2, so -2 takes the map's lowest colour, +1 the
    colour three quarters up, 0 the middle (the same panel as the attribution figures)."""
    g = gallery()
    panel = g.rows(0)[0].panels[1]
    assert panel.kind == "signed"
    cmap = matplotlib.colormaps[COLOUR_BARS["signed"][1]]
    image = g.images[0, 0].astype(np.float64) / 255
    for (y, x), position in (((0, 0), 0.0), ((0, 1), 0.75), ((5, 5), 0.5)):
        faded = 0.45 * image[y, x] + 0.55
        expected = 0.75 * np.array(cmap(position)[:3]) + 0.25 * faded
        scale = 112 // SIDE
        got = panel.pixels[y * scale + scale // 2, x * scale + scale // 2]
        np.testing.assert_allclose(got, expected, atol=1e-6)


def colour_bars(fig: matplotlib.figure.Figure) -> dict[str, tuple[float, float]]:
    """{colour bar label: its limits} of a gallery figure."""
    return {ax.get_xlabel(): ax.get_xlim() for ax in fig.axes if ax.get_xlabel()}


def test_one_colour_bar_per_kind_shown_signed_symmetric() -> None:
    import matplotlib.pyplot as plt

    fig, _ = gallery().figure(0)
    signed, unsigned = (COLOUR_BARS[k][2] for k in ("signed", "unsigned"))
    assert colour_bars(fig) == {signed: (-1.0, 1.0), unsigned: (0.0, 1.0)}
    plt.close(fig)
    fig, _ = gallery(signed=False, lime=False, walks=False).figure(1)
    assert colour_bars(fig) == {unsigned: (0.0, 1.0)}
    plt.close(fig)


def test_file_names_are_safe() -> None:
    g = gallery()
    assert [g.file_name(r) for r in ROWS] == [
        "00_T-shirt_top_as_T-shirt_top.png",
        "01_Pull_over_as_Pull_over.png",
        "02_Pull_over_as_seven.png",
    ]
    assert safe_name("../etc/passwd") == "etc_passwd"
    assert safe_name(" a b ") == "a_b"
    assert safe_name("///") == "class"


def write_inputs(folder) -> None:
    """What the explain and inside stages store, for two methods (saliency: unsigned,
    LIME: signed) and the three selected images."""
    x = x_test()
    Splits(x, Y_TEST, x, Y_TEST, x, Y_TEST, NAMES, "synthetic").save(folder / "data/dataset.npz")
    s = selection()
    s.save(folder / "explanations/selection.npz")
    maps = signed_maps()[:, None]
    StoredAttributions("saliency", np.abs(maps), np.abs(maps[[2]]), np.array([2])).save(
        folder / "explanations/attributions/saliency.npz"
    )
    lime_stored().save(folder / "explanations/attributions/lime.npz")
    stored = part_arrays(x[s.indices])
    write_npz(folder / "explanations/across_epochs/maps.npz", **stored["across_epochs"])
    write_npz(folder / "explanations/cladec_decodings/decoded.npz", **stored["cladec_decodings"])
    write_npz(folder / "explanations/vae_walks/walks.npz", **walk_arrays())


def test_stage_writes_one_figure_per_image_and_a_json_that_matches(tmp_path) -> None:
    write_params(tmp_path, explain={"methods": ["saliency", "lime"]})
    write_inputs(tmp_path)
    folder = tmp_path / "reports/figures/gallery"
    folder.mkdir(parents=True)
    (folder / "07_old_as_older.png").write_bytes(b"from a larger selection")
    result = run_stage("gallery", tmp_path)
    assert result.returncode == 0, result.stderr
    gallery_json = json.loads((folder / "gallery.json").read_text())
    assert gallery_json["how_to_read"] and gallery_json["title"]
    entries = gallery_json["images"]
    assert {e["file"] for e in entries} == {p.name for p in folder.glob("*.png")}
    assert [(e["index"], e["true"], e["predicted"], e["correct"]) for e in entries] == [
        (1, "T-shirt/top", "T-shirt/top", True),
        (3, "Pull over", "Pull over", True),
        (4, "Pull over", "seven", False),
    ]
    assert [e["rows"] for e in entries] == [ROWS[r] for r in sorted(ROWS)]
    assert entries[2]["confidence"] == pytest.approx(0.7)
    assert all(e["caption"].endswith(".") for e in entries)
    assert min(p.stat().st_size for p in folder.glob("*.png")) > 5000
