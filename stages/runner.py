"""Common entry point: logging set-up, user errors as one line with exit code 2, SIGTERM
and SIGINT as one line with exit code 143 / 130, and an exit that skips the
interpreter's slow teardown."""

from __future__ import annotations

import atexit
import logging
import os
import signal
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from pipeline.errors import PipelineError, Stopped
from pipeline.io import remove_stale_temps
from pipeline.tracking import check_tracking, describe_failure

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
_stopping: list[int] = []  # the signal that is stopping this process, once one arrived


def _on_stop_signal(signum: int, frame: FrameType | None) -> None:
    """Raise Stopped where the stage is, so every `with` block unwinds: temporary files
    go, the MLflow run is marked KILLED. A second signal while that happens ends the
    process at once, as the signal's default action would."""
    if _stopping:
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return
    _stopping.append(signum)
    raise Stopped(signum, signal.Signals(signum).name)


def _report(name: str, message: str, code: int) -> None:
    for line in message.splitlines() or [""]:
        print(f"{name}: error: {line}", file=sys.stderr)
    sys.stderr.flush()
    sys.exit(code)


def filter_known_warnings() -> None:
    """Silence the warnings every run prints although nothing is wrong, each once here
    with why it is harmless; any other warning still shows."""
    # Lightning's advice about worker counts does not apply to in-memory tensors
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    # ClaDec keeps its frozen classifier in eval mode on purpose
    warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode.*")
    # Lightning 2.6's own use of a torch.utils._pytree API that torch 2.14 deprecates
    # (printed by every training): Lightning's code, unchanged behaviour until removed
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)` is deprecated")
    # captum's guided backprop hooks every ReLU by design and removes the hooks after
    # the attribution (the warning says so); our models hold no hooks of their own
    warnings.filterwarnings("ignore", message="Setting backward hooks on ReLU activations")


def run_stage(name: str, body: Callable[[], None]) -> None:
    """Run a stage body. A PipelineError (or a full disk, a read-only store) becomes
    `<stage>: error: ...` and exit code 2; SIGTERM / SIGINT become one line and exit code
    128 + signal (143 / 130), the shell's convention, so DVC and schedulers see a stop
    rather than a stage that exited 0 without its outputs (Lightning's own SIGTERM
    handling ends a fit with `SystemExit(None)`)."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s | %(message)s", datefmt="%H:%M:%S"
    )
    filter_known_warnings()
    logging.getLogger("pytorch_lightning.utilities.rank_zero").addFilter(
        lambda record: "Tip:" not in record.getMessage()
    )
    previous = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
    for signum in STOP_SIGNALS:
        signal.signal(signum, _on_stop_signal)
    try:
        check_tracking()
        remove_stale_temps()
        body()
    except PipelineError as exc:
        _report(name, str(exc), 2)
    except Stopped as stop:
        _report(
            name,
            f"stopped by {stop.name} (signal {stop.signum}"
            f"{', Ctrl+C' if stop.signum == signal.SIGINT else ''}): nothing was half-written; "
            "run the stage again (a training resumes from its last epoch checkpoint)",
            128 + stop.signum,
        )
    except Exception as exc:
        reason = describe_failure(exc)
        if reason is None:
            raise
        _report(name, reason, 2)
    finally:  # in-process callers (tests) get their handlers back
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        _stopping.clear()
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
