"""An attribution method's arrays on disk (`explanations/attributions/<method>.npz`),
readable without torch: figure stages only draw what the explain stages stored."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.errors import PipelineError
from pipeline.io import read_npz, write_npz


@dataclass
class StoredAttributions:
    """Maps for the predicted class of every selected instance, for the true class of
    the misclassified ones, and the method's extras (`<key>` for the predicted class,
    `true_<key>` for the true class)."""

    method: str
    predicted: np.ndarray  # N×C'×H×W
    true: np.ndarray  # M×C'×H×W
    true_rows: np.ndarray  # the M rows of the selection those belong to
    extras: dict[str, np.ndarray] = field(default_factory=dict)

    def save(self, path: str | Path) -> None:
        write_npz(
            path,
            method=np.array(self.method),
            predicted=self.predicted,
            true=self.true,
            true_rows=self.true_rows,
            **{f"extra_{k}": v for k, v in self.extras.items()},
        )

    @classmethod
    def load(cls, path: str | Path) -> StoredAttributions:
        """A method's stored maps; a missing or corrupt file is a one-line PipelineError
        naming the explain stage that rewrites it."""
        path = Path(path)
        stage = f"explain@{path.stem}"
        if not path.is_file():
            raise PipelineError(f"{path} not found: run its explain stage (`dvc repro {stage}`)")
        z = read_npz(path, stage=stage, required=("method", "predicted", "true", "true_rows"))
        return cls(
            method=str(z["method"]),
            predicted=z["predicted"],
            true=z["true"],
            true_rows=z["true_rows"],
            extras={k[6:]: v for k, v in z.items() if k.startswith("extra_")},
        )
