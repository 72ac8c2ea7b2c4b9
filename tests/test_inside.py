"""Feature maps, latent walks and the model loaders of the
explanation stages: known answers by construction."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.errors import PipelineError
from pipeline.explain.parts.feature_maps import (
    conv_activation_layers,
    feature_maps,
    first_conv_filters,
    strongest_channels,
)
from pipeline.explain.parts.vae_walks import flip_steps, latent_walk, walk_metrics
from pipeline.models.archs import LayerEncoder, build_classifier


@pytest.mark.parametrize(
    ("arch", "expected"),
    [
        ("small_cnn", ["features.block1.1", "features.block2.1", "features.block3.1"]),
        ("cladec_cnn", ["features.block1.2", "features.block2.2"]),  # conv, BN, ReLU
    ],
)
def test_feature_maps_are_the_relu_outputs_of_every_conv(arch, expected) -> None:
    model = build_classifier(arch, (1, 16, 16), 3).eval()
    assert conv_activation_layers(model) == expected
    images = torch.rand(2, 1, 16, 16)
    maps = feature_maps(model, images)
    assert list(maps) == expected
    for name, array in maps.items():
        with torch.no_grad():
            np.testing.assert_allclose(array, LayerEncoder(model, name)(images).numpy(), atol=1e-6)
        assert array.min() >= 0  # after the ReLU


def test_strongest_channels_and_first_filters() -> None:
    maps = np.zeros((2, 4, 3, 3))
    maps[:, 2] = 5.0
    maps[:, 0] = 1.0
    assert strongest_channels(maps, 2).tolist() == [2, 0]
    model = build_classifier("small_cnn", (1, 16, 16), 3)
    filters = first_conv_filters(model)
    assert filters.shape == (16, 1, 3, 3)
    np.testing.assert_array_equal(filters, model.features.block1[0].weight.detach().numpy())
    with pytest.raises(ValueError, match="no convolution"):
        first_conv_filters(torch.nn.Linear(2, 2))


def test_flip_steps_on_a_hand_made_sequence() -> None:
    assert flip_steps(np.array([3, 3, 3, 5, 5, 3])).tolist() == [3, 5]
    assert flip_steps(np.array([1, 1, 1])).tolist() == []


def test_latent_walk_starts_and_ends_at_the_encodings_and_flips_where_the_class_changes() -> None:
    def encode(x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)[:, :2] * 10  # a fixed linear "encoder"

    def decode(z: torch.Tensor) -> torch.Tensor:
        return z.sum(1).view(-1, 1, 1, 1).expand(-1, 1, 4, 4) / 20

    def classify(x: torch.Tensor) -> torch.Tensor:
        brightness = x.mean((1, 2, 3))
        return torch.stack([0.5 - brightness, brightness - 0.5], 1)  # class 1 above 0.5

    first = torch.zeros(1, 4, 4)
    second = torch.ones(1, 4, 4)
    walk = latent_walk(encode, decode, classify, first, second, steps=11)
    np.testing.assert_allclose(walk.latents[0], encode(first[None])[0].numpy())
    np.testing.assert_allclose(walk.latents[-1], encode(second[None])[0].numpy())
    # decoded brightness is t: the class turns to 1 once t > 0.5, i.e. at step 6 of 0..10
    assert walk.predicted.tolist() == [0] * 6 + [1] * 5
    assert walk.flips.tolist() == [6] and walk.first_flip == 6
    np.testing.assert_allclose(walk.difference_at_flip(), np.full((1, 4, 4), 0.1), atol=1e-6)
    metrics = walk_metrics([walk, walk])
    assert metrics["mean_flip_position"] == pytest.approx(0.6)
    assert metrics["share_flipping_once"] == 1.0
    with pytest.raises(ValueError, match="at least 2 steps"):
        latent_walk(encode, decode, classify, first, second, steps=1)


def test_trained_models_round_trip_through_their_exports(tmp_path) -> None:
    from pipeline.generative_training import save_module
    from pipeline.models.generative_lightning import ClaDecModule, RefAEModule, VAEModule
    from pipeline.restore import (
        ClassifierSpec,
        load_decoder,
        load_epoch_classifier,
        load_refae,
        load_vae,
    )

    shape = (1, 16, 16)
    images = torch.rand(3, *shape)
    classifier = build_classifier("small_cnn", shape, 3).eval()
    spec = ClassifierSpec("small_cnn", shape, 3)

    vae = VAEModule(shape, latent_dim=4, beta=1.0, lr=1e-3).eval()
    save_module(vae, {"latent_dim": 4}, tmp_path / "vae.pt")
    restored = load_vae(tmp_path / "vae.pt", shape)
    with torch.no_grad():
        mean = vae.encode(images)[1]
        np.testing.assert_allclose(restored.encode_mean(images), mean, atol=1e-6)
        np.testing.assert_allclose(restored.decode(mean), vae.decoder(mean), atol=1e-6)

    codes = LayerEncoder(classifier, "dense")(images).detach()
    cladec = ClaDecModule(classifier, (codes.shape[1],), shape, 0.5, 1e-3).eval()
    save_module(cladec, {"layer": "dense"}, tmp_path / "cladec.pt")
    decoder = load_decoder(tmp_path / "cladec.pt", (codes.shape[1],), shape, "cladec@dense-0.5")
    with torch.no_grad():
        np.testing.assert_allclose(decoder(codes), cladec(codes), atol=1e-6)

    refae = RefAEModule("small_cnn", shape, 3, "dense", (codes.shape[1],), 1e-3, [0.0], [1.0])
    save_module(refae.eval(), {"layer": "dense"}, tmp_path / "refae.pt")
    loaded = load_refae(
        tmp_path / "refae.pt", spec, "dense", (codes.shape[1],), shape, "refae@dense"
    )
    with torch.no_grad():
        np.testing.assert_allclose(loaded(images), refae(images), atol=1e-6)

    torch.save(
        {"state_dict": {f"net.{k}": v for k, v in classifier.state_dict().items()}},
        tmp_path / "epoch-001.ckpt",
    )
    epoch_net = load_epoch_classifier(tmp_path / "epoch-001.ckpt", spec)
    with torch.no_grad():
        np.testing.assert_allclose(epoch_net(images), classifier(images), atol=1e-6)

    with pytest.raises(PipelineError, match="run the vae stage"):
        load_vae(tmp_path / "missing.pt", shape)
    with pytest.raises(PipelineError, match="does not fit"):
        load_decoder(tmp_path / "cladec.pt", (7,), shape, "cladec@dense-0.5")
