"""The report page (pipeline/report/) from small inputs made here, where what must
appear is known by construction; and the `report` stage on a folder of such files."""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.params import Params, parse_params
from pipeline.report import markup as h
from pipeline.report.content import (
    SECTIONS,
    ReportInputs,
    RunInfo,
    build_report,
    image_patterns,
    params_diff,
)
from pipeline.report.interactive import plotly_js

CLASSES = ["zero", "one", "two"]


def png(width: int, height: int, shade: int = 128) -> bytes:
    """A PNG of the given size: its pixel size is known by construction."""
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (shade, 0, 255 - shade)).save(buffer, "PNG")
    return buffer.getvalue()


def tour_arrays(n: int = 12, frames: int = 3, epochs: int = 2) -> dict[str, np.ndarray]:
    """The layout of explanations/grand_tour/tour.npz, one layer."""
    rng = np.random.default_rng(0)
    labels = np.arange(n) % len(CLASSES)
    return {
        "labels": labels,
        "class_names": np.array(CLASSES),
        "layers": np.array(["dense"]),
        "predictions": labels,
        "dense/rotation": rng.normal(size=(frames, n, 2)),
        "dense/times": np.linspace(0, 1, frames),
        "dense/epochs": rng.normal(size=(epochs, n, 2)),
        "epochs": np.arange(1, epochs + 1),
        "epoch_predictions": np.tile(labels, (epochs, 1)),
    }


def flow_arrays(n: int = 12, epochs: int = 3) -> dict[str, np.ndarray]:
    """The layout of explanations/instanceflow/flow.npz."""
    labels = np.arange(n) % len(CLASSES)
    predictions = np.tile(labels, (epochs, 1))
    predictions[0, :4] = (labels[:4] + 1) % len(CLASSES)  # four images wrong at first
    return {
        "predictions": predictions,
        "labels": labels,
        "epochs": np.arange(1, epochs + 1),
        "epoch_rows": np.arange(epochs),
        "class_names": np.array(CLASSES),
        "classes": np.zeros(0, dtype=np.int64),
    }


SUMMARY = {
    "test_accuracy": 0.9,
    "methods": {"random": {"deletion_auc": 0.7}, "saliency": {"sanity": "passed"}},
    "sanity_flagged": 0,
}
EVALUATE_TABLE = "| method | deletion AUC ↓ |\n|---|---|\n| saliency | 0.214 [0.196, 0.234] |\n"
GALLERY = {
    "title": "t",
    "how_to_read": "Read the gallery row by row.",
    "images": [
        {"file": "01_two_as_one.png", "caption": "image 7: two, predicted one"},
        {"file": "00_zero_as_zero.png", "caption": "image 3: zero, predicted zero"},
        {"file": "02_not_drawn.png", "caption": "listed, but no file"},
    ],
}


def inputs(**changes) -> ReportInputs:
    """Small but complete inputs; `changes` replace fields."""
    fields = dict(
        run=RunInfo("synthetic", "small_cnn", "abc123", False, "http://127.0.0.1:5000/#/x"),
        summary=SUMMARY,
        params=Params().model_dump(),
        defaults=Params().model_dump(),
        images={
            "figures/evaluate.png": png(30, 20),
            "figures/ice/classes.png": png(40, 10),
            "figures/gallery/00_zero_as_zero.png": png(8, 8, 10),
            "figures/gallery/01_two_as_one.png": png(9, 9, 20),
            "figures/gallery/99_unlisted.png": png(7, 7),
            "figures/attributions/saliency/saliency_correct.png": png(5, 5),
        },
        tables={"evaluate_table.md": EVALUATE_TABLE},
        gallery=GALLERY,
        tour=tour_arrays(),
        flow=flow_arrays(),
    )
    return ReportInputs(**{**fields, **changes})


def embedded(page: str) -> list[bytes]:
    """The bytes of every <img> data URI, in page order."""
    found = re.findall(r'<img src="data:image/(?:png|gif);base64,([^"]+)"', page)
    return [base64.b64decode(data) for data in found]


def without_plotly_js(page: str) -> str:
    return page.replace(plotly_js(), "")


