"""The command line's errors: one line, exit 2 for usage, 1 for runtime failures, the full
traceback only with --traceback."""

import pytest
from tests.helpers import procs

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("overrides, message", [
    (["--config.finetune.blr=1"],
     "unknown config key 'finetune.blr'; did you mean 'finetune.optim.blr'"),
    (["--config.finetune.epochs=ten"], "--config.finetune.epochs=ten"),
    (["--config.eval.batch_size=100"], "eval.batch_size=100 does not divide over the 8 devices"),
    (["--config.finetune.tau=-5"], "finetune.tau=-5.0 must be >= 0"),
    (["stray"], "unrecognized arguments: stray"),
    (["--config.model.dtype=bf16"],
     "model.dtype='bf16'; expected one of ('float32', 'bfloat16', 'float16')"),
    (["--config.data.image_size=30"], "data.image_size=30 must be a multiple of the patch size 4"),
    (["--config.model.patch_size=0"], "model.patch_size=0 must be > 0 when model.variant is empty"),
    (["--config.mesh.fsdp=3"], "mesh.data=-1 × mesh.fsdp=3 does not match the 8 devices"),
    (["--config.finetune.aug.scale_min=1.5"], "finetune.aug.scale_min=1.5 must be in (0, 1]"),
])
def test_usage_errors_are_one_line_printed_once_exit_2_and_nothing_is_written(tmp_path, overrides,
                                                                             message):
    """(Every value check is in test_config_checks, every override's parsing in
    test_config_cli; these are the command line's, end to end.)"""
    line = procs.one_error_line(procs.run_train(tmp_path, *overrides))
    assert line.count(message) == 1, line
    assert not (tmp_path / "run").exists()


def test_runtime_failure_exits_1_with_one_line_and_traceback_on_request(tmp_path):
    missing = ["--config.data.source=split_list", f"--config.data.data_dir={tmp_path / 'nowhere'}",
               "--config.data.train_split=train.txt", "--config.data.eval_split=test.txt",
               "--config.stage=finetune"]
    line = procs.one_error_line(procs.run_train(tmp_path, *missing), status=1)
    assert "nowhere" in line and "--traceback" in line, line
    verbose = procs.run_train(tmp_path, *missing, "--traceback")
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
    result = procs.run_train(tmp_path, "--config.stage=pretrain")
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "no intact checkpoint in" in errors[0] and "step 5" in errors[0]
    assert "Event loop is closed" not in result.stderr and "Traceback" not in result.stderr
