"""The config guard: WORKDIR/config.json is written, and a resume that changes the run's
meaning is refused, naming each key, unless allow_config_change=True."""

import json
import os

import pytest

from livt_jax import config_guard, train
from tests.helpers.common import tiny_config


def recorded(workdir):
    return json.loads((workdir / config_guard.CONFIG_FILE).read_text())


def start(config, workdir, folder="."):
    """A run that saved its first checkpoint (step 5, in `workdir/folder/checkpoints`)."""
    config_guard.check_and_record(config, str(workdir))
    (workdir / folder / "checkpoints" / "5").mkdir(parents=True)


def test_first_run_records_the_resolved_config(tmp_path):
    config = tiny_config()
    config_guard.check_and_record(config, str(tmp_path / "new"))
    saved = recorded(tmp_path / "new")
    assert saved["model"]["embed_dim"] == 32 and saved["finetune"]["batch_size"] == 64
    assert saved["data"]["mean"] == [0.5]
    config_guard.check_and_record(config, str(tmp_path / "new"))  # the same config resumes


def test_harmless_keys_may_change(tmp_path):
    start(tiny_config(), tmp_path)
    config = tiny_config()
    config.log_every_steps = 7
    config.checkpoint.save_every_steps = 3
    config.eval.batch_size = 128
    config.data.worker_count = 2
    config.mesh.data = 2
    config.profile.num_steps = 5
    config_guard.check_and_record(config, str(tmp_path))
    assert recorded(tmp_path)["log_every_steps"] == 7


def test_meaning_changes_are_refused_naming_each_key(tmp_path):
    start(tiny_config(), tmp_path)
    config = tiny_config()
    config.model.embed_dim = 48
    config.finetune.batch_size = 128
    config.finetune.tau = 2.0
    config.data.imbalance_ratio = 10.0
    config.seed = 3
    config.log_every_steps = 9  # harmless: not listed
    with pytest.raises(config_guard.ConfigChangeError) as error:
        config_guard.check_and_record(config, str(tmp_path))
    message = str(error.value)
    for line in ("model.embed_dim: 32 -> 48", "finetune.batch_size: 64 -> 128",
                 "finetune.tau: 1.0 -> 2.0", "data.imbalance_ratio: 100.0 -> 10.0",
                 "seed: 0 -> 3", "--config.allow_config_change=True"):
        assert line in message, message
    assert "log_every_steps" not in message
    assert recorded(tmp_path)["model"]["embed_dim"] == 32  # the record is left alone


def test_allow_config_change_resumes_and_records_the_new_values(tmp_path):
    start(tiny_config(), tmp_path)
    config = tiny_config()
    config.finetune.epochs = 3
    config.allow_config_change = True
    config_guard.check_and_record(config, str(tmp_path))
    assert recorded(tmp_path)["finetune"]["epochs"] == 3


def test_train_refuses_before_training(tmp_path):
    config = tiny_config()
    config.stage = "finetune"
    start(config, tmp_path)
    config.finetune.loss = "ce"
    with pytest.raises(config_guard.ConfigChangeError, match="finetune.loss: 'bal_bce' -> 'ce'"):
        train.train_and_evaluate(config, str(tmp_path))
    assert os.listdir(tmp_path / "checkpoints") == ["5"]
    assert recorded(tmp_path)["finetune"]["loss"] == "bal_bce"


@pytest.mark.parametrize("left_behind", [[], ["pretrain/metrics.jsonl", "livt.lock"],
                                         ["checkpoints/5.orbax-checkpoint-tmp-1/x"]])
def test_a_run_that_failed_before_its_first_checkpoint_does_not_bind_the_workdir(
        tmp_path, left_behind):
    """Whatever a failed first run left (stage folders, metrics, an unfinished step)."""
    config_guard.check_and_record(tiny_config(), str(tmp_path))  # e.g. then its data was refused
    for name in left_behind:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("")
    config = tiny_config()
    config.data.imbalance_ratio = 10.0  # the corrected rerun
    config_guard.check_and_record(config, str(tmp_path))
    assert recorded(tmp_path)["data"]["imbalance_ratio"] == 10.0


def test_sections_of_stages_not_run_are_not_compared(tmp_path):
    config = tiny_config()
    config.stage = "finetune"
    start(config, tmp_path)
    config.pretrain.batch_size = 32  # MGP is not part of a finetune run
    config_guard.check_and_record(config, str(tmp_path))
    config.finetune.batch_size = 32
    with pytest.raises(config_guard.ConfigChangeError, match="finetune.batch_size: 64 -> 32"):
        config_guard.check_and_record(config, str(tmp_path))


@pytest.mark.parametrize("folder", ["pretrain", "finetune"])
def test_a_checkpoint_in_a_stage_folder_binds_the_workdir(tmp_path, folder):
    start(tiny_config(), tmp_path, folder)
    config = tiny_config()
    config.data.imbalance_ratio = 10.0
    with pytest.raises(config_guard.ConfigChangeError, match="data.imbalance_ratio: 100.0 -> 10"):
        config_guard.check_and_record(config, str(tmp_path))


def test_only_keys_declared_may_change_are_free():
    assert config_guard.may_change("checkpoint.keep") and config_guard.may_change("mesh.fsdp")
    assert not config_guard.may_change("finetune.optim.blr")
    assert not config_guard.may_change("no.such.key")
