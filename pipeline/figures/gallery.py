"""The per-instance gallery: one figure per selected image with every explanation of that
image side by side, so a person compares methods on the same picture.

Rows, each left out when the image is not covered by that part:

- the attribution maps for the predicted class, every method in params' order, with
  LIME's pros (green) and cons (red) superpixels at the end;
- the same for the true class, when the prediction is wrong;
- the across-epochs method with the classifier of every saved epoch;
- per layer, the reference autoencoder's reconstruction and ClaDec's decoding per alpha;
- the VAE latent walk the image belongs to (it is one of the walk's ends, or the walk
  joins its true class and the class it was taken for).

A part that was skipped (pipeline/skips.py), or a decoder whose stage was, leaves its
rows or panels out; the caption and the note under the title say so.

One colour convention throughout, the attribution figures' own (`heat_panel`): signed
maps diverging and centred at 0 with symmetric limits, non-negative ones sequential,
each map scaled by its largest |value|, one colour bar per kind shown. Panels are
pasted into one RGB mosaic placed pixel for pixel on the figure (as
`attributions._mosaic_figure` pastes its panels): fifty figures of ~60 panels each would
take minutes as separate axes; this way a figure takes about 0.2 s of CPU.

Drawing only: the arrays come from what the explain and inside stages stored."""

from __future__ import annotations

import re
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from matplotlib.figure import Figure

from pipeline.explain.base import pixel_map
from pipeline.explain.parts.vae_walks import flip_steps
from pipeline.explain.stored import StoredAttributions
from pipeline.figures.attributions import (
    POSITIVE_CMAP,
    SIGNED_CMAP,
    _enlarged,
    _rgb,
    heat_panel,
    lime_overlay,
)
from pipeline.selection import Selection

GAP = 8  # pixels between panels
HEAD = 44  # above a row of panels: the row's title and the panels' captions
FOOT = 16  # below a row whose panels have a caption underneath
BARS = 72  # the strip at the bottom that holds the colour bars
TOP = 46  # the strip at the top that holds the figure's title
MARGIN = 8  # left and right of the panels
MIN_PANELS = 8  # the figure is never narrower than this many panels: its titles fit
DPI = 130  # the mosaic is drawn one pixel per output pixel at this resolution
FRAME = 3  # width of a coloured frame (a wrong prediction, a flip), pixels
RED = (0.85, 0.1, 0.1)
COLOUR_BARS = {  # kind -> (limits, colour map, label): limits symmetric for signed maps
    "signed": ((-1.0, 1.0), SIGNED_CMAP, "signed: value / the map's largest |value|"),
    "unsigned": ((0.0, 1.0), POSITIVE_CMAP, "unsigned: value / the map's largest value"),
}
PART_ROWS = {  # an inside part the gallery draws -> its rows, in words
    "across_epochs": "the maps across epochs",
    "cladec_decodings": "the ClaDec decodings",
    "vae_walks": "the latent walks",
}
TITLE = "Per-image gallery: every explanation of one selected test image side by side"
HOW_TO_READ = (
    "Each figure explains one image, row by row: the attribution maps for the predicted "
    "class (on signed maps red is evidence for the class and blue against it, on unsigned "
    "ones brighter is more important, every map scaled to its own strongest value) with "
    "LIME's strongest superpixels (green for, red against), the same for the true class "
    "when the prediction is wrong, the across-epochs method at every saved epoch, what "
    "ClaDec decodes from each layer next to the reference autoencoder (the closer to the "
    "autoencoder, the more of the image the layer keeps), and the VAE latent walk between "
    "its classes with each step where the classifier's class changes framed in red; the "
    "caption names the rows an image lacks."
)


# ------------------------------------------------------------------ the stored parts


@dataclass(frozen=True)
class MethodMaps:
    """One attribution method's pixel maps, as the gallery draws them."""

    name: str
    signed: bool
    predicted: np.ndarray  # N×H×W, for the predicted class of every selected image
    true: dict[int, np.ndarray]  # selection row -> H×W for the true class (wrong rows)

    @classmethod
    def from_stored(cls, stored: StoredAttributions, signed: bool) -> MethodMaps:
        true = pixel_map(stored.true)
        return cls(
            stored.method,
            signed,
            pixel_map(stored.predicted),
            {int(r): true[k] for k, r in enumerate(stored.true_rows)},
        )


