"""MGP -> BFT: initialise a ViT classifier from a pretrained MAE encoder (as the LiVT/MAE releases define it)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from livt_jax.models.pos_embed import resize_pos_embed, sincos_2d

_BLOCK = re.compile(r"blocks_\d+")


def _block_names(params: Mapping[str, Any]) -> list[str]:
    return sorted((k for k in params if _BLOCK.fullmatch(k)), key=lambda k: int(k[7:]))


def _shapes(tree: Any) -> Any:
    return jax.tree_util.tree_map(np.shape, tree)


def _check_compatible(mae_params: Mapping[str, Any], vit_params: Mapping[str, Any]) -> None:
    mae_blocks, vit_blocks = _block_names(mae_params), _block_names(vit_params)
    if len(mae_blocks) != len(vit_blocks):
        raise ValueError(
            f"Depth mismatch: the MAE encoder has {len(mae_blocks)} blocks, the ViT "
            f"{len(vit_blocks)}."
        )
    for name in ["patch_embed", "cls_token"] + vit_blocks:
        if _shapes(mae_params[name]) != _shapes(vit_params[name]):
            raise ValueError(
                f"Shape mismatch in {name!r}: MAE {_shapes(mae_params[name])}, "
                f"ViT {_shapes(vit_params[name])} (different width, patch size or MLP ratio?)."
            )


def vit_params_from_mae(
    mae_params: Mapping[str, Any],
    vit_params: Mapping[str, Any],
    *,
    mae_grid: int,
    vit_grid: int,
) -> dict[str, Any]:
    """Copies the MAE encoder into fresh ViT params.

    Args:
      mae_params: ``MaskedAutoencoder`` params.
      vit_params: freshly initialised ``VisionTransformer`` params (same width,
        depth, heads and patch size); its ``fc_norm``/``head`` are kept.
      mae_grid: patches per side the MAE was trained at.
      vit_grid: patches per side of the ViT (``img_size // patch_size``).

    Returns:
      New ViT params: ``patch_embed``, ``cls_token``, ``blocks_*`` from the MAE;
      ``pos_embed (1, 1 + vit_grid**2, D)`` = the MAE's sin-cos table (cls row
      zeros) resized with torch's bicubic when the grids differ, now a
      trainable parameter; everything else from ``vit_params``. The decoder,
      ``mask_token`` and the MAE's final ``norm`` are dropped, except that a
      token-pool ViT (which has a ``norm``) takes the MAE's ``norm`` as MAE's
      own fine-tuning does.
    """
    _check_compatible(mae_params, vit_params)
    dim = np.shape(vit_params["cls_token"])[-1]
    want = (1, 1 + vit_grid * vit_grid, dim)
    if np.shape(vit_params["pos_embed"]) != want:
        raise ValueError(
            f"vit_grid={vit_grid} implies pos_embed {want}, but the ViT has "
            f"{np.shape(vit_params['pos_embed'])}."
        )
    pos = sincos_2d(dim, mae_grid, cls_token=True)[None]
    if mae_grid != vit_grid:
        pos = resize_pos_embed(pos, vit_grid)
    copied = ["patch_embed", "cls_token"] + _block_names(vit_params)
    if "norm" in vit_params:
        copied.append("norm")
    new = dict(vit_params)
    new.update({name: mae_params[name] for name in copied})
    new["pos_embed"] = jnp.asarray(pos)
    return new
