"""`make plots` (pipeline/offline_plots.py): DVC's plots page with Vega inlined."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from pipeline.offline_plots import PLACEHOLDER, dvc_command, template_page, vega_bundle


def test_template_has_dvcs_placeholder_once_and_the_script_before_it() -> None:
    page = template_page("window.vegaEmbed = function () {};")
    assert page.count(PLACEHOLDER) == 1
    assert page.index("window.vegaEmbed") < page.index(PLACEHOLDER)


def test_a_bundle_that_would_close_its_script_early_is_refused() -> None:
    with pytest.raises(ValueError, match="script"):
        template_page("var s = '</script>';")


def test_the_bundle_defines_vega_embed_and_fetches_nothing() -> None:
    bundle = vega_bundle()
    assert "window.vegaEmbed=" in bundle.replace(" ", "")
    # no script or stylesheet is loaded from elsewhere (URLs in the text are links/ids)
    assert not re.search(r"<script[^>]+src=|<link[^>]+href=", bundle)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ([], ["show"]),
        (["--json"], ["show", "--json"]),
        (["diff", "main", "exp1"], ["diff", "main", "exp1"]),
    ],
)
def test_dvc_command(args: list[str], expected: list[str]) -> None:
    command = dvc_command(args, Path("t.html"), Path("out"))
    assert command == ["dvc", "plots", *expected, "--html-template", "t.html", "-o", "out"]


def test_other_dvc_commands_are_refused() -> None:
    with pytest.raises(ValueError, match="show` or `diff"):
        dvc_command(["remove"], Path("t.html"), Path("out"))


def _tiny_dvc_repo(root: Path) -> None:
    """A git + DVC repository with one CSV and one top-level plot over it."""
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    subprocess.run(["dvc", "init", "-q"], cwd=root, check=True)
    (root / "curve.csv").write_text("step,value\n0,0.1\n1,0.5\n2,0.9\n")
    (root / "dvc.yaml").write_text(
        "plots:\n  - Curve:\n      x: step\n      y:\n        curve.csv: value\n"
    )


def test_the_page_dvc_writes_holds_the_inlined_libraries(tmp_path: Path, monkeypatch) -> None:
    from pipeline.offline_plots import main

    _tiny_dvc_repo(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert main(["show"]) == 0
    page = (tmp_path / "dvc_plots" / "index.html").read_text()
    assert "window.vegaEmbed=" in page.replace(" ", "")
    body = page[page.rindex("<body>") :]  # the bundle's own text holds "<body>" too
    assert "vegaEmbed(" in body  # DVC's chart calls it
    assert "cdn.jsdelivr" not in page


def test_the_page_draws_its_chart_offline_in_chromium(tmp_path: Path, monkeypatch, browser):
    """No request leaves the page, no console error, and the chart is drawn."""
    from browser import open_page

    from pipeline.offline_plots import main

    _tiny_dvc_repo(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert main(["show"]) == 0
    page, errors, requests = open_page(browser, tmp_path / "dvc_plots" / "index.html")
    page.wait_for_selector("div.vega-embed svg.marks, div.vega-embed canvas", timeout=15_000)
    drawn = page.locator("div.vega-embed svg.marks, div.vega-embed canvas").count()
    page.close()
    assert drawn == 1
    assert not errors, errors
    assert not requests, requests
