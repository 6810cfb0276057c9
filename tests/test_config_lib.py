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


def test_missing_config_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.py.*shipped config: cifar10_lt, cifar_lt, demo"):
        config_lib.load_config_file(str(tmp_path / "nope.py:1"))


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


def test_stage_view_takes_the_stage_image_size_and_aug():
    config = config_lib.base_config()
    config.pretrain.image_size = 112
    view = config_lib.stage_data_config(config, "pretrain")
    assert config_lib.stage_image_size(config, "pretrain") == view.data.image_size == 112
    assert config_lib.stage_image_size(config, "finetune") == 224  # 0 = data.image_size
    assert view.aug.to_dict() == config.pretrain.aug.to_dict() and view.aug.kind == "mgp"
    assert view.data.worker_count == 0 and view.data.device_augment is False
    # The input benchmark reads a file into the same view.
    from_file = data_benchmark.config_from_file(os.path.join(REPO, "configs/demo.py"), "finetune")
    expected = config_lib.stage_data_config(demo.get_config(), "finetune")
    assert from_file.to_dict() == expected.to_dict()
