"""params.yaml validation: every bad value is named with its key and what is allowed."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from pipeline.errors import DataError, ParamsError
from pipeline.params import (
    EPOCH_SEED_STRIDE,
    SEED_LIMIT,
    SEED_MAX,
    Params,
    check_runtime,
    load_params,
    parse_params,
)

REPO = Path(__file__).resolve().parents[1]


def repo_params() -> dict:
    return yaml.safe_load((REPO / "params.yaml").read_text())


def with_value(dotted: str, value: object) -> dict:
    raw = copy.deepcopy(repo_params())
    node = raw
    *parents, leaf = dotted.split(".")
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    if isinstance(node, list):
        node[int(leaf)] = value
    else:
        node[leaf] = value
    return raw


def test_repository_params_are_valid_and_match_schema_defaults():
    params = load_params(REPO / "params.yaml")
    assert params.data.dataset == "mnist_embedded"
    assert params.classifier.arch == "small_cnn"
    # the documented defaults in params.yaml and in every explanation class agree (each
    # default is written once, in its class; params.yaml repeats it for the reader)
    ours, defaults = params.model_dump(), Params().model_dump()
    ours["explain"].pop("methods")
    defaults["explain"].pop("methods")
    assert ours == defaults


def test_every_registered_explanation_has_its_params_block_and_runs_by_default():
    from pipeline.explain.registry import attribution_methods, inside_parts

    raw = repo_params()
    assert sorted(raw["explain"]["methods"]) == sorted(attribution_methods())
    assert set(raw["explain"]) == {"methods", *attribution_methods()}
    assert set(raw["inside"]) == set(inside_parts())
    for group, classes in (("explain", attribution_methods()), ("inside", inside_parts())):
        for name, cls in classes.items():
            assert cls.Params.model_validate(raw[group][name]) == cls.Params(), name


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("data.dataset", "imagenet", "'mnist_embedded'"),
        ("classifier.arch", "resnet", "'small_cnn'"),
        ("classifier.epochs", -1, "greater than 0"),
        ("classifier.epochs", 0, "greater than 0"),
        ("classifier.lr", 0, "greater than 0"),
        ("classifier.lr", -0.1, "greater than 0"),
        ("classifier.batch_size", 0, "greater than 0"),
        ("classifier.lr", "fast", "valid number"),
        ("classifier.weight_decay", -1, "greater than or equal to 0"),
        ("classifier.tracked_instances", 0, "greater than 0"),
        ("data.split.train", 0.5, "sum to 1"),
        ("data.split.test", 1.5, "less than 1"),
        ("data.channels", 2, "1 or 3"),
        ("data.image_size", 4, "greater than or equal to 8"),
        ("trainer.accelerator", "quantum", "'cpu'"),
        ("trainer.precision", "8-bit", "'32-true'"),
        ("trainer.devices", 0, "devices"),
        ("trainer.devices", [], "non-empty list"),
        ("trainer.devices", [-1], "non-empty list"),
        ("trainer.devices", "two", "non-empty list"),
        ("trainer.num_workers", -2, "greater than or equal to 0"),
        ("trainer.strategy", "magic", "'ddp'"),
        ("seed", -5, "greater than or equal to 0"),
        ("tracking.experiment", "", "at least 1"),
        ("select.per_class", 0, "greater than 0"),
        ("select.misclassified", -1, "greater than or equal to 0"),
        ("explain.methods", [], "at least 1"),
        ("explain.methods", ["saliency", "saliency"], "unique"),
        ("explain.methods.0", "no_such_method", "'integrated_gradients'"),
        ("explain.integrated_gradients.steps", 1, "greater than or equal to 2"),
        ("explain.integrated_gradients.baseline", "grey", "'blur'"),
        ("explain.gradcam.layer", "block9", "unknown layer"),
        ("explain.gradcam.layer", "dense", "no spatial maps"),
        ("explain.shap.explainer", "kernel", "'partition'"),
        ("explain.shap.background", 0, "greater than 0"),
        ("explain.lime.segmentation", "felzenszwalb", "'quickshift'"),
        ("explain.lime.samples", 5, "greater than or equal to 10"),
        ("explain.lime.kernel_width", 0, "greater than 0"),
        ("explain.saliency.batch_size", 0, "greater than 0"),
        ("evaluate.steps", 1, "greater than or equal to 2"),
        ("inside.ice.concepts", 0, "greater than 0"),
        ("inside.ice.fidelity_concepts", [], "at least 1"),
        ("inside.ice.layer", "block7", "unknown layer"),
        ("inside.activation_max.layer", "nope", "unknown layer"),
        ("inside.activation_max.iterations", 0, "greater than 0"),
        ("inside.vae_walks.steps", 0, "greater than or equal to 2"),
        ("inside.instanceflow.epochs", 1, "greater than or equal to 2"),
        ("inside.instanceflow.classes", [-1], "greater than or equal to 0"),
        ("inside.grand_tour.layers", ["softmax", "fc9"], "unknown layer"),
        ("inside.grand_tour.frames", 1, "greater than or equal to 2"),
        ("inside.across_epochs.method", "shap", "no background sample"),
        ("inside.across_epochs.method", "magic", "use one of"),
        ("inside.ice.layer", "dense", "no spatial maps"),
        ("evaluate.deletion_value", 2, "less than or equal to 1"),
        ("evaluate.sanity_threshold", 1, "less than 1"),
        # inf and nan pass every bound and break training or a figure later
        ("classifier.lr", float("inf"), "finite number"),
        ("classifier.lr", float("-inf"), "finite number"),
        ("classifier.lr", float("nan"), "finite number"),
        ("evaluate.insertion_blur_sigma", float("inf"), "finite number"),
        ("evaluate.sanity_threshold", float("nan"), "finite number"),
        ("cladec.alphas", [0.5, float("nan")], "finite number"),
        ("explain.occlusion.baseline", float("inf"), "finite number"),
        ("explain.occlusion.baseline", float("-inf"), "finite number"),
        ("explain.occlusion.baseline", float("nan"), "finite number"),
        ("inside.activation_max.step", float("nan"), "finite number"),
        ("inside.activation_max.step", float("inf"), "finite number"),
        # true/false are not numbers
        ("classifier.epochs", True, "not true/false"),
        ("classifier.batch_size", False, "not true/false"),
        ("classifier.lr", True, "not true/false"),
        ("vae.beta", False, "not true/false"),
        ("seed", True, "not true/false"),
        ("data.max_samples", True, "not true/false"),
        ("data.channels", True, "1 or 3"),
        ("cladec.alphas", [True, 0.5], "not true/false"),
        ("explain.lime.segments", True, "not true/false"),
        ("explain.occlusion.baseline", False, "not true/false"),
        ("inside.ice.fidelity_concepts", [2, True], "not true/false"),
        ("inside.instanceflow.classes", [False, 1], "not true/false"),
        ("trainer.num_workers", False, "not true/false"),
        ("trainer.devices", True, "device count"),
        ("explain.saliency.absolute", 1, "valid boolean"),
        # a count is a whole number; a quoted number is a string
        ("classifier.epochs", 3.0, "valid integer"),
        ("classifier.lr", "0.01", "without quotes"),
        # every entry once: a repeat would be computed twice
        ("inside.grand_tour.layers", ["softmax", "softmax"], "unique"),
        ("inside.ice.fidelity_concepts", [2, 3, 3], "unique"),
        ("inside.instanceflow.classes", [1, 1], "unique"),
        ("cladec.layers", ["conv", "conv"], "unique"),
        ("cladec.alphas", [0, 0.0], "unique"),
        ("cladec.variational.layers", ["dense", "dense"], "unique"),
        ("trainer.devices", [0, 0], "unique"),
        ("inside.instanceflow.classes", [], "at least 1"),
        # the layers each explanation reads
        ("explain.gradcam_pp.layer", "dense", "no spatial maps"),
        ("inside.ice.layer", "features.block1.0", "can be negative"),
        ("inside.ice.layer", "normalize", "can be negative"),
        # precision as it will run
        ("trainer.precision", "16-mixed", "bf16-mixed"),
        ("trainer.precision", "16-true", "bf16-mixed"),
        ("trainer.precision", "transformer-engine", "CUDA"),
        ("data.max_image_pixels", 0, "greater than 0"),
        ("data.max_image_pixels", -1, "greater than 0"),
    ],
)
def test_bad_value_names_key_value_and_what_is_allowed(key, value, expected):
    with pytest.raises(ParamsError) as info:
        parse_params(with_value(key, value))
    message = str(info.value)
    first = message.splitlines()[0]
    shown_key = key.rsplit(".", 1)[0] if key.startswith("data.split") and "sum" in expected else key
    assert shown_key in first, message
    assert expected in message, message
    if isinstance(value, list) and value:
        # an entry of a list is named on its own (inside.instanceflow.classes.0 = -1)
        assert any(repr(v) in first for v in value), message
    elif "sum" not in expected:
        assert repr(value) in first, message


@pytest.mark.parametrize("key", ["classifier.epoch", "explain.lime.sample", "explain.saliency.abs"])
def test_unknown_key_is_reported_as_a_misspelling(key):
    """Method params have no catch-all: a renamed key is refused, not ignored."""
    raw = with_value(key, 3)
    with pytest.raises(ParamsError, match=f"unknown key '{key}'"):
        parse_params(raw)


def test_imagefolder_requires_a_folder():
    with pytest.raises(ParamsError, match=r"data\.image_folder"):
        parse_params(with_value("data.dataset", "imagefolder"))


def test_valid_overrides_are_accepted():
    params = parse_params(with_value("trainer.devices", [0, 1]))
    assert params.trainer.devices == [0, 1]
    assert parse_params(with_value("trainer.devices", "auto")).trainer.devices == "auto"
    assert parse_params(with_value("classifier.lr", 0.003)).classifier.lr == 0.003


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ParamsError, match="not found"):
        load_params(tmp_path / "params.yaml")
    bad = tmp_path / "params.yaml"
    bad.write_text("classifier: [unclosed\n")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(bad)
    bad.write_text("- just\n- a list\n")
    with pytest.raises(ParamsError, match="mapping"):
        load_params(bad)


UNSAFE_NAMES = [
    "a;b",
    "conv;rm -rf x",
    "$(id)",
    "`id`",
    "conv'",
    'con"v',
    "con v",
    "a/b",
    "..",
    "conv.",
]


@pytest.mark.parametrize("name", UNSAFE_NAMES)
@pytest.mark.parametrize(
    "key",
    [
        "cladec.layers",
        "cladec.variational.layers",
        "explain.gradcam.layer",
        "inside.activation_max.layer",
        "inside.ice.layer",
        "inside.grand_tour.layers",
    ],
)
def test_layer_names_that_could_escape_a_stage_name_or_path_are_refused(key, name):
    """Layer names end up in DVC stage names, command lines and output paths."""
    value = [name] if key.endswith("layers") else name
    with pytest.raises(ParamsError) as info:
        parse_params(with_value(key, value))
    first = str(info.value).splitlines()[0]
    assert first.startswith(f"params.yaml: {key}"), first
    assert repr(name) in first and "letters, digits and _" in first, first


def _leaves(node: object, prefix: str = "") -> list[tuple[str, object]]:
    if isinstance(node, dict):
        return [kv for k, v in node.items() for kv in _leaves(v, f"{prefix}{k}.")]
    return [(prefix[:-1], node)]


DEFAULT_LEAVES = _leaves(Params().model_dump())


@pytest.mark.parametrize(
    ("key", "default"),
    [(k, v) for k, v in DEFAULT_LEAVES if type(v) in (int, float)],
    ids=lambda v: str(v),
)
def test_every_number_refuses_booleans_and_every_float_inf_and_nan(key, default):
    """No key (the explanation classes' included) takes true as 1 or inf as a bound."""
    bad: list[object] = [True, False]
    if type(default) is float:
        bad += [float("inf"), float("-inf"), float("nan")]
    for value in bad:
        with pytest.raises(ParamsError, match=f"^params.yaml: {key} = "):
            parse_params(with_value(key, value))


@pytest.mark.parametrize(
    ("key", "default"), [(k, v) for k, v in DEFAULT_LEAVES if isinstance(v, list) and v]
)
def test_every_list_refuses_a_repeated_entry(key, default):
    with pytest.raises(ParamsError, match=f"^params.yaml: {key} = .*unique"):
        parse_params(with_value(key, [*default, default[0]]))


def test_numbers_in_yaml_are_read_as_dvc_reads_them(tmp_path):
    """`1e-3` is a float in YAML 1.2 (DVC) and a string in PyYAML's YAML 1.1: the loader
    reads it as DVC does, so a strict float takes it."""
    path = tmp_path / "params.yaml"
    path.write_text("classifier:\n  lr: 1e-3\n  weight_decay: 5E-4\n  epochs: 2\n")
    params = load_params(path)
    assert (params.classifier.lr, params.classifier.weight_decay) == (0.001, 0.0005)
    assert parse_params(with_value("classifier.lr", 1)).classifier.lr == 1.0  # an int is a float
    path.write_text("classifier:\n  lr: .inf\nevaluate:\n  insertion_blur_sigma: .nan\n")
    with pytest.raises(ParamsError) as info:
        load_params(path)
    lines = str(info.value).splitlines()
    assert lines[0] == f"{path}: classifier.lr = inf: must be a finite number, not inf or nan"
    assert lines[1].startswith(f"{path}: evaluate.insertion_blur_sigma = nan: ")


EPOCH_KEYS = (("classifier", "epochs"), ("vae", "epochs"), ("cladec", "max_epochs"))


def _all_epochs(raw: dict, epochs: int) -> dict:
    for group, key in EPOCH_KEYS:
        raw[group][key] = epochs
    return raw


def test_seed_range_is_the_range_every_derived_seed_fits():
    """The split seeds with seed + 1 and training reseeds epoch e with seed + 7919 e;
    numpy and Lightning take seeds up to 2**32 - 1."""
    raw = repo_params()
    epochs, group, key = max((raw[g][k], g, k) for g, k in EPOCH_KEYS)
    largest = SEED_LIMIT - EPOCH_SEED_STRIDE * (epochs - 1)
    assert parse_params(with_value("seed", largest)).seed == largest
    with pytest.raises(ParamsError) as info:
        parse_params(with_value("seed", largest + 1))
    assert str(info.value) == (
        f"params.yaml: seed = {largest + 1}: must be at most {largest} with {group}.{key} "
        f"= {epochs}: epoch e is seeded with seed + 7919 * e, and numpy and Lightning take "
        "seeds below 2**32"
    )
    one = _all_epochs(repo_params(), 1)
    assert parse_params({**one, "seed": SEED_MAX}).seed == 2**32 - 2
    with pytest.raises(ParamsError, match=r"^params.yaml: seed = 4294967295: .*seed \+ 1"):
        parse_params({**one, "seed": SEED_MAX + 1})
    with pytest.raises(ParamsError, match=r"^params.yaml: vae.epochs = 600000: "):
        parse_params(with_value("vae.epochs", 600_000))


def test_seed_range_matches_the_code_that_seeds(monkeypatch):
    """The bound above, against the real split and the real per-epoch reseeding."""
    from types import SimpleNamespace

    import numpy as np
    from lightning_fabric.utilities.seed import max_seed_value

    from pipeline import training
    from pipeline.data import ImageSet, split_dataset
    from pipeline.params import DataParams

    assert max_seed_value == SEED_LIMIT
    images = np.zeros((60, 1, 8, 8), dtype=np.uint8)
    data = ImageSet(images, np.arange(60) % 3, ("a", "b", "c"))
    split_dataset(data, DataParams(), SEED_MAX, "t")
    with pytest.raises(DataError, match=r"random_state.*4294967295.*Got 4294967296"):
        split_dataset(data, DataParams(), SEED_MAX + 1, "t")

    seeded: list[int] = []
    monkeypatch.setattr(training.pl, "seed_everything", lambda seed, **_: seeded.append(seed))
    epochs = 12
    largest = parse_params(
        {
            "seed": SEED_LIMIT - EPOCH_SEED_STRIDE * (epochs - 1),
            "classifier": {"epochs": epochs},
            "cladec": {"max_epochs": epochs},
        }
    ).seed
    callback = training.EpochSeed(largest)
    for epoch in range(epochs):
        callback.on_train_epoch_start(SimpleNamespace(current_epoch=epoch), None)
    assert max(seeded) == SEED_LIMIT  # the last epoch gets exactly the largest seed


def test_ice_layers_are_the_non_negative_spatial_layers_of_each_arch():
    """What the schema accepts for ICE (`_nonnegative_layer_names`) against the real
    networks: those layers never go negative, the other spatial layers do."""
    import torch

    from pipeline.models.archs import LayerEncoder, build_classifier
    from pipeline.models.specs import ARCHS, spatial_layer_names
    from pipeline.params import _nonnegative_layer_names

    torch.manual_seed(0)
    images = torch.rand(8, 3, 32, 32)
    for arch in ARCHS:
        net = build_classifier(arch, (3, 32, 32), 10, mean=[0.5] * 3, std=[0.25] * 3).eval()
        accepted = _nonnegative_layer_names(arch)
        for layer in spatial_layer_names(arch):
            with torch.no_grad():
                low = float(LayerEncoder(net, layer)(images).min())
            assert (low >= 0) == (layer in accepted), (arch, layer, low)


def test_lightning_runs_16_mixed_on_the_cpu_as_bf16():
    """Why `16-mixed` on the CPU is refused: Lightning would silently run bf16-mixed."""
    import warnings

    import pytorch_lightning as pl

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = pl.Trainer(
            accelerator="cpu", precision="16-mixed", logger=False, enable_checkpointing=False
        )
    assert trainer.precision == "bf16-mixed"


def _no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)


