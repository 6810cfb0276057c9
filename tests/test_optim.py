"""Optimizer: layer-wise lr scales, weight-decay masks and schedule vs the release's recipe."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from livt_jax import optim
from livt_jax.models.vit import VisionTransformer, vit_kwargs


@pytest.fixture(scope="module")
def vit_b_shapes():
    model = VisionTransformer(num_classes=1000, **vit_kwargs("B"))
    return jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 224, 224, 3)),
                                             train=False)["params"])


def _flat(tree):
    return {jax.tree_util.keystr(k): v for k, v in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _expected_layer(name: str, depth: int) -> int:
    # Written from the release's recipe independently of optim.layer_id.
    if name.startswith("['patch_embed']") or name in ("['cls_token']", "['pos_embed']"):
        return 0
    if name.startswith("['blocks_"):
        return int(name.split("'")[1].split("_")[1]) + 1
    return depth + 1


def test_layerwise_scales_every_vit_b_param(vit_b_shapes):
    scales = _flat(optim.layerwise_lr_scales(vit_b_shapes, depth=12, layer_decay=0.75))
    assert len(scales) == len(_flat(vit_b_shapes)) == 152
    for name, scale in scales.items():
        expected = 0.75 ** (13 - _expected_layer(name, 12))
        assert scale == pytest.approx(expected), name
    assert scales["['head']['kernel']"] == 1.0
    assert scales["['patch_embed']['proj']['kernel']"] == pytest.approx(0.75 ** 13)
    assert scales["['blocks_11']['mlp']['fc2']['kernel']"] == pytest.approx(0.75)


def test_finetune_decay_mask_every_vit_b_param(vit_b_shapes):
    mask = _flat(optim.finetune_decay_mask(vit_b_shapes))
    shapes = _flat(vit_b_shapes)
    for name, decays in mask.items():
        no_decay = len(shapes[name].shape) == 1 or name in ("['pos_embed']", "['cls_token']")
        assert decays == (not no_decay), name
    # 12 blocks × 4 dense kernels + patch-embed kernel + head kernel.
    assert sum(mask.values()) == 12 * 4 + 2


def test_pretrain_decay_mask_decays_tokens_but_not_vectors():
    params = {"cls_token": jnp.zeros((1, 1, 8)), "mask_token": jnp.zeros((1, 1, 8)),
              "dense": {"kernel": jnp.zeros((8, 8)), "bias": jnp.zeros(8)},
              "norm": {"scale": jnp.zeros(8)}}
    mask = optim.pretrain_decay_mask(params)
    assert mask["cls_token"] and mask["mask_token"] and mask["dense"]["kernel"]
    assert not mask["dense"]["bias"] and not mask["norm"]["scale"]


def test_schedule_matches_release_formula():
    base, low, warm, total = 4e-3, 1e-6, 50, 500
    schedule = optim.warmup_cosine_schedule(base, low, warm, total)
    for step in [0, 1, 25, 49, 50, 51, 200, 499, 500]:
        if step < warm:
            expected = base * step / warm
        else:
            expected = low + (base - low) * 0.5 * (1 + np.cos(np.pi * (step - warm) / (total - warm)))
        assert float(schedule(step)) == pytest.approx(expected, rel=1e-5, abs=1e-9)


def test_one_update_equals_torch_style_adamw_with_group_scales():
    """One step = -lr·scale·(adam + wd·p) with wd only where the mask says (torch AdamW)."""
    rng = np.random.default_rng(0)
    params = {"cls_token": jnp.asarray(rng.normal(size=(1, 1, 4)), jnp.float32),
              "blocks_0": {"w": jnp.asarray(rng.normal(size=(4, 4)), jnp.float32)},
              "head": {"kernel": jnp.asarray(rng.normal(size=(4, 3)), jnp.float32),
                       "bias": jnp.asarray(rng.normal(size=3), jnp.float32)}}
    grads = jax.tree_util.tree_map(lambda p: jnp.asarray(rng.normal(size=p.shape), jnp.float32),
                                   params)
    cfg = dict(blr=1e-3, min_lr=0.0, warmup_epochs=0.0, weight_decay=0.05, b1=0.9, b2=0.999,
               layer_decay=0.5, clip_grad_norm=0.0)
    tx, schedule = optim.make_optimizer(cfg, params, stage="finetune", depth=1, global_batch=512,
                                        steps_per_epoch=10, total_steps=100)
    updates, _ = tx.update(grads, tx.init(params), params)
    lr = 1e-3 * 512 / 256
    scale = {"cls_token": 0.25, "blocks_0": 0.5, "head": 1.0}
    for (path, u), p, g in zip(jax.tree_util.tree_flatten_with_path(updates)[0],
                               jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(grads)):
        top = path[0].key
        g = np.asarray(g, np.float64)
        adam = (0.1 * g / 0.1) / (np.sqrt(0.001 * g * g / 0.001) + 1e-8)
        decay = 0.05 if (p.ndim > 1 and top != "cls_token") else 0.0
        expected = -lr * scale[top] * (adam + decay * np.asarray(p))
        np.testing.assert_allclose(np.asarray(u), expected, rtol=1e-4, atol=1e-7)
    assert float(schedule(0)) == pytest.approx(lr)


def test_bad_stage_and_schedule_errors():
    with pytest.raises(ValueError, match="stage"):
        optim.make_optimizer(dict(blr=1, min_lr=0, warmup_epochs=0, weight_decay=0, b1=0.9,
                                  b2=0.9, layer_decay=1, clip_grad_norm=0), {}, stage="bogus",
                             depth=1, global_batch=1, steps_per_epoch=1, total_steps=1)
    with pytest.raises(ValueError, match="warmup_steps"):
        optim.warmup_cosine_schedule(1.0, 0.0, 20, 10)