@pytest.fixture(scope="module")
def page() -> str:
    return build_report(inputs())


def test_every_section_has_an_id_a_guide_and_a_link_in_the_navigation_bar(page):
    anchors = [s.anchor for s in SECTIONS]
    assert re.findall(r'<section id="([^"]+)"', page) == anchors
    nav = re.search(r"<nav>(.*?)</nav>", page, re.S).group(1)
    assert re.findall(r'href="#([^"]+)"', nav) == anchors
    assert page.count('<p class="guide">') == len(anchors)


def test_params_diff_lists_exactly_the_changed_keys():
    defaults = Params().model_dump()
    lr = Params().classifier.lr * 3
    changed = parse_params({"seed": 7, "classifier": {"lr": lr}}).model_dump()
    assert params_diff(changed, defaults) == [
        ("classifier.lr", Params().classifier.lr, lr),
        ("seed", Params().seed, 7),
    ]
    assert params_diff(defaults, defaults) == []
    # a key only one side has shows None on the other
    assert params_diff({"a": {"b": 1}}, {"a": {"c": 2}}) == [("a.b", None, 1), ("a.c", 2, None)]


def test_the_summary_shows_the_run_and_the_params_that_differ():
    params = parse_params({"seed": 7}).model_dump()
    page = build_report(inputs(params=params, tour=None, flow=None))
    summary = re.search(r'<section id="summary">(.*?)</section>', page, re.S).group(1)
    for fact in ("synthetic", "small_cnn", "abc123", "0.9", "0 of 1", "http://127.0.0.1:5000/#/x"):
        assert fact in summary, fact
    assert f"<td>seed</td><td>{Params().seed}</td><td>7</td>" in summary
    same = build_report(inputs(tour=None, flow=None))
    assert "Every param is at its default." in same


def test_a_reordered_list_says_so():
    defaults = Params().model_dump()
    methods = defaults["explain"]["methods"]
    params = parse_params({"explain": {"methods": methods[::-1]}}).model_dump()
    page = build_report(inputs(params=params, tour=None, flow=None))
    assert "(the default's items in another order)" in page


def test_images_are_embedded_unchanged_and_only_those_the_sections_show(page):
    images = inputs().images
    shown = embedded(page)
    # the evaluate figure, the ICE figure and the two gallery figures json lists that exist;
    # not the per-method attribution figure nor the gallery figure json does not list
    assert len(shown) == 4
    assert images["figures/evaluate.png"] in shown and images["figures/ice/classes.png"] in shown
    assert images["figures/gallery/99_unlisted.png"] not in shown
    assert images["figures/attributions/saliency/saliency_correct.png"] not in shown
    # in gallery.json's order, with its captions and its guide
    gallery = re.search(r'<section id="gallery">(.*?)</section>', page, re.S).group(1)
    assert embedded(gallery) == [
        images["figures/gallery/01_two_as_one.png"],
        images["figures/gallery/00_zero_as_zero.png"],
    ]
    assert "image 7: two, predicted one" in gallery and "listed, but no file" not in gallery
    assert "Read the gallery row by row." in gallery


def test_plotly_js_is_inlined_exactly_once_and_every_interactive_plot_uses_it(page):
    assert page.count(plotly_js()) == 1
    assert page.index(plotly_js()) < page.index("<body>")
    # one layer: its rotation and its epochs, and the InstanceFlow Sankey
    assert without_plotly_js(page).count("Plotly.newPlot(") == 3
    for div in ("tour-dense-rotation", "tour-dense-epochs", "instanceflow-sankey"):
        assert f'id="{div}"' in page


def test_no_plotly_js_without_an_interactive_plot():
    page = build_report(inputs(tour=None, flow=None))
    assert plotly_js() not in page and "Plotly.newPlot(" not in page


def test_nothing_is_fetched_from_the_network(page):
    rest = without_plotly_js(page)
    assert "src=" in rest
    assert not re.search(r"""\bsrc\s*=\s*(?!["']?data:)""", rest)  # every src a data URI
    assert "<link" not in rest and "@import" not in rest and "url(" not in rest
    assert not re.search(r"<script[^>]+src", rest)


