"""One typed schema for params.yaml.

Every stage validates the whole file before it touches anything, so a typo or an
out-of-range value stops the run at once with a message that names the key, the bad
value and what is allowed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from pipeline.errors import ParamsError
from pipeline.explain.registry import attribution_methods, inside_parts
from pipeline.models.specs import ARCHS as ARCH_SPECS
from pipeline.models.specs import arch_layer_names, spatial_layer_names

DATASETS = ("mnist_embedded", "mnist", "fashion_mnist", "cifar10", "imagefolder")
ARCHS = tuple(ARCH_SPECS)
ACCELERATORS = ("cpu", "gpu", "cuda", "mps", "tpu", "auto")
STRATEGIES = (
    "auto",
    "single_device",
    "ddp",
    "ddp_spawn",
    "ddp_fork",
    "ddp_notebook",
    "ddp_find_unused_parameters_true",
    "fsdp",
    "deepspeed",
)
PRECISIONS = (
    "64-true",
    "32-true",
    "16-true",
    "bf16-true",
    "16-mixed",
    "bf16-mixed",
    "transformer-engine",
)

PositiveInt = Annotated[int, Field(gt=0)]
PositiveFloat = Annotated[float, Field(gt=0)]
Fraction = Annotated[float, Field(ge=0, le=1)]


class _Strict(BaseModel):
    """Unknown keys are errors: a misspelt key must not be silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class SplitParams(_Strict):
    train: Annotated[float, Field(gt=0, lt=1)] = 0.8
    val: Annotated[float, Field(gt=0, lt=1)] = 0.1
    test: Annotated[float, Field(gt=0, lt=1)] = 0.1

    @model_validator(mode="after")
    def _sums_to_one(self) -> SplitParams:
        total = self.train + self.val + self.test
        if abs(total - 1.0) > 1e-6:
            raise ValueError(
                f"train + val + test must sum to 1, got {self.train} + {self.val} + "
                f"{self.test} = {total:g}"
            )
        return self


class DataParams(_Strict):
    dataset: Literal[DATASETS] = "mnist_embedded"  # type: ignore[valid-type]
    root: str = "data/raw"
    download: bool = True
    image_folder: str | None = None
    image_size: Annotated[int, Field(ge=8, le=512)] = 32
    channels: Literal[1, 3] = 3
    max_samples: Annotated[int, Field(ge=10)] | None = None
    split: SplitParams = SplitParams()

    @model_validator(mode="after")
    def _folder_for_imagefolder(self) -> DataParams:
        if self.dataset == "imagefolder" and not self.image_folder:
            raise ValueError(
                "dataset 'imagefolder' needs data.image_folder: a directory with one "
                "sub-folder of images per class"
            )
        return self


class ClassifierParams(_Strict):
    arch: Literal[ARCHS] = "small_cnn"  # type: ignore[valid-type]
    epochs: PositiveInt = 12
    batch_size: PositiveInt = 64
    lr: PositiveFloat = 1e-3
    weight_decay: Annotated[float, Field(ge=0)] = 0.0
    tracked_instances: PositiveInt = 1000


class VAEParams(_Strict):
    latent_dim: PositiveInt = 16
    beta: Annotated[float, Field(ge=0)] = 1.0
    epochs: PositiveInt = 4
    batch_size: PositiveInt = 64
    lr: PositiveFloat = 2e-3


LayerList = Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1)]


class VariationalParams(_Strict):
    layers: list[Annotated[str, Field(min_length=1)]] = ["dense"]  # empty: off
    latent_dim: PositiveInt = 2
    beta: Annotated[float, Field(ge=0)] = 1.0
    alpha: Fraction = 0.5


class ClaDecParams(_Strict):
    layers: LayerList = ["conv", "dense"]
    alphas: Annotated[list[Fraction], Field(min_length=1)] = [0.0, 0.01, 0.5, 0.99]
    epochs: PositiveInt = 2
    batch_size: PositiveInt = 64
    lr: PositiveFloat = 2e-3
    variational: VariationalParams = VariationalParams()

    @field_validator("layers", "alphas")
    @classmethod
    def _unique(cls, value: list) -> list:
        if len(set(value)) != len(value):
            raise ValueError(f"entries must be unique, got {value}")
        return value


class SelectParams(_Strict):
    per_class: PositiveInt = 4
    misclassified: Annotated[int, Field(ge=0)] = 10
    confused_pairs: Annotated[int, Field(ge=0)] = 3


def _explanation_group(model_name: str, classes: dict[str, Any], **extra: Any) -> type[BaseModel]:
    """A params group with one field per registered explanation, its type and default
    the class's own `Params`: defaults are written once, in the explanation's module."""
    fields: dict[str, Any] = {
        name: (cls.Params, Field(default_factory=cls.Params)) for name, cls in classes.items()
    }
    return create_model(model_name, __base__=_Strict, **extra, **fields)


def _unique(value: list) -> list:
    if len(set(value)) != len(value):
        raise ValueError(f"entries must be unique, got {value}")
    return value