@dataclass(frozen=True)
class LimePros:
    """LIME's superpixels and weights (NaN-padded), for the pros-and-cons panels."""

    segments: np.ndarray  # N×H×W
    weights: np.ndarray  # N×K
    true: dict[int, tuple[np.ndarray, np.ndarray]]  # wrong row -> (segments, weights)
    features: int  # superpixels tinted

    @classmethod
    def from_stored(cls, stored: StoredAttributions, features: int) -> LimePros:
        x = stored.extras
        true_segments = x.get("true_segments", x["segments"][stored.true_rows])
        return cls(
            x["segments"],
            x["weights"],
            {
                int(r): (true_segments[k], x["true_weights"][k])
                for k, r in enumerate(stored.true_rows)
            },
            features,
        )


def stored_positions(stored_images: np.ndarray, images: np.ndarray) -> dict[int, int]:
    """selection row -> position in a part's stored images, matched by their pixels: the
    parts store the images they show, not which selected rows those were."""
    where = {np.ascontiguousarray(img).tobytes(): k for k, img in enumerate(stored_images)}
    found = {r: where.get(np.ascontiguousarray(img).tobytes()) for r, img in enumerate(images)}
    return {r: k for r, k in found.items() if k is not None}


@dataclass(frozen=True)
class EpochMaps:
    """The across-epochs part: one method's maps with the classifier of each epoch."""

    method: str
    signed: bool
    rows: dict[int, int]  # selection row -> position in maps' second axis
    maps: np.ndarray  # E×M×H×W
    predicted: np.ndarray  # E×M, the class each epoch's classifier gave
    epochs: list[int]

    @classmethod
    def from_stored(cls, z: dict[str, np.ndarray], images: np.ndarray, signed: bool) -> EpochMaps:
        return cls(
            str(z["method"]),
            signed,
            stored_positions(z["images"], images),
            z["maps"],
            z["predicted"],
            [int(e) for e in z["epochs"]],
        )


@dataclass(frozen=True)
class Decodings:
    """The ClaDec decodings part: per layer RefAE's and each alpha's reconstructions."""

    rows: dict[int, int]  # selection row -> position in the stored reconstructions
    layers: list[str]
    alphas: list[float]
    arrays: dict[str, np.ndarray]  # `<layer>/refae`, `<layer>/<alpha>`: M×C×H×W

    @property
    def count(self) -> int:
        """How many images the part decoded."""
        return len(self.arrays["originals"])

    @property
    def skipped(self) -> list[str]:
        """The decoders whose stages were skipped (their panels are left out)."""
        return [str(name) for name in self.arrays.get("skipped", [])]

    @classmethod
    def from_stored(cls, z: dict[str, np.ndarray], images: np.ndarray) -> Decodings:
        return cls(
            stored_positions(z["originals"], images),
            [str(layer) for layer in z["layers"]],
            [float(a) for a in z["alphas"]],
            z,
        )


@dataclass(frozen=True)
class Walks:
    """The VAE latent walks: ends (test indices) and their classes, decoded steps."""

    titles: list[str]
    ends: np.ndarray  # W×2 test-split indices
    end_classes: np.ndarray  # W×2 true classes of the ends
    decoded: np.ndarray  # W×T×C×H×W
    probabilities: np.ndarray  # W×T×K

    @classmethod
    def from_stored(cls, z: dict[str, np.ndarray], test_labels: np.ndarray) -> Walks:
        ends = np.asarray(z["ends"], dtype=np.int64).reshape(-1, 2)
        return cls(
            [str(t) for t in z["titles"]], ends, test_labels[ends], z["decoded"], z["probabilities"]
        )

    def belonging(self, index: int, label: int, predicted: int) -> tuple[int, str] | None:
        """The walk that belongs to test image `index` and why: one of its ends is the
        image, else (a wrong prediction) it joins the true and the predicted class."""
        for w, ends in enumerate(self.ends):
            if index in ends.tolist():
                return w, "it starts or ends at this image"
        if label != predicted:
            for w, classes in enumerate(self.end_classes):
                if classes.tolist() == [label, predicted]:
                    return w, "from its true class to the class it was taken for"
        return None


# ------------------------------------------------------------------------ the rows


@dataclass(frozen=True)
class Panel:
    """One picture of a row: H×W×3 pixels in [0, 1], captions, an optional frame."""

    pixels: np.ndarray
    top: str = ""
    bottom: str = ""
    frame: tuple[float, float, float] | None = None
    kind: str | None = None  # the colour bar it reads against: signed, unsigned or none


@dataclass(frozen=True)
class Row:
    key: str  # what gallery.json lists
    title: str
    panels: list[Panel]


def _picture(image: np.ndarray) -> np.ndarray:
    """A C×H×W image (uint8, or floats in [0, 1]) as an enlarged RGB panel."""
    return np.clip(_enlarged(_rgb(image)), 0, 1)


