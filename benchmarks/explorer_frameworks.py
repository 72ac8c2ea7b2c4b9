"""Streamlit or Gradio for the explorer (`make app`)? The same minimal app in each (one
button that computes the saliency map of test image 0 with `pipeline.explorer.logic`
and shows it), both loading the model and running saliency once before they serve (as
`make app` does), timed from outside:

- start-up: process start to the page answering HTTP 200 on 127.0.0.1;
- page: a headless Chromium (Debian's, through Playwright) opening the page until the
  button is there;
- first map: the click until the map and its caption are on the page;
- console errors the page logged (the explorer must have none, offline).

    python benchmarks/explorer_frameworks.py --model models/classifier/model.pt \
        --data data/dataset.npz --params params.yaml [--repeats 3] \
        [--gradio-python PYTHON]   # a Python with gradio, when it is not installed here

    python benchmarks/explorer_frameworks.py app --model ... --data ... --params ...

times the explorer itself (`make app`): start-up, opening the page to its saliency and
Grad-CAM maps, and a request for another class to its maps.

The project depends on the framework it chose (Streamlit; README, "The explorer"):
install the other one (`pip install gradio`) to rerun the comparison. Not a test; needs
Chromium at /usr/bin/chromium (or CHROMIUM=...).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

BUTTON = "Explain"
DONE = "map ready: saliency"
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # `stages`, which the explorer's launcher reads paths from

from pipeline.explorer.logic import CHEAP_METHODS  # noqa: E402
from pipeline.explorer.serve import free_port, wait_until_answering  # noqa: E402


def _paths() -> tuple[str, str, str]:
    return os.environ["BENCH_MODEL"], os.environ["BENCH_DATA"], os.environ["BENCH_PARAMS"]


def _explain_first() -> tuple[object, str]:
    """Saliency of test image 0 for its predicted class: (panel, caption)."""
    from pipeline.explorer import logic

    explorer = _loaded()
    image, _ = explorer.test_image(0)
    target = int(logic.probabilities(explorer, image).argmax())
    return logic.explain(explorer, image, "saliency", target).panel, DONE


def _loaded():
    """The explorer, loaded once per process (both apps call it before serving)."""
    from pipeline.explorer import logic

    return logic.shared_explorer(*_paths())


def streamlit_page() -> None:
    """The Streamlit page (run by Streamlit in the server process, after the preload)."""
    import streamlit as st

    st.title("explorer benchmark")
    if st.button(BUTTON):
        panel, caption = _explain_first()
        st.image(panel, width=224)
        st.write(caption)


def serve_streamlit(port: int) -> None:
    """Load the model, then serve the page (this file, `page` argument) with Streamlit."""
    from streamlit.web import bootstrap

    from pipeline.explorer import logic

    logic.warm_up(_loaded(), ("saliency",))
    flags = {
        "server_address": "127.0.0.1",
        "server_port": port,
        "server_headless": True,
        "browser_gatherUsageStats": False,
        "server_fileWatcherType": "none",
        "global_developmentMode": False,
    }
    bootstrap.load_config_options(flag_options=flags)
    bootstrap.run(__file__, False, ["page"], flags)


def serve_gradio(port: int) -> None:
    """Load the model, then build and serve the same app with Gradio."""
    import gradio as gr

    from pipeline.explorer import logic

    logic.warm_up(_loaded(), ("saliency",))
    with gr.Blocks(title="explorer benchmark") as demo:
        gr.Markdown("# explorer benchmark")
        button = gr.Button(BUTTON)
        image = gr.Image(label="map", width=224)
        caption = gr.Markdown()
        button.click(_explain_first, outputs=[image, caption])
    demo.launch(server_name="127.0.0.1", server_port=port, share=False, show_error=True)


def measure(framework: str, python: str, browser, env: dict[str, str]) -> dict[str, float]:
    """One cold start of `framework`'s app: its timings in seconds and console errors."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    started = time.perf_counter()
    process = subprocess.Popen(
        [python, __file__, f"serve-{framework}", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until_answering(url, process)
        startup = time.perf_counter() - started
        page = browser.new_page()
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        opened = time.perf_counter()
        page.goto(url)
        button = page.get_by_role("button", name=BUTTON)
        button.wait_for(timeout=60_000)
        ready = time.perf_counter() - opened
        clicked = time.perf_counter()
        button.click()
        page.get_by_text(DONE).wait_for(timeout=60_000)
        page.locator("img").last.wait_for(timeout=60_000)
        first_map = time.perf_counter() - clicked
        page.close()
    finally:
        process.terminate()
        process.wait(timeout=30)
    return {"startup": startup, "page": ready, "first_map": first_map, "errors": len(errors)}


DECODED = (
    "n => { const i = [...document.querySelectorAll('[data-testid=stImage] img')];"
    " return i.length >= n && i.every(x => x.complete && x.naturalWidth > 0); }"
)


REPLACED = f"n => ({DECODED})(n) && !document.querySelector('[data-stale=true]')"


def measure_app(browser, args: argparse.Namespace) -> dict[str, float]:
    """One cold start of the explorer itself (`python -m pipeline.explorer`, with its
    preselected methods): start-up, then from opening the page to the saliency map and to
    the Grad-CAM map decoded on it, then a new request (another target class) until all
    its maps are there."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    command = [sys.executable, "-m", "pipeline.explorer", "--port", str(port)]
    for key in ("model", "data", "params"):
        command += [f"--{key}", str(Path(getattr(args, key)).resolve())]
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL)
    try:
        wait_until_answering(url, process)
        out = {"startup": time.perf_counter() - started}
        page = browser.new_page()
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        opened = time.perf_counter()
        page.goto(url)
        for name in sorted(("saliency", "gradcam"), key=CHEAP_METHODS.index):
            page.get_by_text(f"{name} (", exact=False).wait_for(timeout=60_000)
            # the image, then the maps in the order of CHEAP_METHODS
            page.wait_for_function(DECODED, arg=2 + CHEAP_METHODS.index(name), timeout=60_000)
            out[name] = time.perf_counter() - opened
        picker = page.locator("[data-testid=stSelectbox] input")
        picker.click()
        asked = time.perf_counter()
        picker.fill("3: 3")
        picker.press("Enter")
        page.get_by_text("Maps for class 3").wait_for(timeout=60_000)
        # the previous maps stay on the page, marked stale, until the new ones replace them
        page.wait_for_function(REPLACED, arg=1 + len(CHEAP_METHODS), timeout=60_000)
        out["other_class"] = time.perf_counter() - asked
        out["errors"] = len(errors)
        page.close()
    finally:
        process.terminate()
        process.wait(timeout=30)
    return out


def time_app(args: argparse.Namespace) -> None:
    from playwright.sync_api import sync_playwright

    chromium = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        rows = []
        for _ in range(args.repeats):
            rows.append(measure_app(browser, args))
            print({k: round(v, 2) for k, v in rows[-1].items()}, flush=True)
        browser.close()
    print(f"\nexplorer, median of {args.repeats} cold starts (s)")
    for key in rows[0]:
        print(f"  {key:<14}{statistics.median(r[key] for r in rows):>7.2f}")


def compare(args: argparse.Namespace) -> None:
    from playwright.sync_api import sync_playwright

    env = {
        **os.environ,
        "BENCH_MODEL": str(Path(args.model).resolve()),
        "BENCH_DATA": str(Path(args.data).resolve()),
        "BENCH_PARAMS": str(Path(args.params).resolve()),
        "GRADIO_ANALYTICS_ENABLED": "False",
        "PYTHONPATH": str(ROOT),
    }
    pythons = {"streamlit": args.streamlit_python, "gradio": args.gradio_python}
    chromium = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in pythons}
        for _ in range(args.repeats):  # interleaved: a load spike hits both alike
            for name, python in pythons.items():
                runs[name].append(measure(name, python, browser, env))
                print(name, {k: round(v, 2) for k, v in runs[name][-1].items()}, flush=True)
        browser.close()
    print(f"\nmedian of {args.repeats} cold starts (s)     start-up   page   first map  errors")
    for name, rows in runs.items():
        med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
        print(
            f"{name:<36}{med['startup']:>9.2f}{med['page']:>7.2f}{med['first_map']:>11.2f}"
            f"{int(max(r['errors'] for r in rows)):>8}"
        )


def main() -> None:
    if sys.argv[1:] == ["page"]:  # Streamlit running this file as the page
        streamlit_page()
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", nargs="?", default="compare")
    parser.add_argument("--port", type=int)
    parser.add_argument("--model", default="models/classifier/model.pt")
    parser.add_argument("--data", default="data/dataset.npz")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--streamlit-python", default=sys.executable)
    parser.add_argument("--gradio-python", default=sys.executable)
    args = parser.parse_args()
    if args.mode == "serve-streamlit":
        serve_streamlit(args.port)
    elif args.mode == "serve-gradio":
        serve_gradio(args.port)
    elif args.mode == "app":
        time_app(args)
    else:
        compare(args)


if __name__ == "__main__":
    main()
