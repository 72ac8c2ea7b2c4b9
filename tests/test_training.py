"""Training: learns a task with a known answer, checkpoints every epoch, resumes after
a kill to the same result, and is deterministic. Early stopping: a module whose
validation loss follows a script, so the epoch it must stop at is known by
construction; it keeps the best epoch's weights, a run killed part-way resumes to the
same epochs, weights and checkpoint bytes, and one resumed after it stopped trains no
further."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from torch import Tensor, nn

from pipeline.classify import (
    ClassifierResult,
    classification_metrics,
    epoch_prediction_record,
    prediction_pairs,
    tracked_indices,
    train_classifier,
)
from pipeline.errors import PipelineError
from pipeline.params import TrainerParams, parse_params
from pipeline.training import (
    BatchIndexSampler,
    CanonicalCheckpointIO,
    EarlyStop,
    EpochCheckpoint,
    EpochSeed,
    FitResult,
    InMemoryImages,
    best_epoch,
    fingerprint,
    fit,
    make_trainer,
    prepare_checkpoint_dir,
)


class Killed(Exception):
    """Stands in for SIGKILL: training stops abruptly at the start of an epoch."""


class KillAtEpoch(Callback):
    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch == self.epoch:
            raise Killed


def _weights(result) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in result.module.state_dict().items()}


def test_sampler_order_depends_only_on_seed_and_epoch_and_shards_cover_everything():
    a = BatchIndexSampler(50, 8, shuffle=True, seed=1)
    b = BatchIndexSampler(50, 8, shuffle=True, seed=1)
    a.set_epoch(3)
    b.set_epoch(3)
    assert [t.tolist() for t in a] == [t.tolist() for t in b]
    b.set_epoch(4)
    assert [t.tolist() for t in a] != [t.tolist() for t in b]
    shards = [BatchIndexSampler(50, 8, True, 1, rank=r, world_size=3) for r in range(3)]
    seen = sorted(i for s in shards for batch in s for i in batch.tolist())
    assert seen == list(range(50))
    assert [len(s) for s in shards] == [len(list(iter(s))) for s in shards]


def test_classification_metrics_known_answer():
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    labels = np.array([0, 1, 1, 1])
    m = classification_metrics(probs, labels, ["a", "b"])
    assert m["accuracy"] == 0.75
    assert m["confusion_matrix"] == [[1, 0], [1, 2]]
    assert m["per_class_accuracy"] == {"a": 1.0, "b": pytest.approx(2 / 3)}
    expected = -np.mean(np.log([0.9, 0.8, 0.4, 0.7]))
    assert m["loss"] == pytest.approx(expected)


def test_tracked_subset_is_fixed_by_seed():
    assert tracked_indices(10, 50, seed=0).tolist() == list(range(10))
    a, b = tracked_indices(500, 100, 3), tracked_indices(500, 100, 3)
    assert np.array_equal(a, b) and len(set(a.tolist())) == 100


def test_training_learns_checkpoints_every_epoch_and_records_predictions(
    tmp_path, tiny_splits, tiny_params
):
    result = train_classifier(tiny_splits, tiny_params, tmp_path / "ckpt")
    names = sorted(p.name for p in (tmp_path / "ckpt").glob("*.ckpt"))
    assert names == ["epoch-001.ckpt", "epoch-002.ckpt", "epoch-003.ckpt", "last.ckpt"]
    assert [row["epoch"] for row in result.history] == [1, 2, 3]
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    assert result.epoch_probabilities.shape == (3, 20, 3)
    np.testing.assert_allclose(result.epoch_probabilities.sum(-1), 1, atol=1e-2)
    final = result.epoch_probabilities[-1].argmax(-1)
    accuracy = (final == tiny_splits.y_test[result.tracked]).mean()
    assert accuracy >= 0.9, accuracy  # the bright-square task is easy by construction


def test_killed_run_resumes_to_the_same_result_as_an_uninterrupted_one(
    tmp_path, tiny_splits, tiny_params
):
    straight = train_classifier(tiny_splits, tiny_params, tmp_path / "a")
    with pytest.raises(Killed):
        train_classifier(tiny_splits, tiny_params, tmp_path / "b", extra_callbacks=[KillAtEpoch(2)])
    assert sorted(p.name for p in (tmp_path / "b").glob("epoch-*.ckpt")) == [
        "epoch-001.ckpt",
        "epoch-002.ckpt",
    ]
    # a kill in the middle of writing last.ckpt leaves a truncated file: it is skipped
    (tmp_path / "b" / "last.ckpt").write_bytes(b"truncated")
    resumed = train_classifier(tiny_splits, tiny_params, tmp_path / "b")
    assert resumed.resumed_from is not None and resumed.resumed_from.name == "epoch-002.ckpt"
    for key, value in _weights(straight).items():
        torch.testing.assert_close(_weights(resumed)[key], value, rtol=0, atol=0)
    assert resumed.history == straight.history
    np.testing.assert_array_equal(resumed.epoch_probabilities, straight.epoch_probabilities)
    # byte for byte: the checkpoints folder is a DVC dep of grand_tour and across_epochs,
    # which a resume must not rerun (the pickle memo once made epoch 3 differ by 128 bytes)
    files = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert files == sorted(p.name for p in (tmp_path / "b").iterdir())
    assert files == [*(f"epoch-00{i}.ckpt" for i in (1, 2, 3)), "fingerprint.json", "last.ckpt"]
    for name in files:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_same_seed_same_numbers_and_other_params_discard_checkpoints(
    tmp_path, tiny_splits, tiny_params
):
    first = train_classifier(tiny_splits, tiny_params, tmp_path / "a")
    second = train_classifier(tiny_splits, tiny_params, tmp_path / "b")
    assert first.history == second.history
    changed = tiny_params.model_copy(
        update={"classifier": tiny_params.classifier.model_copy(update={"lr": 0.01})}
    )
    third = train_classifier(tiny_splits, changed, tmp_path / "a")
    assert third.resumed_from is None  # the lr=0.003 checkpoints were not resumed
    assert third.history != first.history


def test_prepare_checkpoint_dir_keeps_only_matching_runs(tmp_path):
    ckpt = tmp_path / "c"
    assert prepare_checkpoint_dir(ckpt, "one") is None
    torch.save({"x": 1}, ckpt / "epoch-001.ckpt")
    assert prepare_checkpoint_dir(ckpt, "one") == ckpt / "epoch-001.ckpt"
    assert prepare_checkpoint_dir(ckpt, "two") is None
    assert not list(ckpt.glob("*.ckpt"))
    assert fingerprint({"a": 1}) != fingerprint({"a": 2})
    assert fingerprint({"a": 1}, arrays=[np.zeros(3)]) != fingerprint({"a": 1}, arrays=[np.ones(3)])


def test_unreadable_fingerprint_discards_the_checkpoints_instead_of_crashing(tmp_path, caplog):
    ckpt = tmp_path / "c"
    assert prepare_checkpoint_dir(ckpt, "one") is None
    torch.save({"x": 1}, ckpt / "epoch-001.ckpt")
    (ckpt / "fingerprint.json").write_text("")  # a kill during a non-atomic write did this
    with caplog.at_level("WARNING"):
        assert prepare_checkpoint_dir(ckpt, "one") is None
    assert "fingerprint.json is unreadable" in caplog.text
    assert not list(ckpt.glob("*.ckpt"))
    assert json.loads((ckpt / "fingerprint.json").read_text()) == {"fingerprint": "one"}
    assert prepare_checkpoint_dir(ckpt, "one") is None  # readable again: no crash, no resume


class _Planted:
    """What a crafted checkpoint holds: unpickling it creates the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_crafted_checkpoint_is_refused_before_it_can_run_code(tmp_path, tiny_splits, tiny_params):
    """Decision: stop with one line (not skip it and train): a checkpoint this pipeline
    did not write deserves a look. Nothing in it is unpickled, so the marker never
    appears; deleting the file lets training resume from an earlier epoch."""
    with pytest.raises(Killed):
        train_classifier(tiny_splits, tiny_params, tmp_path / "c", extra_callbacks=[KillAtEpoch(2)])
    marker = tmp_path / "pwned"
    torch.save({"state_dict": {}, "payload": _Planted(marker)}, tmp_path / "c" / "last.ckpt")
    with pytest.raises(PipelineError) as refused:
        train_classifier(tiny_splits, tiny_params, tmp_path / "c")
    message = str(refused.value)
    assert (
        "\n" not in message and "last.ckpt" in message and "not written by this pipeline" in message
    )
    assert not marker.exists()
    # Lightning's own loading on resume (trainer.fit(..., weights_only=True)) refuses too
    with pytest.raises(pickle.UnpicklingError):
        CanonicalCheckpointIO().load_checkpoint(tmp_path / "c" / "last.ckpt", weights_only=True)
    assert not marker.exists()
    (tmp_path / "c" / "last.ckpt").unlink()
    resumed = train_classifier(tiny_splits, tiny_params, tmp_path / "c")
    assert resumed.resumed_from == tmp_path / "c" / "epoch-002.ckpt"
    assert not marker.exists()


