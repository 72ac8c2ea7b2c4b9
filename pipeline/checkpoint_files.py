"""The names of the per-training-epoch checkpoint files: one place for the writer
(`training.py`) and the readers (`restore.py`, the stages that explain saved epochs).
Free of torch and of the model code, so that training the classifier does not depend on
the generative networks that `restore.py` rebuilds."""

from __future__ import annotations

from pathlib import Path


def epoch_checkpoint_name(epoch: int) -> str:
    """The file the training loop writes after training epoch `epoch` (1-based); no `=`
    in the name, which MLflow rejects in artifact paths."""
    return f"epoch-{epoch:03d}.ckpt"


def epoch_checkpoints(directory: str | Path) -> list[tuple[int, Path]]:
    """(training epoch, path) of every per-epoch checkpoint in a directory, in order."""
    found = [(int(p.stem.split("-")[1]), p) for p in Path(directory).glob("epoch-*.ckpt")]
    return sorted(found)