ATTRIBUTION_CLASSES = attribution_methods()
ATTRIBUTION_METHODS = tuple(ATTRIBUTION_CLASSES)
MethodName = Literal[ATTRIBUTION_METHODS]  # type: ignore[valid-type]
ExplainParams = _explanation_group(
    "ExplainParams",
    ATTRIBUTION_CLASSES,
    methods=(
        Annotated[list[MethodName], Field(min_length=1), AfterValidator(_unique)],
        Field(default_factory=lambda: list(ATTRIBUTION_METHODS)),
    ),
)
INSIDE_CLASSES = inside_parts()
INSIDE_PARTS = tuple(INSIDE_CLASSES)
InsideParams = _explanation_group("InsideParams", INSIDE_CLASSES)


class EvaluateParams(_Strict):
    steps: Annotated[int, Field(ge=2)] = 28
    deletion_value: Fraction = 0.0
    insertion_blur_sigma: PositiveFloat = 4.0
    random_seeds: PositiveInt = 3
    sanity_instances: PositiveInt = 6
    sanity_threshold: Annotated[float, Field(gt=-1, lt=1)] = 0.5


class TrainerParams(_Strict):
    accelerator: Literal[ACCELERATORS] = "cpu"  # type: ignore[valid-type]
    devices: int | list[int] | str = 1
    strategy: Literal[STRATEGIES] = "auto"  # type: ignore[valid-type]
    precision: Literal[PRECISIONS] = "32-true"  # type: ignore[valid-type]
    num_workers: Annotated[int, Field(ge=0)] = 0
    deterministic: bool = True

    @field_validator("devices", mode="before")
    @classmethod
    def _devices(cls, value: Any) -> Any:
        ok = (
            value == "auto"
            or (type(value) is int and value > 0)
            or (isinstance(value, list) and value and all(type(v) is int and v >= 0 for v in value))
        )
        if not ok:
            raise ValueError(
                "must be a device count > 0, a non-empty list of device ids "
                "such as [0, 1], or 'auto'"
            )
        return value


class TrackingParams(_Strict):
    experiment: Annotated[str, Field(min_length=1)] = "xai-pipeline"
    log_checkpoints: bool = False


class Params(_Strict):
    seed: Annotated[int, Field(ge=0, lt=2**32)] = 42
    data: DataParams = DataParams()
    classifier: ClassifierParams = ClassifierParams()
    vae: VAEParams = VAEParams()
    cladec: ClaDecParams = ClaDecParams()
    select: SelectParams = SelectParams()
    explain: ExplainParams = Field(default_factory=ExplainParams)  # type: ignore[valid-type]
    inside: InsideParams = Field(default_factory=InsideParams)  # type: ignore[valid-type]
    evaluate: EvaluateParams = EvaluateParams()
    trainer: TrainerParams = TrainerParams()
    tracking: TrackingParams = TrackingParams()

    @model_validator(mode="after")
    def _layers_exist(self) -> Params:
        known = arch_layer_names(self.classifier.arch)
        spatial = spatial_layer_names(self.classifier.arch)
        checks: list[tuple[str, list[str], tuple[str, ...], bool]] = [
            ("cladec.layers", self.cladec.layers, (), False),
            ("cladec.variational.layers", self.cladec.variational.layers, (), False),
        ]
        for group, classes in (("explain", ATTRIBUTION_CLASSES), ("inside", INSIDE_CLASSES)):
            for name, cls in classes.items():
                p = getattr(getattr(self, group), name)
                for key in ("layer", "layers"):
                    if hasattr(p, key):
                        value = getattr(p, key)
                        layers = [value] if isinstance(value, str) else list(value)
                        checks.append(
                            (
                                f"{group}.{name}.{key}",
                                layers,
                                cls.extra_layer_names,
                                cls.needs_spatial_layer,
                            )
                        )
        for key, layers, extra, needs_spatial in checks:
            for layer in layers:
                if layer in extra:
                    continue
                if layer not in known:
                    raise ValueError(
                        f"{key}: unknown layer {layer!r} for arch {self.classifier.arch!r}; "
                        f"use conv, dense or a module path such as "
                        f"{', '.join(n for n in known[2:] if n.count('.') == 0)}"
                    )
                if needs_spatial and layer not in spatial:
                    raise ValueError(
                        f"{key}: layer {layer!r} has no spatial maps; use conv or one of "
                        f"{', '.join(n for n in spatial if n != 'conv')}"
                    )
        return self


def _describe(error: dict[str, Any], file: str) -> str:
    """One line: file, dotted key, the offending value and what is allowed."""
    key = ".".join(str(part) for part in error["loc"])
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        return f"{file}: unknown key '{key}' (check the spelling; see README for the keys)"
    if error["type"] == "missing":
        return f"{file}: '{key}' is required"
    if not key:
        return f"{file}: {message}"
    value = error.get("input")
    shown = repr(value) if not isinstance(value, dict) else "{...}"
    return f"{file}: {key or '<top level>'} = {shown}: {message}"


def parse_params(raw: Any, file: str = "params.yaml") -> Params:
    """Validate a mapping (as loaded from YAML); raise ParamsError with one line per problem."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ParamsError(
            f"{file}: expected a mapping of parameter groups, got {type(raw).__name__}"
        )
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        raise ParamsError("\n".join(_describe(e, file) for e in exc.errors())) from None


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate params.yaml."""
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path}: not found; run the stage from the repository root")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML: {exc}".replace("\n", " ")) from None
    return parse_params(raw, file=str(path))
