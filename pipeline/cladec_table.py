"""The ClaDec table: a row per decoder (layer, alpha) and RefAE with its test metrics and
training epochs, the reference implementation's MNIST numbers beside it, and the
qualitative properties of the reference's table checked on this run's numbers; the
decoders whose stages were skipped (pipeline/skips.py) are left out and named with their
reason. Pure: the generative_figures stage reads the metrics files and writes what this
returns."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.skips import skipped_together, stored_reason
from pipeline.tables import markdown_table

METRICS = ("mse_per_pixel", "sse_per_image", "classifier_ce", "classifier_accuracy")

# The reference implementation's MNIST test-set numbers (cladec-mnist by Schneider &
# Vlachos' co-authors, eval/evaluation_result.csv: 60,000 training images, 10 epochs,
# their own classifier): per layer, alpha (None: the RefAE) -> (SSE per image,
# classifier cross-entropy on the decodings, classifier accuracy on them). Their conv
# and dense layers are of their classifier, not ours: compare shapes, not values.
REFERENCE_SOURCE = "cladec-mnist eval/evaluation_result.csv (MNIST, 60,000 training images)"
REFERENCE: dict[str, dict[float | None, tuple[float, float | None, float]]] = {
    "dense": {
        None: (3.131, None, 0.9871),
        0.0: (20.52, 0.1285, 0.9840),
        0.01: (20.57, 0.1195, 0.9839),
        0.5: (20.52, 0.0893, 0.9851),
        0.99: (24.08, 0.0542, 0.9861),
        0.999: (87.53, 0.0845, 0.9871),
    },
    "conv": {
        None: (0.359, None, 0.9914),
        0.0: (1.467, 0.0454, 0.9893),
        0.01: (1.488, 0.0466, 0.9893),
        0.5: (1.460, 0.0447, 0.9899),
        0.99: (2.784, 0.0400, 0.9898),
        0.999: (32.32, 0.0903, 0.9865),
    },
}
SSE_TOLERANCE = 0.25  # SSE at alpha 0.5 within this fraction of alpha 0's
ACCURACY_TOLERANCE = 0.03  # accuracy on alpha-0.5 decodings within this of the classifier's


TRAINING = ["training_epochs", "stopped_early", "best_epoch"]
REFERENCE_COLUMNS = ["reference_sse_per_image", "reference_classifier_ce", "reference_accuracy"]
COLUMNS = ["kind", "layer", "alpha", *METRICS, *TRAINING, *REFERENCE_COLUMNS]
MD_HEADER = [
    "kind",
    "layer",
    "alpha",
    "SSE / image",
    "classifier CE",
    "classifier accuracy",
    "epochs (best)",
    "reference SSE",
    "reference CE",
    "reference accuracy",
]


def decoder_rows(
    records: Mapping[str, dict[str, Any]],
) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """The ClaDec and RefAE rows of the generative metrics ({stage: record}, in the given
    order) whose stages trained a model, and {stage: reason} of every skipped one."""
    rows = [r for r in records.values() if r.get("kind") in ("cladec", "refae")]
    skipped = {
        stage: reason for stage, r in records.items() if (reason := stored_reason(r)) is not None
    }
    return [r for r in rows if stored_reason(r) is None], skipped


def skipped_markdown(skipped: Mapping[str, str]) -> str:
    """The line under the table naming the decoders left out and why ('' for none)."""
    return f"\nSkipped: {skipped_together(skipped)}\n" if skipped else ""


def reference(layer: str, alpha: float | None) -> tuple[float, float | None, float] | None:
    """The reference's numbers for a layer name and alpha (None: RefAE), if it has them."""
    return REFERENCE.get(layer, {}).get(alpha)


@dataclass(frozen=True)
class Property:
    """One qualitative property of the reference's table, checked on this run."""

    scope: str  # a layer, or "all layers"
    claim: str
    holds: bool
    numbers: str  # the values it was decided on

    @property
    def verdict(self) -> str:
        return "holds" if self.holds else "FAILS"


def _layer_properties(
    layer: str,
    cladec: dict[float, dict[str, Any]],
    refae: dict[str, Any] | None,
    accuracy: float | None,
) -> list[Property]:
    """The per-layer properties from its ClaDec rows (by alpha) and RefAE row."""
    sse = {a: r["sse_per_image"] for a, r in cladec.items()}
    ce = {a: r["classifier_ce"] for a, r in cladec.items()}
    top = max(sse)
    out: list[Property] = []
    if 0.0 in sse and 0.5 in sse:
        ratio = sse[0.5] / sse[0.0]
        out.append(
            Property(
                layer,
                f"SSE at alpha 0.5 within {SSE_TOLERANCE:.0%} of alpha 0",
                abs(ratio - 1) <= SSE_TOLERANCE,
                f"{sse[0.5]:.2f} vs {sse[0.0]:.2f} (x{ratio:.2f})",
            )
        )
    if 0.0 in sse and top > 0.0:
        out.append(
            Property(
                layer,
                f"SSE rises by the largest alpha ({top:g})",
                sse[top] > sse[0.0],
                f"{sse[top]:.2f} vs {sse[0.0]:.2f}",
            )
        )
        out.append(
            Property(
                layer,
                "classifier cross-entropy on the decodings falls with alpha "
                "(every alpha > 0 below alpha 0)",
                all(v < ce[0.0] for a, v in ce.items() if a > 0),
                ", ".join(f"{a:g}: {v:.3f}" for a, v in sorted(ce.items())),
            )
        )
    if refae is not None:
        out.append(
            Property(
                layer,
                "RefAE's SSE below every ClaDec's",
                all(refae["sse_per_image"] < v for v in sse.values()),
                f"{refae['sse_per_image']:.2f} vs min {min(sse.values()):.2f}",
            )
        )
    if 0.5 in cladec and accuracy is not None:
        got = cladec[0.5]["classifier_accuracy"]
        out.append(
            Property(
                layer,
                f"accuracy on alpha-0.5 decodings within {ACCURACY_TOLERANCE} of the "
                "classifier's on the originals",
                abs(got - accuracy) <= ACCURACY_TOLERANCE,
                f"{got:.3f} vs {accuracy:.3f}",
            )
        )
    return out


