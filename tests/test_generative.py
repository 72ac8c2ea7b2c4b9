"""Generative models: decoder shapes for both layers and every arch, the ClaDec loss at
alpha 0 and 1, a frozen classifier, a fresh RefAE encoder, learning on a tiny set, the
VAE's ELBO on known cases, and the sample reconstructions stored for the figures."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pipeline.errors import ParamsError
from pipeline.generative_training import (
    elbo_terms,
    one_per_class,
    sample_reconstructions,
    train_cladec,
    vae_test_metrics,
)
from pipeline.inference import as_float_images, layer_codes
from pipeline.models.archs import LayerEncoder, build_classifier
from pipeline.models.generative_lightning import ClaDecModule, RefAEModule, VAEModule, cladec_loss
from pipeline.models.generative_nets import ImageDecoder, code_shape
from pipeline.params import parse_params

ARCHS = ["small_cnn", "cladec_cnn", "cifar_cnn"]
SHAPES = [(1, 28, 28), (3, 32, 32)]


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("layer", ["conv", "dense"])
def test_decoder_turns_each_layer_code_back_into_an_image(arch, shape, layer):
    classifier = build_classifier(arch, shape, 10).eval()
    encoder = LayerEncoder(classifier, layer)
    codes = encoder(torch.rand(3, *shape))
    assert codes.shape[1:] == code_shape(encoder, shape)
    decoded = ImageDecoder(tuple(codes.shape[1:]), shape)(codes)
    assert decoded.shape == (3, *shape)
    assert decoded.min() >= 0 and decoded.max() <= 1  # a sigmoid ends the decoder


def test_cladec_loss_is_reconstruction_at_alpha_0_and_cross_entropy_at_alpha_1():
    torch.manual_seed(0)
    decoded, images = torch.rand(4, 1, 8, 8), torch.rand(4, 1, 8, 8)
    logits, labels = torch.randn(4, 3), torch.tensor([0, 1, 2, 1])
    mse, ce = F.mse_loss(decoded, images), F.cross_entropy(logits, labels)
    total0, _, _ = cladec_loss(decoded, images, logits, labels, 0.0)
    total1, _, _ = cladec_loss(decoded, images, logits, labels, 1.0)
    half, _, _ = cladec_loss(decoded, images, logits, labels, 0.5)
    torch.testing.assert_close(total0, mse)
    torch.testing.assert_close(total1, ce)
    torch.testing.assert_close(half, 0.5 * mse + 0.5 * ce)


def test_alpha_outside_unit_interval_is_rejected():
    classifier = build_classifier("small_cnn", (1, 16, 16), 3)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        ClaDecModule(classifier, (128,), (1, 16, 16), alpha=1.5, lr=1e-3)
    raw = {"cladec": {"alphas": [0.5, -0.1]}}
    with pytest.raises(ParamsError, match=r"cladec\.alphas\.1 = -0\.1"):
        parse_params(raw)
    with pytest.raises(ParamsError, match="unknown layer 'fc9'"):
        parse_params({"cladec": {"layers": ["conv", "fc9"]}})


def test_refae_encoder_is_a_fresh_copy_not_the_classifier():
    classifier = build_classifier("small_cnn", (1, 16, 16), 3)
    shape = code_shape(LayerEncoder(classifier, "dense"), (1, 16, 16))
    refae = RefAEModule("small_cnn", (1, 16, 16), 3, "dense", shape, 1e-3, [0.0], [1.0])
    theirs = dict(classifier.named_parameters())
    for name, p in refae.encoder.classifier.named_parameters():
        assert p.data_ptr() != theirs[name].data_ptr()
    first = "features.block1.0.weight"
    assert not torch.equal(
        refae.encoder.classifier.get_parameter(first), classifier.get_parameter(first)
    )


@pytest.mark.parametrize("alpha", [0.0, 0.5])
def test_cladec_training_lowers_its_loss_and_leaves_the_classifier_untouched(
    tmp_path, tiny_splits, tiny_params, alpha
):
    classifier = build_classifier("small_cnn", tiny_splits.image_shape, 3).eval()
    before = {k: v.clone() for k, v in classifier.state_dict().items()}
    params = tiny_params.model_copy(
        update={
            "cladec": tiny_params.cladec.model_copy(
                update={"epochs": 4, "batch_size": 32, "lr": 3e-3}
            )
        }
    )
    trained = train_cladec(tiny_splits, classifier, "dense", alpha, params, tmp_path / "c")
    for key, value in classifier.state_dict().items():
        assert torch.equal(value, before[key]), key  # weights and BN statistics
    losses = [row["train_loss"] for row in trained.history]
    assert losses[-1] < losses[0]
    assert trained.decoded_test.shape == (len(tiny_splits.y_test), *tiny_splits.image_shape)


def test_codes_are_the_classifier_activations():
    classifier = build_classifier("small_cnn", (1, 16, 16), 3).eval()
    images = torch.randint(0, 256, (5, 1, 16, 16), dtype=torch.uint8).numpy()
    codes = layer_codes(classifier, "dense", images, batch_size=2)
    expected = classifier.dense(
        classifier.features(classifier.normalize(torch.as_tensor(images).float() / 255))
    )
    torch.testing.assert_close(codes, expected)


def test_vae_loss_parts_and_variational_cladec_kl():
    torch.manual_seed(0)
    vae = VAEModule((1, 16, 16), latent_dim=4, beta=1.0, lr=1e-3)
    loss, parts = vae.losses((torch.rand(6, 1, 16, 16),))
    torch.testing.assert_close(loss, parts["recon"] + parts["kl"])
    classifier = build_classifier("small_cnn", (1, 16, 16), 3).eval()
    module = ClaDecModule(classifier, (128,), (1, 16, 16), 0.5, 1e-3, latent_dim=2)
    loss, parts = module.losses(
        (torch.rand(6, 1, 16, 16), torch.tensor([0, 1, 2] * 2), torch.rand(6, 128))
    )
    assert "kl" in parts and parts["kl"] >= 0
    expected = 0.5 * parts["recon"] + 0.5 * parts["ce"] + parts["kl"] / (16 * 16)
    torch.testing.assert_close(loss, expected)


def test_elbo_terms_known_answers():
    images = torch.tensor([[[[0.0, 1.0], [1.0, 0.0]]]]).repeat(3, 1, 1, 1)  # 3 images, 4 px
    latent = torch.zeros(3, 5)
    perfect = elbo_terms(images.clone(), images, latent, latent)
    assert perfect == {"test_recon_bce_per_image": 0.0, "test_kl": 0.0, "test_elbo": 0.0}
    # decoding 0.5 everywhere costs log 2 per pixel; a unit-variance posterior at mean 1
    # costs 1/2 nat per latent dimension
    half = elbo_terms(torch.full_like(images, 0.5), images, torch.ones(3, 5), latent)
    assert half["test_recon_bce_per_image"] == pytest.approx(4 * np.log(2), rel=1e-6)
    assert half["test_kl"] == pytest.approx(2.5, rel=1e-6)
    assert half["test_elbo"] == pytest.approx(-(4 * np.log(2) + 2.5), rel=1e-6)


def test_vae_test_metrics_use_the_latent_means_of_the_test_images():
    torch.manual_seed(0)
    vae = VAEModule((1, 16, 16), latent_dim=3, beta=4.0, lr=1e-3).eval()
    images = torch.randint(0, 256, (5, 1, 16, 16), dtype=torch.uint8).numpy()
    floats = as_float_images(images)
    with torch.inference_mode():
        decoded = vae(floats)
        _, mean, log_var = vae.encode(floats)
    expected = elbo_terms(decoded, floats, mean, log_var)
    got = vae_test_metrics(vae, images, decoded)
    assert got == pytest.approx(expected, rel=1e-5)
    assert got["test_elbo"] == pytest.approx(-(got["test_recon_bce_per_image"] + got["test_kl"]))


def test_one_per_class_cycles_through_the_classes():
    labels = np.array([2, 0, 0, 1, 2, 0, 1])
    assert one_per_class(labels, 5).tolist() == [1, 3, 0, 2, 6]
    assert len(one_per_class(labels, 100)) == len(labels)


def test_sample_reconstructions_hold_what_the_figure_needs(tiny_splits):
    classifier = build_classifier("small_cnn", tiny_splits.image_shape, 3).eval()
    decoded = torch.rand(len(tiny_splits.y_test), *tiny_splits.image_shape)
    config = {"kind": "cladec", "layer": "dense", "alpha": 0.5}
    stored = sample_reconstructions("cladec/dense-0.5", config, decoded, tiny_splits, classifier, 4)
    picks = stored["test_indices"]
    assert len(picks) == 4 and len(set(tiny_splits.y_test[picks[:3]])) == 3
    np.testing.assert_array_equal(stored["originals"], tiny_splits.x_test[picks])
    np.testing.assert_array_equal(stored["decoded"], decoded[picks].numpy())
    np.testing.assert_array_equal(stored["labels"], tiny_splits.y_test[picks])
    with torch.inference_mode():
        predicted = classifier(decoded[picks]).argmax(1).numpy()
    np.testing.assert_array_equal(stored["predicted"], predicted)
    assert str(stored["name"]) == "cladec/dense-0.5" and str(stored["dataset"])
    assert stored["class_names"].tolist() == list(tiny_splits.class_names)
    # plain arrays only: the figure stage reads them with allow_pickle=False
    assert all(a.dtype != object for a in stored.values())
