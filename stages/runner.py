"""Common entry point: logging set-up, and user errors as one line with exit code 2."""

from __future__ import annotations

import logging
import sys
import warnings
from collections.abc import Callable

from pipeline.errors import PipelineError


def run_stage(name: str, body: Callable[[], None]) -> None:
    """Run a stage body; a PipelineError becomes `<stage>: error: ...` and exit code 2."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s | %(message)s", datefmt="%H:%M:%S"
    )
    # Lightning's advice about worker counts does not apply to in-memory tensors
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    # ClaDec keeps its frozen classifier in eval mode on purpose
    warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode.*")
    logging.getLogger("pytorch_lightning.utilities.rank_zero").addFilter(
        lambda record: "Tip:" not in record.getMessage()
    )
    try:
        body()
    except PipelineError as exc:
        for line in str(exc).splitlines():
            print(f"{name}: error: {line}", file=sys.stderr)
        sys.exit(2)
