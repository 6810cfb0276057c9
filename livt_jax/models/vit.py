"""timm-compatible Vision Transformer in flax.linen (as the LiVT/MAE releases define it).

Images are NHWC, tokens ``(B, N, D)``. Parameters are float32; ``dtype`` is
the compute dtype. Parameter names mirror timm so that conversion is a rename
plus a transpose (see ``timm_convert.py``):

  patch_embed/proj/{kernel,bias}, cls_token (1,1,D), pos_embed (1,N+1,D),
  blocks_{i}/{norm1, attn/qkv, attn/proj, norm2, mlp/fc1, mlp/fc2},
  fc_norm + head (global_pool='avg') or norm + head (global_pool='token').
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

Dtype = Any

# variant -> (embed_dim, depth, num_heads, patch_size)
VARIANTS = {
    "Ti": (192, 12, 3, 16),
    "S": (384, 12, 6, 16),
    "B": (768, 12, 12, 16),
    "L": (1024, 24, 16, 16),
    "H": (1280, 32, 16, 14),
}

ATTENTION_IMPLEMENTATIONS = ("xla", "cudnn")
GLOBAL_POOLS = ("avg", "token")
LN_EPS = 1e-6

# MAE/timm: xavier-uniform for every dense; the patch-embed conv uses the fans
# of its flattened (p*p*C -> D) view, i.e. no receptive-field factor.
dense_init = nn.initializers.xavier_uniform()
patch_embed_init = nn.initializers.xavier_uniform(in_axis=(0, 1, 2), out_axis=3)


def vit_kwargs(variant: str) -> dict[str, int]:
    """Returns ``embed_dim``, ``depth``, ``num_heads``, ``patch_size`` of a named variant."""
    if variant not in VARIANTS:
        raise ValueError(f"Unknown ViT variant {variant!r}; expected one of {sorted(VARIANTS)}.")
    embed_dim, depth, num_heads, patch_size = VARIANTS[variant]
    return dict(embed_dim=embed_dim, depth=depth, num_heads=num_heads, patch_size=patch_size)


def trunc_normal_init(std: float, bound: float = 2.0) -> nn.initializers.Initializer:
    """torch's ``trunc_normal_(std=std)``: normal(0, std) truncated to [-bound, bound].

    The bounds are absolute (as in torch/timm), so for small ``std`` this is a
    plain normal distribution with standard deviation ``std``.
    """

    if std <= 0:
        raise ValueError(f"Truncated-normal init needs std > 0, got {std}.")

    def init(key, shape, dtype=jnp.float32):
        return std * jax.random.truncated_normal(key, -bound / std, bound / std, shape, dtype)

    return init


def check_choice(name: str, value: Any, choices: tuple) -> None:
    """Raises a ValueError naming ``name`` if ``value`` is not one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not supported; expected one of {choices}.")


def grid_size(img_size: int, patch_size: int) -> int:
    """Patches per side; raises if ``img_size`` is not a multiple of ``patch_size``."""
    if patch_size <= 0 or img_size <= 0 or img_size % patch_size:
        raise ValueError(
            f"img_size={img_size} must be a positive multiple of patch_size={patch_size}."
        )
    return img_size // patch_size


def check_images(images: jax.Array, img_size: int, patch_size: int, in_chans: int,
                 model_name: str) -> int:
    """Raises naming the expected shape unless images are (B, S, S, C); returns the grid side."""
    grid = grid_size(img_size, patch_size)
    expected = (grid * patch_size, grid * patch_size, in_chans)
    if images.ndim != 4 or images.shape[1:] != expected:
        raise ValueError(
            f"{model_name} expects images (B, {expected[0]}, {expected[1]}, {expected[2]}) "
            f"for img_size={img_size}, in_chans={in_chans}; got {images.shape}."
        )
    return grid


class PatchEmbed(nn.Module):
    """Non-overlapping p x p patches -> tokens: ``(B, H, W, C) -> (B, (H/p)*(W/p), D)``."""

    patch_size: int
    embed_dim: int
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, images: jax.Array) -> jax.Array:
        if images.ndim != 4:
            raise ValueError(f"PatchEmbed expects NHWC images, got shape {images.shape}.")
        p = self.patch_size
        b, h, w, _ = images.shape
        if h % p or w % p:
            raise ValueError(f"Image size {h}x{w} is not a multiple of patch_size={p}.")
        x = nn.Conv(
            self.embed_dim,
            (p, p),
            strides=(p, p),
            padding="VALID",
            kernel_init=patch_embed_init,
            bias_init=nn.initializers.zeros,
            dtype=self.dtype,
            name="proj",
        )(images)
        return x.reshape(b, -1, self.embed_dim)


