"""The Evaluator against a by-hand reference: the model applied to the whole set at once."""

import jax
import numpy as np
import pytest

from livt_jax import mesh as mesh_lib
from livt_jax.config_lib import stage_data_config
from livt_jax.data import pipeline
from livt_jax.data.sources import ArraySource
from livt_jax.evaluator import Evaluator
from livt_jax.models import factory
from tests.helpers.common import tiny_config


@pytest.mark.slow
def test_evaluator_scores_every_image_once_like_a_direct_forward_pass():
    config = tiny_config()
    rng = np.random.default_rng(0)
    names = [str(c) for c in range(10)]
    # 37 images: 3 batches of 16 over 8 devices, the last one padded.
    images = rng.integers(0, 256, (37, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, 37)
    source = ArraySource(images, labels, names, "eval")
    train_source = ArraySource(np.zeros((55, 28, 28), np.uint8), np.repeat(np.arange(10),
                               [10, 9, 8, 7, 6, 5, 4, 3, 2, 1]), names, "train")
    model = factory.build_vit(config.model, config.data.in_chans, 10, 28, drop_path=0.0)
    params = jax.device_get(model.init(jax.random.key(0), np.zeros((1, 28, 28, 1)),
                                       train=False)["params"])
    params["head"]["kernel"] = rng.normal(size=params["head"]["kernel"].shape).astype(np.float32)
    data_cfg = stage_data_config(config, "finetune")
    evaluator = Evaluator(model, data_cfg, source, train_source, mesh_lib.make_mesh(), 16)
    result = evaluator.run(params)

    logits = np.asarray(model.apply({"params": params},
                                    pipeline.eval_images(data_cfg, list(source.images[..., None])),
                                    train=False))
    predicted = logits.argmax(-1)
    assert result["num_examples"] == 37
    assert result["top1"] == pytest.approx(100 * np.mean(predicted == labels))
    per_class = [100 * np.mean(predicted[labels == c] == c) if np.any(labels == c) else 0.0
                 for c in range(10)]
    np.testing.assert_allclose(result["per_class_accuracy"], per_class)
    assert evaluator.run(params)["top1"] == result["top1"]  # built once, runs again
