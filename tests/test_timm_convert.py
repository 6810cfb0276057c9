"""timm / MAE-release state dicts <-> flax params: exact round trips and clear errors."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from timm.models.vision_transformer import VisionTransformer as TimmViT

from livt_jax.models.mae import MaskedAutoencoder
from livt_jax.models.pos_embed import sincos_2d
from livt_jax.models.timm_convert import (
    mae_params_from_timm,
    timm_state_dict_from_mae_params,
    timm_state_dict_from_vit_params,
    vit_params_from_timm,
)
from livt_jax.models.vit import VisionTransformer

pytestmark = pytest.mark.torch

VIT = dict(img_size=32, patch_size=4, embed_dim=32, depth=2, num_heads=4, num_classes=5)
MAE = dict(
    img_size=16, patch_size=4, embed_dim=32, depth=1, num_heads=4,
    decoder_embed_dim=16, decoder_depth=2, decoder_num_heads=2,
)  # fmt: skip


def _timm_state(global_pool):
    model = TimmViT(global_pool=global_pool, class_token=True, **VIT)
    return {k: v.numpy() for k, v in model.state_dict().items()}


def _vit_shapes(global_pool):
    model = VisionTransformer(global_pool=global_pool, **VIT)
    init = functools.partial(model.init, train=False)
    return jax.eval_shape(init, jax.random.key(0), jnp.zeros((1, 32, 32, 3)))["params"]


@pytest.mark.parametrize("global_pool", ["avg", "token"])
def test_vit_round_trip_is_exact(global_pool):
    state = _timm_state(global_pool)
    params = vit_params_from_timm(state, expected=_vit_shapes(global_pool))
    np.testing.assert_array_equal(
        params["blocks_1"]["attn"]["qkv"]["kernel"], state["blocks.1.attn.qkv.weight"].T
    )
    np.testing.assert_array_equal(
        params["patch_embed"]["proj"]["kernel"][1, 2, 0],  # (kh, kw, I, O)
        state["patch_embed.proj.weight"][:, 0, 1, 2],  # (O, I, kh, kw)
    )
    norm = "fc_norm" if global_pool == "avg" else "norm"
    np.testing.assert_array_equal(params[norm]["scale"], state[f"{norm}.weight"])
    back = timm_state_dict_from_vit_params(params)
    assert sorted(back) == sorted(state)
    for key in state:
        assert back[key].dtype == state[key].dtype
        np.testing.assert_array_equal(back[key], state[key], err_msg=key)


def test_missing_and_unknown_keys_are_named():
    state = _timm_state("avg")
    for key in ("blocks.1.mlp.fc2.bias", "pos_embed", "head.weight"):
        broken = {k: v for k, v in state.items() if k != key}
        with pytest.raises(KeyError, match=key.replace(".", r"\.")):
            vit_params_from_timm(broken)
    with pytest.raises(KeyError, match=r"blocks\.0\.ls1\.gamma"):
        vit_params_from_timm({**state, "blocks.0.ls1.gamma": np.ones(32)})
    with pytest.raises(KeyError, match="mae_params_from_timm"):
        vit_params_from_timm({**state, "mask_token": np.zeros((1, 1, 16))})


def test_expected_shapes_are_checked():
    state = _timm_state("avg")
    wrong = {**state, "blocks.1.attn.proj.weight": np.zeros((32, 16), np.float32)}
    with pytest.raises(ValueError, match=r"blocks\.1\.attn\.proj\.weight"):
        vit_params_from_timm(wrong, expected=_vit_shapes("avg"))
    with pytest.raises(KeyError, match=r"missing \['norm\.bias', 'norm\.weight'\]"):
        vit_params_from_timm(state, expected=_vit_shapes("token"))


def _mae_release_keys():
    """MAE-release names and torch shapes for the MAE config, written out."""
    d, dd, pp3, n = 32, 16, 4 * 4 * 3, 1 + 16

    def block(prefix, w):
        return {
            f"{prefix}.norm1.weight": (w,), f"{prefix}.norm1.bias": (w,),
            f"{prefix}.attn.qkv.weight": (3 * w, w), f"{prefix}.attn.qkv.bias": (3 * w,),
            f"{prefix}.attn.proj.weight": (w, w), f"{prefix}.attn.proj.bias": (w,),
            f"{prefix}.norm2.weight": (w,), f"{prefix}.norm2.bias": (w,),
            f"{prefix}.mlp.fc1.weight": (4 * w, w), f"{prefix}.mlp.fc1.bias": (4 * w,),
            f"{prefix}.mlp.fc2.weight": (w, 4 * w), f"{prefix}.mlp.fc2.bias": (w,),
        }  # fmt: skip

    return {
        "cls_token": (1, 1, d), "pos_embed": (1, n, d), "mask_token": (1, 1, dd),
        "decoder_pos_embed": (1, n, dd),
        "patch_embed.proj.weight": (d, 3, 4, 4), "patch_embed.proj.bias": (d,),
        **block("blocks.0", d), "norm.weight": (d,), "norm.bias": (d,),
        "decoder_embed.weight": (dd, d), "decoder_embed.bias": (dd,),
        **block("decoder_blocks.0", dd), **block("decoder_blocks.1", dd),
        "decoder_norm.weight": (dd,), "decoder_norm.bias": (dd,),
        "decoder_pred.weight": (pp3, dd), "decoder_pred.bias": (pp3,),
    }  # fmt: skip


def _mae_shapes():
    model = MaskedAutoencoder(**MAE)
    rngs = {"params": jax.random.key(0), "masking": jax.random.key(1)}
    return jax.eval_shape(model.init, rngs, jnp.zeros((1, 16, 16, 3)))["params"]


def _random_mae_release_state():
    rng = np.random.default_rng(0)
    state = {k: rng.normal(size=s).astype(np.float32) for k, s in _mae_release_keys().items()}
    state["pos_embed"] = sincos_2d(32, 4, cls_token=True)[None]
    state["decoder_pos_embed"] = sincos_2d(16, 4, cls_token=True)[None]
    return state


def test_mae_round_trip_is_exact():
    state = _random_mae_release_state()
    params = mae_params_from_timm(state, expected=_mae_shapes())
    assert "pos_embed" not in params and "decoder_pos_embed" not in params
    np.testing.assert_array_equal(
        params["decoder_blocks_1"]["mlp"]["fc1"]["kernel"],
        state["decoder_blocks.1.mlp.fc1.weight"].T,
    )
    back = timm_state_dict_from_mae_params(params, grid_size=4)
    assert {k: v.shape for k, v in back.items()} == _mae_release_keys()
    for key in state:
        np.testing.assert_array_equal(back[key], state[key], err_msg=key)


def test_mae_errors():
    state = _random_mae_release_state()
    learned = {**state, "pos_embed": state["pos_embed"] + 0.1}
    with pytest.raises(ValueError, match="pos_embed is not the fixed 2-D sin-cos"):
        mae_params_from_timm(learned)
    with pytest.raises(ValueError, match="decoder_pos_embed has shape"):
        mae_params_from_timm({**state, "decoder_pos_embed": np.zeros((1, 16, 16))})
    missing = {k: v for k, v in state.items() if k != "mask_token"}
    with pytest.raises(KeyError, match="mask_token"):
        mae_params_from_timm(missing)
    with pytest.raises(KeyError, match=r"fc_norm\.weight"):
        mae_params_from_timm({**state, "fc_norm.weight": np.ones(32)})
