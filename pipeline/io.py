"""Atomic file output: a killed or failing stage never leaves a half-written file."""

from __future__ import annotations

import csv
import errno
import io
import json
import os
import pickle
import re
import tokenize
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.errors import PipelineError

TEMP_DIR = ".tmp"  # at the workspace root; git- and DVC-ignored
_TEMP_NAME = re.compile(r"^\.?(?P<name>.+)\.(?P<pid>\d+)\.[0-9a-f]{8}\.tmp$")
_FULL = (errno.ENOSPC, errno.EDQUOT)
_DENIED = (errno.EACCES, errno.EPERM, errno.EROFS)


def workspace_of(folder: str | Path) -> Path | None:
    """The DVC workspace (a folder holding dvc.yaml or .dvc/) that `folder` lies in."""
    folder = Path(folder).resolve()
    for candidate in (folder, *folder.parents):
        if (candidate / "dvc.yaml").is_file() or (candidate / ".dvc").is_dir():
            return candidate
    return None


def _temp_dir(folder: Path) -> Path:
    """Where the temporary file of an output in `folder` is written: the workspace's
    `.tmp/`, so a kill -9 never leaves a temporary file inside a DVC-tracked folder
    (DVC would hash it and rerun every stage downstream). Beside the output when there
    is no workspace or `.tmp/` lies on another filesystem (os.replace cannot cross)."""
    root = workspace_of(folder)
    if root is not None:
        temp = root / TEMP_DIR
        try:
            temp.mkdir(exist_ok=True)
            if temp.stat().st_dev == folder.stat().st_dev:
                return temp
        except OSError:
            pass
    return folder


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # someone else's process
        return True
    return True


def _stale(entry: Path) -> bool:
    """A temporary file whose writer is gone (a name without a pid: older code's)."""
    match = _TEMP_NAME.match(entry.name)
    return match is None or not _pid_alive(int(match["pid"]))


def remove_stale_temps(start: str | Path = ".") -> int:
    """Delete temporary files of writers that were killed (`.tmp/` of the workspace
    holding `start`); every stage calls this first. Returns how many it deleted."""
    root = workspace_of(start)
    if root is None or not (root / TEMP_DIR).is_dir():
        return 0
    removed = 0
    for entry in (root / TEMP_DIR).iterdir():
        if entry.is_file() and entry.name.endswith(".tmp") and _stale(entry):
            entry.unlink(missing_ok=True)
            removed += 1
    return removed


def write_error(path: str | Path, exc: OSError) -> PipelineError:
    """The one line for an output that cannot be written: a full disk or a folder the
    user cannot write, with the path and what to do."""
    folder = Path(path).parent
    if exc.errno in _FULL:
        return PipelineError(
            f"no space left on the device holding {folder} (writing {path}): "
            f"free some space (`df -h {folder}`) and run the stage again"
        )
    return PipelineError(
        f"cannot write {path} ({exc.strerror or exc}): make {folder} writable "
        "(`chmod u+w`, or a disk that is not mounted read-only) and run the stage again"
    )


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path; move it into place only if the block succeeds.

    The temporary file is created like `open(path, "w")` would create it (mode 0666
    less the umask, so 0644 usually; mkstemp's 0600 made outputs unreadable to a
    group), in the workspace's `.tmp/` (see `_temp_dir`). A full disk or a read-only
    folder raises a PipelineError naming the path."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        folder = _temp_dir(path.parent)
        prefix = "" if folder != path.parent else "."
        for stale in path.parent.glob(f".{glob_escape(path.name)}.*.tmp"):
            if _stale(stale):  # left beside the output by a killed writer
                stale.unlink(missing_ok=True)
        while True:
            tmp = folder / f"{prefix}{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
            try:
                os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666))
                break
            except FileExistsError:
                continue
    except OSError as exc:
        if exc.errno in _FULL + _DENIED:
            raise write_error(path, exc) from exc
        raise
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as exc:
        if exc.errno in _FULL or (exc.errno in _DENIED and exc.filename in (str(tmp), None)):
            raise write_error(path, exc) from exc
        raise
    finally:
        tmp.unlink(missing_ok=True)


def glob_escape(name: str) -> str:
    """`name` as a glob pattern that matches only itself."""
    return re.sub(r"([*?\[])", r"[\1]", name)


def write_npz(path: str | Path, *, compressed: bool = True, **arrays: Any) -> None:
    """Named arrays as one .npz file (zip-compressed unless told not to), atomically."""
    save = np.savez_compressed if compressed else np.savez
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        save(handle, **arrays)


# What reading a stored file raises when it was cut short or overwritten: zipfile (no
# directory, bad CRC), zlib (a broken stream), numpy (a garbled array header fails to
# parse: SyntaxError, TokenError); torch adds RuntimeError (its zip reader) for .pt files.
STORED_READ_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    ValueError,
    EOFError,
    KeyError,
    TypeError,
    SyntaxError,
    tokenize.TokenError,
    zipfile.BadZipFile,
    zlib.error,
    pickle.UnpicklingError,
    MemoryError,
)

