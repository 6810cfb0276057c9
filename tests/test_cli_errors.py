"""The command line's errors: one line, exit 2 for usage, 1 for runtime failures, the full
traceback only with --traceback."""

import os
import sys

import pytest
from tests.helpers import procs

pytestmark = pytest.mark.e2e

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_main(tmp_path, *overrides, config="configs/demo.py", devices=8):
    """`python -m livt_jax.main --config CONFIG --workdir TMP/run` on `devices` fake CPU
    devices (a generous timeout, stretched by the load: tests.helpers.procs)."""
    return procs.run(
        [sys.executable, "-m", "livt_jax.main", "--config", config,
         "--workdir", str(tmp_path / "run"), *overrides],
        cwd=REPO, capture_output=True, text=True, timeout=600,
        env={**os.environ, "JAX_PLATFORMS": "cpu",
             "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"})


@pytest.mark.parametrize("overrides, message", [
    (["--config.finetune.blr=1"],
     "unknown config key 'finetune.blr'; did you mean 'finetune.optim.blr'"),
    (["--config.pretrain.epoch=1"], "unknown config key 'pretrain.epoch'; did you mean 'pretrain.epochs'"),
    (["--config.finetune.epochs=ten"], "--config.finetune.epochs=ten"),
    (["--config.eval.batch_size=100"], "eval.batch_size=100 does not divide over the 8 devices"),
    (["--config.finetune.tau=-5"], "finetune.tau=-5.0 must be >= 0"),
    (["stray"], "unexpected arguments ['stray']"),
])
def test_usage_errors_exit_2_with_one_line(tmp_path, overrides, message):
    """(Every value check is in test_config_checks; these are the command line's.)"""
    result = run_main(tmp_path, *overrides)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines
    assert not (tmp_path / "run").exists()


def test_runtime_failure_exits_1_with_one_line_and_traceback_on_request(tmp_path):
    missing = ["--config.data.source=split_list", f"--config.data.data_dir={tmp_path / 'nowhere'}",
               "--config.data.train_split=train.txt", "--config.data.eval_split=test.txt",
               "--config.stage=finetune"]
    result = run_main(tmp_path, *missing)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "nowhere" in lines[0] and "--traceback" in lines[0], lines
    verbose = run_main(tmp_path, *missing, "--traceback")
    assert verbose.returncode == 1 and "Traceback (most recent call last)" in verbose.stderr


def test_unrestorable_checkpoints_are_one_line_not_an_orbax_dump(tmp_path):
    """A checkpoint the run cannot restore (here: another model's state) ends in one line."""
    import grain
    import jax.numpy as jnp

    from livt_jax import checkpoint

    manager = checkpoint.make_manager(str(tmp_path / "run" / "checkpoints"), save_every_steps=1,
                                      keep=1, keep_best=False, async_save=False)
    checkpoint.save(manager, 5, {"w": jnp.zeros(4)}, iter(grain.MapDataset.range(9).to_iter_dataset()))
    manager.close()
    result = run_main(tmp_path, "--config.stage=pretrain")
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "no intact checkpoint in" in errors[0] and "step 5" in errors[0]
    assert "Event loop is closed" not in result.stderr and "Traceback" not in result.stderr
