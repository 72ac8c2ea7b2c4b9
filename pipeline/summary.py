"""`metrics/summary.json`: the numbers people compare between runs, gathered from the
stages' own metrics into one small file (the full metrics have hundreds of keys):
the classifier's test accuracy; per attribution method every faithfulness AUC with its
95% interval and the sanity verdicts; the ClaDec trade-off (how many of the reference's
qualitative properties hold, and per layer the alpha-0.5 decoder's numbers); ICE's
fidelity for the concepts shown; the latent grids' scores. Pure: the `summary` stage
reads the files and writes what this returns."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pipeline.cladec_table import qualitative_properties
from pipeline.evaluate import RANDOM_BASELINE
from pipeline.evaluate.protocol import FAITHFULNESS, sanity_word
from pipeline.skips import stored_reason

DIGITS = 4  # rounding: the intervals are wider than this
ICE_KEYS = ("fidelity_reference", "relative_logit_error", "fidelity_agreement", "concepts")


def _round(value: Any) -> Any:
    return round(value, DIGITS) if isinstance(value, float) else value


def method_summary(row: Mapping[str, Any]) -> dict[str, Any]:
    """One method's (or the random baseline's) AUCs with intervals, and its verdicts."""
    out: dict[str, Any] = {}
    for score in FAITHFULNESS:
        for suffix in ("", "_low", "_high"):
            if f"{score.key}{suffix}" in row:
                out[f"{score.key}{suffix}"] = _round(row[f"{score.key}{suffix}"])
        beats = f"beats_random_{score.key.removesuffix('_auc')}"
        if beats in row:
            out[beats] = row[beats]
    if "sanity_spearman_all_n" in row:
        for key in ("sanity_spearman_all", "sanity_spearman_foreground"):
            for suffix in ("", "_low", "_high"):
                out[f"{key}{suffix}"] = _round(row[f"{key}{suffix}"])
        out["sanity"] = sanity_word(row, "")
        out["sanity_foreground"] = sanity_word(row, "_foreground")
    return out


def cladec_summary(rows: Sequence[Mapping[str, Any]], accuracy: float | None) -> dict[str, Any]:
    """The reference's qualitative properties that hold, and the alpha-0.5 decoders."""
    properties = qualitative_properties(list(rows), accuracy)
    out: dict[str, Any] = {
        "properties_hold": sum(p.holds for p in properties),
        "properties": len(properties),
    }
    for r in rows:
        if r["kind"] == "cladec" and r["alpha"] == 0.5:
            out[f"{r['layer']}-0.5"] = {
                "sse_per_image": _round(r["sse_per_image"]),
                "classifier_accuracy": _round(r["classifier_accuracy"]),
            }
    return out


def summarize(
    classifier: Mapping[str, Any],
    evaluate: Mapping[str, Any],
    cladec_rows: Sequence[Mapping[str, Any]],
    ice: Mapping[str, Any] | None,
    decodings: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The summary from the contents of metrics/classifier.json (no `test_accuracy` when
    it has none, its note instead), metrics/evaluate.json,
    the ClaDec and RefAE rows of metrics/generative/, and (when those parts ran)
    metrics/explain/ice.json and metrics/explain/cladec_decodings.json (left out when
    skipped: pipeline/skips.py; `cladec_table.decoder_rows` leaves out skipped decoders)."""
    test = classifier["test"]
    # none for a model explained as it is on data of other classes: its note says why
    accuracy = float(test["accuracy"]) if "accuracy" in test else None
    methods = evaluate["methods"]
    summary: dict[str, Any] = {
        **({"test_accuracy": _round(accuracy)} if accuracy is not None else {}),
        **({"test_note": test["note"]} if accuracy is None and "note" in test else {}),
        "methods": {name: method_summary(row) for name, row in methods.items()},
        "sanity_flagged": sum(
            bool(row.get("sanity_flagged")) for n, row in methods.items() if n != RANDOM_BASELINE
        ),
    }
    if cladec_rows:
        summary["cladec"] = cladec_summary(cladec_rows, accuracy)
    if ice and stored_reason(ice) is None:  # a skipped part's metrics: its reason only
        summary["ice"] = {key: _round(ice[key]) for key in ICE_KEYS if key in ice}
    if decodings and stored_reason(decodings) is None:
        summary["latent_grid"] = {
            key: _round(value) for key, value in decodings.items() if "latent_grid" in key
        }
    return summary
