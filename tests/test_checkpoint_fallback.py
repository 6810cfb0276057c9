"""Restore falls back from a corrupt latest checkpoint to the newest intact one (issue #13)."""

import logging
import os

import pytest

from livt_jax import checkpoint, train
from tests.test_train import tiny_config


def pretrain_config(stop_after):
    config = tiny_config()
    config.stage = "pretrain"
    config.stop_after_steps = stop_after
    return config


def truncate_arrays(step_dir):
    """Halves every tensorstore data file of the step's train state."""
    for root, _, names in os.walk(os.path.join(step_dir, "state")):
        if os.path.basename(root) == "d":
            for name in names:
                path = os.path.join(root, name)
                data = open(path, "rb").read()
                open(path, "wb").write(data[: len(data) // 2])


def garble_iterator(step_dir):
    for name in os.listdir(os.path.join(step_dir, "data")):
        if name.endswith(".json"):
            open(os.path.join(step_dir, "data", name), "w").write("{garbled")


@pytest.mark.parametrize("damage", [truncate_arrays, garble_iterator])
def test_corrupt_latest_step_falls_back_to_the_previous_one(tmp_path, caplog, damage):
    workdir = tmp_path / "run"
    assert train.train_and_evaluate(pretrain_config(10), str(workdir))["stopped_at"] == 10
    checkpoints = workdir / "checkpoints"
    assert {"5", "10"} <= set(os.listdir(checkpoints))
    damage(str(checkpoints / "10"))
    with caplog.at_level(logging.WARNING):
        resumed = train.train_and_evaluate(pretrain_config(12), str(workdir))
    assert resumed["stopped_at"] == 12
    assert "checkpoint step 10" in caplog.text and "corrupt, skipping it" in caplog.text
    assert "resuming from step 5" in caplog.text
    assert "corrupt_step_10" in os.listdir(checkpoints) and "12" in os.listdir(checkpoints)


def test_no_intact_checkpoint_is_one_clear_error(tmp_path):
    workdir = tmp_path / "run"
    train.train_and_evaluate(pretrain_config(10), str(workdir))
    for step in os.listdir(workdir / "checkpoints"):
        truncate_arrays(str(workdir / "checkpoints" / step))
    with pytest.raises(checkpoint.NoIntactCheckpointError,
                       match=r"no intact checkpoint in .*checkpoints: step 10: .*; step 5: .*"
                             r"delete the folder to start over"):
        train.train_and_evaluate(pretrain_config(12), str(workdir))
