"""Training: learns a task with a known answer, checkpoints every epoch, resumes after
a kill to the same result, and is deterministic."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback

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
    EpochCheckpoint,
    EpochSeed,
    fingerprint,
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
