"""One typed schema for params.yaml.

Every stage validates the whole file before it touches anything, so a typo or an
out-of-range value stops the run at once with a message that names the key, the bad
value and what is allowed.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    create_model,
    field_validator,
    model_validator,
)

from pipeline.errors import ParamsError
from pipeline.explain.registry import attribution_methods, inside_parts
from pipeline.models.specs import ARCH_NAMES, RESNETS, arch_layer_names, spatial_layer_names
from pipeline.models.specs import nonnegative_layer_names as _nonnegative_layer_names

DATASETS = ("mnist_embedded", "mnist", "fashion_mnist", "cifar10", "imagefolder")
USER_ARCH = "torchscript"  # a user's TorchScript file (pipeline/models/user_model.py)
ARCHS = (*ARCH_NAMES, USER_ARCH)
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

# Seeds. numpy (np.random.seed, RandomState: scikit-learn's random_state) and
# Lightning's seed_everything take 0 .. 2**32 - 1; torch and numpy's Generator take more.
SEED_LIMIT = 2**32 - 1
# the split seeds its second cut with seed + 1 (pipeline.data.split_dataset)
SEED_MAX = SEED_LIMIT - 1
# pipeline.training.EpochSeed reseeds epoch e (from 0) with seed + EPOCH_SEED_STRIDE * e
EPOCH_SEED_STRIDE = 7919
# a layer name: letters, digits and _ in dot-separated parts; it becomes part of DVC
# stage names (cladec@conv-0.5), command lines and output paths
LAYER_NAME = re.compile(r"[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*")
LAYER_NAME_RULE = (
    "a layer name is letters, digits and _ in dot-separated parts (conv, dense, "
    "features.block1.0): it names DVC stages and output paths"
)

PositiveInt = Annotated[int, Field(gt=0)]
PositiveFloat = Annotated[float, Field(gt=0)]
Fraction = Annotated[float, Field(ge=0, le=1)]


class KeyValueError(ValueError):
    """A problem found across fields that belongs to one key (relative to the model
    that raises it): reported as `<key> = <value>: <message>` like a field's own."""

    def __init__(self, key: str, value: Any, message: str) -> None:
        super().__init__(message)
        self.key, self.value = key, value


def _nested_lists(model: BaseModel, prefix: str = "") -> Iterator[tuple[str, list]]:
    """(dotted key, value) of every list field of `model` and of the explanation params
    inside it; a nested `_Strict` group checks its own."""
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, list):
            yield f"{prefix}{name}", value
        elif isinstance(value, BaseModel) and not isinstance(value, _Strict):
            yield from _nested_lists(value, f"{prefix}{name}.")


