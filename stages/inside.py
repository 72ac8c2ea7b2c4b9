"""DVC stage `<part>` (`python -m stages.inside --part <part>`): compute one
inside-the-model part (pipeline/explain/parts/<part>.py) into explanations/<part>/ and
metrics/explain/<part>.json, logged as one MLflow run named after the part.

The stage only loads: what a part reads comes from an `Inputs` object whose fields
load on first use, so each part opens only the files its dvc.yaml block depends on."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Iterator, Mapping
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.chance import labels_in_model_classes
from pipeline.checkpoint_files import epoch_checkpoints
from pipeline.data import Splits
from pipeline.errors import PipelineError
from pipeline.explain.registry import part_class
from pipeline.io import read_npz, write_json, write_npz
from pipeline.params import INSIDE_PARTS, Params, load_params
from pipeline.selection import Selection
from pipeline.skips import MARKER, Skipped, write_marker
from pipeline.tracking import stage_run
from stages import paths
from stages.runner import run_stage

if TYPE_CHECKING:
    from torch import nn

    from pipeline.explain.base import MethodParams
    from pipeline.models.archs import ImageClassifier
    from pipeline.restore import VAE, ClassifierSpec

log = logging.getLogger("stages.inside")


def declared_params(cls: type, params: Params, p: MethodParams) -> dict[str, Any]:
    """The params keys outside `inside.<part>` that a part declares in `reads` (a
    `{field}` in a key is filled from the part's own params), with their values."""
    found: dict[str, Any] = {}
    for template in cls.reads:
        key = template.format(**p.model_dump())
        node: Any = params
        for attribute in key.split("."):
            node = getattr(node, attribute)
        found[key] = node
    return found


def _plain(value: Any) -> Any:
    return value.model_dump() if hasattr(value, "model_dump") else value


class Inputs:
    """What a part's `compute` reads (the `Inputs` protocol of its module), each loaded
    on first use; a missing or corrupt file stops the stage with one line saying which
    stage to run."""

    def __init__(self, seed: int, reads: Mapping[str, Any]) -> None:
        self.seed = seed
        self._reads = dict(reads)

    def param(self, key: str) -> Any:
        """A params value the part declared in `reads` (so dvc.yaml and MLflow know it)."""
        if key not in self._reads:
            raise KeyError(f"{key!r} is not declared in the part's `reads` ({list(self._reads)})")
        return self._reads[key]

    @cached_property
    def splits(self) -> Splits:
        return Splits.load(paths.DATASET)

    @cached_property
    def _classifier(self) -> tuple[ImageClassifier, list[str]]:
        from pipeline.models.export import load_classifier

        return load_classifier(paths.CLASSIFIER_MODEL)

    @property
    def net(self) -> ImageClassifier:
        return self._classifier[0]

    @property
    def class_names(self) -> list[str]:
        return self._classifier[1]

    @cached_property
    def model_labels(self) -> np.ndarray | None:
        """The test labels as indices of the model's classes; None when the data's classes
        are not the model's (a model explained as it is on a folder of other classes)."""
        return labels_in_model_classes(
            self.class_names, self.splits.class_names, self.splits.y_test
        )

    @cached_property
    def selection(self) -> Selection:
        return Selection.load(paths.SELECTION)

    @cached_property
    def epoch_predictions(self) -> dict[str, Any]:
        if not paths.EPOCH_PREDICTIONS.is_file():
            raise PipelineError(f"{paths.EPOCH_PREDICTIONS} not found: run `dvc repro classifier`")
        return read_npz(paths.EPOCH_PREDICTIONS)

    @cached_property
    def _spec(self) -> ClassifierSpec:
        from pipeline.restore import classifier_spec

        return classifier_spec(paths.CLASSIFIER_MODEL)

    def epoch_classifiers(self) -> Iterator[tuple[int, nn.Module]]:
        """(epoch, classifier after that epoch) for every saved epoch, loaded one at a time."""
        from pipeline.restore import load_epoch_classifier

        checkpoints = epoch_checkpoints(paths.CLASSIFIER_CKPTS)
        if not checkpoints:
            raise Skipped(
                f"{paths.CLASSIFIER_CKPTS} holds no per-epoch checkpoint: the classifier is "
                "explained as it is (classifier.train: false), so it has no training epochs "
                "(or its stage has not run: `dvc repro classifier`)"
            )
        spec = self._spec
        return ((epoch, load_epoch_classifier(path, spec)) for epoch, path in checkpoints)

    @cached_property
    def vae(self) -> VAE:
        from pipeline.restore import load_vae

        return load_vae(paths.model_dir("vae") / "model.pt", self.splits.image_shape, "vae")

    @cached_property
    def refvae(self) -> VAE:
        from pipeline.restore import load_vae

        return load_vae(paths.model_dir("refvae") / "model.pt", self.splits.image_shape, "refvae")

    def refae(self, layer: str, code_shape: tuple[int, ...]) -> nn.Module:
        from pipeline.restore import load_refae

        return load_refae(
            paths.model_dir(f"refae/{layer}") / "model.pt",
            self._spec,
            layer,
            code_shape,
            self.splits.image_shape,
            f"refae@{layer}",
        )

    def cladec_decoder(self, layer: str, alpha: float, code_shape: tuple[int, ...]) -> nn.Module:
        from pipeline.restore import load_decoder

        name = f"{layer}-{alpha}"
        return load_decoder(
            paths.model_dir(f"cladec/{name}") / "model.pt",
            code_shape,
            self.splits.image_shape,
            f"cladec@{name}",
        )

    def vcladec_decoder(self, layer: str, latent_dim: int) -> nn.Module:
        from pipeline.restore import load_decoder

        return load_decoder(
            paths.model_dir(f"vcladec/{layer}") / "model.pt",
            (latent_dim,),
            self.splits.image_shape,
            f"vcladec@{layer}",
        )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--part", required=True, choices=INSIDE_PARTS)
    return parser.parse_args()


def main(name: str) -> None:
    params = load_params()
    cls = part_class(name)
    p = getattr(params.inside, name)
    reads = declared_params(cls, params, p)
    logged: dict[str, Any] = {f"inside.{name}": p.model_dump()}
    if cls.seeded:
        logged["seed"] = params.seed
    logged.update({key: _plain(value) for key, value in reads.items()})
    with stage_run(name, params.tracking.experiment, params.data.dataset, logged) as run:
        try:
            computed = cls().compute(Inputs(params.seed, reads), p)
        except Skipped as skipped:
            # the declared outputs hold the reason; figures and report show it
            log.info("%s skipped: %s", name, skipped)
            write_marker(paths.part_dir(name), str(skipped))
            write_json(paths.part_metrics(name), {"skipped": str(skipped)})
            run.log_artifact(paths.part_dir(name) / MARKER, name)
            return
        (paths.part_dir(name) / MARKER).unlink(missing_ok=True)  # of an earlier run by hand
        for stem, arrays in computed.arrays.items():
            write_npz(paths.part_dir(name) / f"{stem}.npz", **arrays)
        write_json(paths.part_metrics(name), computed.metrics)
        run.log_metrics(computed.metrics)
    log.info("%s -> %s, %s", name, paths.part_dir(name), paths.part_metrics(name))


if __name__ == "__main__":
    args = parse_args()
    run_stage(args.part, lambda: main(args.part))
