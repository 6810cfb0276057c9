"""Masked autoencoder (MGP stage, as the LiVT/MAE releases define it) reusing the ViT pieces.

Parameters: ``patch_embed``, ``cls_token``, ``blocks_{i}``, ``norm`` (encoder,
named as in the ViT), ``mask_token``, ``decoder_embed``, ``decoder_blocks_{i}``,
``decoder_norm``, ``decoder_pred``. The 2-D sin-cos position embeddings are
constants, not parameters.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from livt_jax.models.pos_embed import sincos_2d
from livt_jax.models.vit import (LN_EPS, Dtype, Encoder, PatchEmbed, check_images, dense_init,
                                  grid_size)

NORM_PIX_EPS = 1e-6


def patchify(images: jax.Array, patch_size: int) -> jax.Array:
    """``(B, H, W, C) -> (B, L, p*p*C)``; patches row-major, each ordered (row, col, channel)."""
    b, h, w, c = images.shape
    p = patch_size
    if h % p or w % p:
        raise ValueError(f"Image size {h}x{w} is not a multiple of patch_size={p}.")
    x = images.reshape(b, h // p, p, w // p, p, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b, (h // p) * (w // p), p * p * c)


def unpatchify(patches: jax.Array, patch_size: int) -> jax.Array:
    """Inverse of ``patchify`` for a square grid: ``(B, L, p*p*C) -> (B, H, W, C)``."""
    b, n, dim = patches.shape
    p = patch_size
    g = int(round(n**0.5))
    if g * g != n or dim % (p * p):
        raise ValueError(
            f"unpatchify needs a square number of patches and p*p*C features; got "
            f"L={n}, features={dim}, patch_size={p}."
        )
    c = dim // (p * p)
    x = patches.reshape(b, g, g, p, p, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b, g * p, g * p, c)


def num_kept(num_patches: int, mask_ratio: float) -> int:
    """Visible tokens per sample: ``int(L * (1 - mask_ratio))``."""
    if not 0.0 <= mask_ratio < 1.0:
        raise ValueError(f"mask_ratio={mask_ratio} must be in [0, 1).")
    return int(num_patches * (1 - mask_ratio))


def random_masking(
    rng: jax.Array, x: jax.Array, mask_ratio: float
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Per-sample random masking by argsort of uniform noise.

    Args:
      rng: PRNG key.
      x: tokens ``(B, L, D)``.
      mask_ratio: fraction of tokens removed.

    Returns:
      ``x_kept (B, K, D)`` with ``K = int(L * (1 - mask_ratio))``, the tokens at
      ``ids_shuffle[:, :K]`` (``ids_shuffle = argsort(noise)``); ``mask (B, L)``
      float, 1 = removed, in the original order; ``ids_restore (B, L)`` =
      ``argsort(ids_shuffle)``.
    """
    b, n, _ = x.shape
    keep = num_kept(n, mask_ratio)
    noise = jax.random.uniform(rng, (b, n))
    ids_shuffle = jnp.argsort(noise, axis=1)
    ids_restore = jnp.argsort(ids_shuffle, axis=1)
    x_kept = jnp.take_along_axis(x, ids_shuffle[:, :keep, None], axis=1)
    mask = (ids_restore >= keep).astype(jnp.float32)
    return x_kept, mask, ids_restore


def mae_loss(
    images: jax.Array, pred: jax.Array, mask: jax.Array, patch_size: int, norm_pix_loss: bool
) -> jax.Array:
    """Mean over removed patches of the per-patch MSE, in float32.

    ``images (B, H, W, C)``, ``pred (B, L, p*p*C)``, ``mask (B, L)`` (1 = removed).
    With ``norm_pix_loss`` each target patch is ``(t - mean) / sqrt(var + 1e-6)``
    with the unbiased (ddof=1) variance.
    """
    target = patchify(images.astype(jnp.float32), patch_size)
    if norm_pix_loss:
        mean = target.mean(axis=-1, keepdims=True)
        var = target.var(axis=-1, keepdims=True, ddof=1)
        target = (target - mean) / jnp.sqrt(var + NORM_PIX_EPS)
    per_patch = jnp.mean((pred.astype(jnp.float32) - target) ** 2, axis=-1)
    return jnp.sum(per_patch * mask) / jnp.sum(mask)