def test_checkpoint_writes_leave_no_temporary_file_in_the_tracked_folder(tmp_path, tiny_splits):
    """Inside a DVC workspace the checkpoint writer's temporary files go to `.tmp/`."""
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    params = parse_params(
        {
            "seed": 1,
            "classifier": {"epochs": 1, "batch_size": 64, "tracked_instances": 5},
            "trainer": {"accelerator": "cpu", "devices": 1},
        }
    )
    train_classifier(tiny_splits, params, tmp_path / "models" / "ckpt")
    names = sorted(p.name for p in (tmp_path / "models" / "ckpt").iterdir())
    assert names == ["epoch-001.ckpt", "fingerprint.json", "last.ckpt"]
    assert list((tmp_path / ".tmp").iterdir()) == []  # moved into place, none left over


def test_lightning_checkpoints_only_through_our_epoch_checkpoint(tmp_path):
    """Without our callback Lightning must not add its default ModelCheckpoint, which
    writes `checkpoints/` into the working directory (how stray files got committed)."""
    params = TrainerParams(accelerator="cpu", devices=1)
    plain = make_trainer(params, 1, [EpochSeed(0)], progress_bar=False)
    assert plain.checkpoint_callbacks == []
    ours = EpochCheckpoint(tmp_path)
    with_ours = make_trainer(params, 1, [EpochSeed(0), ours], progress_bar=False)
    assert with_ours.checkpoint_callbacks == [ours]


