"""Config values checked for meaning before anything runs: each bad value is refused naming
its key, every problem is listed in one error, BFT's errors are found before MGP trains."""

import pytest

from configs import demo
from livt_jax import config_checks, config_lib, train
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
    ({"data.image_size": 30}, r"data.image_size=30 must be a multiple of the patch size 4"),
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
    config = config_with(**{"stage": "eval", "pretrain.batch_size": 0, "eval.batch_size": 12,
                            "eval.params_from": "export"})
    with pytest.raises(ConfigError, match="eval.batch_size=12") as info:
        config_checks.validate(config, 8)
    assert "pretrain" not in str(info.value)


@pytest.mark.parametrize("key, expected", [
    ("finetune.blr", "finetune.optim.blr"),
    ("pretrain.epoch", "pretrain.epochs"),
    ("model.mask_ration", "model.mask_ratio"),
])
def test_unknown_key_suggestions(key, expected):
    message = config_checks.unknown_key_message(key, list(config_lib.KEYS))
    assert message.startswith(f"unknown config key {key!r}; did you mean {expected!r}")


def closed_set_keys():
    return [key for key, declared in config_lib.KEYS.items()
            if isinstance(declared.rule, config_lib.OneOf)]


@pytest.mark.parametrize("key", closed_set_keys())
def test_every_closed_set_key_refuses_a_value_outside_it(key):
    """One line naming the key, the value and the allowed set, for every such key."""
    allowed = config_lib.KEYS[key].rule.allowed()
    bad = 2 if isinstance(allowed[0], int) else "no_such_value"
    with pytest.raises(ConfigError) as info:
        config_checks.validate(config_with(**{key: bad}), num_devices=8)
    assert str(info.value) == f"invalid config: {key}={bad!r}; expected one of {allowed}"


def test_the_closed_sets_include_the_ones_users_get_wrong():
    keys = set(closed_set_keys())
    assert {"model.dtype", "model.variant", "model.attention", "finetune.aug.kind",
            "pretrain.aug.kind", "finetune.loss", "finetune.sampler", "data.source",
            "data.imbalance_type", "data.bad_images", "finetune.init_kind", "stage"} <= keys


@pytest.mark.parametrize("override, message", [
    ({"model.dtype": "bf16"},
     "model.dtype='bf16'; expected one of ('float32', 'bfloat16', 'float16')"),
    ({"model.dtype": "float8"}, "model.dtype='float8'; expected one of"),
    ({"model.variant": "XXL"},
     "model.variant='XXL'; expected one of ('', 'Ti', 'S', 'B', 'L', 'H')"),
    ({"model.attention": "flash"}, "model.attention='flash'; expected one of ('xla', 'cudnn')"),
    ({"finetune.aug.scale_min": 1.5}, "finetune.aug.scale_min=1.5 must be in (0, 1]"),
    ({"finetune.mixup.mixup_alpha": -1.0}, "finetune.mixup.mixup_alpha=-1.0 must be >= 0"),
    ({"finetune.mixup.prob": 2.0}, "finetune.mixup.prob=2.0 must be in [0, 1]"),
    ({"finetune.optim.weight_decay": -0.5}, "finetune.optim.weight_decay=-0.5 must be >= 0"),
    ({"finetune.optim.layer_decay": 0.0}, "finetune.optim.layer_decay=0.0 must be in (0, 1]"),
    ({"finetune.optim.layer_decay": 1.5}, "finetune.optim.layer_decay=1.5 must be in (0, 1]"),
    ({"finetune.eval_every_epochs": -1.0}, "finetune.eval_every_epochs=-1.0 must be > 0"),
    ({"model.num_heads": 3}, "model.num_heads=3 must divide the width model.embed_dim=64"),
    ({"model.decoder_num_heads": 3},
     "model.decoder_num_heads=3 must divide the width model.decoder_embed_dim=64"),
    ({"mesh.fsdp": 3}, "mesh.data=-1 × mesh.fsdp=3 does not match the 8 devices"),
    ({"mesh.data": 2, "mesh.fsdp": 2}, "mesh.data=2 × mesh.fsdp=2 does not match the 8 devices"),
    ({"stage": "eval"}, "stage='eval' needs eval.params_from"),
    ({"stage": "train"}, "stage='train'; expected one of ('pretrain', 'finetune', 'eval', 'livt')"),
    ({"model.patch_size": 0}, "model.patch_size=0 must be > 0 when model.variant is empty"),
    ({"finetune.grad_accum_steps": 3},
     "finetune.grad_accum_steps=3 must divide the per-device batch 16"),
    ({"finetune.image_size": 30}, "finetune.image_size=30 must be a multiple of the patch size 4"),
    ({"data.val_split": "val.txt", "data.val_per_class": 5},
     "data.val_split='val.txt' and data.val_per_class=5: set one"),
])
def test_values_needing_the_model_or_devices_are_refused_in_one_line(override, message):
    with pytest.raises(ConfigError) as info:
        config_checks.validate(config_with(**override), num_devices=8)
    text = str(info.value)
    assert message in text and text.count(message) == 1 and "\n" not in text, text


@pytest.mark.parametrize("override, key", [
    ({"data.image_size": 30}, "data.image_size=30"),
    ({"model.patch_size": 0}, "model.patch_size=0"),
])
def test_an_error_shared_by_both_stages_is_listed_once(override, key):
    with pytest.raises(ConfigError) as info:
        config_checks.validate(config_with(**override), num_devices=8)
    assert str(info.value).count(key) == 1, str(info.value)


def test_sections_the_stage_does_not_read_are_not_checked():
    config_checks.validate(config_with(**{"stage": "finetune", "pretrain.optim.blr": -1.0,
                                          "pretrain.aug.kind": "x"}), num_devices=8)
    with pytest.raises(ConfigError, match="pretrain.optim.blr=-1.0 must be > 0"):
        config_checks.validate(config_with(**{"stage": "pretrain", "pretrain.optim.blr": -1.0}), 8)


def test_a_key_a_config_file_adds_is_refused_with_a_suggestion():
    config = demo.get_config("100")
    config.finetune.blr = 1e-3  # get_config is not locked: a misplaced key would be ignored
    with pytest.raises(ConfigError, match="unknown config key 'finetune.blr'; did you mean "
                                          "'finetune.optim.blr'"):
        config_checks.validate(config, num_devices=8)
