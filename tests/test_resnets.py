"""ResNets in the registry of architectures, and where a classifier's weights come from:
shapes and named layers at both input sizes, equality with torchvision's networks,
explanations on them, weight files (good, missing, wrong shape), ImageNet's names."""

from __future__ import annotations

from pathlib import Path
from urllib.error import URLError

import pytest
import torch
import torchvision
import yaml

from pipeline.errors import ParamsError, PipelineError
from pipeline.explain.registry import method_class
from pipeline.models.archs import LayerEncoder, build_classifier, layer_names, resolve_layer
from pipeline.models.classifier import ClassifierModule
from pipeline.models.specs import (
    RESNETS,
    arch_layer_names,
    nonnegative_layer_names,
    spatial_layer_names,
)
from pipeline.models.weights import (
    IMAGENET_MEAN,
    StartFrom,
    fit_state,
    imagenet_class_names,
    imagenet_file,
    load_weights,
    locate_weights,
    read_state_dict,
)
from pipeline.params import parse_params

ROOT = Path(__file__).resolve().parents[1]
FEATURES = {"resnet18": 512, "resnet50": 2048}


def _outputs(model: torch.nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """The logits and both named layers' outputs of one forward pass."""
    seen: dict[str, torch.Tensor] = {}
    handles = [
        resolve_layer(model, name).register_forward_hook(
            lambda m, i, o, name=name: seen.setdefault(name, o)
        )
        for name in ("conv", "dense")
    ]
    seen["logits"] = model(x)
    for handle in handles:
        handle.remove()
    return seen


@pytest.mark.parametrize("arch", list(RESNETS))
@pytest.mark.parametrize("channels", [1, 3])
def test_shapes_and_named_layers_at_both_input_sizes(arch, channels):
    """Small variant: 32 px, strides 1-2-2-2 leave 4x4 maps; standard: 64 px, /32 is 2x2."""
    torch.manual_seed(0)
    small = arch.endswith("_small")
    size, grid = (32, 4) if small else (64, 2)
    model = build_classifier(arch, (channels, size, size), num_classes=7).eval()
    with torch.no_grad():
        out = _outputs(model, torch.rand(2, channels, size, size))
    width = FEATURES[arch.removesuffix("_small")]
    assert out["logits"].shape == (2, 7)
    assert out["conv"].shape == (2, width, grid, grid)
    assert out["dense"].shape == (2, width)
    # dense is the pooled conv output, what fc reads; both come after a ReLU
    torch.testing.assert_close(out["dense"], out["conv"].mean((2, 3)))
    assert out["conv"].min() >= 0
    assert model.conv1.in_channels == channels
    assert model.conv1.kernel_size == ((3, 3) if small else (7, 7))
    assert hasattr(model, "maxpool") is not small
    assert arch_layer_names(arch) == layer_names(model)


def test_one_standard_forward_at_224_px():
    model = build_classifier("resnet18", (3, 224, 224), num_classes=1000).eval()
    with torch.no_grad():
        out = _outputs(model, torch.rand(1, 3, 224, 224))
    assert out["logits"].shape == (1, 1000) and out["conv"].shape == (1, 512, 7, 7)


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_same_network_as_torchvision(name):
    """torchvision's state dict loads with no key left over, and gives torchvision's
    logits on the normalized input (normalization is inside ours)."""
    torch.manual_seed(0)
    theirs = getattr(torchvision.models, name)(num_classes=10).eval()
    ours = build_classifier(name, (3, 64, 64), 10, mean=[0.5] * 3, std=[0.25] * 3).eval()
    missing, unexpected = ours.load_state_dict(theirs.state_dict(), strict=False)
    assert missing == ["normalize.mean", "normalize.std"] and unexpected == []
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs((x - 0.5) / 0.25))


def test_layer_lists_for_params_match_the_network():
    """The torch-free lists params validation reads: spatial layers keep maps, and the
    layers called non-negative never go negative while the other spatial ones do."""
    torch.manual_seed(0)
    arch = "resnet18_small"
    net = build_classifier(arch, (3, 16, 16), 10, mean=[0.5] * 3, std=[0.25] * 3).eval()
    images = torch.rand(2, 3, 16, 16)
    accepted = nonnegative_layer_names(arch)
    for layer in spatial_layer_names(arch):
        with torch.no_grad():
            code = LayerEncoder(net, layer)(images)
        assert code.ndim == 4, layer
        assert (float(code.min()) >= 0) == (layer in accepted), layer
    for arch in RESNETS:  # the aliases point at modules every ResNet has
        assert {"conv", "dense", "layer4", "flatten"} <= set(arch_layer_names(arch))


