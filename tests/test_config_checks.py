"""Config values checked for meaning before anything runs: each bad value is refused naming
its key, every problem is listed in one error, BFT's errors are found before MGP trains."""

import pytest

from configs import demo
from livt_jax import config_checks, train
from livt_jax.config_checks import ConfigError


def config_with(**overrides):
    c = demo.get_config("100")
    for key, value in overrides.items():
        node = c
        *parents, leaf = key.split(".")
        for name in parents:
            node = node[name]
        node[leaf] = value
    return c


@pytest.mark.parametrize("override, message", [
    ({"finetune.tau": -5.0}, r"finetune.tau=-5.0 must be >= 0"),
    ({"model.mask_ratio": 0.99}, r"model.mask_ratio=0.99 keeps no visible patch of the 49"),
    ({"model.mask_ratio": 1.0}, r"model.mask_ratio=1.0 must be in \[0, 1\)"),
    ({"pretrain.epochs": 0.0}, r"pretrain.epochs=0.0 must be > 0"),
    ({"finetune.epochs": -1.0}, r"finetune.epochs=-1.0 must be > 0"),
    ({"pretrain.batch_size": 0}, r"pretrain.batch_size=0 must be > 0"),
    ({"finetune.batch_size": 100}, r"finetune.batch_size=100 does not divide over the 8 devices"),
    ({"eval.batch_size": 100}, r"eval.batch_size=100 does not divide over the 8 devices"),
    ({"finetune.loss": "focal"}, r"finetune.loss='focal'; expected one of"),
    ({"finetune.init_kind": "resnet"}, r"finetune.init_kind='resnet'"),
    ({"data.bad_images": "ignore"}, r"data.bad_images='ignore'"),
    ({"data.image_size": 30}, r"data.image_size=30 must be a positive multiple of the patch size 4"),
    ({"checkpoint.keep": 0}, r"checkpoint.keep=0 must be > 0"),
    ({"finetune.aug.interpolation": "nearest"},
     r"finetune.aug.interpolation='nearest'; expected one of \('bicubic', 'bilinear'\)"),
])
def test_bad_values_are_refused_naming_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        config_checks.validate(config_with(**override), num_devices=8)


def test_demo_config_and_an_edge_mask_ratio_pass():
    config_checks.validate(demo.get_config("100"), num_devices=8)
    config_checks.validate(config_with(**{"model.mask_ratio": 0.97}), num_devices=8)  # 1 of 49 kept


def test_every_problem_is_listed_in_one_error():
    with pytest.raises(ConfigError) as info:
        config_checks.validate(config_with(**{"finetune.tau": -1.0, "eval.batch_size": 3}), 8)
    assert "finetune.tau" in str(info.value) and "eval.batch_size" in str(info.value)
    assert "\n" not in str(info.value)


def test_bft_errors_are_found_before_mgp_runs(tmp_path):
    """stage=livt: an unknown loss is refused before MGP trains (nothing written)."""
    config = config_with(**{"finetune.loss": "focal", "pretrain.epochs": 1.0})
    with pytest.raises(ConfigError, match="finetune.loss='focal'"):
        train.train_and_evaluate(config, str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()


def test_eval_stage_checks_the_eval_batch_only():
    config = config_with(**{"stage": "eval", "pretrain.batch_size": 0, "eval.batch_size": 12})
    with pytest.raises(ConfigError, match="eval.batch_size=12") as info:
        config_checks.validate(config, 8)
    assert "pretrain" not in str(info.value)


@pytest.mark.parametrize("key, expected", [
    ("finetune.blr", "finetune.optim.blr"),
    ("pretrain.epoch", "pretrain.epochs"),
    ("model.mask_ration", "model.mask_ratio"),
])
def test_unknown_key_suggestions(key, expected):
    known = config_checks.leaf_keys(demo.get_config("100"))
    message = config_checks.unknown_key_message(key, known)
    assert message.startswith(f"unknown config key {key!r}; did you mean {expected!r}")
