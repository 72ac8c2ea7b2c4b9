"""The report in a real browser: Playwright driving Debian's Chromium (`make test`
installs it; Playwright's own browser download is not used). Opened from a file with no
network: no console error, no request but the page itself, every image decoded, every
section there, and the interactive plots answer.

The `browser` fixture is tests/browser.py's (through conftest.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from browser import open_page
from test_report import inputs, make_stage_workspace

from pipeline.report.content import SECTIONS, build_report


def check_tour(page: Any, tour: str) -> None:
    """Play moves the frame (pressed twice, and Pause while playing: the issue's crash);
    the slider's two ends show the first and the last step."""
    title = page.locator(f"#{tour} .gtitle")
    play, pause = (page.locator(f"#{tour} .updatemenu-button").nth(i) for i in (0, 1))
    steps = page.evaluate(
        "id => document.getElementById(id).layout.sliders[0].steps.map(s => s.label)", tour
    )
    changed = "([id, t]) => document.querySelector(`#${id} .gtitle`).textContent !== t"
    before = title.text_content()
    play.click()
    play.click()
    page.wait_for_function(changed, arg=[tour, before], timeout=10_000)
    pause.click()
    rail = page.locator(f"#{tour} .slider-rail-touch-rect").bounding_box()
    for x, step in ((rail["x"] + 2, steps[0]), (rail["x"] + rail["width"] - 2, steps[-1])):
        page.mouse.click(x, rail["y"] + rail["height"] / 2)
        page.wait_for_function(
            "([id, s]) => document.querySelector(`#${id} .gtitle`).textContent.endsWith(s)",
            arg=[tour, f" {step}"],
            timeout=10_000,
        )


def assert_report_works(browser: Any, path: Path, tours: int) -> dict[str, float]:
    """Every check of the report at `path` (with `tours` Grand Tour plots); returns its
    timings (ms from navigation start to DOMContentLoaded and to the load event)."""
    page, errors, requests = open_page(browser, path)
    sections = page.evaluate("[...document.querySelectorAll('section')].map(s => s.id)")
    assert sections == [s.anchor for s in SECTIONS]
    links = page.evaluate("[...document.querySelectorAll('nav a')].map(a => a.hash.slice(1))")
    assert links == sections
    images = page.evaluate("[...document.images].map(i => [i.complete, i.naturalWidth])")
    assert images and all(done and width > 0 for done, width in images), images
    # InstanceFlow drew its nodes; every Grand Tour answers Play, Pause and its slider
    assert page.locator("#instanceflow-sankey .sankey-node").count() > 0
    tour_ids = page.evaluate("[...document.querySelectorAll('[id^=tour-]')].map(d => d.id)")
    assert len(tour_ids) == tours
    for tour in tour_ids:
        check_tour(page, tour)
    assert not errors, errors
    assert not requests, requests
    timing = page.evaluate(
        "(() => { const t = performance.getEntriesByType('navigation')[0];"
        " return {dom: t.domContentLoadedEventEnd, load: t.loadEventStart}; })()"
    )
    page.close()
    return timing


def test_report_in_chromium(browser, tmp_path):
    path = tmp_path / "index.html"
    path.write_text(build_report(inputs()))
    assert_report_works(browser, path, tours=2)


def test_the_report_stage_output_in_chromium(browser, tmp_path, monkeypatch):
    """The page the real stage writes from a small run's files (test_report.write_run)."""
    from stages import report

    root = make_stage_workspace(tmp_path, monkeypatch)
    report.main()
    assert_report_works(browser, root / "reports/index.html", tours=2)
