"""Common entry point: logging set-up, user errors as one line with exit code 2, and an
exit that skips the interpreter's slow teardown."""

from __future__ import annotations

import atexit
import logging
import os
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

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
    exit_without_teardown()


def require(path: str | Path, stage: str) -> Path:
    """An input another stage writes; missing, it stops with the stage to run."""
    path = Path(path)
    if not path.exists():
        raise PipelineError(f"{path} not found: run the {stage} stage first (`dvc repro {stage}`)")
    return path


def exit_without_teardown() -> None:
    """Exit 0 once the stage's outputs are written, skipping the interpreter's teardown.

    Tearing down torch, Lightning and MLflow module by module takes 1 to 2 s per stage
    process (measured on the 2-core CI machine), paid by every one of the pipeline's
    stages. The exit handlers still run (MLflow's and logging's flushes among them);
    only the clearing of modules and objects is skipped, which the OS does anyway."""
    atexit._run_exitfuncs()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