class _Strict(BaseModel):
    """Unknown keys are errors: a misspelt key must not be silently ignored. Strict
    types: `true` is not the number 1, nor `3.0` the count 3 (an int is still a
    float). inf and nan are refused: they pass every bound and break training or the
    figures later. The explanation classes' params (`MethodParams`) share these
    settings; the group holding them checks their lists."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)

    @model_validator(mode="after")
    def _lists_unique(self) -> _Strict:
        """A repeated entry is computed twice (alphas 0 and 0.0 even as two DVC stages):
        refuse it."""
        for key, value in _nested_lists(self):
            seen: list[Any] = []
            for item in value:
                if item in seen:
                    raise KeyValueError(
                        key, value, f"entries must be unique, {item!r} is listed twice"
                    )
                seen.append(item)
        return self


def _safe_layer_name(value: str) -> str:
    if not LAYER_NAME.fullmatch(value):
        raise ValueError(LAYER_NAME_RULE)
    return value


LayerName = Annotated[str, AfterValidator(_safe_layer_name)]


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
    # imagefolder: larger images are refused before they are decoded (a decompression
    # bomb of 20000 x 20000 is 400 M pixels). Pillow's own default, 89.5 M (a 256 MiB RGB
    # image), lets through a 50 MP phone photo and a 61 MP full-frame camera's
    max_image_pixels: PositiveInt = 89_478_485
    split: SplitParams = SplitParams()

    @field_validator("channels", mode="before")
    @classmethod
    def _not_bool(cls, value: Any) -> Any:
        # a Literal of ints takes `true` as 1 even in strict mode
        if isinstance(value, bool):
            raise ValueError("Input should be 1 or 3")
        return value

    @model_validator(mode="after")
    def _folder_for_imagefolder(self) -> DataParams:
        if self.dataset == "imagefolder" and not self.image_folder:
            raise ValueError(
                "dataset 'imagefolder' needs data.image_folder: a directory with one "
                "sub-folder of images per class"
            )
        return self


WEIGHT_FILE_SUFFIXES = (".pt", ".pth", ".ts")


def _weights_value(value: str) -> str:
    if value in ("scratch", "imagenet") or value.endswith(WEIGHT_FILE_SUFFIXES):
        return value
    raise ValueError(
        "use scratch (random initialisation), imagenet (torchvision's ImageNet weights, "
        "resnet archs) or the path of a state dict saved with torch.save (.pt or .pth) or, "
        "with arch torchscript, of a TorchScript file (.pt, .pth or .ts)"
    )


class ClassifierParams(_Strict):
    arch: Literal[ARCHS] = "small_cnn"  # type: ignore[valid-type]
    # where the weights start from: scratch | imagenet | path/to/state_dict.pt(h)
    weights: Annotated[str, AfterValidator(_weights_value)] = "scratch"
    train: bool = True  # false: explain the weights as they are, no training
    # the normalization the weights were trained with (one value per channel); null:
    # the file's own, else ImageNet's for a resnet
    mean: Annotated[list[float], Field(min_length=1, max_length=3)] | None = None
    std: Annotated[list[PositiveFloat], Field(min_length=1, max_length=3)] | None = None
    epochs: PositiveInt = 12
    batch_size: PositiveInt = 64
    lr: PositiveFloat = 1e-3
    weight_decay: Annotated[float, Field(ge=0)] = 0.0
    tracked_instances: PositiveInt = 1000
    # arch torchscript: the module paths of the file's named layers, {conv: ..., dense: ...}
    layers: dict[Literal["conv", "dense"], LayerName] = {}

    @model_validator(mode="after")
    def _torchscript_fits(self) -> ClassifierParams:
        """A TorchScript file is explained as it is, from a file; only it takes layers."""
        if self.arch != USER_ARCH:
            if self.layers:
                raise KeyValueError(
                    "layers",
                    self.layers,
                    f"names the layers of a TorchScript file (arch {USER_ARCH}); arch "
                    f"{self.arch!r} names its own conv and dense: leave it empty ({{}})",
                )
            return self
        if self.weights in ("scratch", "imagenet"):
            raise KeyValueError(
                "weights",
                self.weights,
                "arch torchscript needs the path of the TorchScript file (.pt, .pth or .ts)",
            )
        if self.train:
            raise KeyValueError(
                "train",
                self.train,
                "a TorchScript model is explained as it is (no fine-tuning): set "
                "classifier.train to false",
            )
        return self

    @model_validator(mode="after")
    def _weights_fit(self) -> ClassifierParams:
        if self.weights == "imagenet" and self.arch not in RESNETS:
            raise KeyValueError(
                "weights",
                self.weights,
                f"ImageNet weights exist for {', '.join(RESNETS)}, not for arch {self.arch!r}",
            )
        if (self.mean is None) != (self.std is None):
            key = "mean" if self.mean is None else "std"
            raise KeyValueError(key, None, "classifier.mean and classifier.std go together")
        if self.mean is not None and self.weights == "scratch":
            raise KeyValueError(
                "mean",
                self.mean,
                "sets the normalization of given weights (classifier.weights imagenet or a "
                "file); from scratch, training normalizes with the training images' own "
                "statistics: leave mean and std null",
            )
        if self.mean is not None and self.std is not None and len(self.mean) != len(self.std):
            raise KeyValueError("std", self.std, "needs as many values as classifier.mean")
        if not self.train and self.weights == "scratch":
            raise KeyValueError(
                "train",
                self.train,
                "explaining a model as it is needs trained weights: set classifier.weights "
                "to imagenet or the path of a state dict",
            )
        return self


class VAEParams(_Strict):
    latent_dim: PositiveInt = 16
    beta: Annotated[float, Field(ge=0)] = 1.0
    epochs: PositiveInt = 4
    batch_size: PositiveInt = 64
    lr: PositiveFloat = 2e-3


LayerList = Annotated[list[LayerName], Field(min_length=1)]


class VariationalParams(_Strict):
    layers: list[LayerName] = ["dense"]  # empty: off
    latent_dim: PositiveInt = 2
    beta: Annotated[float, Field(ge=0)] = 1.0
    alpha: Fraction = 0.5


class ClaDecParams(_Strict):
    layers: LayerList = ["conv", "dense"]
    alphas: Annotated[list[Fraction], Field(min_length=1)] = [0.0, 0.01, 0.5, 0.99, 0.999]
    reconstruction: Literal["sse", "mse"] = "sse"  # per image (the reference's) or per pixel
    max_epochs: PositiveInt = 40  # early stopping on the validation loss, capped here
    patience: PositiveInt = 3
    min_delta: Annotated[float, Field(ge=0, lt=1)] = 0.005  # relative to the best loss
    batch_size: PositiveInt = 64
    lr: PositiveFloat = 2e-3
    # images with a larger side skip every decoder stage, saying why (pipeline/skips.py:
    # on a CPU a 224 px photo costs 9.5 s a decoder epoch); None: no limit
    max_side: PositiveInt | None = 64
    variational: VariationalParams = VariationalParams()


class SelectParams(_Strict):
    per_class: PositiveInt = 4
    misclassified: Annotated[int, Field(ge=0)] = 10
    confused_pairs: Annotated[int, Field(ge=0)] = 3
    # the near-chance guardrail (pipeline/chance.py): the test accuracy must cover this
    # share of the way from chance to 1; 0 or null turns it off
    above_chance: Annotated[float, Field(ge=0, lt=1)] | None = 0.1


def _explanation_group(model_name: str, classes: dict[str, Any], **extra: Any) -> type[BaseModel]:
    """A params group with one field per registered explanation, its type and default
    the class's own `Params`: defaults are written once, in the explanation's module."""
    fields: dict[str, Any] = {
        name: (cls.Params, Field(default_factory=cls.Params)) for name, cls in classes.items()
    }
    return create_model(model_name, __base__=_Strict, **extra, **fields)


ATTRIBUTION_CLASSES = attribution_methods()
ATTRIBUTION_METHODS = tuple(ATTRIBUTION_CLASSES)
MethodName = Literal[ATTRIBUTION_METHODS]  # type: ignore[valid-type]
ExplainParams = _explanation_group(
    "ExplainParams",
    ATTRIBUTION_CLASSES,
    methods=(
        Annotated[list[MethodName], Field(min_length=1)],
        Field(default_factory=lambda: list(ATTRIBUTION_METHODS)),
    ),
)
INSIDE_CLASSES = inside_parts()
INSIDE_PARTS = tuple(INSIDE_CLASSES)
InsideParams = _explanation_group("InsideParams", INSIDE_CLASSES)


OpenFraction = Annotated[float, Field(gt=0, lt=1)]


class EvaluateParams(_Strict):
    images: Annotated[int, Field(ge=10)] = 200
    steps: Annotated[int, Field(ge=2)] = 28
    deletion_value: Fraction = 0.0
    insertion_blur_sigma: PositiveFloat = 4.0
    road_percentages: Annotated[list[OpenFraction], Field(min_length=1)] = [
        0.1,
        0.2,
        0.3,
        0.4,
        0.5,
        0.6,
        0.7,
        0.8,
        0.9,
    ]
    road_noise: Annotated[float, Field(ge=0, le=1)] = 0.01
    random_seeds: PositiveInt = 3
    sanity_images: Annotated[int, Field(ge=2)] = 50
    sanity_seeds: PositiveInt = 3
    sanity_threshold: Annotated[float, Field(gt=-1, lt=1)] = 0.5
    foreground_tolerance: Annotated[float, Field(ge=0, lt=1)] = 0.1
    bootstrap: Annotated[int, Field(ge=100)] = 2000

    @model_validator(mode="after")
    def _sanity_images_are_evaluated(self) -> EvaluateParams:
        """The sanity check runs on the first images of the evaluation set."""
        if self.sanity_images > self.images:
            raise KeyValueError(
                "sanity_images",
                self.sanity_images,
                f"must be at most evaluate.images = {self.images} (the sanity check "
                "uses the first images of the evaluation set)",
            )
        if self.road_percentages != sorted(self.road_percentages):
            raise KeyValueError(
                "road_percentages", self.road_percentages, "must be in increasing order"
            )
        return self


def precision_problem(accelerator: str, precision: str) -> str | None:
    """Why `precision` would not run as written on `accelerator` (a resolved one, not
    auto), or None. Lightning (2.6) itself turns 16-mixed on the CPU into bf16-mixed
    with a warning; the run should say what runs."""
    if accelerator == "cpu" and precision == "16-mixed":
        return (
            "on the CPU Lightning runs 16-mixed as bf16-mixed (fp16 autocast is for GPUs); "
            "write bf16-mixed to get what runs, or 32-true"
        )
    if accelerator == "cpu" and precision == "16-true":
        return (
            "pure fp16 on the CPU trains slower than 32-true and loses Adam's eps (1e-8 is "
            "below fp16's range); use bf16-mixed or 32-true"
        )
    if precision == "transformer-engine" and accelerator not in ("cuda", "gpu"):
        return "transformer-engine needs a CUDA GPU; use 32-true or bf16-mixed"
    if accelerator == "mps" and precision == "64-true":
        return "MPS has no float64; use 32-true"
    return None


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

    @field_validator("precision")
    @classmethod
    def _runs_as_written(cls, value: str, info: ValidationInfo) -> str:
        problem = precision_problem(info.data.get("accelerator", "auto"), value)
        if problem:
            raise ValueError(problem)
        return value


class TrackingParams(_Strict):
    experiment: Annotated[str, Field(min_length=1)] = "xai-pipeline"
    log_checkpoints: bool = False


def _seed_in_range(value: int) -> int:
    if value > SEED_MAX:
        raise ValueError(
            f"must be at most {SEED_MAX}: numpy and Lightning take seeds below 2**32 and "
            "the split also seeds with seed + 1"
        )
    return value


class Params(_Strict):
    seed: Annotated[int, Field(ge=0), AfterValidator(_seed_in_range)] = 42
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
    def _seed_fits_every_epoch(self) -> Params:
        """Training reseeds every epoch with seed + 7919 * epoch: the last epoch of the
        longest training must still get a seed numpy and Lightning take."""
        key, epochs = max(
            (
                ("classifier.epochs", self.classifier.epochs),
                ("vae.epochs", self.vae.epochs),
                ("cladec.max_epochs", self.cladec.max_epochs),
            ),
            key=lambda item: item[1],
        )
        limit = SEED_LIMIT - EPOCH_SEED_STRIDE * (epochs - 1)
        if limit < 0:
            raise KeyValueError(
                key,
                epochs,
                f"epoch e is seeded with seed + {EPOCH_SEED_STRIDE} * e, which passes "
                f"2**32 - 1 for every seed; use at most {SEED_LIMIT // EPOCH_SEED_STRIDE + 1}",
            )
        if self.seed > limit:
            raise KeyValueError(
                "seed",
                self.seed,
                f"must be at most {limit} with {key} = {epochs}: epoch e is seeded with "
                f"seed + {EPOCH_SEED_STRIDE} * e, and numpy and Lightning take seeds below 2**32",
            )
        return self

    @model_validator(mode="after")
    def _layers_exist(self) -> Params:
        """Every layer an explanation reads: a safe name, a layer of the arch, with
        spatial maps or non-negative activations where the explanation needs them."""
        arch = self.classifier.arch
        if arch == USER_ARCH:  # the file's layers are known once it is loaded
            named = self.classifier.layers
            known = [*named, *named.values()]
            spatial = nonnegative = known
        else:
            known = arch_layer_names(arch)
            spatial = spatial_layer_names(arch)
            nonnegative = _nonnegative_layer_names(arch)
        # (key, a layer or a list, extra names accepted, needs spatial maps, non-negative)
        checks: list[tuple[str, str | list[str], tuple[str, ...], bool, bool]] = [
            ("cladec.layers", self.cladec.layers, (), False, False),
            ("cladec.variational.layers", self.cladec.variational.layers, (), False, False),
        ]
        for group, classes in (("explain", ATTRIBUTION_CLASSES), ("inside", INSIDE_CLASSES)):
            for name, cls in classes.items():
                p = getattr(getattr(self, group), name)
                for key in ("layer", "layers"):
                    if hasattr(p, key):
                        checks.append(
                            (
                                f"{group}.{name}.{key}",
                                getattr(p, key),
                                cls.extra_layer_names,
                                cls.needs_spatial_layer,
                                cls.needs_nonnegative_layer,
                            )
                        )
        for name, value, extra, needs_spatial, needs_nonnegative in checks:
            named = [(name, value)] if isinstance(value, str) else list(enumerate(value))
            for index, layer in named:
                key = name if isinstance(value, str) else f"{name}.{index}"
                if not LAYER_NAME.fullmatch(layer):
                    raise KeyValueError(key, layer, LAYER_NAME_RULE)
                if layer in extra:
                    continue
                if layer not in known and arch == USER_ARCH:
                    raise KeyValueError(
                        key,
                        layer,
                        f"arch torchscript knows the layers classifier.layers names "
                        f"({', '.join(known) or 'none'}); set classifier.layers.conv and "
                        ".dense to module paths of the file (e.g. {conv: layer4, dense: "
                        "avgpool}), or name one of them here",
                    )
                if layer not in known:
                    raise KeyValueError(
                        key,
                        layer,
                        f"unknown layer {layer!r} for arch {arch!r}; use conv, dense or a "
                        "module path "
                        f"such as {', '.join(n for n in known[2:] if n.count('.') == 0)}",
                    )
                if needs_spatial and layer not in spatial:
                    reason = "this layer has no spatial maps"
                elif needs_nonnegative and layer not in nonnegative:
                    reason = "this layer's activations can be negative (it is not after a ReLU)"
                else:
                    continue
                usable = [
                    n
                    for n in known
                    if (n in spatial or not needs_spatial)
                    and (n in nonnegative or not needs_nonnegative)
                ]
                raise KeyValueError(key, layer, f"{reason}; use one of {', '.join(usable)}")
        return self

    @model_validator(mode="after")
    def _methods_fit_torchscript(self) -> Params:
        """No method whose rules hook the model's non-linearity modules on a TorchScript
        file: the hooks never run inside its compiled graph (pipeline/explain/base.py)."""
        if self.classifier.arch != USER_ARCH:
            return self
        hooked = [m for m in self.explain.methods if ATTRIBUTION_CLASSES[m].hooks_nonlinearities]
        if hooked:
            raise KeyValueError(
                "explain.methods",
                self.explain.methods,
                f"{', '.join(hooked)} change the backward pass of the model's ReLU modules, "
                "which a TorchScript file's compiled graph does not expose (guided backprop "
                "would silently be the plain gradient, DeepLIFT input x gradient); remove "
                "them for arch torchscript",
            )
        return self


def _show(value: Any) -> str:
    return repr(value) if not isinstance(value, dict) else "{...}"


def _message(error: dict[str, Any]) -> str:
    """pydantic's message, said for params.yaml where it would mislead."""
    value, kind = error.get("input"), error["type"]
    if isinstance(value, bool) and kind in ("int_type", "float_type"):
        return f"a number is expected, not true/false ({error['msg']})"
    if kind == "finite_number":
        return "must be a finite number, not inf or nan"
    if isinstance(value, str) and kind in ("int_type", "float_type"):
        try:
            float(value)
        except ValueError:
            pass
        else:
            return f"{error['msg']}: write it without quotes"
    return error["msg"].removeprefix("Value error, ")


