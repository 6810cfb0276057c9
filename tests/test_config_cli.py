"""Config values, config files and the workdir guard through `python -m livt_jax.main`:
a refusal is one line with exit status 2 before anything runs or is written, and a run
that failed before its first checkpoint leaves its workdir free for a corrected rerun."""

import json
import os

import pytest

from tests.test_cli_errors import run_main

# The demo shrunk to seconds (tests/test_train.py's tiny_config) and stopped after 2 steps.
TINY = ["--config.model.embed_dim=32", "--config.model.depth=2", "--config.model.num_heads=2",
        "--config.model.decoder_embed_dim=16", "--config.model.decoder_depth=1",
        "--config.model.decoder_num_heads=2", "--config.pretrain.batch_size=64",
        "--config.stop_after_steps=2", "--config.checkpoint.async_save=False"]


def one_error_line(result, status=2):
    assert result.returncode == status, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


@pytest.mark.parametrize("overrides, message", [
    (["--config.model.dtype=bf16"],
     "model.dtype='bf16'; expected one of ('float32', 'bfloat16', 'float16')"),
    (["--config.data.image_size=30"], "data.image_size=30 must be a multiple of the patch size 4"),
    (["--config.model.patch_size=0"], "model.patch_size=0 must be > 0 when model.variant is empty"),
    (["--config.mesh.fsdp=3"], "mesh.data=-1 × mesh.fsdp=3 does not match the 8 devices"),
    (["--config.finetune.aug.scale_min=1.5"], "finetune.aug.scale_min=1.5 must be in (0, 1]"),
])
def test_bad_values_are_one_line_printed_once_and_nothing_is_written(tmp_path, overrides,
                                                                     message):
    line = one_error_line(run_main(tmp_path, *overrides))
    assert line.count(message) == 1, line
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("text, arg, message", [
    (None, "", "config file '{path}' not found"),
    ("def get_config(:\n", "", "config file '{path}' line 1: invalid syntax"),
    ("x = 1\n", "", "config file '{path}' has no get_config() function"),
    (None, ":ten", "config file 'configs/demo.py': get_config('ten') failed: ValueError: "
                   "could not convert string to float: 'ten'"),
])
def test_config_file_errors_are_one_line(tmp_path, text, arg, message):
    path = "configs/demo.py" if arg else str(tmp_path / "cfg.py")
    if text is not None:
        (tmp_path / "cfg.py").write_text(text)
    line = one_error_line(run_main(tmp_path, config=path + arg))
    assert message.format(path=path) in line, line
    assert "Traceback" not in line and not (tmp_path / "run").exists()


@pytest.mark.e2e
def test_a_failed_first_run_leaves_the_workdir_free_until_a_checkpoint_binds_it(tmp_path):
    workdir = tmp_path / "run"
    # 1. A value outside its set: refused before anything is written.
    line = one_error_line(run_main(tmp_path, *TINY, "--config.model.dtype=bf16"))
    assert "model.dtype='bf16'" in line and not workdir.exists()
    # 2. A run that fails while running (no data there): config.json and a stage folder
    #    are written, no checkpoint.
    missing = ["--config.data.source=split_list", f"--config.data.data_dir={tmp_path / 'none'}",
               "--config.data.train_split=train.txt", "--config.data.eval_split=test.txt"]
    one_error_line(run_main(tmp_path, *TINY, *missing), status=1)
    assert (workdir / "config.json").exists() and (workdir / "pretrain").is_dir()
    # 3. The corrected rerun (another data.source) is accepted and saves step 2.
    result = run_main(tmp_path, *TINY, devices=1)
    assert result.returncode == 0, result.stderr
    assert os.listdir(workdir / "pretrain" / "checkpoints") == ["2"]
    recorded = (workdir / "config.json").read_text()
    assert json.loads(recorded)["data"]["source"] == "animal_mnist"
    # 4. Now the workdir is bound: a meaning change is refused, nothing changes.
    line = one_error_line(run_main(tmp_path, *TINY, "--config.data.imbalance_ratio=10",
                                   devices=1))
    assert "data.imbalance_ratio: 100.0 -> 10.0" in line and "allow_config_change" in line
    assert (workdir / "config.json").read_text() == recorded
    assert os.listdir(workdir / "pretrain" / "checkpoints") == ["2"]
