"""Any model of the user's: a TorchScript file, or a state dict plus an arch name, as the
classifier. The classifier stage exports it; explanations and their evaluation on the
export equal those on the same model built in Python; bad files are one line naming
the file or the key."""

from __future__ import annotations

import copy
import dataclasses
import io
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from pipeline.errors import ParamsError, PipelineError
from pipeline.evaluate.protocol import evaluate_method
from pipeline.explain.registry import method_class
from pipeline.models.archs import LayerEncoder, build_classifier
from pipeline.models.export import load_classifier
from pipeline.models.user_model import (
    TRUST_ENV,
    UserModel,
    build_user_model,
    called_submodules,
    check_output,
    read_script,
)
from pipeline.models.weights import locate_weights, read_state_dict
from pipeline.params import ATTRIBUTION_CLASSES, EvaluateParams, parse_params

REPO = Path(__file__).resolve().parents[1]
LAYERS = {"conv": "features", "dense": "pool"}


class TinyNet(nn.Module):
    """A user's model in Python: conv features, pooled, a linear head (scriptable)."""

    def __init__(self, channels: int = 1, classes: int = 3) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(channels, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 8, 3, padding=1)
        )
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.fc = nn.Linear(32, classes)
        self.named_layers = dict(LAYERS)  # how resolve_layer finds conv and dense

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.pool(self.features(x))).flatten(1))


def script_bytes(model: nn.Module) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(torch.jit.script(model), buffer)
    return buffer.getvalue()


@pytest.fixture(autouse=True)
def trusted(monkeypatch):
    """The person running these tests trusts the TorchScript files they script."""
    monkeypatch.setenv(TRUST_ENV, "1")


def test_a_torchscript_file_is_refused_unless_the_environment_trusts_it(monkeypatch):
    """Its code would run at every forward: a params value or a pulled model.pt alone
    must not make the pipeline run it."""
    data = script_bytes(TinyNet().eval())
    for value in (None, "0", "yes"):
        if value is None:
            monkeypatch.delenv(TRUST_ENV)
        else:
            monkeypatch.setenv(TRUST_ENV, value)
        with pytest.raises(PipelineError, match=f"TorchScript program.*{TRUST_ENV}=1"):
            build_user_model(data, "tiny.ts", LAYERS, None, None)
    monkeypatch.setenv(TRUST_ENV, "1")
    assert isinstance(build_user_model(data, "tiny.ts", LAYERS, None, None), UserModel)


@pytest.fixture
def tiny() -> tuple[TinyNet, UserModel]:
    torch.manual_seed(0)
    eager = TinyNet().eval()
    return eager, build_user_model(script_bytes(eager), "tiny.ts", LAYERS, None, None)


def test_python_hooks_cannot_go_on_a_loaded_script_module(tiny):
    """Why the named layers are tapped: torch refuses hooks on scripted submodules."""
    _, user = tiny
    with pytest.raises(RuntimeError, match="not supported on ScriptModules"):
        user.net.features.register_forward_hook(lambda *_: None)
    assert called_submodules(user.net) == ["features", "pool", "fc"]


def test_tapped_layers_equal_the_python_models(tiny):
    """Logits, gradients at the named layers, Grad-CAM and saliency maps, and the layer
    encoder's codes: the same on the TorchScript model as on the model it was made from."""
    eager, user = tiny
    x, targets = torch.rand(5, 1, 12, 12), torch.tensor([0, 1, 2, 0, 1])
    torch.testing.assert_close(user(x), eager(x), rtol=0, atol=0)
    for name in ("gradcam", "saliency"):
        cls = method_class(name)
        ours = cls().attribute(user, x, targets, cls.Params()).maps
        theirs = cls().attribute(eager, x, targets, cls.Params()).maps
        assert np.abs(theirs).max() > 0
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-7)
    for layer in ("conv", "dense", "features"):
        torch.testing.assert_close(LayerEncoder(user, layer)(x), LayerEncoder(eager, layer)(x))