# Which dvc.yaml stage writes a file, by the path's tail (mirrors dvc.yaml's outs), so a
# corrupt file's message names the command that rewrites it.
_WRITERS = (
    (r"(?:^|/)data/dataset\.npz$", r"data"),
    (r"(?:^|/)models/(classifier|vae|refvae)/", r"\1"),
    (r"(?:^|/)models/(cladec|vcladec|refae)/([^/]+)/", r"\1@\2"),
    (r"(?:^|/)explanations/selection\.npz$", r"select"),
    (r"(?:^|/)explanations/attributions/([^/]+)\.npz$", r"explain@\1"),
    (r"(?:^|/)explanations/generative/(vae|refvae)\.npz$", r"\1"),
    (r"(?:^|/)explanations/generative/(cladec|vcladec|refae)_([^/]+)\.npz$", r"\1@\2"),
    (r"(?:^|/)explanations/([^/]+)/[^/]+\.npz$", r"\1"),
)


def writer_stage(path: str | Path) -> str | None:
    """The dvc.yaml stage that writes `path` (None for a path outside the layout)."""
    text = Path(path).as_posix()
    for pattern, template in _WRITERS:
        match = re.search(pattern, text)
        if match:
            return match.expand(template)
    return None


def short_reason(exc: BaseException) -> str:
    """One short line out of an exception whose text may span lines (torch's do)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    if "Weights only load failed" in text:
        found = re.search(r"WeightsUnpickler error:\s*(.+?)(?: was not an allowed|\n|$)", text)
        detail = found.group(1).strip() if found else "not plain weights"
        return f"it holds pickled objects, not only weights, refused: {detail}"
    line = next((part.strip() for part in text.splitlines() if part.strip()), "")
    line = line.split(". ")[0].rstrip(".")
    if isinstance(exc, KeyError):
        line = f"no entry {line}"
    reason = f"{type(exc).__name__}: {line}" if line else type(exc).__name__
    return reason if len(reason) <= 160 else reason[:157] + "..."


def corrupt_file_error(
    path: str | Path,
    exc: BaseException | str,
    stage: str | None = None,
    error: type[PipelineError] = PipelineError,
) -> PipelineError:
    """The one-line error for a stored file that cannot be read back: which file, why,
    and the `dvc repro -f` that rewrites it (`stage`, else found from the path)."""
    reason = exc if isinstance(exc, str) else short_reason(exc)
    stage = stage or writer_stage(path)
    fix = f"`dvc repro -f {stage}`" if stage else "the stage that writes it with `dvc repro -f`"
    return error(f"{path} is truncated or corrupt ({reason}): rerun {fix}")


def _require_output(
    path: Path, stage: str | None, error: type[PipelineError] = PipelineError
) -> str | None:
    """The stage that writes `path` (`stage`, else found from the path); a missing file
    raises `error` saying which stage to run."""
    stage = stage or writer_stage(path)
    if not path.is_file():
        run = f"`dvc repro {stage}`" if stage else "the stage that writes it"
        raise error(f"{path} not found: run {run} first")
    return stage


def read_npz(
    path: str | Path,
    stage: str | None = None,
    required: tuple[str, ...] = (),
    error: type[PipelineError] = PipelineError,
) -> dict[str, np.ndarray]:
    """Every array of an .npz file, read into memory (the file is closed on return).

    A missing, cut-short or overwritten file, or one without the `required` arrays,
    raises `error` naming the file and the stage that rewrites it (`stage`, else found
    from the path); pickled (object) arrays are refused, they could run code."""
    path = Path(path)
    stage = _require_output(path, stage, error)
    try:
        with np.load(path, allow_pickle=False) as archive:
            if not isinstance(archive, np.lib.npyio.NpzFile):
                raise ValueError("not an .npz archive")
            missing = [key for key in required if key not in archive.files]
            if missing:
                raise corrupt_file_error(path, f"no array {', '.join(missing)}", stage, error)
            return {key: archive[key] for key in archive.files}
    except STORED_READ_ERRORS as exc:
        raise corrupt_file_error(path, exc, stage, error) from None


def write_torch(path: str | Path, payload: Any) -> None:
    """torch.save, atomically and with the same bytes for the same payload.

    torch names the archive's root folder after the file it writes, so saving straight
    to a random temporary name gave every save different bytes, and DVC reran whatever
    depends on the file even when the weights were identical."""
    import torch  # here, not at the top: figure stages use this module without torch

    buffer = io.BytesIO()
    torch.save(payload, buffer)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getvalue())


def write_json(path: str | Path, payload: Any) -> None:
    """Write pretty JSON atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n")


def read_json(path: str | Path, stage: str | None = None) -> Any:
    """A JSON output of another stage; missing or unreadable is one line naming the file
    and the stage that (re)writes it (`stage`, else found from the path), as `read_npz`."""
    path = Path(path)
    stage = _require_output(path, stage)
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise corrupt_file_error(path, exc, stage) from None


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_csv(path: str | Path, rows: list[dict[str, Any]], columns: list[str]) -> None:
    """Rows of dicts as CSV (missing keys left empty), atomically."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, buffer.getvalue())


def read_csv(path: str | Path, as_float: bool = False) -> list[dict[str, Any]]:
    """Rows of a CSV as dicts (the reverse of write_csv); with as_float every cell is a
    float, an empty cell NaN (a per-epoch history read back for its figure)."""
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    if as_float:
        return [{k: float(v) if v else float("nan") for k, v in row.items()} for row in rows]
    return rows
