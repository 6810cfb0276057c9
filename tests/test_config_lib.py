"""The config loader and the per-stage view the input pipeline reads."""

import os

import pytest

from configs import demo
from livt_jax import config_lib
from livt_jax.tools import data_benchmark

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_load_config_file_is_get_config_with_its_argument_locked():
    loaded = config_lib.load_config_file(os.path.join(REPO, "configs/demo.py:10"))
    assert loaded.to_dict() == demo.get_config("10").to_dict()
    assert loaded.data.imbalance_ratio == 10.0
    with pytest.raises(AttributeError, match="bogus"):
        loaded.finetune.bogus = 1  # locked: a new key is an error naming it


@pytest.mark.parametrize("text, spec_tail, message", [
    (None, "", r"config file '.*nope.py' not found"),
    ("def get_config(:\n", "", r"config file '.*bad.py' line 1: invalid syntax"),
    ("x = 1\n", "", r"config file '.*bad.py' has no get_config\(\) function"),
    ("import no_such_module\n", "", r"failed to run: ModuleNotFoundError: No module named"),
    (None, ":abc", r"get_config\('abc'\) failed: ValueError: could not convert string to float"),
    ("def get_config():\n    return 3\n", "", r"returned int, expected an ml_collections"),
])
def test_config_file_errors_are_one_line_naming_the_file(tmp_path, text, spec_tail, message):
    path = str(tmp_path / "nope.py") if text is None else str(tmp_path / "bad.py")
    if spec_tail:  # an argument the demo config cannot take
        path = os.path.join(REPO, "configs/demo.py")
    elif text is not None:
        (tmp_path / "bad.py").write_text(text)
    with pytest.raises(config_lib.ConfigFileError, match=message) as info:
        config_lib.load_config_file(path + spec_tail)
    assert "\n" not in str(info.value)


def test_a_shipped_config_loads_by_name_with_its_argument(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # names do not depend on the working directory
    by_name = config_lib.load_config_file("cifar_lt:cifar100,50")
    by_path = config_lib.load_config_file(os.path.join(REPO, "configs/cifar_lt.py:cifar100,50"))
    assert by_name.to_dict() == by_path.to_dict()
    assert by_name.data.name == "cifar100" and by_name.data.imbalance_ratio == 50.0
    assert config_lib.shipped_configs() == ["cifar10_lt", "cifar_lt", "demo", "imagenet_lt", "inat18",
                                             "places_lt"]
    # A file of that name in the working directory wins over the shipped config.
    (tmp_path / "demo").write_text("")
    assert config_lib.resolve_config_spec("demo:10") == "demo:10"
    assert config_lib.resolve_config_spec("places_lt").endswith(os.path.join("configs", "places_lt.py"))


def test_stage_view_takes_the_stage_image_size_and_aug(tmp_path):
    config = config_lib.base_config()
    config.pretrain.image_size = 112
    view = config_lib.stage_data_config(config, "pretrain")
    assert config_lib.stage_image_size(config, "pretrain") == view.data.image_size == 112
    assert config_lib.stage_image_size(config, "finetune") == 224  # 0 = data.image_size
    assert view.aug.to_dict() == config.pretrain.aug.to_dict() and view.aug.kind == "mgp"
    assert view.data.worker_count == 0 and view.data.device_augment is False
    # The input benchmark reads a file into the same view.
    args = data_benchmark.parse_args(["--config", os.path.join(REPO, "configs/demo.py"),
                                      "--stage", "finetune"])
    from_file, _, _ = data_benchmark.open_data(args, str(tmp_path))
    expected = config_lib.stage_data_config(demo.get_config(), "finetune")
    assert from_file.to_dict() == expected.to_dict()


def test_the_schema_declares_every_key_with_a_default_its_rule_accepts():
    flat = config_lib.flatten(config_lib.base_config())
    assert flat.keys() == config_lib.KEYS.keys()
    for key, declared in config_lib.KEYS.items():
        assert flat[key] == declared.default
        assert declared.rule is None or declared.rule.problem(key, declared.default) is None, key


@pytest.mark.parametrize("rule, good, bad, message", [
    (config_lib.Interval("(0, 1]"), [1e-9, 1.0], [0.0, 1.01], "x={} must be in (0, 1]"),
    (config_lib.Interval("[0, 1)"), [0.0, 0.99], [-0.01, 1.0], "x={} must be in [0, 1)"),
    (config_lib.above(0), [1e-9, 1e9], [0.0, -1.0], "x={} must be > 0"),
    (config_lib.at_least(1), [1, 2.5], [0.99, -3], "x={} must be >= 1"),
    (config_lib.one_of("a", "b"), ["a", "b"], ["c", ""], "x={!r}; expected one of ('a', 'b')"),
    (config_lib.one_of("", names_in="data.long_tail.PROFILES"), ["", "exp", "step"], ["linear"],
     "x={!r}; expected one of ('', 'exp', 'step')"),
])
def test_rules_accept_their_values_and_name_the_rest(rule, good, bad, message):
    for value in good:
        assert rule.problem("x", value) is None, value
    for value in bad:
        assert rule.problem("x", value) == message.format(value)
