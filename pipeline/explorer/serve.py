"""`make app`: load the trained classifier, the test split and params.yaml, then serve
the explorer's page with Streamlit on 127.0.0.1 only (never on other interfaces: the
page runs the model on whatever it is sent).

Loading happens before the server answers, so the first map after start-up costs only
the method itself; the page finds the loaded explorer through `shared_explorer`."""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import time
import urllib.request
import warnings
from pathlib import Path

from pipeline.errors import PipelineError
from pipeline.explorer import logic
from stages import paths

PAGE = Path(__file__).with_name("page.py")
HOST = "127.0.0.1"


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The explorer's inputs (absolute paths, so the launcher and the page share one
    loaded explorer) and its port."""
    parser = argparse.ArgumentParser(prog="make app", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=paths.CLASSIFIER_MODEL)
    parser.add_argument("--data", type=Path, default=paths.DATASET)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--port", type=int, default=8501, help="on 127.0.0.1 (default 8501)")
    args = parser.parse_args(argv)
    for key in ("model", "data", "params"):
        setattr(args, key, str(getattr(args, key).resolve()))
    return args


def page_explorer(args: argparse.Namespace) -> logic.Explorer:
    """The explorer the launcher loaded (or loads it, in a page run started otherwise)."""
    return logic.shared_explorer(args.model, args.data, args.params)


def streamlit_flags(port: int) -> dict[str, object]:
    """Streamlit's settings: this host only, no usage statistics (nothing leaves the
    machine), no file watcher (it would poll the whole repository), no browser opened."""
    return {
        "server_address": HOST,
        "server_port": port,
        "server_headless": True,
        "server_fileWatcherType": "none",
        "server_runOnSave": False,
        "browser_gatherUsageStats": False,
        "browser_serverAddress": HOST,
        "global_developmentMode": False,
        "client_toolbarMode": "minimal",
    }


def free_port() -> int:
    """A port on 127.0.0.1 nothing listens on (for tests and benchmarks)."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def wait_until_answering(url: str, process: subprocess.Popen, timeout: float = 180) -> None:
    """Poll `url` until it answers 200: how tests and benchmarks know the app started
    (a RuntimeError if the server exits first, TimeoutError if it never answers)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the explorer exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"{url} did not answer in {timeout} s")


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    try:
        explorer = page_explorer(args)
    except PipelineError as exc:
        sys.exit(f"explorer: {exc}")
    # captum announces its ReLU hooks on every guided-backprop map
    warnings.filterwarnings("ignore", "Setting backward hooks on ReLU", UserWarning)
    warm = logic.warm_up(explorer)
    from streamlit.web import bootstrap

    print(
        f"explorer: {explorer.test_count} test images, {len(explorer.class_names)} classes, "
        f"{', '.join(logic.CHEAP_METHODS)} ready in {warm:.1f} s; open http://{HOST}:{args.port}",
        flush=True,
    )
    flags = streamlit_flags(args.port)
    bootstrap.load_config_options(flag_options=flags)
    page_argv = ["--model", args.model, "--data", args.data, "--params", args.params]
    bootstrap.run(str(PAGE), False, [*page_argv, "--port", str(args.port)], flags)
