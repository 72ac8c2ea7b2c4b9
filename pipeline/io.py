"""Atomic file output: a killed or failing stage never leaves a half-written file."""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; move it into place only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_npz(path: str | Path, *, compressed: bool = True, **arrays: Any) -> None:
    """Named arrays as one .npz file (zip-compressed unless told not to), atomically."""
    save = np.savez_compressed if compressed else np.savez
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        save(handle, **arrays)


def read_npz(path: str | Path) -> dict[str, np.ndarray]:
    """Every array of an .npz file, read into memory (the file is closed on return)."""
    with np.load(path) as archive:
        return {key: archive[key] for key in archive.files}


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
