"""`make plots`: DVC's plots page, drawn without a network.

`dvc plots show` and `dvc plots diff` write a page that loads Vega, Vega-Lite and
Vega-Embed from a CDN, so offline every chart stays blank. DVC accepts a page template
of our own (`--html-template`, with a `{plot_divs}` placeholder); this writes one whose
`<script>` inlines the three libraries from `vl-convert-python` (which bundles them, the
same scripts Altair uses to save charts), then runs DVC with it. The charts' `$schema`
URLs are identifiers, never fetched.
"""

from __future__ import annotations

import argparse
import html
import subprocess
import sys
from pathlib import Path

TEMPLATE = Path(".dvc/tmp/offline_plots_template.html")
OUT = Path("dvc_plots")
PLACEHOLDER = "{plot_divs}"


def template_page(bundle: str, title: str = "DVC plots") -> str:
    """A page whose one inline script defines `vegaEmbed` (what DVC's chart divs call)
    before the charts that use it."""
    if "</script" in bundle.lower():
        raise ValueError("the bundle would end its own <script> element early")
    return (
        "<!DOCTYPE html>\n<html>\n<head>\n<meta charset='utf-8'>\n"
        f"<title>{html.escape(title)}</title>\n<script>\n{bundle}\n</script>\n"
        "<style>body{font-family:sans-serif;margin:1em}"
        " .vega-embed{margin:0.5em}</style>\n"
        f"</head>\n<body>\n{PLACEHOLDER}\n</body>\n</html>\n"
    )


def vega_bundle() -> str:
    """Vega-Embed, Vega-Lite and Vega in one script that sets them on `window`."""
    import vl_convert

    return vl_convert.javascript_bundle()


def dvc_command(args: list[str], template: Path, out: Path) -> list[str]:
    """`dvc plots <show|diff ...> --html-template <template> -o <out>`; `show` when no
    subcommand is given."""
    if not args or args[0].startswith("-"):
        args = ["show", *args]
    if args[0] not in ("show", "diff"):
        raise ValueError(f"expected `show` or `diff`, got {args[0]!r}")
    return ["dvc", "plots", *args, "--html-template", str(template), "-o", str(out)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.offline_plots",
        description="dvc plots show|diff with Vega inlined, so the page draws offline",
    )
    parser.add_argument(
        "dvc_args", nargs=argparse.REMAINDER, help="show [targets] | diff [revisions]"
    )
    args = parser.parse_args(argv)
    try:
        command = dvc_command(args.dvc_args, TEMPLATE, OUT)
    except ValueError as exc:
        parser.error(str(exc))
    TEMPLATE.parent.mkdir(parents=True, exist_ok=True)
    TEMPLATE.write_text(template_page(vega_bundle()), encoding="utf-8")
    done = subprocess.run(command, stdout=subprocess.DEVNULL, check=False)
    if done.returncode == 0:
        print(f"plots drawn offline: {(OUT / 'index.html').resolve()} (open it in a browser)")
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
