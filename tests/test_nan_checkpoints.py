"""No checkpoint holds a state from a non-finite loss, and a rerun resumes from a finite one.

The loss is fetched at log steps and before every save (never every step), and the
state is checked before every save; a checkpoint written by an older version after
the loss diverged is skipped on resume like a corrupt one.
"""

import logging
import os
import subprocess
import sys

import grain
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from livt_jax import checkpoint, report

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT = 600  # seconds; the machine may be loaded
TINY = ["--config", "configs/demo.py", "--config.stage=finetune", "--config.model.embed_dim=32",
        "--config.model.depth=2", "--config.model.num_heads=2", "--config.finetune.batch_size=64",
        "--config.finetune.epochs=0.3", "--config.eval.batch_size=512",
        "--config.checkpoint.save_every_steps=2", "--config.checkpoint.keep=10",
        "--config.log_every_steps=1000"]  # saves every 2 steps, logs only at the end


def run_main(workdir, *overrides):
    return subprocess.run([sys.executable, "-m", "livt_jax.main", *TINY, "--workdir", str(workdir),
                           *overrides], cwd=REPO, capture_output=True, text=True, timeout=TIMEOUT,
                          env={**os.environ, "JAX_PLATFORMS": "cpu"})


def saved_states(workdir):
    """{step: restored train state} of every checkpoint in the workdir (as saved)."""
    manager = checkpoint.make_manager(str(workdir / "checkpoints"), save_every_steps=2, keep=10,
                                      keep_best=False, async_save=False)
    return {step: manager.restore(step, args=checkpoint.ocp.args.Composite(
        state=checkpoint.ocp.args.StandardRestore()))["state"] for step in manager.all_steps()}


@pytest.mark.e2e
@pytest.mark.slow
def test_diverging_run_saves_no_nan_checkpoint_and_resumes_from_a_finite_one(tmp_path):
    workdir = tmp_path / "run"
    first = run_main(workdir, "--config.stop_after_steps=4")
    assert first.returncode == 0, first.stderr
    diverged = run_main(workdir, "--config.finetune.optim.blr=1e30",
                        "--config.allow_config_change=True")
    assert diverged.returncode == 1
    line = diverged.stderr.strip().splitlines()[-1]
    assert line.startswith("error: ") and " at step " in line, diverged.stderr
    assert f"the last checkpoint, step 4 in {workdir / 'checkpoints'}, predates it and is kept" in line
    assert "finetune.optim.blr" in line and "--config.allow_config_change=True" in line
    states = saved_states(workdir)
    assert sorted(states) == [2, 4]  # the diverged steps (6, 8, ...) were never saved
    for state in states.values():
        assert all(np.isfinite(np.asarray(leaf)).all() for leaf in jax.tree.leaves(state["params"]))
    resumed = run_main(workdir, "--config.allow_config_change=True")
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed finetune from step 4" in resumed.stderr
    losses = [r["loss"] for r in report.read_metrics(str(workdir / "metrics.jsonl")) if "loss" in r]
    assert losses and np.isfinite(losses).all()


def write_steps(tmp_path, values):
    """A manager holding step i + 1 = {'w': values[i]}, written without any check."""
    manager = checkpoint.make_manager(str(tmp_path / "checkpoints"), save_every_steps=1, keep=5,
                                      keep_best=False, async_save=False)
    iterator = iter(grain.MapDataset.range(100).to_iter_dataset())
    for step, value in enumerate(values, start=1):
        next(iterator)
        manager.save(step, args=checkpoint.ocp.args.Composite(
            state=checkpoint.ocp.args.StandardSave({"w": jnp.full((3,), value)}),
            data=grain.checkpoint.CheckpointSave(iterator)))
    manager.wait_until_finished()
    return manager


def test_nan_checkpoint_of_an_older_version_is_skipped_on_resume(tmp_path, caplog):
    manager = write_steps(tmp_path, [1.0, 2.0, float("nan")])
    sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    abstract = {"w": jax.ShapeDtypeStruct((3,), jnp.float32, sharding=sharding)}
    iterator = iter(grain.MapDataset.range(100).to_iter_dataset())
    with caplog.at_level(logging.WARNING):
        state, step = checkpoint.restore_latest(manager, abstract, iterator)
    assert step == 2 and float(state["w"][0]) == 2.0 and next(iterator) == 2
    assert "checkpoint step 3" in caplog.text and "holds NaN or Inf" in caplog.text
    assert os.path.isdir(tmp_path / "checkpoints" / "corrupt_step_3")


def test_save_refused_by_its_check_writes_nothing(tmp_path):
    manager = write_steps(tmp_path, [1.0])

    def refuse():
        raise FloatingPointError("no")

    iterator = iter(grain.MapDataset.range(100).to_iter_dataset())
    with pytest.raises(FloatingPointError):
        checkpoint.save(manager, 2, {"w": jnp.zeros(3)}, iterator, before=refuse)
    assert manager.all_steps() == [1]
    assert checkpoint.save(manager, 2, {"w": jnp.zeros(3)}, iterator, before=lambda: None)
    manager.wait_until_finished()
    assert manager.all_steps() == [1, 2]


@pytest.mark.parametrize("value, finite", [(1.0, True), (float("nan"), False), (float("inf"), False)])
def test_all_finite_checks_every_float_leaf(value, finite):
    tree = {"a": jnp.ones((2, 2)), "b": [jnp.full((3,), value, jnp.bfloat16)],
            "step": jnp.int32(3), "key": jax.random.key(0)}
    assert bool(checkpoint.all_finite(tree)) == finite