def _describe(error: dict[str, Any], file: str) -> str:
    """One line: file, dotted key, the offending value and what is allowed."""
    loc = [str(part) for part in error["loc"]]
    cause = (error.get("ctx") or {}).get("error")
    if isinstance(cause, KeyValueError):
        return f"{file}: {'.'.join([*loc, cause.key])} = {_show(cause.value)}: {cause}"
    key = ".".join(loc)
    message = _message(error)
    if error["type"] == "extra_forbidden":
        return f"{file}: unknown key '{key}' (check the spelling; see README for the keys)"
    if error["type"] == "missing":
        return f"{file}: '{key}' is required"
    if not key:
        return f"{file}: {message}"
    return f"{file}: {key} = {_show(error.get('input'))}: {message}"


class _Loader(yaml.SafeLoader):
    """YAML as DVC reads params.yaml (YAML 1.2 numbers): `1e-3` is a number, where
    PyYAML's YAML 1.1 makes it a string that a strict number field would refuse."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


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
        raw = yaml.load(path.read_text(), Loader=_Loader)  # a SafeLoader: no object tags
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML: {exc}".replace("\n", " ")) from None
    return parse_params(raw, file=str(path))


def _auto_accelerator() -> str:
    """What Lightning's accelerator='auto' picks on this machine (TPU, MPS, CUDA, CPU)."""
    import importlib.util

    import torch

    if importlib.util.find_spec("torch_xla") is not None:
        return "tpu"
    if torch.backends.mps.is_available():
        return "mps"
    if torch.cuda.is_available():
        return "cuda"
    return "cpu"


