"""Decoders that would not scale or do not apply (pipeline/skips.py): ClaDec, variational
ClaDec and RefAE skip, saying why, for images larger than cladec.max_side, and RefAE for
a TorchScript classifier; the skipped stage still writes every output dvc.yaml declares,
and everything that reads decoders (the loaders, cladec_decodings, generative_figures,
summary, gallery, report) leaves the skipped ones out and shows the reason. Every
expected value is known by construction."""

from __future__ import annotations

import io
import json
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from test_gallery import gallery as gallery_of
from test_gallery import write_inputs
from test_inside_parts import TinyInputs
from test_model_figures import stored_reconstructions
from test_stages import run_stage, write_params
from torch import nn

from pipeline.cladec_table import decoder_rows
from pipeline.errors import ParamsError
from pipeline.explain.parts.cladec_decodings import CladecDecodings, CladecDecodingsParams
from pipeline.figures.gallery import Decodings
from pipeline.generative_training import train_cladec, train_refae
from pipeline.io import write_json, write_npz, write_torch
from pipeline.models.archs import build_classifier
from pipeline.models.export import save_classifier
from pipeline.models.user_model import TRUST_ENV, build_user_model
from pipeline.params import Params, parse_params
from pipeline.report.content import ReportInputs, RunInfo, build_report
from pipeline.restore import ClassifierSpec, load_decoder, load_refae, load_vae
from pipeline.skips import Skipped, check_decoder_size, read_marker, skipped_together
from pipeline.summary import summarize
from stages.generative import skip

REPO = Path(__file__).resolve().parents[1]
WHY = "images of 16x16 px are larger than cladec.max_side (8 px)"

# ------------------------------------------------------------------ the size rule


def test_the_size_rule_passes_up_to_max_side_and_skips_beyond_naming_cost_and_key() -> None:
    check_decoder_size(64, 64, 64, 40)  # at the limit
    check_decoder_size(28, 28, 64, 40)  # MNIST
    check_decoder_size(32, 32, 64, 40)  # CIFAR
    check_decoder_size(224, 224, None, 40)  # no limit
    # 9.5 s x 40 epochs = 6.3 min per decoder
    expected = (
        r"images of 40x65 px are larger than cladec.max_side \(64 px\): a decoder costs 9.5 s "
        r"an epoch on 128 photos of 224 px .* up to 40 epochs \(cladec.max_epochs\), so up to "
        r"6 min for each decoder stage; set cladec.max_side: null"
    )
    with pytest.raises(Skipped, match=expected):
        check_decoder_size(40, 65, 64, 40)


@pytest.mark.parametrize("bad", [0, -3, "big", 6.5])
def test_a_bad_max_side_names_the_key(bad) -> None:
    with pytest.raises(ParamsError, match=r"cladec.max_side"):
        parse_params({"cladec": {"max_side": bad}})
    assert parse_params({"cladec": {"max_side": None}}).cladec.max_side is None
    assert Params().cladec.max_side == 64
    assert yaml.safe_load((REPO / "params.yaml").read_text())["cladec"]["max_side"] == 64


# --------------------------------------------------- a skipped stage and its outputs


def _workspace(folder: Path, splits, **cladec) -> Path:
    """The tiny dataset (16 px), an exported small_cnn and params with these cladec keys."""
    splits.save(folder / "data/dataset.npz")
    net = build_classifier("small_cnn", splits.image_shape, splits.num_classes)
    hparams = {"arch": "small_cnn", "input_shape": splits.image_shape, "num_classes": 3}
    save_classifier(net, hparams, splits.class_names, folder / "models/classifier/model.pt")
    write_params(folder, cladec=cladec)
    return folder


def _declared_outputs(stage: str, item: dict[str, str]) -> list[str]:
    """The outs, metrics and plots dvc.yaml declares for one member of a stage."""
    block = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"][stage]
    block = block.get("do", block)
    found = []
    for kind in ("outs", "metrics", "plots"):
        for entry in block.get(kind, []):
            path = next(iter(entry)) if isinstance(entry, dict) else entry
            for key, value in item.items():
                path = path.replace("${" + key + "}", value)
            found.append(path)
    return found


