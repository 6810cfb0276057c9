"""Randomly initialised params exports of the tiny model, with and without a description."""

import jax
import numpy as np

from livt_jax import checkpoint, description, mesh as mesh_lib, stage
from livt_jax.config_lib import stage_data_config
from livt_jax.data import pipeline
from livt_jax.models import factory
from tests.helpers.common import tiny_config


def random_params(model, seed):
    """Numpy params of `model`'s shapes, filled with seeded noise."""
    rng = np.random.default_rng(seed)
    shapes = factory.abstract_params(model)
    return jax.tree_util.tree_map(lambda s: rng.normal(size=s.shape).astype(np.float32), shapes)


def write_export(path, config, kind="vit", seed=1):
    """A randomly initialised export of `config`'s model with its description; its params."""
    train_source = pipeline.load_sources(stage_data_config(config, "finetune").data).train
    if kind == "vit":
        model = factory.build_vit(config.model, config.data.in_chans, train_source.num_classes,
                                  28, 0.0)
    else:
        model = factory.build_mae(config.model, config.data.in_chans, 28)
    params = random_params(model, seed)
    checkpoint.save_params_export(str(path), params)
    description.write(str(path), description.describe(
        config, "finetune" if kind == "vit" else "pretrain", train_source))
    return params


def eval_config(export, **model):
    """tiny_config set to evaluate `export` (stage 'eval'), with `model` keys overridden."""
    config = tiny_config()
    config.model.update(model)
    config.stage, config.eval.params_from = "eval", str(export)
    return config


def finetune_spec(config):
    """BFT's `stage.StageSpec` of `config` on a mesh of all devices."""
    return stage.stage_spec(config, "finetune", mesh_lib.make_mesh())
