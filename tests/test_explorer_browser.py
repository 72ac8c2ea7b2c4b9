"""The explorer in a real browser: `python -m pipeline.explorer` (what `make app` runs)
serving a small model and dataset this test writes, driven by Debian's Chromium through
Playwright (the `browser` fixture of tests/browser.py): the preselected maps appear for
a test image, an uploaded RGB picture of another size is explained after picking one
more method, the images decode, and the page logs no console error."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_explorer import write_run

from pipeline.explorer.logic import CHEAP_METHODS
from pipeline.explorer.serve import free_port, wait_until_answering

ROOT = Path(__file__).resolve().parents[1]
MAP_CAPTION = re.compile(r"(\w+) \((?:un)?signed\), \d+\.\d\d s")  # under each map
IMAGES_DECODED = (
    "n => { const i = [...document.querySelectorAll('[data-testid=stImage] img')];"
    " return i.length >= n && i.every(x => x.complete && x.naturalWidth > 0); }"
)


@pytest.fixture(scope="module")
def app(tmp_path_factory) -> Iterator[str]:
    """The explorer serving a 3-class grey 16×16 model; its URL (the server's log is
    shown if it never answers)."""
    folder = tmp_path_factory.mktemp("app")
    model, data, params = write_run(folder)
    port = free_port()
    log = (folder / "server.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "pipeline.explorer", "--model", model, "--data", data,
         "--params", params, "--port", str(port)],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/"
    try:
        try:
            wait_until_answering(url, server)
        except (RuntimeError, TimeoutError) as exc:
            pytest.fail(f"{exc}; its log:\n{(folder / 'server.log').read_text()}")
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


def rgb_png(path: Path) -> Path:
    """A 48×36 RGB picture with a bright square in the top band (class `top`'s shape)."""
    pixels = np.full((36, 48, 3), 20, dtype=np.uint8)
    pixels[4:14, 10:20] = (240, 200, 160)
    Image.fromarray(pixels).save(path)
    return path


def test_upload_pick_a_method_and_the_maps_appear(browser, app, tmp_path):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(f"console: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
    page.goto(app)
    # a test image first: its picture, the preselected maps, the prediction
    for name in CHEAP_METHODS:
        page.get_by_text(f"{name} (", exact=False).wait_for(timeout=60_000)
    page.wait_for_function(IMAGES_DECODED, arg=1 + len(CHEAP_METHODS), timeout=60_000)
    assert page.get_by_text("Prediction:").count() == 1
    # upload: the picture as the model takes it, then one more method picked
    page.get_by_text("upload", exact=True).click()
    page.locator("input[type=file]").set_input_files(rgb_png(tmp_path / "photo.png"))
    page.get_by_text("photo.png, as the model takes it (grey, 16×16)").wait_for(timeout=60_000)
    picker = page.locator("[data-testid=stMultiSelect] input")
    picker.click()
    picker.fill("occlusion")
    picker.press("Enter")
    page.keyboard.press("Escape")
    page.get_by_text("occlusion (signed)").wait_for(timeout=60_000)
    page.wait_for_function(IMAGES_DECODED, arg=2 + len(CHEAP_METHODS), timeout=60_000)
    captions = page.locator("[data-testid=stCaptionContainer]").all_text_contents()
    shown = [m[1] for c in captions if (m := MAP_CAPTION.fullmatch(c))]
    assert shown == [*CHEAP_METHODS, "occlusion"], captions
    probabilities = page.locator("table td").all_text_contents()[1::2]
    values = [float(p.rstrip("%")) for p in probabilities]
    assert len(values) == 3 and values == sorted(values, reverse=True)
    assert sum(values) == pytest.approx(100, abs=0.05)
    assert not errors, errors
    page.close()
