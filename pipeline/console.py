"""What the stages print while they work: progress bars and rounded numbers.

A progress bar redraws itself in a terminal; in a log file (CI, `make repro > log`) each
redraw would be one more line, so there a loop shows one plain line at most every
`LOG_INTERVAL` seconds, and nothing at all when it ends sooner.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, TypeVar

T = TypeVar("T")

LOG_INTERVAL = 30.0  # seconds between two progress lines in a log file
DIGITS = 4  # significant digits of the numbers the stages print


def is_terminal() -> bool:
    """Whether both output streams go to a terminal (progress bars can redraw)."""
    return sys.stdout.isatty() and sys.stderr.isatty()


class _Lines:
    """A file for tqdm that turns each redraw into one line on stderr (no carriage
    returns in a log file)."""

    def write(self, text: str) -> None:
        text = text.strip("\r\n ")
        if text:
            sys.stderr.write(text + "\n")

    def flush(self) -> None:
        sys.stderr.flush()


def progress(
    items: Iterable[T], desc: str, *, total: int | None = None, unit: str = "it"
) -> Iterator[T]:
    """`items` with a progress bar on stderr: redrawn in a terminal (gone when done); in
    a log, a line every LOG_INTERVAL seconds for loops that take longer than that."""
    from tqdm import tqdm

    if is_terminal():
        yield from tqdm(items, desc=desc, total=total, unit=unit, leave=False, file=sys.stderr)
        return
    yield from tqdm(
        items,
        desc=desc,
        total=total,
        unit=unit,
        file=_Lines(),
        mininterval=LOG_INTERVAL,
        maxinterval=LOG_INTERVAL,
        delay=LOG_INTERVAL,
        ascii=True,
        dynamic_ncols=False,
        ncols=80,
    )


def rounded(value: Any, digits: int = DIGITS) -> Any:
    """A number to `digits` significant digits for printing (ints, bools and text as
    they are; containers element by element); the metrics files keep full precision."""
    if isinstance(value, float):
        if not math.isfinite(value) or value == 0:
            return value
        return float(f"{value:.{digits}g}")
    if isinstance(value, Mapping):
        return {k: rounded(v, digits) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(rounded(v, digits) for v in value)
    return value


def numbers(values: Mapping[str, Any], digits: int = DIGITS) -> str:
    """`name value, name value` with every float rounded: one summary line."""
    return ", ".join(f"{k} {rounded(v, digits)}" for k, v in values.items())