@pytest.mark.parametrize("accelerator", ["gpu", "cuda"])
def test_check_runtime_refuses_a_gpu_the_machine_lacks(monkeypatch, accelerator):
    _no_gpu(monkeypatch)
    params = parse_params(with_value("trainer.accelerator", accelerator))
    with pytest.raises(ParamsError) as info:
        check_runtime(params)
    (line,) = str(info.value).splitlines()
    assert line.startswith(f"params.yaml: trainer.accelerator = {accelerator!r}: no ")
    assert "torch.cuda.is_available() is False" in line and "use cpu" in line


def test_check_runtime_accepts_the_cpu_and_refuses_auto_16_mixed_there(monkeypatch):
    _no_gpu(monkeypatch)
    check_runtime(parse_params(repo_params()))
    check_runtime(parse_params(with_value("trainer.accelerator", "auto")))
    raw = with_value("trainer.accelerator", "auto")
    raw["trainer"]["precision"] = "16-mixed"
    with pytest.raises(ParamsError, match=r"^params.yaml: trainer.precision = '16-mixed': .*cpu"):
        check_runtime(parse_params(raw))


def test_check_runtime_refuses_more_gpus_than_the_machine_has(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    raw = with_value("trainer.accelerator", "cuda")
    check_runtime(parse_params(raw))
    raw["trainer"]["devices"] = 2
    with pytest.raises(ParamsError, match=r"^params.yaml: trainer.devices = 2: 1 CUDA device"):
        check_runtime(parse_params(raw))
    raw["trainer"]["devices"] = [0, 1]
    with pytest.raises(ParamsError, match=r"^params.yaml: trainer.devices = \[0, 1\]: "):
        check_runtime(parse_params(raw))
