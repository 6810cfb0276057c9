"""The model a config describes: the BFT classifier (ViT) and the MGP autoencoder (MAE).

`model_dims` resolves a config's `model` section (a named variant, with any size set > 0
overriding it); `build_vit` / `build_mae` construct the linen modules at a
stage's image size; `abstract_params` gives their parameter shapes without
computing them.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

from livt_jax.models import mae as mae_lib, vit as vit_lib

COMPUTE_DTYPES = ("float32", "bfloat16", "float16")  # model.dtype; parameters stay float32
DIM_KEYS = ("embed_dim", "depth", "num_heads", "patch_size")  # set here or by model.variant


def model_dims(model_cfg: ml_collections.ConfigDict) -> dict[str, int]:
    """embed_dim / depth / num_heads / patch_size: the variant's, unless set (> 0)."""
    dims = vit_lib.vit_kwargs(model_cfg.variant) if model_cfg.variant else {}
    for key in DIM_KEYS:
        if model_cfg[key] > 0:
            dims[key] = model_cfg[key]
        elif key not in dims:
            raise ValueError(f"model.{key}={model_cfg[key]} must be > 0 when model.variant "
                             "is empty")
    return dims


def _common_model_kwargs(model_cfg, in_chans: int, image_size: int) -> dict[str, Any]:
    return dict(img_size=image_size, in_chans=in_chans, mlp_ratio=model_cfg.mlp_ratio,
                attention=model_cfg.attention, pad_tokens_to=model_cfg.pad_tokens_to,
                dtype=jnp.dtype(model_cfg.dtype), **model_dims(model_cfg))


def build_vit(model_cfg: ml_collections.ConfigDict, in_chans: int, num_classes: int,
              image_size: int, drop_path: float) -> vit_lib.VisionTransformer:
    """The ViT classifier of `model_cfg` (a config's `model` section) for
    `image_size`-pixel images of `in_chans` channels."""
    return vit_lib.VisionTransformer(num_classes=num_classes, drop_path_rate=drop_path,
                                     global_pool=model_cfg.global_pool,
                                     **_common_model_kwargs(model_cfg, in_chans, image_size))


def build_mae(model_cfg: ml_collections.ConfigDict, in_chans: int,
              image_size: int) -> mae_lib.MaskedAutoencoder:
    """The MAE of `model_cfg` (encoder as `build_vit`, plus the decoder) at `image_size`."""
    m = model_cfg
    return mae_lib.MaskedAutoencoder(
        decoder_embed_dim=m.decoder_embed_dim, decoder_depth=m.decoder_depth,
        decoder_num_heads=m.decoder_num_heads, mask_ratio=m.mask_ratio,
        norm_pix_loss=m.norm_pix_loss, **_common_model_kwargs(m, in_chans, image_size))


def image_shape(model) -> tuple[int, int, int]:
    """(H, W, C) of the images a built ViT / MAE takes."""
    return (model.img_size, model.img_size, model.in_chans)


def abstract_params(model) -> Any:
    """The model's parameter tree as `jax.ShapeDtypeStruct`s, without computing it."""
    rngs = {"params": jax.random.key(0), "masking": jax.random.key(0)}
    return jax.eval_shape(
        lambda: model.init(rngs, jnp.zeros((1, *image_shape(model))), train=False)["params"])