def _heat(image: np.ndarray, heat: np.ndarray, signed: bool, top: str, bottom: str = "") -> Panel:
    kind = "signed" if signed else "unsigned"
    return Panel(heat_panel(image, heat, signed), top, bottom, kind=kind)


def _images(count: int) -> str:
    return f"{count} image" if count == 1 else f"{count} images"


def _label(name: str) -> str:
    """A method's name over its panel, wrapped to the panel's width."""
    return "\n".join(textwrap.wrap(name.replace("_", " "), 14)) or name


@dataclass
class Gallery:
    """Everything the gallery draws, for the selected images (rows of `selection`)."""

    images: np.ndarray  # N×C×H×W, the selected test images
    selection: Selection
    methods: list[MethodMaps]
    lime: LimePros | None = None
    epochs: EpochMaps | None = None
    decodings: Decodings | None = None
    walks: Walks | None = None
    skipped: dict[str, str] = field(default_factory=dict)  # part -> why (pipeline/skips.py)
    names: list[str] = field(init=False)

    def __post_init__(self) -> None:
        self.names = list(self.selection.class_names)

    # -------------------------------------------------------------- one image's rows
    def _attribution_row(self, r: int, cls: int, true_class: bool) -> Row:
        """The maps for class `cls` (the predicted one, or the true one of a wrong row)."""
        image, s = self.images[r], self.selection
        probability = float(s.probabilities[r, cls])
        panels = []
        if true_class:
            panels.append(Panel(np.ones_like(_picture(image))))  # under the image
        else:
            wrong = s.misclassified[r]
            panels.append(
                Panel(
                    _picture(image),
                    f"true {self.names[s.labels[r]]}",
                    f"pred {self.names[cls]} {probability:.2f}",
                    RED if wrong else None,
                )
            )
        for m in self.methods:
            heat = m.true.get(r) if true_class else m.predicted[r]
            if heat is None:
                panels.append(Panel(np.ones_like(panels[0].pixels), _label(m.name), "not stored"))
            else:
                panels.append(_heat(image, heat, m.signed, _label(m.name)))
        if self.lime is not None:
            lime = self.lime
            pair = lime.true.get(r) if true_class else (lime.segments[r], lime.weights[r])
            if pair is not None:
                overlay = lime_overlay(image, pair[0], pair[1], lime.features)
                panels.append(Panel(_enlarged(overlay), "LIME pros\n(green), cons (red)"))
        which = "true" if true_class else "predicted"
        return Row(
            f"attributions_{which}",
            f"Attributions for the {which} class {self.names[cls]} (probability {probability:.2f})",
            panels,
        )

    def _epochs_row(self, r: int) -> Row | None:
        e = self.epochs
        if e is None or r not in e.rows:
            return None
        k, image = e.rows[r], self.images[r]
        panels = [
            _heat(image, e.maps[i, k], e.signed, f"epoch {epoch}", self.names[e.predicted[i, k]])
            for i, epoch in enumerate(e.epochs)
        ]
        return Row(
            "across_epochs",
            f"{e.method} with the classifier of every saved epoch (the class it predicted "
            "then below)",
            panels,
        )

    def _cladec_rows(self, r: int) -> list[Row]:
        d = self.decodings
        if d is None or r not in d.rows:
            return []
        k, rows = d.rows[r], []
        for layer in d.layers:
            named = [("RefAE", f"{layer}/refae")]
            named += [(f"ClaDec\nα={a:g}", f"{layer}/{a}") for a in d.alphas]
            panels = [
                Panel(_picture(d.arrays[key][k]), top) for top, key in named if key in d.arrays
            ]
            if not panels:  # every decoder of the layer was skipped
                continue
            rows.append(
                Row(
                    f"cladec_{layer}",
                    f"What layer {layer} keeps: the reference autoencoder, then ClaDec's "
                    "decoding per alpha",
                    panels,
                )
            )
        return rows

    def _walk_row(self, r: int) -> Row | None:
        if self.walks is None:
            return None
        s, walks = self.selection, self.walks
        found = walks.belonging(int(s.indices[r]), int(s.labels[r]), int(s.predicted[r]))
        if found is None:
            return None
        w, why = found
        probabilities = walks.probabilities[w]
        predicted = probabilities.argmax(1)
        flips = flip_steps(predicted)
        panels = [
            Panel(
                _picture(step),
                f"step {t}" if t else "start",
                f"{self.names[predicted[t]]} {probabilities[t, predicted[t]]:.2f}",
                RED if t in flips else None,
            )
            for t, step in enumerate(walks.decoded[w])
        ]
        if len(flips):
            change = walks.decoded[w][flips[0]] - walks.decoded[w][flips[0] - 1]
            panels.append(
                Panel(signed_picture(change.mean(0)), "after − before\nthe flip", kind="signed")
            )
        return Row(
            "latent_walk",
            f"VAE latent walk {walks.titles[w]} ({why}); the classifier's class under each step",
            panels,
        )

    def rows(self, r: int) -> list[Row]:
        """Every row image `r` is covered by, top to bottom."""
        s = self.selection
        rows = [self._attribution_row(r, int(s.predicted[r]), true_class=False)]
        if s.misclassified[r]:
            rows.append(self._attribution_row(r, int(s.labels[r]), true_class=True))
        rows += [self._epochs_row(r), *self._cladec_rows(r), self._walk_row(r)]
        return [row for row in rows if row is not None]

    def missing(self, r: int, shown: Sequence[str]) -> list[str]:
        """Why a part's row is left out for image `r`, one phrase per part."""
        out = []
        if self.epochs is not None and "across_epochs" not in shown:
            out.append(f"not among the {_images(self.epochs.maps.shape[1])} followed across epochs")
        if self.decodings is not None and not any(k.startswith("cladec_") for k in shown):
            out.append(f"not among the {_images(self.decodings.count)} ClaDec decodes")
        if self.decodings is not None and self.decodings.skipped:
            out.append(f"{', '.join(self.decodings.skipped)} skipped")
        if self.walks is not None and "latent_walk" not in shown:
            s = self.selection
            joins = (
                f" or joins {self.names[s.labels[r]]} and {self.names[s.predicted[r]]}"
                if s.misclassified[r]
                else ""
            )
            out.append(f"no latent walk starts or ends at it{joins}")
        out += [f"{PART_ROWS[part]} skipped ({part})" for part in self.skipped]
        return out

    # ------------------------------------------------------------------ the outputs
    def title(self, r: int) -> str:
        s = self.selection
        true, pred = self.names[s.labels[r]], self.names[s.predicted[r]]
        verdict = "correct" if not s.misclassified[r] else "wrong"
        return (
            f"Test image #{int(s.indices[r])}: true {true}, predicted {pred} "
            f"({float(s.probabilities[r, s.predicted[r]]):.2f}, {verdict}) — every explanation "
            "of this image"
        )

    def caption(self, r: int, rows: Sequence[Row]) -> str:
        """One sentence: the image, its prediction, what is shown and what is not."""
        s = self.selection
        true, pred = self.names[s.labels[r]], self.names[s.predicted[r]]
        confidence = float(s.probabilities[r, s.predicted[r]])
        verdict = "correct" if not s.misclassified[r] else "wrong"
        head = (
            f"Test image #{int(s.indices[r])} of class {true}, predicted {pred} with "
            f"probability {confidence:.2f} ({verdict})"
        )
        keys = [row.key for row in rows]
        shown = [
            f"{len(self.methods)} attribution maps"
            + (" and LIME's pros and cons" if self.lime is not None else "")
            + (" for the predicted and the true class" if s.misclassified[r] else "")
        ]
        if "across_epochs" in keys and self.epochs is not None:
            shown.append(f"{self.epochs.method} at {len(self.epochs.epochs)} epochs")
        layers = [k.removeprefix("cladec_") for k in keys if k.startswith("cladec_")]
        if layers:
            shown.append(f"ClaDec decodings of {' and '.join(layers)}")
        if "latent_walk" in keys:
            shown.append("its latent walk")
        missing = self.missing(r, keys)
        tail = f"; {'; '.join(missing)}" if missing else ""
        return f"{head}: {', '.join(shown)}{tail}."

    def figure(self, r: int) -> tuple[Figure, list[Row]]:
        rows = self.rows(r)
        missing = self.missing(r, [row.key for row in rows])
        note = f"Not shown: {'; '.join(missing)}." if missing else ""
        return plot_rows(rows, self.title(r), note), rows

    def file_name(self, r: int) -> str:
        """`<nn>_<true>_as_<pred>.png`, class names made safe for a file name."""
        s = self.selection
        width = max(2, len(str(len(s) - 1)))
        true, pred = self.names[s.labels[r]], self.names[s.predicted[r]]
        return f"{r:0{width}d}_{safe_name(true)}_as_{safe_name(pred)}.png"

    def entry(self, r: int, rows: Sequence[Row]) -> dict[str, object]:
        """gallery.json's record of image `r`."""
        s = self.selection
        return {
            "file": self.file_name(r),
            "index": int(s.indices[r]),
            "row": r,
            "true": self.names[s.labels[r]],
            "predicted": self.names[s.predicted[r]],
            "confidence": round(float(s.probabilities[r, s.predicted[r]]), 4),
            "correct": not bool(s.misclassified[r]),
            "rows": [row.key for row in rows],
            "caption": self.caption(r, rows),
        }


