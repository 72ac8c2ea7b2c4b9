"""metrics/summary.json from known metrics: intervals carried, verdicts worded from the
intervals, the ClaDec properties counted, optional parts left out when absent."""

from __future__ import annotations

from pipeline.evaluate.intervals import Interval
from pipeline.evaluate.protocol import FAITHFULNESS
from pipeline.summary import summarize


def _row(value: float, rho: float | None, flagged: bool = False, passed: bool = False) -> dict:
    row: dict = {}
    for score in FAITHFULNESS:
        row.update(Interval(value, value - 0.01, value + 0.01, 200).as_dict(score.key))
        row[f"beats_random_{score.key.removesuffix('_auc')}"] = value < 0.5
    if rho is not None:
        row.update(Interval(rho, rho - 0.05, rho + 0.05, 50).as_dict("sanity_spearman_all"))
        row.update(Interval(0.1, 0.05, 0.15, 50).as_dict("sanity_spearman_foreground"))
        row.update(
            sanity_flagged=flagged,
            sanity_passed=passed,
            sanity_flagged_foreground=False,
            sanity_passed_foreground=True,
        )
    return row


def _cladec(layer: str, alpha: float | None, sse: float, accuracy: float) -> dict:
    return {
        "kind": "refae" if alpha is None else "cladec",
        "layer": layer,
        "alpha": alpha,
        "sse_per_image": sse,
        "classifier_ce": 0.2 - (alpha or 0) / 10,
        "classifier_accuracy": accuracy,
    }


def test_summary_carries_intervals_verdicts_and_the_cladec_properties() -> None:
    evaluate = {
        "methods": {
            "random": {k: v for k, v in _row(0.7, None).items() if "beats" not in k},
            "flat": _row(0.123456, 0.95, flagged=True),
            "good": _row(0.2, 0.2, passed=True),
            "unsure": _row(0.3, 0.5),
        }
    }
    rows = [
        _cladec("dense", 0.0, 20.0, 0.95),
        _cladec("dense", 0.5, 21.0, 0.96),
        _cladec("dense", 0.999, 80.0, 0.97),
        _cladec("dense", None, 3.0, 0.97),
    ]
    summary = summarize(
        {"test": {"accuracy": 0.97}},
        evaluate,
        rows,
        {"fidelity_reference": 0.51856, "relative_logit_error": 0.6, "concepts": 5, "x": 1},
        {"refvae/latent_grid.classes_present": 5.0, "dense/alpha_0.5/same_prediction": 0.9},
    )
    flat = summary["methods"]["flat"]
    assert flat["deletion_auc"] == 0.1235 and flat["deletion_auc_low"] == 0.1135
    assert flat["beats_random_deletion"] is True
    assert (flat["sanity"], flat["sanity_foreground"]) == ("FLAGGED", "passed")
    assert summary["methods"]["good"]["sanity"] == "passed"
    assert summary["methods"]["unsure"]["sanity"] == "inconclusive"
    assert "sanity" not in summary["methods"]["random"]
    assert summary["sanity_flagged"] == 1
    # 5 dense properties (SSE at 0.5 within 25%, rising, CE falling, RefAE lowest,
    # accuracy within 0.03): all hold by construction
    assert summary["cladec"]["properties_hold"] == summary["cladec"]["properties"] == 5
    assert summary["cladec"]["dense-0.5"] == {"sse_per_image": 21.0, "classifier_accuracy": 0.96}
    assert summary["ice"] == {
        "fidelity_reference": 0.5186,
        "relative_logit_error": 0.6,
        "concepts": 5,
    }
    assert summary["latent_grid"] == {"refvae/latent_grid.classes_present": 5.0}


def test_summary_without_optional_parts_and_with_a_failing_property() -> None:
    rows = [_cladec("conv", 0.0, 2.0, 0.9), _cladec("conv", 0.5, 4.0, 0.9)]  # SSE x2
    summary = summarize({"test": {"accuracy": 0.98}}, {"methods": {}}, rows, None, None)
    assert "ice" not in summary and "latent_grid" not in summary
    assert summary["cladec"]["properties"] > summary["cladec"]["properties_hold"]
    assert summary["sanity_flagged"] == 0


def test_a_model_without_test_accuracy_gets_its_note_instead() -> None:
    """A model explained as it is on a folder of other classes has no accuracy (the
    resnet50 photo run's summary stage failed with KeyError: 'accuracy')."""
    note = "the dataset's classes are not among the model's: no accuracy"
    classifier = {"test": {"note": note, "most_predicted": {"photocopier": 16}}}
    rows = [_cladec("conv", 0.0, 2.0, 0.9), _cladec("conv", 0.5, 4.0, 0.9)]
    summary = summarize(classifier, {"methods": {"gradcam": _row(0.2, 0.1)}}, rows, None, None)
    assert "test_accuracy" not in summary and summary["test_note"] == note
    assert summary["methods"]["gradcam"]["deletion_auc"] == 0.2
    checked = summarize({"test": {"accuracy": 0.98}}, {"methods": {}}, rows, None, None)
    assert "test_note" not in checked
    # the accuracy property is not checked without an accuracy: one property fewer
    assert summary["cladec"]["properties"] == checked["cladec"]["properties"] - 1
