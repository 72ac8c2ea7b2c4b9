"""A real browser for the tests: Playwright driving Debian's Chromium (`make test`
installs it; Playwright's own browser download is not used). conftest.py makes the
`browser` fixture available to every test module.

Where Chromium or Playwright is missing a browser test is skipped with the install
command, except in CI (CI=true), where it fails: a page nobody opened is not tested."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

INSTALL = (
    "the browser tests need Chromium and Playwright: `make test` installs both "
    "(`apt-get install -y chromium` as root, `pip install -r requirements.lock`)"
)


def chromium_path() -> str | None:
    """Debian's Chromium: CHROMIUM_PATH, else /usr/bin/chromium or one on PATH."""
    candidates = [os.environ.get("CHROMIUM_PATH"), "/usr/bin/chromium", shutil.which("chromium")]
    return next((c for c in candidates if c and Path(c).is_file()), None)


def missing(reason: str) -> None:
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{reason}: {INSTALL}")
    pytest.skip(f"{reason}: {INSTALL}")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """A headless Chromium (no sandbox when root: Chromium refuses to start otherwise)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("Playwright is not installed")
    executable = chromium_path()
    if executable is None:
        missing("Chromium is not installed")
    args = ["--no-sandbox"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=args)
        yield launched
        launched.close()


def open_page(browser: Any, path: Path) -> tuple[Any, list[str], list[str]]:
    """The page loaded from the file `path`, its console errors and page errors, and
    every URL it requested other than itself and data: URIs."""
    page = browser.new_page(viewport={"width": 1300, "height": 900})
    errors: list[str] = []
    requests: list[str] = []
    page.on("console", lambda m: errors.append(f"console: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(f"page error: {e} {e.stack}"))
    itself = path.resolve().as_uri()
    page.on(
        "request",
        lambda r: (
            requests.append(r.url) if r.url != itself and not r.url.startswith("data:") else None
        ),
    )
    page.goto(itself, wait_until="load")
    return page, errors, requests