class Attention(nn.Module):
    """Multi-head self-attention with a fused ``qkv`` dense: ``(B, N, D) -> (B, N, D)``.

    ``kv_lengths`` (int32 ``(B,)``) marks keys at positions >= length as padding
    that no query attends to.
    """

    num_heads: int
    attention: str = "xla"
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, kv_lengths: jax.Array | None = None) -> jax.Array:
        b, n, d = x.shape
        if d % self.num_heads:
            raise ValueError(f"embed_dim={d} is not divisible by num_heads={self.num_heads}.")
        dense = dict(kernel_init=dense_init, bias_init=nn.initializers.zeros, dtype=self.dtype)
        qkv = nn.Dense(3 * d, name="qkv", **dense)(x)
        # [q | k | v], each split into heads of d // num_heads consecutive dims.
        qkv = qkv.reshape(b, n, 3, self.num_heads, d // self.num_heads)
        out = jax.nn.dot_product_attention(
            qkv[:, :, 0],
            qkv[:, :, 1],
            qkv[:, :, 2],
            key_value_seq_lengths=kv_lengths,
            implementation=self.attention,
        )
        return nn.Dense(d, name="proj", **dense)(out.reshape(b, n, d))


class Mlp(nn.Module):
    """``fc1`` (D -> hidden) -> exact (erf) GELU -> ``fc2`` (hidden -> D)."""

    hidden_dim: int
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        dense = dict(kernel_init=dense_init, bias_init=nn.initializers.zeros, dtype=self.dtype)
        y = nn.Dense(self.hidden_dim, name="fc1", **dense)(x)
        y = nn.gelu(y, approximate=False)
        return nn.Dense(x.shape[-1], name="fc2", **dense)(y)


class DropPath(nn.Module):
    """Stochastic depth per sample: ``x / keep * floor(keep + U)``, RNG stream 'dropout'."""

    rate: float

    @nn.compact
    def __call__(self, x: jax.Array, *, deterministic: bool) -> jax.Array:
        if deterministic or self.rate == 0.0:
            return x
        keep = 1.0 - self.rate
        shape = (x.shape[0],) + (1,) * (x.ndim - 1)
        u = jax.random.uniform(self.make_rng("dropout"), shape, dtype=jnp.float32)
        return x / keep * jnp.floor(keep + u).astype(x.dtype)


class Block(nn.Module):
    """Pre-norm transformer block: ``x + DropPath(Attn(LN(x)))``, ``x + DropPath(MLP(LN(x)))``."""

    num_heads: int
    mlp_ratio: float = 4.0
    drop_path: float = 0.0
    attention: str = "xla"
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(
        self, x: jax.Array, kv_lengths: jax.Array | None = None, *, deterministic: bool = True
    ) -> jax.Array:
        """``(B, N, D) -> (B, N, D)``."""
        drop_path = DropPath(self.drop_path)
        y = nn.LayerNorm(epsilon=LN_EPS, dtype=self.dtype, name="norm1")(x)
        y = Attention(self.num_heads, self.attention, self.dtype, name="attn")(y, kv_lengths)
        x = x + drop_path(y, deterministic=deterministic)
        y = nn.LayerNorm(epsilon=LN_EPS, dtype=self.dtype, name="norm2")(x)
        y = Mlp(int(x.shape[-1] * self.mlp_ratio), self.dtype, name="mlp")(y)
        return x + drop_path(y, deterministic=deterministic)


def pad_tokens(x: jax.Array, multiple: int) -> tuple[jax.Array, jax.Array | None]:
    """Zero-pads ``(B, N, D)`` tokens to a multiple of ``multiple`` along N.

    Returns the padded tokens and the true lengths (int32 ``(B,)``) to pass as
    ``key_value_seq_lengths``, or ``None`` when ``multiple <= 1`` or N already fits.
    """
    if multiple < 0:
        raise ValueError(f"pad_tokens_to={multiple} must be >= 0 (0 or 1 = no padding).")
    b, n, _ = x.shape
    padded = -(-n // max(multiple, 1)) * max(multiple, 1)
    if padded == n:
        return x, None
    x = jnp.pad(x, ((0, 0), (0, padded - n), (0, 0)))
    return x, jnp.full((b,), n, dtype=jnp.int32)


class Encoder(nn.Module):
    """Transformer body shared by the ViT and the MAE: ``(B, N, D) -> (B, N, D)``.

    Pads the tokens once to a multiple of ``pad_tokens_to`` (cuDNN attention
    needs it), runs ``depth`` blocks named ``{prefix}_{i}`` with padded keys
    masked out, and strips the padding. Drop path grows linearly from 0 to
    ``drop_path_rate`` over the blocks. Use it through ``nn.share_scope`` so that
    the block parameters sit at the parent's top level.
    """

    depth: int
    num_heads: int
    mlp_ratio: float = 4.0
    drop_path_rate: float = 0.0
    attention: str = "xla"
    pad_tokens_to: int = 0
    prefix: str = "blocks"
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        check_choice("attention", self.attention, ATTENTION_IMPLEMENTATIONS)
        n = x.shape[1]
        x, kv_lengths = pad_tokens(x, self.pad_tokens_to)
        for i, rate in enumerate(np.linspace(0.0, self.drop_path_rate, self.depth)):
            x = Block(
                self.num_heads,
                self.mlp_ratio,
                float(rate),
                self.attention,
                self.dtype,
                name=f"{self.prefix}_{i}",
            )(x, kv_lengths, deterministic=not train)
        return x[:, :n]


class VisionTransformer(nn.Module):
    """ViT classifier: ``__call__(images (B, H, W, C), *, train) -> logits (B, num_classes)``.

    ``global_pool='avg'``: mean of the patch tokens (cls excluded) -> ``fc_norm``
    -> ``head``; ``'token'``: ``norm`` -> cls token -> ``head``. With
    ``num_classes=0`` the pooled features ``(B, D)`` are returned. Drop path
    (train only) draws from the 'dropout' RNG stream.
    """

    num_classes: int = 1000
    img_size: int = 224
    patch_size: int = 16
    in_chans: int = 3
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    drop_path_rate: float = 0.0
    global_pool: str = "avg"
    head_init_std: float = 2e-5
    attention: str = "xla"
    pad_tokens_to: int = 0
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, images: jax.Array, *, train: bool) -> jax.Array:
        check_choice("global_pool", self.global_pool, GLOBAL_POOLS)
        if self.num_classes < 0:
            raise ValueError(f"num_classes={self.num_classes} must be >= 0 (0 = no head).")
        grid = check_images(images, self.img_size, self.patch_size, self.in_chans,
                            "VisionTransformer")
        d = self.embed_dim
        x = PatchEmbed(self.patch_size, d, self.dtype, name="patch_embed")(images)
        cls = self.param("cls_token", nn.initializers.normal(0.02), (1, 1, d))
        pos = self.param("pos_embed", trunc_normal_init(0.02), (1, grid * grid + 1, d))
        cls = jnp.broadcast_to(cls, (x.shape[0], 1, d)).astype(x.dtype)
        x = jnp.concatenate([cls, x], axis=1) + pos.astype(x.dtype)
        x = self._encoder()(x, train=train)
        x = self._pool(x)
        if self.num_classes == 0:
            return x
        head = nn.Dense(
            self.num_classes,
            kernel_init=trunc_normal_init(self.head_init_std),
            bias_init=nn.initializers.zeros,
            dtype=self.dtype,
            name="head",
        )
        return head(x).astype(jnp.float32)

    def _encoder(self) -> Encoder:
        encoder = Encoder(
            self.depth,
            self.num_heads,
            self.mlp_ratio,
            self.drop_path_rate,
            self.attention,
            self.pad_tokens_to,
            dtype=self.dtype,
            name="encoder",
        )
        nn.share_scope(self, encoder)
        return encoder

    def _pool(self, x: jax.Array) -> jax.Array:
        """``(B, 1 + N, D) -> (B, D)``."""
        if self.global_pool == "avg":
            x = jnp.mean(x[:, 1:].astype(jnp.float32), axis=1)
            return nn.LayerNorm(epsilon=LN_EPS, dtype=self.dtype, name="fc_norm")(x)
        return nn.LayerNorm(epsilon=LN_EPS, dtype=self.dtype, name="norm")(x[:, 0])
