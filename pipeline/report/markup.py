"""HTML building blocks of the report: embedded images, tables, sections and the page.
Everything is inline (images as data URIs, CSS in the page, plotly.js once), so the
file opens offline and can be mailed or logged as one artifact."""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Sequence
from dataclasses import dataclass

MIME = {".png": "image/png", ".gif": "image/gif"}
_CODE = re.compile(r"`([^`]+)`")

STYLE = """
body{font-family:system-ui,sans-serif;margin:0;color:#222;background:#fff;line-height:1.45}
nav{position:sticky;top:0;z-index:10;background:#1f2937;padding:.4em 1em;display:flex;
flex-wrap:wrap;gap:.2em 1em}
nav a{color:#e5e7eb;text-decoration:none;font-size:.9em}nav a:hover{text-decoration:underline}
main{max-width:1400px;margin:0 auto;padding:0 1.5em 3em}
section{border-bottom:1px solid #ddd;padding:1em 0;scroll-margin-top:3em}
.guide{background:#f3f4f6;border-left:4px solid #6b7280;padding:.5em .8em;max-width:70em}
figure{margin:.8em 0;display:inline-block;vertical-align:top;max-width:100%}
figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:.85em;color:#555;max-width:60em}
.table{overflow-x:auto}table{border-collapse:collapse;font-size:.85em;margin:.6em 0}
th,td{border:1px solid #ccc;padding:.25em .5em;text-align:left}th{background:#f3f4f6}
.missing{color:#a00}code{background:#f3f4f6;padding:0 .2em}
.plot{margin:.8em 0;overflow-x:auto}
"""


@dataclass(frozen=True)
class Image:
    """An image file's bytes, its name (the suffix gives the type) and a caption."""

    name: str
    data: bytes
    caption: str = ""


def text(value: object) -> str:
    """Escaped text in which `code` spans become <code> (the guides use them)."""
    return _CODE.sub(r"<code>\1</code>", html.escape(str(value), quote=False))


def data_uri(name: str, data: bytes) -> str:
    """The bytes as a data: URI, its type from the name's suffix (PNG, GIF)."""
    suffix = name[name.rfind(".") :].lower()
    if suffix not in MIME:
        raise ValueError(f"{name}: only {', '.join(MIME)} images are embedded")
    return f"data:{MIME[suffix]};base64,{base64.b64encode(data).decode('ascii')}"


def figure(image: Image) -> str:
    """An embedded image at its own size (nothing downscaled beyond the page width)."""
    caption = image.caption or image.name
    return (
        f'<figure><img src="{data_uri(image.name, image.data)}" alt="{html.escape(caption)}">'
        f"<figcaption>{text(caption)}</figcaption></figure>"
    )


def table(header: Sequence[object], rows: Sequence[Sequence[object]]) -> str:
    """A plain HTML table of escaped cells (no header row when `header` is empty)."""
    head = "".join(f"<th>{text(c)}</th>" for c in header)
    thead = f"<thead><tr>{head}</tr></thead>" if header else ""
    body = "".join("<tr>" + "".join(f"<td>{text(c)}</td>" for c in r) + "</tr>" for r in rows)
    table_html = f"<table>{thead}<tbody>{body}</tbody></table>"
    return f'<div class="table">{table_html}</div>'


def _cells(line: str) -> list[str]:
    """The cells of one Markdown table line, `\\|` read back as a pipe."""
    inner = line.strip().removeprefix("|").removesuffix("|")
    return [cell.strip().replace("\\|", "|") for cell in re.split(r"(?<!\\)\|", inner)]


def markdown(source: str) -> str:
    """The Markdown the pipeline writes (pipeline/tables.py: pipe tables, and plain
    paragraphs between them) as HTML; no other Markdown is used in its reports."""
    blocks = [b for b in re.split(r"\n\s*\n", source.strip()) if b.strip()]
    out = []
    for block in blocks:
        lines = block.strip().splitlines()
        if all(line.lstrip().startswith("|") for line in lines) and len(lines) >= 2:
            rows = [_cells(line) for line in lines if not re.fullmatch(r"\|?[\s|:-]+\|?", line)]
            out.append(table(rows[0], rows[1:]))
        else:
            out.append(f"<p>{text(' '.join(line.strip() for line in lines))}</p>")
    return "\n".join(out)


def section(anchor: str, title: str, guide: str, body: str) -> str:
    """One section: its anchor (the navigation bar links it), a how-to-read box, content."""
    return (
        f'<section id="{anchor}"><h2>{text(title)}</h2>'
        f'<p class="guide">{text(guide)}</p>\n{body}\n</section>'
    )


def missing(what: str) -> str:
    """What a section shows when the stage that draws it did not run."""
    return f'<p class="missing">{text(what)}</p>'


def page(title: str, sections: Sequence[tuple[str, str, str]], script: str = "") -> str:
    """The whole page: `sections` as (anchor, navigation label, html); `script` (plotly.js)
    inlined once in the head, before any plot that needs it."""
    nav = "".join(f'<a href="#{a}">{html.escape(label)}</a>' for a, label, _ in sections)
    head_script = f"<script>{script}</script>" if script else ""
    body = "\n".join(content for _, _, content in sections)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{STYLE}</style>{head_script}</head>"
        f"<body><nav>{nav}</nav><main><h1>{html.escape(title)}</h1>\n{body}\n</main>"
        "</body></html>\n"
    )