class MaskedAutoencoder(nn.Module):
    """MAE: ``__call__(images (B, H, W, C), *, train) -> (loss, pred (B, L, p*p*C), mask (B, L))``.

    Masking draws from the 'masking' RNG stream in both modes (the loss is
    defined on masked patches); the MAE has no other stochastic layer, so
    ``train`` only selects the mode passed on to the blocks.
    """

    img_size: int = 224
    patch_size: int = 16
    in_chans: int = 3
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    decoder_embed_dim: int = 512
    decoder_depth: int = 8
    decoder_num_heads: int = 16
    mlp_ratio: float = 4.0
    mask_ratio: float = 0.75
    norm_pix_loss: bool = True
    attention: str = "xla"
    pad_tokens_to: int = 0
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, images: jax.Array, *, train: bool = True):
        grid = check_images(images, self.img_size, self.patch_size, self.in_chans,
                            "MaskedAutoencoder")
        if num_kept(grid * grid, self.mask_ratio) == grid * grid:
            raise ValueError(
                f"mask_ratio={self.mask_ratio} removes none of the {grid * grid} patches; "
                "the loss is defined on removed patches."
            )
        latent, mask, ids_restore = self._encode(images, train=train)
        pred = self._decode(latent, ids_restore, train=train)
        loss = mae_loss(images, pred, mask, self.patch_size, self.norm_pix_loss)
        return loss, pred, mask

    def _encode(self, images: jax.Array, *, train: bool):
        """``images -> (latent (B, 1+K, D), mask (B, L), ids_restore (B, L))``."""
        d = self.embed_dim
        x = PatchEmbed(self.patch_size, d, self.dtype, name="patch_embed")(images)
        pos = sincos_2d(d, grid_size(self.img_size, self.patch_size))  # constant, no cls row
        x = x + jnp.asarray(pos, x.dtype)[None]
        x, mask, ids_restore = random_masking(self.make_rng("masking"), x, self.mask_ratio)
        # The cls row of the sin-cos table is zero, so cls + pos[0] = cls.
        cls = self.param("cls_token", nn.initializers.normal(0.02), (1, 1, d))
        cls = jnp.broadcast_to(cls.astype(x.dtype), (x.shape[0], 1, d))
        x = jnp.concatenate([cls, x], axis=1)
        x = self._body(self.depth, self.num_heads, "blocks")(x, train=train)
        x = nn.LayerNorm(epsilon=LN_EPS, dtype=self.dtype, name="norm")(x)
        return x, mask, ids_restore

    def _decode(self, latent: jax.Array, ids_restore: jax.Array, *, train: bool) -> jax.Array:
        """``latent (B, 1+K, D)``, ``ids_restore (B, L)`` -> ``pred (B, L, p*p*C)``."""
        d = self.decoder_embed_dim
        b, n = ids_restore.shape
        dense = dict(kernel_init=dense_init, bias_init=nn.initializers.zeros, dtype=self.dtype)
        x = nn.Dense(d, name="decoder_embed", **dense)(latent)
        mask_token = self.param("mask_token", nn.initializers.normal(0.02), (1, 1, d))
        fill = jnp.broadcast_to(mask_token.astype(x.dtype), (b, n + 1 - x.shape[1], d))
        patches = jnp.concatenate([x[:, 1:], fill], axis=1)
        patches = jnp.take_along_axis(patches, ids_restore[:, :, None], axis=1)
        x = jnp.concatenate([x[:, :1], patches], axis=1)
        pos = sincos_2d(d, grid_size(self.img_size, self.patch_size), cls_token=True)
        x = x + jnp.asarray(pos, x.dtype)[None]
        x = self._body(self.decoder_depth, self.decoder_num_heads, "decoder_blocks")(
            x, train=train
        )
        x = nn.LayerNorm(epsilon=LN_EPS, dtype=self.dtype, name="decoder_norm")(x)
        out_dim = self.patch_size**2 * self.in_chans
        return nn.Dense(out_dim, name="decoder_pred", **dense)(x)[:, 1:]

    def _body(self, depth: int, num_heads: int, prefix: str) -> Encoder:
        """Transformer blocks ``{prefix}_{i}`` living at this module's top level."""
        body = Encoder(
            depth,
            num_heads,
            self.mlp_ratio,
            attention=self.attention,
            pad_tokens_to=self.pad_tokens_to,
            prefix=prefix,
            dtype=self.dtype,
            name=prefix,
        )
        nn.share_scope(self, body)
        return body