def check_runtime(params: Params, file: str = "params.yaml") -> None:
    """What only this machine can tell: does the `trainer` group's hardware exist, and
    does its precision run as written? Called by the training stages before they open
    a run; it imports torch, so params validation itself stays torch-free. Raises
    ParamsError, one line per problem, instead of Lightning's MisconfigurationException
    half-way into the stage."""
    import importlib.util

    t = params.trainer
    if t.accelerator == "cpu":
        return  # nothing the schema has not checked (and no torch import for it)
    import torch

    problems: list[str] = []

    def refuse(key: str, value: Any, message: str) -> None:
        problems.append(f"{file}: trainer.{key} = {_show(value)}: {message}")

    cuda, mps = torch.cuda.is_available(), torch.backends.mps.is_available()
    no_cuda = "torch.cuda.is_available() is False"
    resolved = t.accelerator
    if t.accelerator == "cuda" and not cuda:
        refuse("accelerator", t.accelerator, f"no CUDA device: {no_cuda}; use cpu (or auto)")
    elif t.accelerator == "gpu" and not (cuda or mps):
        refuse(
            "accelerator",
            t.accelerator,
            f"no GPU: {no_cuda} and torch.backends.mps.is_available() is False; use cpu (or auto)",
        )
    elif t.accelerator == "mps" and not mps:
        refuse(
            "accelerator",
            t.accelerator,
            "no Apple GPU: torch.backends.mps.is_available() is False; use cpu (or auto)",
        )
    elif t.accelerator == "tpu" and importlib.util.find_spec("torch_xla") is None:
        refuse("accelerator", t.accelerator, "no TPU runtime: torch_xla is not installed")
    elif t.accelerator == "auto":
        resolved = _auto_accelerator()
    elif t.accelerator == "gpu":
        resolved = "mps" if mps else "cuda"  # Lightning's order for 'gpu'
    if problems:
        raise ParamsError("\n".join(problems))

    if resolved == "cuda":
        count = torch.cuda.device_count()
        ids = t.devices if isinstance(t.devices, list) else []
        if isinstance(t.devices, int) and t.devices > count:
            refuse("devices", t.devices, f"{count} CUDA device(s) found; use at most {count}")
        elif ids and max(ids) >= count:
            refuse("devices", ids, f"{count} CUDA device(s) found: ids must be below {count}")
        if t.precision.startswith("bf16") and not torch.cuda.is_bf16_supported():
            refuse("precision", t.precision, "this GPU has no bfloat16; use 16-mixed or 32-true")
    problem = precision_problem(resolved, t.precision)
    if problem and resolved != t.accelerator:
        refuse(
            "precision",
            t.precision,
            f"accelerator {t.accelerator} runs on {resolved} here: {problem}",
        )
    if (
        t.precision == "transformer-engine"
        and importlib.util.find_spec("transformer_engine") is None
    ):
        refuse("precision", t.precision, "the transformer_engine package is not installed")
    if problems:
        raise ParamsError("\n".join(problems))