def test_a_copy_has_its_own_weights(tiny):
    """The sanity check randomizes a deep copy: the original must not change."""
    eager, user = tiny
    x = torch.rand(2, 1, 12, 12)
    twin = copy.deepcopy(user)
    with torch.no_grad():
        twin.get_submodule("net.fc").weight.zero_()
        twin.get_submodule("net.fc").bias.zero_()
    assert torch.equal(twin(x), torch.zeros(2, 3))
    torch.testing.assert_close(user(x), eager(x))


HOOKING = sorted(n for n, c in ATTRIBUTION_CLASSES.items() if c.hooks_nonlinearities)


def test_the_methods_that_hook_relu_modules_are_known():
    """The two whose rules live in module hooks (the list the refusals below rely on)."""
    assert HOOKING == ["deeplift", "guided_backprop"]


@pytest.mark.parametrize("name", sorted(set(ATTRIBUTION_CLASSES) - set(HOOKING)))
def test_every_other_method_gives_the_python_models_maps(tiny, name):
    """Each method's maps on the TorchScript model equal those on the model it was made
    from (occlusion, RISE and Grad-CAM++ copy the model first: a scripted copy's weights
    must be leaves for that)."""
    eager, user = tiny
    torch.manual_seed(1)
    x, targets = torch.rand(3, 1, 12, 12), torch.tensor([0, 1, 2])
    cls = method_class(name)
    background = torch.rand(8, 1, 12, 12) if cls.needs_background else None
    p = cls.Params()
    ours = cls(seed=3, background=background).attribute(user, x, targets, p).maps
    theirs = cls(seed=3, background=background).attribute(eager, x, targets, p).maps
    assert np.abs(theirs).max() > 0
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", HOOKING)
def test_methods_that_hook_relu_modules_refuse_a_torchscript_model(tiny, name):
    """Their hooks never reach the ReLUs inside compiled code: without the refusal the
    maps would silently be the plain gradient (guided backprop) or input x gradient
    (DeepLIFT), which is what captum returns on the scripted graph."""
    from captum.attr import DeepLift, GuidedBackprop, InputXGradient, Saliency

    eager, user = tiny
    x, targets = torch.rand(3, 1, 12, 12), torch.tensor([0, 1, 2])
    silent = {"guided_backprop": GuidedBackprop, "deeplift": DeepLift}[name](user)
    same_as = {"guided_backprop": Saliency, "deeplift": InputXGradient}[name](eager)
    kwargs = {"abs": False} if name == "guided_backprop" else {}
    torch.testing.assert_close(
        silent.attribute(x.clone().requires_grad_(), target=targets),
        same_as.attribute(x.clone().requires_grad_(), target=targets, **kwargs),
    )
    cls = method_class(name)
    with pytest.raises(PipelineError, match=f"{name} changes the backward pass.*TorchScript"):
        cls().attribute(user, x, targets, cls.Params())
    assert np.abs(cls().attribute(eager, x, targets, cls.Params()).maps).max() > 0


def test_the_flag_alone_makes_a_new_hook_based_method_refuse_torchscript(tiny):
    """A method that declares hooks_nonlinearities needs no call of its own: its
    `attribute` is guarded wherever it is called from; one without the flag is not."""
    from pipeline.explain.base import AttributionMethod, Attributions

    class Plain(AttributionMethod):
        name = "plain"
        signed = True

        def attribute(self, model, images, targets, p):
            return Attributions(np.ones(tuple(images.shape), np.float32))

    class Hooked(Plain):
        name = "hooked"
        hooks_nonlinearities = True

        def attribute(self, model, images, targets, p):
            return Attributions(np.full(tuple(images.shape), 2.0, np.float32))

    eager, user = tiny
    x, targets = torch.rand(2, 1, 12, 12), torch.tensor([0, 1])
    with pytest.raises(PipelineError, match=r"hooked changes the backward pass.*TorchScript"):
        Hooked().attribute(user, x, targets, None)
    assert Hooked().attribute(eager, x, targets, None).maps.max() == 2.0
    assert Plain().attribute(user, x, targets, None).maps.max() == 1.0


def test_a_copy_of_a_script_model_has_leaf_weights(tiny):
    """torch's ScriptModule deepcopy clones weights with their history; ours are leaves,
    so freezing a copy (inference_copy) works."""
    _, user = tiny
    twin = copy.deepcopy(user)
    assert all(t.is_leaf for t in twin.parameters())
    twin.requires_grad_(False)
    assert all(t.requires_grad for t in user.parameters())


