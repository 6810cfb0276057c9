"""Restore falls back from a corrupt latest checkpoint to the newest intact one; with none
intact, one clear error."""

import logging
import os

import grain
import jax
import jax.numpy as jnp
import pytest

from livt_jax import checkpoint, train
from tests.helpers.common import tiny_config


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


def small_run(tmp_path):
    """A manager holding steps 5 and 10 of a tiny state and a grain iterator."""
    manager = checkpoint.make_manager(str(tmp_path / "checkpoints"), save_every_steps=5, keep=3,
                                      keep_best=False, async_save=False)
    iterator = iter(grain.MapDataset.range(100).to_iter_dataset())
    for step in range(1, 11):
        value = next(iterator)
        checkpoint.save(manager, step, {"w": jnp.full((4,), float(step))}, iterator)
    assert value == 9 and manager.all_steps() == [5, 10]
    sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    abstract = {"w": jax.ShapeDtypeStruct((4,), jnp.float32, sharding=sharding)}
    return manager, abstract, iter(grain.MapDataset.range(100).to_iter_dataset())


@pytest.mark.parametrize("damage", [truncate_arrays, garble_iterator])
def test_corrupt_latest_step_falls_back_to_the_previous_one(tmp_path, caplog, damage):
    manager, abstract, iterator = small_run(tmp_path)
    damage(str(tmp_path / "checkpoints" / "10"))
    with caplog.at_level(logging.WARNING):
        state, step = checkpoint.restore_latest(manager, abstract, iterator)
    assert step == 5 and float(state["w"][0]) == 5.0 and next(iterator) == 5  # step 5's next batch
    assert "checkpoint step 10" in caplog.text and "cannot be restored, skipping it" in caplog.text
    assert "resuming from step 5" in caplog.text
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["5", "corrupt_step_10"]
    assert manager.all_steps() == [5]  # step 10 can be saved again
    manager.close()


def test_no_intact_checkpoint_is_one_clear_error(tmp_path):
    manager, abstract, iterator = small_run(tmp_path)
    for step in ("5", "10"):
        truncate_arrays(str(tmp_path / "checkpoints" / step))
    with pytest.raises(checkpoint.NoIntactCheckpointError,
                       match=r"no intact checkpoint in .*checkpoints: step 10: .*; step 5: .*"
                             r"corrupt, or written by another model.*delete the folder"):
        checkpoint.restore_latest(manager, abstract, iterator)
    manager.close()


@pytest.mark.e2e
def test_training_resumes_past_a_corrupt_latest_checkpoint(tmp_path, caplog):
    workdir = tmp_path / "run"
    assert train.train_and_evaluate(pretrain_config(10), str(workdir))["stopped_at"] == 10
    truncate_arrays(str(workdir / "checkpoints" / "10"))
    with caplog.at_level(logging.WARNING):
        resumed = train.train_and_evaluate(pretrain_config(12), str(workdir))
    assert resumed["stopped_at"] == 12 and "resuming from step 5" in caplog.text
    assert {"corrupt_step_10", "12"} <= set(os.listdir(workdir / "checkpoints"))