def test_epoch_record_and_prediction_pairs_are_what_instanceflow_and_dvc_read():
    probabilities = np.array(
        [[[0.6, 0.4], [0.3, 0.7]], [[0.2, 0.8], [0.1, 0.9]]], dtype=np.float32
    )  # 2 training epochs × 2 tracked images × 2 classes
    result = ClassifierResult(
        module=None,  # type: ignore[arg-type]
        history=[{"epoch": 1}, {"epoch": 2}],
        tracked=np.array([3, 0]),
        epoch_probabilities=probabilities,
        resumed_from=None,
    )
    record = epoch_prediction_record(result, np.array([1, 0, 0, 1]), ["a", "b"])
    assert record["labels"].tolist() == [1, 1]
    assert record["epochs"].tolist() == [1, 2]
    assert record["predictions"].tolist() == [[0, 1], [1, 1]]
    assert record["class_names"].tolist() == ["a", "b"]
    pairs = prediction_pairs(np.array([0, 1]), np.array([1, 1]), ["a", "b"])
    assert pairs == [{"actual": "a", "predicted": "b"}, {"actual": "b", "predicted": "b"}]


# ------------------------------------------------------------------ early stopping


class ScriptedLoss(pl.LightningModule):
    """Learns a little (one weight, so each epoch's checkpoint differs); reports the
    validation loss of its script for the current epoch (0-based)."""

    def __init__(self, script: list[float]) -> None:
        super().__init__()
        self.script = script
        self.weight = nn.Parameter(torch.zeros(1))

    def training_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> Tensor:
        loss = (self.weight - batch[0].mean()).pow(2).sum()
        self.log("train_loss", loss, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> None:
        self.log("val_loss", self.script[self.trainer.current_epoch], on_epoch=True)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _data() -> tuple[InMemoryImages, InMemoryImages]:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (24, 1, 4, 4), dtype=np.uint8)
    labels = np.zeros(24, dtype=np.int64)
    return InMemoryImages(images[:16], labels[:16]), InMemoryImages(images[16:], labels[16:])


def _fit_scripted(script: list[float], directory, early_stop: EarlyStop, **kwargs) -> FitResult:
    module = ScriptedLoss(script)
    result = fit(
        module,
        *_data(),
        trainer_params=TrainerParams(accelerator="cpu", devices=1),
        seed=5,
        epochs=999,  # ignored: early_stop.max_epochs caps it
        batch_size=8,
        checkpoint_dir=directory,
        config={"script": script},
        code=[],
        history_keys=["train_loss", "val_loss"],
        **kwargs,
        early_stop=early_stop,
    )
    result.module = module  # type: ignore[attr-defined]
    return result


def _epochs(directory) -> list[str]:
    return sorted(p.name for p in directory.glob("epoch-*.ckpt"))


def test_a_flat_validation_loss_stops_after_patience_epochs(tmp_path):
    result = _fit_scripted([1.0] * 10, tmp_path / "c", EarlyStop(max_epochs=10, patience=3))
    # epoch 1 sets the best; epochs 2, 3, 4 do not improve on it: stop after epoch 4
    assert [row["epoch"] for row in result.history] == [1, 2, 3, 4]
    assert result.stopped_early and result.best_epoch == 1
    assert _epochs(tmp_path / "c") == [f"epoch-00{i}.ckpt" for i in (1, 2, 3, 4)]