def test_a_decoder_stage_over_the_limit_writes_every_declared_output_and_trains_nothing(
    tmp_path, tiny_splits
) -> None:
    work = _workspace(tmp_path, tiny_splits, max_side=8)
    result = run_stage("cladec", work, "--layer", "dense", "--alpha", "0.5")
    assert result.returncode == 0, result.stderr
    said = [line for line in result.stderr.splitlines() if "cladec@dense-0.5 skipped: " in line]
    assert len(said) == 1 and WHY in said[0]
    outputs = _declared_outputs("cladec", {"item.layer": "dense", "item.alpha": "0.5"})
    assert len(outputs) == 5 and all((work / p).exists() for p in outputs), outputs
    checkpoints = work / "models/cladec/dense-0.5/checkpoints"
    assert [p.name for p in checkpoints.iterdir()] == ["skipped.json"]  # nothing trained
    reason = read_marker(checkpoints)
    assert reason is not None and reason.startswith(WHY)
    model = torch.load(work / "models/cladec/dense-0.5/model.pt", weights_only=True)
    assert model == {"skipped": reason}
    metrics = json.loads((work / "metrics/generative/cladec_dense-0.5.json").read_text())
    assert metrics == {"skipped": reason, "kind": "cladec", "layer": "dense", "alpha": 0.5}
    curves = (work / "plots/generative/cladec_dense-0.5.csv").read_text().splitlines()
    assert len(curves) == 1 and curves[0].startswith("epoch,train_loss,val_loss")
    with np.load(work / "explanations/generative/cladec_dense-0.5.npz") as samples:
        assert str(samples["skipped"]) == reason and str(samples["name"]) == "cladec/dense-0.5"


def test_the_loaders_raise_skipped_on_a_skipped_stage_s_model(tmp_path) -> None:
    marker = tmp_path / "model.pt"
    write_torch(marker, {"skipped": "why"})
    spec = ClassifierSpec("small_cnn", (1, 16, 16), 3)
    loads = [
        lambda: load_decoder(marker, (128,), (1, 16, 16), "cladec@dense-0.5"),
        lambda: load_refae(marker, spec, "dense", (128,), (1, 16, 16), "refae@dense"),
        lambda: load_vae(marker, (1, 16, 16)),
    ]
    for load in loads:
        with pytest.raises(Skipped, match=r"^why$"):
            load()


# ------------------------------------------------------------------ TorchScript


