"""MGP -> BFT weight transfer."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from livt_jax.models.mae import MaskedAutoencoder
from livt_jax.models.pos_embed import resize_pos_embed, sincos_2d
from livt_jax.models.transfer import vit_params_from_mae
from livt_jax.models.vit import VisionTransformer

ENCODER = dict(patch_size=4, embed_dim=32, depth=2, num_heads=4)


def _random_params(seed, init, *args):
    """Random values (not the model's init) in the parameter shapes ``init(*args)`` gives."""
    shapes = jax.eval_shape(init, *args)["params"]
    rng = np.random.default_rng(seed)
    return jax.tree_util.tree_map(lambda s: rng.normal(size=s.shape).astype(np.float32), shapes)


def _mae_params(img_size=16, **overrides):
    model = MaskedAutoencoder(
        img_size=img_size, decoder_embed_dim=16, decoder_depth=1, decoder_num_heads=2,
        **{**ENCODER, **overrides},
    )  # fmt: skip
    rngs = {"params": jax.random.key(0), "masking": jax.random.key(1)}
    return _random_params(0, model.init, rngs, jnp.zeros((1, img_size, img_size, 3)))


def _vit(img_size, global_pool="avg"):
    return VisionTransformer(num_classes=7, img_size=img_size, global_pool=global_pool, **ENCODER)


def _vit_params(model):
    images = jnp.zeros((1, model.img_size, model.img_size, 3))
    return _random_params(1, functools.partial(model.init, train=False), jax.random.key(0), images)


@pytest.mark.parametrize("vit_img", [16, 24], ids=["same-grid", "resized-4-to-6"])
def test_encoder_copied_and_head_fresh(vit_img):
    mae, vit_model = _mae_params(), _vit(vit_img)
    vit = _vit_params(vit_model)
    new = vit_params_from_mae(mae, vit, mae_grid=4, vit_grid=vit_img // 4)
    for name in ("patch_embed", "cls_token", "blocks_0", "blocks_1"):
        jax.tree_util.tree_map(np.testing.assert_array_equal, new[name], mae[name])
    for name in ("fc_norm", "head"):
        jax.tree_util.tree_map(np.testing.assert_array_equal, new[name], vit[name])
    assert sorted(new) == sorted(vit)  # no decoder, mask_token or norm
    pos = sincos_2d(32, 4, cls_token=True)[None]
    if vit_img != 16:
        pos = resize_pos_embed(pos, vit_img // 4)
    assert new["pos_embed"].shape == (1, 1 + (vit_img // 4) ** 2, 32)
    np.testing.assert_allclose(new["pos_embed"], pos, atol=1e-7)
    np.testing.assert_array_equal(new["pos_embed"][0, 0], 0.0)
    apply = functools.partial(vit_model.apply, train=False)
    logits = jax.eval_shape(apply, {"params": new}, jnp.zeros((2, vit_img, vit_img, 3)))
    assert logits.shape == (2, 7)


def test_token_pool_takes_the_encoder_norm():
    mae = _mae_params()
    new = vit_params_from_mae(mae, _vit_params(_vit(16, "token")), mae_grid=4, vit_grid=4)
    jax.tree_util.tree_map(np.testing.assert_array_equal, new["norm"], mae["norm"])


@pytest.mark.parametrize(
    "overrides, match",
    [(dict(depth=3), "Depth mismatch: the MAE encoder has 3 blocks, the ViT 2"),
     (dict(embed_dim=16), "Shape mismatch in 'patch_embed'")],
)  # fmt: skip
def test_incompatible_models_raise(overrides, match):
    vit = _vit_params(_vit(16))
    with pytest.raises(ValueError, match=match):
        vit_params_from_mae(_mae_params(**overrides), vit, mae_grid=4, vit_grid=4)


def test_wrong_vit_grid_raises():
    with pytest.raises(ValueError, match="vit_grid=5"):
        vit_params_from_mae(_mae_params(), _vit_params(_vit(16)), mae_grid=4, vit_grid=5)