def qualitative_properties(
    rows: Sequence[dict[str, Any]], accuracy: float | None
) -> list[Property]:
    """The reference's qualitative table, checked on this run's rows (kind, layer, alpha
    and the metrics): per layer the properties of `_layer_properties`; across layers,
    the conv layer's SSE below the dense layer's at every alpha both have. `accuracy`:
    the classifier's test accuracy on the original images (None: not checked)."""
    by_layer: dict[str, dict[float, dict[str, Any]]] = {}
    refaes: dict[str, dict[str, Any]] = {}
    for r in rows:
        if r["kind"] == "refae":
            refaes[r["layer"]] = r
        else:
            by_layer.setdefault(r["layer"], {})[r["alpha"]] = r
    out = [
        p
        for layer in sorted(by_layer)
        for p in _layer_properties(layer, by_layer[layer], refaes.get(layer), accuracy)
    ]
    if "conv" in by_layer and "dense" in by_layer:
        shared = sorted(set(by_layer["conv"]) & set(by_layer["dense"]))
        conv = [by_layer["conv"][a]["sse_per_image"] for a in shared]
        dense = [by_layer["dense"][a]["sse_per_image"] for a in shared]
        out.append(
            Property(
                "all layers",
                "the conv layer's SSE below the dense layer's at every alpha",
                all(c < d for c, d in zip(conv, dense, strict=True)),
                ", ".join(
                    f"{a:g}: {c:.2f} vs {d:.2f}"
                    for a, c, d in zip(shared, conv, dense, strict=True)
                ),
            )
        )
    return out


def with_reference(row: dict) -> dict:
    """The row plus the reference's numbers for its layer name and alpha (empty where
    the reference has none)."""
    ref = reference(row["layer"], row["alpha"]) or (None, None, None)
    return {**row, **dict(zip(REFERENCE_COLUMNS, ref, strict=True))}


def _cell(value: float | None, spec: str) -> str:
    """A reference number, or '—' where the reference has none."""
    return "—" if value is None else format(value, spec)


def _epochs(row: dict) -> str:
    """'12 (9)': epochs trained and the best epoch kept; '—' when not recorded."""
    if "training_epochs" not in row:
        return "—"
    best = row.get("best_epoch")
    return f"{row['training_epochs']}" + ("" if best is None else f" ({best})")


def properties_markdown(properties: list[Property]) -> str:
    """The qualitative properties, one row each, and the overall count."""
    held = sum(p.holds for p in properties)
    table = markdown_table(
        ["scope", "property (the reference's MNIST table)", "verdict", "this run"],
        [[p.scope, p.claim, p.verdict, p.numbers] for p in properties],
    )
    overall = f"Overall: {held} of {len(properties)} properties hold on this run"
    failed = [f"{p.scope}: {p.claim}" for p in properties if not p.holds]
    return table + "\n" + overall + (("; FAILS: " + "; ".join(failed)) if failed else ".") + "\n"


def cladec_markdown(
    rows: Sequence[dict[str, Any]],
    properties: list[Property],
    skipped: Mapping[str, str] | None = None,
) -> str:
    """The Markdown table (rows already `with_reference`), its source line, the
    properties, and a line naming the decoders `skipped` ({stage: reason}); with no
    rows, that line alone."""
    if not rows:
        return skipped_markdown(skipped or {}).lstrip("\n")
    cells = [
        [r["kind"], r["layer"], "—" if r["alpha"] is None else f"{r['alpha']:g}"]
        + [f"{r['sse_per_image']:.2f}", f"{r['classifier_ce']:.4f}"]
        + [f"{r['classifier_accuracy']:.3f}", _epochs(r)]
        + [_cell(r[k], f) for k, f in zip(REFERENCE_COLUMNS, (".2f", ".4f", ".3f"), strict=True)]
        for r in rows
    ]
    return (
        markdown_table(MD_HEADER, cells)
        + f"\nreference: {REFERENCE_SOURCE}; the reference's layers are of its own "
        "classifier (compare the shapes, not the values).\n\n"
        + properties_markdown(properties)
        + skipped_markdown(skipped or {})
    )
