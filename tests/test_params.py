"""params.yaml validation: every bad value is named with its key and what is allowed."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from pipeline.errors import ParamsError
from pipeline.params import Params, load_params, parse_params

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