def test_an_improving_loss_runs_to_the_cap_and_min_delta_is_relative(tmp_path):
    falling = [0.9**e for e in range(10)]  # 10% lower every epoch
    five_percent = EarlyStop(max_epochs=6, patience=2, min_delta=0.05)
    result = _fit_scripted(falling, tmp_path / "a", five_percent)
    assert len(result.history) == 6 and not result.stopped_early and result.best_epoch == 6
    # whatever the scale: 10% gains count when min_delta is 5%; with 25%, epochs 2 and 3
    # (10% and 19% below epoch 1's loss) are no gain, and patience 2 stops it there; the
    # weights kept are still those of the lowest validation loss, epoch 3's
    tiny = [0.001 * v for v in falling]
    result = _fit_scripted(tiny, tmp_path / "b", five_percent)
    assert len(result.history) == 6 and not result.stopped_early
    quarter = EarlyStop(max_epochs=6, patience=2, min_delta=0.25)
    result = _fit_scripted(falling, tmp_path / "c", quarter)
    assert len(result.history) == 3 and result.stopped_early and result.best_epoch == 3


def test_the_best_epochs_weights_are_kept_not_the_last(tmp_path):
    script = [3.0, 1.0, 2.0, 2.0, 2.0, 2.0]
    result = _fit_scripted(script, tmp_path / "c", EarlyStop(max_epochs=6, patience=3))
    assert len(result.history) == 5 and result.best_epoch == 2
    saved = torch.load(tmp_path / "c" / "epoch-002.ckpt", weights_only=True)["state_dict"]
    last = torch.load(tmp_path / "c" / "epoch-005.ckpt", weights_only=True)["state_dict"]
    assert not torch.equal(saved["weight"], last["weight"])  # the epochs did change it
    assert torch.equal(result.module.weight.detach(), saved["weight"])


def test_best_epoch_is_the_first_lowest_validation_loss():
    rows = [{"epoch": 1, "val_loss": 2.0}, {"epoch": 2, "val_loss": 1.0}]
    assert best_epoch([*rows, {"epoch": 3, "val_loss": 1.0}]) == 2
    with pytest.raises(ValueError, match="val_loss"):
        best_epoch([{"epoch": 1, "train_loss": 1.0}])


def test_a_killed_run_resumes_to_the_same_stop_and_bytes_and_a_stopped_one_trains_no_more(
    tmp_path,
):
    script = [5.0, 4.0, 4.5, 4.6, 4.7, 1.0, 1.0, 1.0]  # stops after epoch 5: best 2, then 3 worse
    setting = EarlyStop(max_epochs=8, patience=3)
    straight = _fit_scripted(script, tmp_path / "a", setting)
    assert len(straight.history) == 5 and straight.best_epoch == 2
    with pytest.raises(Killed):  # killed with the stopper's count at 1 (epoch 3 was worse)
        _fit_scripted(script, tmp_path / "b", setting, callbacks=[KillAtEpoch(3)])
    assert _epochs(tmp_path / "b") == ["epoch-001.ckpt", "epoch-002.ckpt", "epoch-003.ckpt"]
    resumed = _fit_scripted(script, tmp_path / "b", setting)
    assert resumed.resumed_from is not None and resumed.history == straight.history
    assert resumed.stopped_early and resumed.best_epoch == 2
    assert torch.equal(resumed.module.weight, straight.module.weight)
    files = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert files == sorted(p.name for p in (tmp_path / "b").iterdir())
    for name in files:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    # after the stop (a kill during export, say): the saved decision holds, no epoch 6
    again = _fit_scripted(script, tmp_path / "b", setting)
    assert again.history == straight.history and _epochs(tmp_path / "b") == _epochs(tmp_path / "a")
    last = [(tmp_path / d / "last.ckpt").read_bytes() for d in ("a", "b")]
    assert last[0] == last[1]


def test_the_early_stopping_setting_is_part_of_the_fingerprint(tmp_path):
    _fit_scripted([1.0] * 6, tmp_path / "c", EarlyStop(max_epochs=6, patience=2))
    other = _fit_scripted([1.0] * 6, tmp_path / "c", EarlyStop(max_epochs=6, patience=4))
    assert other.resumed_from is None and len(other.history) == 5


def test_cladec_max_epochs_is_validated_by_name():
    from pipeline.errors import ParamsError

    with pytest.raises(ParamsError, match=r"cladec\.patience"):
        parse_params({"cladec": {"patience": 0}})
    with pytest.raises(ParamsError, match=r"cladec\.epochs"):  # replaced by max_epochs
        parse_params({"cladec": {"epochs": 2}})
    with pytest.raises(ParamsError, match=r"cladec\.reconstruction"):
        parse_params({"cladec": {"reconstruction": "l1"}})
