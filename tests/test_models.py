"""Architectures: shapes, named layers, normalization inside, export round trip."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pipeline.errors import ParamsError, PipelineError
from pipeline.models.archs import build_classifier, layer_names, resolve_layer
from pipeline.models.classifier import ClassifierModule
from pipeline.models.export import load_classifier, save_classifier
from pipeline.models.specs import arch_layer_names

ROOT = Path(__file__).resolve().parents[1]
PARAMS = ROOT / "params.yaml"

SHAPES = [(1, 28, 28), (3, 32, 32), (3, 20, 24)]
ARCHS = ["small_cnn", "cladec_cnn", "cifar_cnn"]


def _capture(model, name, x):
    seen = {}
    handle = resolve_layer(model, name).register_forward_hook(
        lambda m, i, o: seen.setdefault("out", o)
    )
    model(x)
    handle.remove()
    return seen["out"]


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("shape", SHAPES)
def test_logits_and_named_layer_shapes(arch, shape):
    model = build_classifier(arch, shape, num_classes=7).eval()
    x = torch.rand(5, *shape)
    assert model(x).shape == (5, 7)
    conv = _capture(model, "conv", x)
    dense = _capture(model, "dense", x)
    assert conv.ndim == 4 and conv.shape[0] == 5 and conv.shape[2] >= 2
    hidden = model.logits.in_features
    assert dense.shape == (5, hidden)
    # both named layers come after a ReLU: non-negative, as ICE's NMF needs
    assert conv.min() >= 0 and dense.min() >= 0
    # the conv layer's output is what the dense head consumes
    assert conv[0].numel() == model.dense[1].in_features
    assert {"conv", "dense"} <= set(layer_names(model))


def test_module_paths_work_and_unknown_layers_are_named():
    model = build_classifier("small_cnn", (1, 28, 28), 10)
    assert isinstance(resolve_layer(model, "features.block1.0"), torch.nn.Conv2d)
    with pytest.raises(ParamsError, match=r"unknown layer 'fc9'.*conv, dense"):
        resolve_layer(model, "fc9")


def test_normalization_lives_in_the_model():
    model = build_classifier("small_cnn", (1, 8, 8), 2, mean=[0.5], std=[0.25]).eval()
    x = torch.full((1, 1, 8, 8), 0.75)
    assert torch.allclose(model.normalize(x), torch.ones_like(x))
    with pytest.raises(ParamsError, match="too small"):
        build_classifier("small_cnn", (1, 4, 4), 2)


def test_export_round_trip_gives_identical_outputs(tmp_path):
    module = ClassifierModule("cladec_cnn", (1, 28, 28), 10, lr=1e-3, mean=[0.1], std=[0.3])
    module.eval()
    path = tmp_path / "model.pt"
    save_classifier(module.net, dict(module.hparams), list("0123456789"), path)
    net, names = load_classifier(path)
    x = torch.rand(4, 1, 28, 28)
    assert names == list("0123456789") and not net.training
    torch.testing.assert_close(net(x), module.net(x))
    # the same weights give the same bytes, whatever the file is called: DVC must not see
    # a change (and rerun what depends on the model) when nothing changed
    again = tmp_path / "other_name.pt"
    save_classifier(module.net, dict(module.hparams), list("0123456789"), again)
    assert again.read_bytes() == path.read_bytes()
    path.write_bytes(b"garbage")
    with pytest.raises(PipelineError, match="corrupt"):
        load_classifier(path)


def test_a_resnet_export_round_trips_with_its_normalization(tmp_path):
    """model.pt rebuilds a ResNet (grey, small stem) like the small CNNs: same logits."""
    module = ClassifierModule("resnet18_small", (1, 16, 16), 3, lr=1e-3, mean=[0.2], std=[0.4])
    module.eval()
    path = tmp_path / "model.pt"
    save_classifier(module.net, dict(module.hparams), ["a", "b", "c"], path)
    net, names = load_classifier(path)
    x = torch.rand(2, 1, 16, 16)
    assert names == ["a", "b", "c"] and net.normalize.mean.item() == pytest.approx(0.2)
    torch.testing.assert_close(net(x), module.net(x))


@pytest.mark.parametrize("arch", ARCHS)
def test_spec_layer_names_match_the_built_network(arch):
    # params validation lists layer names from the torch-free specs: they must be exactly
    # what the network resolves
    model = build_classifier(arch, (3, 32, 32), num_classes=4)
    assert arch_layer_names(arch) == layer_names(model)
    for name in arch_layer_names(arch):
        resolve_layer(model, name)


def test_params_validation_does_not_import_torch(tmp_path):
    # figure stages validate params.yaml too; importing torch there would cost seconds
    code = (
        "import sys; from pipeline.params import load_params; "
        f"load_params({str(PARAMS)!r}); "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert out.stdout.strip() == "False"