def test_gradcam_saliency_and_the_layer_encoder_work_unchanged():
    """The library's explainers give what autograd gives by hand on a ResNet: Grad-CAM
    the ReLU of layer4's channels weighted by their mean gradient (up-sampled), saliency
    the absolute input gradient; the layer encoder's codes are the named layers."""
    torch.manual_seed(0)
    model = build_classifier("resnet18_small", (1, 32, 32), 3).eval()
    images, targets = torch.rand(2, 1, 32, 32), torch.tensor([0, 2])
    x = images.clone().requires_grad_(True)
    out = _outputs(model, x)
    picked = out["logits"].gather(1, targets[:, None]).sum()
    conv_grad, input_grad = torch.autograd.grad(picked, [out["conv"], x])
    weights = conv_grad.mean((2, 3), keepdim=True)
    cam = torch.relu((weights * out["conv"]).sum(1, keepdim=True)).detach()
    cam = torch.nn.functional.interpolate(cam, (32, 32), mode="bilinear", align_corners=False)
    for name, expected in (("gradcam", cam), ("saliency", input_grad.abs())):
        cls = method_class(name)
        maps = cls().attribute(model, images, targets, cls.Params()).maps
        torch.testing.assert_close(torch.from_numpy(maps), expected, rtol=1e-4, atol=1e-6)
    with torch.no_grad():
        for layer in ("conv", "dense"):
            torch.testing.assert_close(LayerEncoder(model, layer)(images), out[layer].detach())