def test_normalization_from_params_is_applied_inside(tiny):
    eager, _ = tiny
    user = build_user_model(script_bytes(eager), "tiny.ts", {}, [0.5], [0.25])
    x = torch.rand(2, 1, 12, 12)
    torch.testing.assert_close(user(x), eager((x - 0.5) / 0.25))


def test_only_layers_the_forward_calls_can_be_named(tiny):
    eager, _ = tiny
    with pytest.raises(PipelineError, match=r"classifier.layers: features.0 is not .*features"):
        build_user_model(script_bytes(eager), "tiny.ts", {"conv": "features.0"}, None, None)


def _workspace(tmp_path: Path, tiny_splits, classifier: dict) -> Path:
    """A workspace with the tiny dataset and params.yaml with these classifier keys,
    shrunk evaluation params and layers the TorchScript model names."""
    (tmp_path / "data").mkdir(parents=True)
    tiny_splits.save(tmp_path / "data" / "dataset.npz")
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["classifier"].update(classifier)
    if classifier.get("arch") == "torchscript":  # their hooks cannot reach compiled ReLUs
        params["explain"]["methods"] = [m for m in params["explain"]["methods"] if m not in HOOKING]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    return tmp_path


def _classifier_stage(cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "MLFLOW_TRACKING_URI": f"sqlite:///{cwd}/m.db"}
    return subprocess.run(
        [sys.executable, "-m", "stages.classifier"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _explain_and_evaluate(model: nn.Module, x: torch.Tensor, t: torch.Tensor) -> list:
    """What explain@gradcam and explain@saliency compute: maps and their evaluation."""
    ev = EvaluateParams(images=10, steps=4, sanity_images=4, sanity_seeds=1, bootstrap=100)
    results = []
    for name in ("gradcam", "saliency"):
        cls = method_class(name)

        def attribute(m: nn.Module, images, classes, cls=cls) -> np.ndarray:
            return cls().attribute(m, images, classes, cls.Params()).maps

        maps = attribute(model, x, t)
        results.append((maps, evaluate_method(name, model, x, t, maps, attribute, ev, seed=1)))
    return results


def _same(ours: list, theirs: list) -> None:
    """Same maps, curves and sanity-check scores; the randomized layers are the same
    ones, the wrapper's paths under `net.` (and `net.net.` for the reference)."""
    for (maps_a, eval_a), (maps_b, eval_b) in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(maps_a, maps_b, rtol=0, atol=1e-6)
        assert len(eval_a.sanity_layers) > 0
        for field in dataclasses.fields(eval_a):
            a, b = getattr(eval_a, field.name), getattr(eval_b, field.name)
            if field.name == "sanity_layers":
                assert [n.split("net.")[-1] for n in a] == [n.split("net.")[-1] for n in b]
            elif field.name != "method":
                np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, err_msg=field.name)


@pytest.mark.parametrize("kind", ["torchscript", "state_dict"])
def test_a_users_model_round_trips_through_the_stage_explain_and_evaluate(
    tmp_path, tiny_splits, kind
):
    """The classifier stage exports the user's model as it is; the export's Grad-CAM and
    saliency maps and their evaluation equal those of the model the user made."""
    torch.manual_seed(0)
    if kind == "torchscript":
        eager: nn.Module = TinyNet().eval()
        model_file = tmp_path / "model.ts"
        model_file.write_bytes(script_bytes(eager))
        keys = {"arch": "torchscript", "layers": LAYERS, "mean": [0.1], "std": [0.5]}
    else:
        eager = build_classifier("small_cnn", (1, 16, 16), 3).eval()
        model_file = tmp_path / "model.pth"
        torch.save(eager.state_dict(), model_file)
        keys = {"arch": "small_cnn"}
    work = _workspace(
        tmp_path / "work", tiny_splits, {**keys, "weights": str(model_file), "train": False}
    )
    result = _classifier_stage(work)
    assert result.returncode == 0, result.stderr[-2000:]
    exported, names = load_classifier(work / "models" / "classifier" / "model.pt")
    assert names == list(tiny_splits.class_names)
    reference = _Normalized(eager, 0.1, 0.5) if kind == "torchscript" else eager
    assert isinstance(exported, UserModel) == (kind == "torchscript")
    x = torch.as_tensor(tiny_splits.x_test[:10], dtype=torch.float32) / 255
    t = reference(x).argmax(1)
    torch.testing.assert_close(exported(x), reference(x))
    _same(_explain_and_evaluate(exported, x, t), _explain_and_evaluate(reference, x, t))


class _Normalized(nn.Module):
    """The eager model behind the normalization the params give (the reference)."""

    def __init__(self, net: nn.Module, mean: float, std: float) -> None:
        super().__init__()
        self.net, self.mean, self.std = net, mean, std
        self.named_layers = {k: f"net.{v}" for k, v in LAYERS.items()}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean) / self.std)


