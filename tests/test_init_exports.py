"""Params exports given to the wrong place: an empty folder is named, an export of the other
kind (MGP vs classifier) loads as what it is, one of another model names the parameter."""

import logging

import jax
import numpy as np
import pytest

from livt_jax import checkpoint, stage, train
from livt_jax.models import factory
from tests.helpers.common import tiny_config
from tests.helpers.exports import finetune_spec, random_params


def finetune_setup(tmp_path, export_kind, init_kind):
    """A BFT config whose init_from holds an `export_kind` export; (config, ViT, fresh, export)."""
    config = tiny_config()
    model = factory.build_vit(config.model, config.data.in_chans, 10, 28, 0.0)
    source = (model if export_kind == "vit"
              else factory.build_mae(config.model, config.data.in_chans, 28))
    exported = random_params(source, 1)
    path = str(tmp_path / "export")
    checkpoint.save_params_export(path, exported)
    config.finetune.init_from, config.finetune.init_kind = path, init_kind
    return config, model, random_params(model, 2), exported


def test_empty_folder_as_params_from_is_named(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"empty' is not a params export: it is empty"):
        checkpoint.load_params_export(str(tmp_path / "empty"))
    config = tiny_config()
    config.stage, config.eval.params_from = "eval", str(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="is not a params export"):
        train.train_and_evaluate(config, str(tmp_path / "wd"))


def test_mgp_export_with_init_kind_vit_is_loaded_as_mgp(tmp_path, caplog):
    config, model, fresh, exported = finetune_setup(tmp_path, "mae", "vit")
    with caplog.at_level(logging.WARNING):
        params = stage.handover_fn(finetune_spec(config), model)(fresh)
    assert "holds a MGP (MAE) export, not finetune.init_kind='vit'" in caplog.text
    np.testing.assert_array_equal(params["blocks_0"]["attn"]["qkv"]["kernel"],
                                  exported["blocks_0"]["attn"]["qkv"]["kernel"])
    np.testing.assert_array_equal(params["head"]["kernel"], fresh["head"]["kernel"])  # fresh head


def test_classifier_export_with_init_kind_mae_keeps_its_head_and_pos_embed(tmp_path, caplog):
    config, model, fresh, exported = finetune_setup(tmp_path, "vit", "mae")
    with caplog.at_level(logging.WARNING):
        params = stage.handover_fn(finetune_spec(config), model)(fresh)
    assert "holds a classifier (ViT) export, not finetune.init_kind='mae'" in caplog.text
    for key in ("head", "pos_embed", "fc_norm"):
        for a, b in zip(jax.tree_util.tree_leaves(params[key]), jax.tree_util.tree_leaves(exported[key])):
            np.testing.assert_array_equal(a, b)


def test_classifier_export_of_another_model_names_the_parameter(tmp_path):
    config, _, _, _ = finetune_setup(tmp_path, "vit", "vit")
    # 7 classes; the export has 10.
    other = factory.build_vit(config.model, config.data.in_chans, 7, 28, 0.0)
    with pytest.raises(ValueError, match=r"from another model: \['head'\]\['bias'\] has shape \(10,\)"):
        stage.handover_fn(finetune_spec(config), other)(random_params(other, 3))