def test_imagenet_class_names_ship_with_torchvision():
    names = imagenet_class_names("resnet50")
    assert len(names) == 1000 and names[0] == "tench" and names[1] == "goldfish"
    assert imagenet_class_names("resnet18_small") == names
    assert imagenet_file("resnet18")[0] == "resnet18-f37072fd.pth"
    assert imagenet_file("resnet50")[0] == "resnet50-11ad3fa6.pth"  # torchvision's DEFAULT


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """A torch hub cache of our own (TORCH_HOME) holding a resnet18 ImageNet file of
    random values, as torchvision would have downloaded it."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    torch.manual_seed(1)
    state = torchvision.models.resnet18(num_classes=1000).state_dict()
    folder = tmp_path / "torch" / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    torch.save(state, folder / "resnet18-f37072fd.pth")
    return folder, state


def test_imagenet_weights_from_the_hub_cache_fine_tuned_for_new_classes(hub):
    folder, state = hub
    path = locate_weights("imagenet", "resnet18", download=False)
    assert path == folder / "resnet18-f37072fd.pth"
    net = build_classifier("resnet18", (3, 64, 64), 5)
    head = net.fc.weight.detach().clone()
    notes = load_weights(net, "resnet18", read_state_dict(path), fine_tune=True)
    torch.testing.assert_close(net.layer3[1].conv2.weight, state["layer3.1.conv2.weight"])
    torch.testing.assert_close(net.conv1.weight, state["conv1.weight"])
    torch.testing.assert_close(net.fc.weight, head)  # the new head keeps its own start
    torch.testing.assert_close(net.normalize.mean.flatten(), torch.tensor(IMAGENET_MEAN))
    assert any("5 classes, not 1000" in n for n in notes)


def test_small_stem_and_grey_images_adapt_the_imagenet_stem(hub):
    _, state = hub
    small = build_classifier("resnet18_small", (3, 32, 32), 5)
    stem = small.conv1.weight.detach().clone()
    notes = load_weights(small, "resnet18_small", state, fine_tune=True)
    torch.testing.assert_close(small.conv1.weight, stem)  # 3x3 cannot take 7x7
    assert any("does not take the 7x7 ImageNet stem" in n for n in notes)
    grey = build_classifier("resnet18", (1, 64, 64), 5)
    notes = load_weights(grey, "resnet18", state, fine_tune=True)
    torch.testing.assert_close(grey.conv1.weight, state["conv1.weight"].sum(1, keepdim=True))
    assert grey.normalize.mean.numel() == 1 and any("grey" in n for n in notes)


def test_missing_imagenet_file_names_the_file_and_the_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    folder = tmp_path / "empty" / "hub" / "checkpoints"
    with pytest.raises(PipelineError) as caught:
        locate_weights("imagenet", "resnet50_small", download=False)
    message = str(caught.value)
    assert "resnet50-11ad3fa6.pth" in message and str(folder) in message
    assert "data.download is false" in message and "\n" not in message

    def offline(url, dst, hash_prefix=None, progress=True):
        raise URLError("no network")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(PipelineError, match=r"resnet50-11ad3fa6\.pth.*downloading https://"):
        locate_weights("imagenet", "resnet50", download=True)
    with pytest.raises(PipelineError, match=r"no such file \(looked at .*mine\.pth\)"):
        locate_weights(str(tmp_path / "mine.pth"), "resnet18", download=False)
    assert locate_weights("scratch", "small_cnn", download=True) is None


def test_a_file_of_the_wrong_shape_or_kind_is_an_error_naming_the_key(hub, tmp_path):
    _, state = hub
    net = build_classifier("resnet18", (3, 64, 64), 1000)
    wrong = dict(state, **{"layer2.0.conv1.weight": torch.zeros(128, 64, 1, 1)})
    with pytest.raises(
        PipelineError, match=r"layer2\.0\.conv1\.weight has shape \(128, 64, 1, 1\)"
    ):
        fit_state(net, "resnet18", wrong, fine_tune=True)
    lacking = {k: v for k, v in state.items() if k != "bn1.weight"}
    with pytest.raises(PipelineError, match=r"lacks keys .*: bn1\.weight"):
        fit_state(net, "resnet18", lacking, fine_tune=True)
    backbone = {k: v for k, v in state.items() if not k.startswith("fc.")}
    assert "fc.weight" not in fit_state(net, "resnet18", backbone, fine_tune=True)[0]
    with pytest.raises(PipelineError, match=r"lacks keys .*: fc\.weight, fc\.bias"):
        fit_state(net, "resnet18", backbone, fine_tune=False)
    # explained as it is, the head must fit the classes: no silent new head
    ten = build_classifier("resnet18", (3, 64, 64), 10)
    with pytest.raises(PipelineError, match=r"fc\.weight has shape \(1000, 512\)"):
        fit_state(ten, "resnet18", state, fine_tune=False)
    extra = dict(state, **{"head.weight": torch.zeros(3)})
    with pytest.raises(PipelineError, match=r"keys that arch 'resnet18' does not: head\.weight"):
        fit_state(net, "resnet18", extra, fine_tune=True)
    with pytest.raises(PipelineError, match=r"layer1\.0\.conv1\.weight has shape"):
        fit_state(build_classifier("resnet50", (3, 64, 64), 1000), "resnet50", state, True)
    # a pickle that would run code is refused by weights_only loading
    evil = tmp_path / "evil.pt"
    torch.save({"state_dict": Path("x")}, evil)  # a pathlib object: not weights-only
    with pytest.raises(PipelineError, match="cannot be read as a state dict"):
        read_state_dict(evil)


def test_params_normalization_overrides_the_files_and_must_fit_the_channels(hub):
    _, state = hub
    net = build_classifier("resnet18", (1, 64, 64), 1000)
    fitted, notes = fit_state(net, "resnet18", state, False, ([0.1], [0.2]))
    assert fitted["normalize.mean"].item() == pytest.approx(0.1)
    assert fitted["normalize.std"].item() == pytest.approx(0.2)
    assert any("classifier.mean [0.1]" in n for n in notes)
    with pytest.raises(PipelineError, match=r"classifier\.mean / classifier\.std: 3 and 3"):
        fit_state(net, "resnet18", state, False, (IMAGENET_MEAN, IMAGENET_MEAN))


def test_this_pipelines_export_and_a_plain_state_dict_both_read(tmp_path):
    net = build_classifier("small_cnn", (1, 16, 16), 3, mean=[0.2], std=[0.3])
    torch.save(net.state_dict(), tmp_path / "plain.pt")
    torch.save({"arch": "small_cnn", "state_dict": net.state_dict()}, tmp_path / "export.pt")
    for name in ("plain.pt", "export.pt"):
        other = build_classifier("small_cnn", (1, 16, 16), 3)
        load_weights(other, "small_cnn", read_state_dict(tmp_path / name), fine_tune=False)
        x = torch.rand(2, 1, 16, 16)
        torch.testing.assert_close(other.eval()(x), net.eval()(x))


def test_start_from_puts_the_weights_in_at_setup(hub):
    """Before Lightning restores a checkpoint (a resumed run keeps its own epochs)."""
    _, state = hub
    module = ClassifierModule("resnet18", (3, 32, 32), 4, lr=1e-3)
    fitted, _ = fit_state(module.net, "resnet18", state, fine_tune=True)
    StartFrom(fitted).setup(None, module, "fit")
    torch.testing.assert_close(module.net.layer4[0].conv1.weight, state["layer4.0.conv1.weight"])


def _params(**classifier):
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["classifier"] = {**raw["classifier"], **classifier}
    return parse_params(raw)


def test_params_name_the_key_for_weights_that_cannot_work():
    assert _params(arch="resnet50", weights="imagenet", train=False).classifier.arch == "resnet50"
    assert _params(arch="resnet18_small", weights="runs/mine.pth").classifier.train
    with pytest.raises(ParamsError, match=r"classifier\.weights = 'imagenet': .*'small_cnn'"):
        _params(weights="imagenet")
    with pytest.raises(ParamsError, match=r"classifier\.train = False: .*needs trained weights"):
        _params(train=False)
    with pytest.raises(ParamsError, match=r"classifier\.weights = 'mine\.bin': use scratch"):
        _params(weights="mine.bin")
    with pytest.raises(ParamsError, match=r"classifier\.std = None: .*go together"):
        _params(arch="resnet18", weights="imagenet", mean=[0.5])
    with pytest.raises(ParamsError, match=r"classifier\.mean = \[0\.5\]: sets the norm"):
        _params(mean=[0.5], std=[0.2])
    with pytest.raises(ParamsError, match=r"classifier\.arch = 'resnet34'"):
        _params(arch="resnet34")