class TinyNet(nn.Module):
    """A user's model (scriptable): conv features, pooled, a linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.fc = nn.Linear(24, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.pool(self.features(x))).flatten(1))


LAYERS = {"conv": "features", "dense": "pool"}
TORCHSCRIPT = {"arch": "torchscript", "weights": "m.ts", "train": False, "layers": LAYERS}


def test_refae_of_a_torchscript_model_skips_and_its_cladec_still_trains(
    tmp_path, tiny_splits, monkeypatch
) -> None:
    monkeypatch.setenv(TRUST_ENV, "1")
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(torch.jit.script(TinyNet().eval()), buffer)
    user = build_user_model(buffer.getvalue(), "m.ts", LAYERS, None, None)
    params = Params.model_validate(
        {
            "classifier": TORCHSCRIPT,
            "explain": {"methods": ["saliency"]},
            "cladec": {"max_epochs": 1},
        }
    )
    with pytest.raises(Skipped, match=r"RefAE .*TorchScript file .*ClaDec decoders still run"):
        train_refae(tiny_splits, user, "dense", params, tmp_path / "refae")
    assert not (tmp_path / "refae").exists()  # before any training
    trained = train_cladec(tiny_splits, user, "dense", 0.5, params, tmp_path / "cladec")
    assert trained.decoded_test.shape == (len(tiny_splits.x_test), 1, 16, 16)
    assert len(trained.history) == 1


# --------------------------------------------------------- the readers of decoders


class SkippedRefAE(TinyInputs):
    """The tiny world whose RefAE stages were skipped (as for a TorchScript model)."""

    def refae(self, layer: str, code_shape: tuple[int, ...]) -> nn.Module:
        raise Skipped("no architecture")


class AllSkipped(SkippedRefAE):
    def cladec_decoder(self, layer: str, alpha: float, code_shape: tuple[int, ...]) -> nn.Module:
        raise Skipped("too large")

    def vcladec_decoder(self, layer: str, latent_dim: int) -> nn.Module:
        raise Skipped("too large")


def _decodings_params() -> tuple[Params, dict]:
    params = Params.model_validate({"cladec": {"layers": ["conv", "dense"], "alphas": [0.0, 0.5]}})
    reads = {
        "cladec.layers": params.cladec.layers,
        "cladec.alphas": params.cladec.alphas,
        "cladec.variational": params.cladec.variational,
    }
    return params, reads


def test_cladec_decodings_runs_on_the_decoders_left_and_names_the_rest(tiny_splits) -> None:
    _, reads = _decodings_params()
    p = CladecDecodingsParams(instances=3, grid=3)
    z = CladecDecodings().compute(SkippedRefAE(tiny_splits, reads), p).arrays["decoded"]
    assert "conv/refae" not in z and "dense/refae" not in z
    assert {"conv/0.0", "conv/0.5", "dense/0.0", "dense/0.5", "vcladec/dense"} <= set(z)
    assert z["skipped"].tolist() == ["refae@conv", "refae@dense"]
    assert z["skipped_reasons"].tolist() == ["no architecture"] * 2
    figures = CladecDecodings().draw({"decoded": z}, p)
    assert set(figures) == {"conv.png", "dense.png", "latent_grids.png"}
    assert "refae@dense" in figures["dense.png"].texts[0].get_text()  # the title names it


def test_cladec_decodings_is_skipped_when_every_decoder_was(tiny_splits) -> None:
    _, reads = _decodings_params()
    expected = (
        r"^every decoder it draws was skipped \(refae@conv, refae@dense: no architecture; "
        r"cladec@conv-0.0, .*vcladec@dense: too large\)$"
    )
    with pytest.raises(Skipped, match=expected):
        CladecDecodings().compute(AllSkipped(tiny_splits, reads), CladecDecodingsParams())


def test_skipped_reasons_are_grouped_by_reason() -> None:
    together = skipped_together({"a": "big", "b": "script", "c": "big"})
    assert together == "a, c: big; b: script"


def test_decoder_rows_leave_skipped_stages_out_and_the_summary_ignores_them() -> None:
    scores = {"mse_per_pixel": 0.1, "sse_per_image": 2.0, "classifier_ce": 0.3}
    trained = {"kind": "cladec", "layer": "dense", "alpha": 0.5, **scores, "classifier_accuracy": 1}
    records = {
        "cladec@dense-0.5": trained,
        "cladec@conv-0.5": {"skipped": "big", "kind": "cladec", "layer": "conv", "alpha": 0.5},
        "refae@dense": {"skipped": "script", "kind": "refae", "layer": "dense", "alpha": None},
        "vae": {"kind": "vae", "test_elbo": -3.0},
    }
    rows, skipped = decoder_rows(records)
    assert rows == [trained]
    assert skipped == {"cladec@conv-0.5": "big", "refae@dense": "script"}
    summary = summarize(
        {"test": {"accuracy": 0.9}}, {"methods": {}}, rows, {"skipped": "x"}, {"skipped": "y"}
    )
    assert summary["cladec"]["dense-0.5"] == {"sse_per_image": 2.0, "classifier_accuracy": 1}
    assert "ice" not in summary and "latent_grid" not in summary


class _Run:
    """A stage run that only records its artifacts."""

    def __init__(self) -> None:
        self.artifacts: list[str] = []

    def log_artifact(self, path, artifact_path=None) -> None:
        self.artifacts.append(str(path))


def _skipped_decoders(folder: Path, monkeypatch, names: list[str], reason: str) -> None:
    """The outputs of decoder stages that were skipped, as their stage writes them."""
    monkeypatch.chdir(folder)
    for name in names:
        kind, suffix = name.split("/")
        layer, _, alpha = suffix.partition("-")
        config = {"kind": kind, "layer": layer, "alpha": float(alpha) if alpha else None}
        skip(_Run(), name, config, reason)  # type: ignore[arg-type]


def test_generative_figures_leave_skipped_decoders_out_and_say_why(tmp_path, monkeypatch) -> None:
    write_params(tmp_path)
    write_npz(
        tmp_path / "explanations/generative/vae.npz",
        **stored_reconstructions("vae", {"kind": "vae", "latent_dim": 4, "beta": 1.0}),
    )
    write_json(tmp_path / "metrics/generative/vae.json", {"kind": "vae", "test_elbo": -3.0})
    write_json(tmp_path / "metrics/classifier_confusion.json", {"classes": ["a", "b", "c"]})
    names = ["cladec/dense-0.5", "refae/dense"]
    _skipped_decoders(tmp_path, monkeypatch, names, "too large")
    result = run_stage("generative_figures", tmp_path)
    assert result.returncode == 0, result.stderr
    figures = tmp_path / "reports/figures/generative"
    assert sorted(p.name for p in figures.glob("*.png")) == ["vae.png"]  # the VAE still ran
    assert read_marker(figures) == "cladec@dense-0.5, refae@dense: too large"
    table = (tmp_path / "reports/cladec_table.csv").read_text().splitlines()
    assert len(table) == 1 and table[0].startswith("kind,layer,alpha")
    markdown = (tmp_path / "reports/cladec_table.md").read_text()
    assert markdown == "Skipped: cladec@dense-0.5, refae@dense: too large\n"
    assert (tmp_path / "reports/figures/cladec_alpha_tradeoff.png").stat().st_size > 2000


def test_the_report_shows_why_the_decoders_were_skipped_beside_the_vae() -> None:
    run = RunInfo(dataset="imagefolder", arch="resnet18", commit="abc")
    defaults = Params().model_dump()
    page = build_report(
        ReportInputs(
            run,
            {},
            defaults,
            defaults,
            images={"figures/generative/vae.png": b"\x89PNG vae"},
            tables={"cladec_table.md": "Skipped: cladec@dense-0.5: too large\n"},
            skipped={"generative": "cladec@dense-0.5: too large"},
        )
    )
    for anchor in ("generative", "cladec"):
        body = re.search(rf'<section id="{anchor}">(.*?)</section>', page, re.S).group(1)
        assert "Skipped: cladec@dense-0.5: too large" in body and "dvc repro" not in body
    generative = re.search(r'<section id="generative">(.*?)</section>', page, re.S).group(1)
    assert "generative/vae" in generative  # the VAE's figure is still shown


def test_the_gallery_names_skipped_decoders_and_parts() -> None:
    g = gallery_of()
    d = g.decodings
    arrays = {k: v for k, v in d.arrays.items() if k != "conv/refae"}
    g.decodings = Decodings(
        d.rows, d.layers, d.alphas, {**arrays, "skipped": np.array(["refae@conv"])}
    )
    rows = g.rows(1)
    conv = next(row for row in rows if row.key == "cladec_conv")
    assert [p.top for p in conv.panels] == ["ClaDec\nα=0", "ClaDec\nα=0.5"]  # no RefAE
    assert "refae@conv skipped" in g.caption(1, rows)
    g.skipped = {"vae_walks": "no VAE"}
    assert "the latent walks skipped (vae_walks)" in g.caption(1, g.rows(1))


def test_the_gallery_stage_draws_every_image_when_a_part_was_skipped(tmp_path) -> None:
    write_params(tmp_path, explain={"methods": ["saliency", "lime"]})
    write_inputs(tmp_path)
    folder = tmp_path / "explanations/cladec_decodings"
    (folder / "decoded.npz").unlink()
    (folder / "skipped.json").write_text(json.dumps({"skipped": "every decoder was skipped"}))
    result = run_stage("gallery", tmp_path)
    assert result.returncode == 0, result.stderr
    entries = json.loads((tmp_path / "reports/figures/gallery/gallery.json").read_text())["images"]
    assert len(entries) == 3
    assert not any(r.startswith("cladec_") for e in entries for r in e["rows"])
    assert all("the ClaDec decodings skipped (cladec_decodings)" in e["caption"] for e in entries)