def test_bad_files_are_one_line_naming_the_file_or_key(tmp_path, tiny):
    eager, user = tiny
    missing = tmp_path / "nope.ts"
    with pytest.raises(PipelineError) as error:
        locate_weights(str(missing), "torchscript", download=False)
    assert str(error.value).startswith("classifier.weights = ")
    assert "nope.ts" in str(error.value) and "TorchScript" in str(error.value)
    state = tmp_path / "state.pt"
    torch.save(eager.state_dict(), state)
    with pytest.raises(PipelineError, match=r"classifier.weights: .*state.pt is not a TorchScript"):
        read_script(state)
    script = tmp_path / "model.ts"
    script.write_bytes(script_bytes(eager))
    with pytest.raises(PipelineError, match=r"model.ts is a TorchScript file.*classifier.arch"):
        read_state_dict(script)
    with pytest.raises(
        PipelineError, match=r"model.ts does not take images of shape \(3, 12, 12\)"
    ):
        check_output(user, (3, 12, 12), 3, str(script))
    with pytest.raises(PipelineError, match=r"model\.ts has 3 outputs; the dataset has 10"):
        check_output(user, (1, 12, 12), 10, str(script))


@pytest.mark.parametrize(
    ("classifier", "explain", "message"),
    [
        (
            {"arch": "torchscript", "weights": "m.ts", "train": True, "layers": LAYERS},
            {},
            "classifier.train = True: a TorchScript model is explained as it is",
        ),
        (
            {"arch": "torchscript", "weights": "imagenet", "train": False},
            {},
            "classifier.weights = 'imagenet': arch torchscript needs the path",
        ),
        (
            {"arch": "torchscript", "weights": "m.ts", "train": False, "layers": {"conv": "f"}},
            {},
            "cladec.layers.1 = 'dense': arch torchscript knows the layers classifier.layers names",
        ),
        (
            {"arch": "resnet18", "layers": {"conv": "layer4"}},
            {},
            "classifier.layers = {...}: names the layers of a TorchScript file",
        ),
        (
            {"arch": "torchscript", "weights": "m.ts", "train": False, "layers": LAYERS},
            {"methods": ["gradcam", "guided_backprop", "deeplift"]},
            "explain.methods = ['gradcam', 'guided_backprop', 'deeplift']: guided_backprop, "
            "deeplift change the backward pass",
        ),
        (
            {"arch": "torchscript", "weights": "m.bin", "train": False},
            {},
            "classifier.weights = 'm.bin': use scratch",
        ),
    ],
)
def test_params_refuse_what_cannot_work_naming_the_key(classifier, explain, message):
    with pytest.raises(ParamsError) as error:
        parse_params({"classifier": classifier, "explain": explain})
    assert message in str(error.value)


def test_params_take_a_torchscript_model_with_its_layers():
    params = parse_params(
        {
            "classifier": {
                "arch": "torchscript",
                "weights": "path/model.ts",
                "train": False,
                "layers": {"conv": "layer4", "dense": "avgpool"},
                "mean": [0.485, 0.456, 0.406],
                "std": [0.229, 0.224, 0.225],
            },
            "explain": {"methods": ["gradcam", "saliency"], "gradcam": {"layer": "layer4"}},
        }
    )
    assert params.classifier.layers == {"conv": "layer4", "dense": "avgpool"}