def test_a_section_without_inputs_names_the_stage_to_run():
    page = build_report(
        ReportInputs(inputs().run, SUMMARY, Params().model_dump(), Params().model_dump())
    )
    for section in SECTIONS:
        if section.anchor != "summary":
            body = re.search(rf'<section id="{section.anchor}">(.*?)</section>', page, re.S)
            assert f"run <code>dvc repro {section.stage}</code> first" in body.group(1)


def test_markdown_tables_and_paragraphs_become_html():
    source = "| a | b \\| c |\n|---|---|\n| 1 | `x` |\n\nOverall: 2 of 2 hold."
    assert h.markdown(source) == (
        '<div class="table"><table><thead><tr><th>a</th><th>b | c</th></tr></thead>'
        "<tbody><tr><td>1</td><td><code>x</code></td></tr></tbody></table></div>\n"
        "<p>Overall: 2 of 2 hold.</p>"
    )


def test_text_is_escaped():
    page = build_report(inputs(run=RunInfo("<b>x</b>", "a&b", "c"), tour=None, flow=None))
    assert "<b>x</b>" not in page and "&lt;b&gt;x&lt;/b&gt;" in page


def write_run(root: Path) -> None:
    """The files the report stage reads, small: a stand-in for a pipeline run."""
    (root / "params.yaml").write_text("seed: 7\n")
    (root / "metrics").mkdir()
    (root / "metrics/summary.json").write_text(json.dumps(SUMMARY))
    for name, data in inputs().images.items():
        (root / "reports" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "reports" / name).write_bytes(data)
    (root / "reports/evaluate_table.md").write_text(EVALUATE_TABLE)
    (root / "reports/figures/gallery/gallery.json").write_text(json.dumps(GALLERY))
    for part, name, arrays in (
        ("grand_tour", "tour", tour_arrays()),
        ("instanceflow", "flow", flow_arrays()),
    ):
        (root / "explanations" / part).mkdir(parents=True)
        np.savez(root / "explanations" / part / f"{name}.npz", **arrays)


def make_stage_workspace(root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """`root` holding a small run, made the current directory, with its own MLflow store."""
    write_run(root)
    (root / "dvc.yaml").write_text("stages: {}\n")
    monkeypatch.chdir(root)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return root


@pytest.fixture
def stage_workspace(tmp_path, monkeypatch) -> Path:
    return make_stage_workspace(tmp_path, monkeypatch)


def test_the_stage_writes_the_page_and_logs_it(stage_workspace):
    import mlflow

    from stages import report

    report.main()
    page = (stage_workspace / "reports/index.html").read_text()
    assert "<td>seed</td>" in page and len(embedded(page)) == 4
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{stage_workspace / 'mlflow.db'}")
    (run,) = client.search_runs(
        [e.experiment_id for e in client.search_experiments()],
        "attributes.run_name = 'report'",
    )
    assert [a.path for a in client.list_artifacts(run.info.run_id)] == ["index.html"]
    parent = client.get_run(run.data.tags["mlflow.parentRunId"])
    assert parent.data.metrics["test_accuracy"] == SUMMARY["test_accuracy"]
    assert "index.html" in [a.path for a in client.list_artifacts(parent.info.run_id)]


def test_the_stage_stops_with_one_line_without_the_summary(stage_workspace):
    from pipeline.errors import PipelineError
    from stages import report

    (stage_workspace / "metrics/summary.json").unlink()
    with pytest.raises(
        PipelineError, match=r"metrics/summary.json not found: run `dvc repro summary`"
    ):
        report.main()


def test_every_pattern_the_stage_reads_is_one_a_section_shows():
    assert "figures/gallery/*.png" in image_patterns()
    assert all(p.startswith("figures/") for p in image_patterns())


def test_the_summary_names_why_there_is_no_test_accuracy() -> None:
    note = "the dataset's classes are not among the model's: no accuracy"
    without = {k: v for k, v in SUMMARY.items() if k != "test_accuracy"}
    page = build_report(inputs(summary={**without, "test_note": note}))
    assert f"<td>test accuracy</td><td>{note}</td>" in page
    assert "<td>test accuracy</td><td>0.9</td>" in build_report(inputs())
