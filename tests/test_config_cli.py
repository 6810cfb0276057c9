"""Config values, config files and the workdir guard through `python -m livt_jax.main`:
a refusal is one line with exit status 2 before anything runs or is written, and a run
that failed before its first checkpoint leaves its workdir free for a corrected rerun."""

import json
import os

import pytest

from livt_jax import config_lib, main
from livt_jax.tools import data_benchmark
from tests.helpers.procs import one_error_line, run_train

# The demo shrunk to seconds (tests/test_train.py's tiny_config) and stopped after 2 steps.
TINY = ["--config.model.embed_dim=32", "--config.model.depth=2", "--config.model.num_heads=2",
        "--config.model.decoder_embed_dim=16", "--config.model.decoder_depth=1",
        "--config.model.decoder_num_heads=2", "--config.pretrain.batch_size=64",
        "--config.stop_after_steps=2", "--config.checkpoint.async_save=False"]


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
    line = one_error_line(run_train(tmp_path, config=path + arg))
    assert message.format(path=path) in line, line
    assert "Traceback" not in line and not (tmp_path / "run").exists()


@pytest.mark.e2e
def test_a_failed_first_run_leaves_the_workdir_free_until_a_checkpoint_binds_it(tmp_path):
    workdir = tmp_path / "run"
    # 1. A value outside its set: refused before anything is written.
    line = one_error_line(run_train(tmp_path, *TINY, "--config.model.dtype=bf16"))
    assert "model.dtype='bf16'" in line and not workdir.exists()
    # 2. A run that fails while running (no data there): config.json and a stage folder
    #    are written, no checkpoint.
    missing = ["--config.data.source=split_list", f"--config.data.data_dir={tmp_path / 'none'}",
               "--config.data.train_split=train.txt", "--config.data.eval_split=test.txt"]
    one_error_line(run_train(tmp_path, *TINY, *missing), status=1)
    assert (workdir / "config.json").exists() and (workdir / "pretrain").is_dir()
    # 3. The corrected rerun (another data.source) is accepted and saves step 2.
    result = run_train(tmp_path, *TINY, devices=1)
    assert result.returncode == 0, result.stderr
    assert os.listdir(workdir / "pretrain" / "checkpoints") == ["2"]
    recorded = (workdir / "config.json").read_text()
    assert json.loads(recorded)["data"]["source"] == "animal_mnist"
    # 4. Now the workdir is bound: a meaning change is refused, nothing changes.
    line = one_error_line(run_train(tmp_path, *TINY, "--config.data.imbalance_ratio=10",
                                   devices=1))
    assert "data.imbalance_ratio: 100.0 -> 10.0" in line and "allow_config_change" in line
    assert (workdir / "config.json").read_text() == recorded
    assert os.listdir(workdir / "pretrain" / "checkpoints") == ["2"]


# ----------------------------------------------------------------------------- overrides, in-process

def parse_train(capsys, *argv):
    """`livt-train`'s parser on `--config demo --workdir w ARGV`: (args, None) or, when it
    exits, (None, (status, stderr lines))."""
    try:
        return main.build_parser().parse_args(["--config", "demo", "--workdir", "w", *argv]), None
    except SystemExit as e:
        return None, (e.code, capsys.readouterr().err.strip().splitlines())


@pytest.mark.parametrize("key, text, expected", [
    ("seed", "7", 7),
    ("mesh.data", "-1", -1),
    ("finetune.optim.blr", "5e-4", 5e-4),
    ("finetune.tau", "2", 2.0),  # an int literal for a float key
    ("data.name", "animal mnist", "animal mnist"),
    ("data.mean", "(0.1, 0.2, 0.3)", (0.1, 0.2, 0.3)),
    ("data.mean", "[0.5]", (0.5,)),
    ("data.mean", "0.5", (0.5,)),
    *[("multihost", text, True) for text in ("true", "True", "TRUE", "t", "1")],
    *[("multihost", text, False) for text in ("false", "False", "FALSE", "f", "0")],
])
def test_each_override_is_parsed_by_its_keys_type(capsys, key, text, expected):
    args, failure = parse_train(capsys, f"--config.{key}={text}")
    assert failure is None, failure
    section, _, name = key.rpartition(".")
    value = args.config[section][name] if section else args.config[name]
    assert value == expected and type(value) is type(expected), (value, expected)
    assert args.overridden == {key} and args.config.is_locked


def test_the_spaced_form_a_bare_bool_and_the_overridden_set(capsys):
    args, failure = parse_train(capsys, "--config.finetune.optim.blr", "0.002", "--config.multihost",
                                "--config.seed=3", "--config.seed=4", "--config.data.name", "x")
    assert failure is None, failure
    assert args.overridden == {"finetune.optim.blr", "multihost", "seed", "data.name"}
    assert (args.config.finetune.optim.blr, args.config.multihost, args.config.seed,
            args.config.data.name) == (0.002, True, 4, "x")
    demo = config_lib.load_config_file("demo")
    unset = {k for k, v in config_lib.flatten(args.config).items()
             if v != config_lib.flatten(demo)[k]}
    assert unset == args.overridden  # nothing else moved
    plain, _ = parse_train(capsys)
    assert plain.overridden == frozenset()


@pytest.mark.parametrize("argv, message", [
    (["--config.finetune.blr=1"],
     "unknown config key 'finetune.blr'; did you mean 'finetune.optim.blr'"),
    (["--config.pretrain.epoch=1"], "unknown config key 'pretrain.epoch'; did you mean 'pretrain.epochs'"),
    (["--config.model.varient", "B"], "unknown config key 'model.varient'"),
    (["--config.seed=1.5"], "--config.seed=1.5: expected an integer"),
    (["--config.finetune.tau=abc"], "--config.finetune.tau=abc: expected a number"),
    (["--config.multihost=yes"], "--config.multihost=yes: expected a bool"),
    (["--config.data.mean=(0.5,"], "--config.data.mean=(0.5,: expected a tuple"),
    (["--config.data.mean='a'"], "--config.data.mean='a': expected a tuple"),
    (["--config.seed"], "--config.seed needs a value"),
])
def test_bad_overrides_are_one_line_exit_2(capsys, argv, message):
    args, (status, lines) = parse_train(capsys, *argv)
    assert args is None and status == 2
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines


def test_overrides_without_a_config_are_refused(capsys):
    with pytest.raises(SystemExit) as exit_info:
        data_benchmark.parse_args(["--config.seed=1"])
    assert exit_info.value.code == 2
    assert "--config.seed needs --config" in capsys.readouterr().err


def test_command_line_keys_reach_the_description_check_only_from_the_command_line():
    """From Python no key counts as given on the command line; inside a command's
    `overrides_from_command_line` exactly its keys do, and only while it runs."""
    assert config_lib.command_line_overrides() == frozenset()
    with config_lib.overrides_from_command_line(frozenset({"model.depth"})):
        assert config_lib.command_line_overrides() == {"model.depth"}
    assert config_lib.command_line_overrides() == frozenset()