def safe_name(name: str) -> str:
    """A class name as a file-name part: letters, digits, `-` and `.` kept, anything else
    (slashes, spaces) one `_`; never empty, never hidden."""
    return re.sub(r"[^A-Za-z0-9.-]+", "_", name).strip("._") or "class"


def signed_picture(values: np.ndarray) -> np.ndarray:
    """An H×W signed array in the signed colour map, 0 in the middle, limits ±max|value|."""
    import matplotlib

    limit = float(np.abs(values).max()) or 1.0
    return _enlarged(matplotlib.colormaps[SIGNED_CMAP]((values / limit + 1) / 2)[..., :3])


# ----------------------------------------------------------------------- the drawing


def _framed(pixels: np.ndarray, colour: tuple[float, float, float] | None) -> np.ndarray:
    if colour is None:
        return pixels
    out = pixels.copy()
    out[:FRAME], out[-FRAME:], out[:, :FRAME], out[:, -FRAME:] = colour, colour, colour, colour
    return out


def plot_rows(rows: Sequence[Row], title: str, note: str = "") -> Figure:
    """The rows pasted into one RGB mosaic placed pixel for pixel on the figure
    (`figimage`: no resampling; save it at `DPI` without `bbox_inches="tight"`, which
    would leave the mosaic out of the box and draw twice): the title, each row's title,
    each panel's captions above and below, a colour bar per kind of map shown; `note`
    (what is left out) under the title."""
    import matplotlib.pyplot as plt
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    side = max(max(p.pixels.shape[:2]) for row in rows for p in row.panels)
    cell = side + GAP
    panels = max(len(row.panels) for row in rows)
    width = max(MIN_PANELS, panels) * cell - GAP + 2 * MARGIN  # room for the titles
    heights = [HEAD + side + (FOOT if any(p.bottom for p in row.panels) else GAP) for row in rows]
    height = TOP + sum(heights) + BARS
    mosaic = np.ones((height - BARS, width, 3), dtype=np.float32)  # the bars' strip: none
    texts: list[tuple[float, float, str, str, str, float]] = [  # x, y, text, ha, va, size
        (MARGIN, 6, title, "left", "top", 9),
        (MARGIN, 24, note, "left", "top", 7),
    ]
    y = TOP
    for row, row_height in zip(rows, heights, strict=True):
        texts.append((MARGIN, y + 2, row.title, "left", "top", 7.5))
        for c, panel in enumerate(row.panels):
            x, (h, w) = MARGIN + c * cell, panel.pixels.shape[:2]
            framed = _framed(np.clip(panel.pixels[:side, :side], 0, 1), panel.frame)
            mosaic[y + HEAD : y + HEAD + h, x : x + w] = framed
            if panel.top:
                texts.append((x + w / 2, y + HEAD - 2, panel.top, "center", "bottom", 6))
            if panel.bottom:
                texts.append((x + w / 2, y + HEAD + h + 1, panel.bottom, "center", "top", 6))
        y += row_height
    fig = plt.figure(figsize=(width / DPI, height / DPI), dpi=DPI)
    rgba = np.dstack([mosaic, np.ones(mosaic.shape[:2], np.float32)])
    fig.figimage((rgba * 255 + 0.5).astype(np.uint8), 0, BARS, origin="upper")  # bytes: faster
    for x, ty, text, ha, va, size in texts:  # pixels from the top left -> figure fractions
        if text:
            fig.text(x / width, 1 - ty / height, text, ha=ha, va=va, fontsize=size)
    kinds = [k for k in COLOUR_BARS if any(p.kind == k for row in rows for p in row.panels)]
    for i, kind in enumerate(kinds):
        (low, high), cmap, label = COLOUR_BARS[kind]
        box = fig.add_axes((0.03 + 0.5 * i, (BARS - 26) / height, 0.4, 12 / height))
        bar = fig.colorbar(
            ScalarMappable(Normalize(low, high), cmap), cax=box, orientation="horizontal"
        )
        bar.set_label(label, fontsize=6)
        bar.set_ticks([low, (low + high) / 2, high])
        bar.ax.tick_params(labelsize=6)
    return fig
