"""Generative models: decoder shapes for both layers and every arch, the ClaDec loss at
alpha 0 and 1, a frozen classifier, a fresh RefAE encoder, learning on a tiny set, the
VAE's ELBO on known cases, and the sample reconstructions stored for the figures."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pipeline.cladec_table import qualitative_properties, reference
from pipeline.errors import ParamsError
from pipeline.explain.parts.cladec_decodings import grid_scores, grid_title
from pipeline.generative_training import (
    elbo_terms,
    one_per_class,
    sample_reconstructions,
    train_cladec,
    vae_test_metrics,
)
from pipeline.inference import as_float_images, layer_codes
from pipeline.models.archs import LayerEncoder, build_classifier
from pipeline.models.generative_lightning import (
    ClaDecModule,
    RefAEModule,
    VAEModule,
    cladec_loss,
    reconstruction_error,
)
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
    total0, _, _ = cladec_loss(decoded, images, logits, labels, 0.0, "mse")
    total1, _, _ = cladec_loss(decoded, images, logits, labels, 1.0, "mse")
    half, _, _ = cladec_loss(decoded, images, logits, labels, 0.5, "mse")
    torch.testing.assert_close(total0, mse)
    torch.testing.assert_close(total1, ce)
    torch.testing.assert_close(half, 0.5 * mse + 0.5 * ce)


def test_sse_loss_known_answers():
    """By hand: image 1 decoded as 0.5 everywhere misses each of its 4 pixels by 0.5
    (SSE 4 * 0.25 = 1), image 2 is decoded exactly (SSE 0): mean SSE 0.5 per image, MSE
    0.5 / 4 per pixel. Equal logits for 2 classes: cross-entropy ln 2."""
    images = torch.tensor([[[[0.0, 1.0], [1.0, 0.0]]], [[[1.0, 1.0], [0.0, 0.0]]]])
    decoded = torch.stack([torch.full((1, 2, 2), 0.5), images[1]])
    logits, labels = torch.zeros(2, 2), torch.tensor([0, 1])
    total, recon, ce = cladec_loss(decoded, images, logits, labels, 0.0)  # sse by default
    assert (float(total), float(recon)) == (0.5, 0.5)
    assert float(ce) == pytest.approx(np.log(2), rel=1e-6)
    total, _, _ = cladec_loss(decoded, images, logits, labels, 1.0)
    assert float(total) == pytest.approx(np.log(2), rel=1e-6)
    total, _, _ = cladec_loss(decoded, images, logits, labels, 0.5)
    assert float(total) == pytest.approx(0.25 + 0.5 * np.log(2), rel=1e-6)
    assert float(reconstruction_error(decoded, images, "mse")) == 0.125
    with pytest.raises(ValueError, match="reconstruction"):
        reconstruction_error(decoded, images, "l1")  # type: ignore[arg-type]
    # alpha 0 skips the classifier: no logits, a zero cross-entropy
    total, _, ce = cladec_loss(decoded, images, None, labels, 0.0)
    assert (float(total), float(ce)) == (0.5, 0.0)


def test_refae_reconstruction_term_follows_the_setting():
    torch.manual_seed(0)
    images = torch.rand(3, 1, 16, 16)
    for kind in ("sse", "mse"):
        refae = RefAEModule("small_cnn", (1, 16, 16), 3, "dense", (128,), 1e-3, [0.0], [1.0], kind)
        loss, _ = refae.losses((images,))
        torch.testing.assert_close(loss, reconstruction_error(refae(images), images, kind))


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
                update={"max_epochs": 4, "patience": 4, "batch_size": 32, "lr": 3e-3}
            )
        }
    )
    trained = train_cladec(tiny_splits, classifier, "dense", alpha, params, tmp_path / "c")
    for key, value in classifier.state_dict().items():
        assert torch.equal(value, before[key]), key  # weights and BN statistics
    losses = [row["train_loss"] for row in trained.history]
    assert losses[-1] < losses[0]
    record = trained.training_record()  # what metrics/generative/*.json says of the training
    assert record["training_epochs"] == len(trained.history) <= 4
    assert record["stopped_early"] == (len(trained.history) < 4)
    assert 1 <= record["best_epoch"] <= len(trained.history)
    assert trained.decoded_test.shape == (len(tiny_splits.y_test), *tiny_splits.image_shape)
    # the frozen classifier stays out of the checkpoints, and a rerun that resumes from
    # them (its weights put back from the classifier) ends with the same decoder
    checkpoint = torch.load(tmp_path / "c" / "last.ckpt", weights_only=True)
    assert checkpoint["state_dict"] and not any(
        k.startswith("classifier.") for k in checkpoint["state_dict"]
    )
    fresh = build_classifier("small_cnn", tiny_splits.image_shape, 3).eval()
    fresh.load_state_dict(before)  # as the next stage would load it from model.pt
    again = train_cladec(tiny_splits, fresh, "dense", alpha, params, tmp_path / "c")
    assert again.resumed_from is not None
    for key, value in trained.module.state_dict().items():
        assert torch.equal(value, again.module.state_dict()[key]), key


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
    batch = (torch.rand(6, 1, 16, 16), torch.tensor([0, 1, 2] * 2), torch.rand(6, 128))
    # per image beside the per-image SSE; per pixel beside the per-pixel MSE
    for kind, kl_scale in (("sse", 1.0), ("mse", 1 / (16 * 16))):
        torch.manual_seed(1)
        module = ClaDecModule(
            classifier, (128,), (1, 16, 16), 0.5, 1e-3, latent_dim=2, beta=2.0, reconstruction=kind
        )
        loss, parts = module.losses(batch)
        assert "kl" in parts and parts["kl"] >= 0
        expected = 0.5 * parts["recon"] + 0.5 * parts["ce"] + 2.0 * kl_scale * parts["kl"]
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


def test_latent_grid_scores_known_answer():
    """Four cells: the classifier picks classes 0, 1, 0, 0 with top probabilities 0.9,
    0.7, 0.6, 0.5: two classes present, mean confidence 0.675."""
    probabilities = np.array(
        [[0.9, 0.05, 0.05], [0.2, 0.7, 0.1], [0.6, 0.3, 0.1], [0.5, 0.25, 0.25]]
    )
    scores = grid_scores(probabilities)
    assert scores == {"classes_present": 2.0, "mean_confidence": pytest.approx(0.675)}
    assert grid_title("grid", probabilities, 3) == "grid: 2/3 classes, mean confidence 0.68"
    assert grid_scores(np.eye(3))["classes_present"] == 3.0  # one cell per class, all sure
    with pytest.raises(ValueError, match="cells x classes"):
        grid_scores(np.ones(3))


def _row(kind, layer, alpha, sse, ce=0.1, accuracy=0.97):
    return {
        "kind": kind,
        "layer": layer,
        "alpha": alpha,
        "sse_per_image": sse,
        "classifier_ce": ce,
        "classifier_accuracy": accuracy,
    }


def test_qualitative_properties_known_answers():
    """Dense is built to show every property of the reference's table; conv to fail three:
    its cross-entropy rises at alpha 0.5, its alpha-0.5 decodings lose 0.078 of accuracy
    against 0.978, and its SSE at alpha 0.5 is 1.5 times alpha 0's."""
    rows = [
        _row("cladec", "dense", 0.0, 20.0, ce=0.13),
        _row("cladec", "dense", 0.5, 22.0, ce=0.09),
        _row("cladec", "dense", 0.999, 80.0, ce=0.08),
        _row("refae", "dense", None, 3.0),
        _row("cladec", "conv", 0.0, 4.0, ce=0.05),
        _row("cladec", "conv", 0.5, 6.0, ce=0.06, accuracy=0.9),
        _row("cladec", "conv", 0.999, 30.0, ce=0.04),
        _row("refae", "conv", None, 1.0),
    ]
    properties = qualitative_properties(rows, 0.978)
    verdicts = {(p.scope, p.claim.split(" (")[0]): p.holds for p in properties}
    assert all(holds for (scope, _), holds in verdicts.items() if scope == "dense")
    failed = {claim for (scope, claim), holds in verdicts.items() if not holds}
    assert failed == {
        "SSE at alpha 0.5 within 25% of alpha 0",
        "classifier cross-entropy on the decodings falls with alpha",
        "accuracy on alpha-0.5 decodings within 0.03 of the classifier's on the originals",
    }
    assert verdicts[("all layers", "the conv layer's SSE below the dense layer's at every alpha")]
    assert len(verdicts) == 2 * 5 + 1
    # without the classifier's accuracy that property is not checked
    assert len(qualitative_properties(rows, None)) == 2 * 4 + 1
    rows[4]["sse_per_image"] = 25.0  # conv above dense at alpha 0
    last = qualitative_properties(rows, 0.978)[-1]
    assert last.scope == "all layers" and last.verdict == "FAILS"
    assert reference("dense", 0.999) == (87.53, 0.0845, 0.9871) and reference("fc", 0.5) is None
