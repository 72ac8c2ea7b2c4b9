"""Copying the repository as a fresh clone would hold it, for the tests that run DVC."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def copy_tracked_files(root: Path) -> None:
    """Tracked and new (not ignored) files into `root`, without the committed metrics,
    plots and dvc.lock: the copy runs its own pipeline from scratch."""
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    for name in files:
        if (REPO / name).is_file() and not name.startswith(("metrics/", "plots/")):
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, root / name)
    (root / "dvc.lock").unlink(missing_ok=True)
