"""One typed schema for params.yaml.

Every stage validates the whole file before it touches anything, so a typo or an
out-of-range value stops the run at once with a message that names the key, the bad
value and what is allowed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pipeline.errors import ParamsError
from pipeline.models.specs import ARCHS as ARCH_SPECS
from pipeline.models.specs import arch_layer_names

DATASETS = ("mnist_embedded", "mnist", "fashion_mnist", "cifar10", "imagefolder")
ARCHS = tuple(ARCH_SPECS)
ATTRIBUTION_METHODS = (
    "saliency",
    "guided_backprop",
    "integrated_gradients",
    "gradcam",
    "shap",
    "lime",
)
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


class _MethodParams(_Strict):
    batch_size: PositiveInt = 256


class SaliencyParams(_MethodParams):
    absolute: bool = True


class GuidedBackpropParams(_MethodParams):
    pass


class IntegratedGradientsParams(_MethodParams):
    steps: Annotated[int, Field(ge=2)] = 32
    baseline: Literal["black", "white", "mean", "blur"] = "black"
    blur_sigma: PositiveFloat = 3.0


class GradCAMParams(_MethodParams):
    layer: Annotated[str, Field(min_length=1)] = "conv"


class ShapParams(_MethodParams):
    explainer: Literal["gradient", "partition"] = "gradient"
    background: PositiveInt = 100
    samples: PositiveInt = 128
    max_evals: Annotated[int, Field(ge=10)] = 500
    blur: Annotated[int, Field(ge=1)] = 7


class LimeParams(_MethodParams):
    segmentation: Literal["slic", "quickshift"] = "slic"
    segments: Annotated[int, Field(ge=2)] = 40
    compactness: PositiveFloat = 0.2
    kernel_size: PositiveFloat = 2.0
    max_dist: PositiveFloat = 6.0
    samples: Annotated[int, Field(ge=10)] = 1000
    kernel_width: PositiveFloat = 0.25
    fill: Literal["black", "mean"] = "black"
    features: PositiveInt = 5
    batch_size: PositiveInt = 512


class FeatureMapsParams(_Strict):
    instances: PositiveInt = 6
    channels: PositiveInt = 12


class ActivationMaxParams(_Strict):
    layer: Annotated[str, Field(min_length=1)] = "conv"
    iterations: PositiveInt = 64
    step: PositiveFloat = 0.05


ConceptCounts = Annotated[list[PositiveInt], Field(min_length=1)]


class IceParams(_Strict):
    layer: Annotated[str, Field(min_length=1)] = "conv"
    concepts: PositiveInt = 5
    fidelity_concepts: ConceptCounts = [2, 3, 5, 8, 12]
    images: Annotated[int, Field(ge=10)] = 500
    presence_threshold: Annotated[float, Field(gt=0, le=1)] = 0.5
    examples: PositiveInt = 5


class InstanceFlowParams(_Strict):
    epochs: Annotated[int, Field(ge=2)] = 6
    classes: list[Annotated[int, Field(ge=0)]] | None = None
    unstable: PositiveInt = 8


class VaeWalksParams(_Strict):
    steps: Annotated[int, Field(ge=2)] = 12
    pairs_per_class_pair: PositiveInt = 2


class CladecExplainParams(_Strict):
    instances: PositiveInt = 8
    grid: Annotated[int, Field(ge=2)] = 12


class GrandTourParams(_Strict):
    layers: Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1)] = [
        "softmax",
        "dense",
    ]
    instances: Annotated[int, Field(ge=10)] = 1000
    frames: Annotated[int, Field(ge=2)] = 36


class EpochsParams(_Strict):
    method: Literal["gradcam", "saliency"] = "gradcam"
    instances: PositiveInt = 6


class ExplainParams(_Strict):
    methods: Annotated[list[Literal[ATTRIBUTION_METHODS]], Field(min_length=1)] = list(  # type: ignore[valid-type]
        ATTRIBUTION_METHODS
    )
    saliency: SaliencyParams = SaliencyParams()
    guided_backprop: GuidedBackpropParams = GuidedBackpropParams()
    integrated_gradients: IntegratedGradientsParams = IntegratedGradientsParams()
    gradcam: GradCAMParams = GradCAMParams()
    shap: ShapParams = ShapParams()
    lime: LimeParams = LimeParams()
    feature_maps: FeatureMapsParams = FeatureMapsParams()
    activation_max: ActivationMaxParams = ActivationMaxParams()
    ice: IceParams = IceParams()
    instanceflow: InstanceFlowParams = InstanceFlowParams()
    vae_walks: VaeWalksParams = VaeWalksParams()
    cladec: CladecExplainParams = CladecExplainParams()
    grand_tour: GrandTourParams = GrandTourParams()
    epochs: EpochsParams = EpochsParams()

    @field_validator("methods")
    @classmethod
    def _unique(cls, value: list) -> list:
        if len(set(value)) != len(value):
            raise ValueError(f"entries must be unique, got {value}")
        return value


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
    explain: ExplainParams = ExplainParams()
    evaluate: EvaluateParams = EvaluateParams()
    trainer: TrainerParams = TrainerParams()
    tracking: TrackingParams = TrackingParams()

    @model_validator(mode="after")
    def _layers_exist(self) -> Params:
        known = arch_layer_names(self.classifier.arch)
        for key, layers in (
            ("cladec.layers", self.cladec.layers),
            ("cladec.variational.layers", self.cladec.variational.layers),
            ("explain.gradcam.layer", [self.explain.gradcam.layer]),
            ("explain.activation_max.layer", [self.explain.activation_max.layer]),
            ("explain.ice.layer", [self.explain.ice.layer]),
            (
                "explain.grand_tour.layers",
                [n for n in self.explain.grand_tour.layers if n != "softmax"],
            ),
        ):
            for layer in layers:
                if layer not in known:
                    raise ValueError(
                        f"{key}: unknown layer {layer!r} for arch {self.classifier.arch!r}; "
                        f"use conv, dense or a module path such as "
                        f"{', '.join(n for n in known[2:] if n.count('.') == 0)}"
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
