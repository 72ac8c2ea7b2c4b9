"""The one Markdown-table writer: every table the pipeline prints or saves (evaluation,
ClaDec trade-off) goes through it, so they all look and escape alike."""

from __future__ import annotations

from collections.abc import Sequence


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub-flavoured Markdown table; cells are str()-ed, pipes escaped."""

    def line(cells: Sequence[object]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    if any(len(r) != len(header) for r in rows):
        raise ValueError(f"every row needs {len(header)} cells")
    return "\n".join([line(header), "|" + "---|" * len(header), *map(line, rows)]) + "\n"
