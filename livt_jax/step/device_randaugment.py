"""RandAugment on the accelerator: timm's 'rand-m9-mstd0.5-inc1' over a batch, under jit.

The same 15 ops, draws and levels as the host's ``randaugment.py`` (the
reference this module is tested against): each of ``num_ops`` layers draws per
image an op uniformly from ``randaugment.OPS``, applies it with probability
``prob``, at level ``clip(N(magnitude, magnitude_std), 0, 10)`` with a random
sign. Images stay uint8-valued (float32 holding integers 0..255) between ops,
as on the host.

A vmapped ``lax.switch`` would evaluate all 15 branches on every image anyway,
so one layer is instead three stages, each the identity for images that did
not draw one of its ops, each costing about one pass over the batch:

1. **Lookup table** (AutoContrast, Equalize, Invert, PosterizeIncreasing,
   SolarizeIncreasing, SolarizeAdd): a 256-entry table per image and channel
   (all six tables are (B, C, 256): cheap), applied with one gather. Equalize
   needs the per-channel histogram (one scatter-add). AutoContrast's table is
   computed in exact integer arithmetic; PIL (and the host) use floats, which
   can land one grey level lower where ``255 * (v - lo) / (hi - lo)`` is an
   integer.
2. **Blend with a degenerate image** (PIL ImageEnhance: Color = grey image,
   Contrast = mean grey level, Brightness = black, Sharpness = 3x3 SMOOTH
   filter, border pixels kept), rounded to the nearest integer as on the host.
3. **Affine warp** (Rotate, ShearX/Y, TranslateX/YRel): Pillow's
   ``Image.transform(AFFINE, BILINEAR)`` written out: each output pixel centre
   is mapped into the input; outside the image it takes the fill colour (the
   dataset mean, as in timm), inside it is bilinear between the 4 nearest
   pixel centres (edge pixels repeated) and truncated to an integer, as Pillow
   does. Bilinear only (timm picks bilinear or bicubic at random per op; the
   host uses bilinear too). Float32 coordinates where Pillow uses float64: a
   value can truncate one grey level apart.

Draws come from ``jax.random`` (not the host's numpy stream), with the host's
distribution (tested over many draws).
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp

from livt_jax.data import randaugment
from livt_jax.data.augment import LUMA
from livt_jax.data.randaugment import (ENHANCE, MAX_LEVEL, POSTERIZE_BITS, ROTATE_DEGREES, SHEAR,
                                       SMOOTH, SOLARIZE_ADD, TRANSLATE_REL)

OP_NAMES = tuple(randaugment.OPS)  # op index k of a draw = position in the host's table
_INDEX = {name: k for k, name in enumerate(OP_NAMES)}
NO_OP = -1  # the op index of an image whose layer was not applied
_AFFINE_OPS = ("Rotate", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel")
_BLEND_OPS = ("ColorIncreasing", "ContrastIncreasing", "BrightnessIncreasing", "SharpnessIncreasing")
_LUT_OPS = ("AutoContrast", "Equalize", "Invert", "PosterizeIncreasing", "SolarizeIncreasing",
            "SolarizeAdd")


def _is(op: jax.Array, *names: str) -> jax.Array:
    """bool (B,): whether each image's op is one of ``names``."""
    return jnp.isin(op, jnp.asarray([_INDEX[n] for n in names]))


def _pick(op: jax.Array, default: jax.Array, cases: dict) -> jax.Array:
    """Per image, ``cases[name]`` where ``op`` is that op's index, else ``default``
    (all broadcast against (B, ...) with op as the leading axis)."""
    out = default
    for name, value in cases.items():
        sel = (op == _INDEX[name]).reshape((-1,) + (1,) * (jnp.ndim(out) - 1))
        out = jnp.where(sel, value, out)
    return out


# ----------------------------------------------------------------------------- lookup tables


def _histograms(x: jax.Array) -> jax.Array:
    """Integer-valued (B, H, W, C) -> int32 (B, C, 256) per-channel histograms."""
    b, _, _, c = x.shape
    bins = x.astype(jnp.int32) + (jnp.arange(b * c, dtype=jnp.int32) * 256).reshape(b, 1, 1, c)
    return jnp.zeros(b * c * 256, jnp.int32).at[bins.ravel()].add(1).reshape(b, c, 256)


def _auto_contrast_lut(x: jax.Array) -> jax.Array:
    """(B, C, 256): stretch each channel's [lo, hi] to [0, 255] (identity where flat)."""
    v = jnp.arange(256, dtype=jnp.int32)
    lo = x.min(axis=(1, 2)).astype(jnp.int32)[..., None]
    hi = x.max(axis=(1, 2)).astype(jnp.int32)[..., None]
    stretched = jnp.clip(255 * (v - lo) // jnp.maximum(hi - lo, 1), 0, 255)
    return jnp.where(hi > lo, stretched, v)


def _equalize_lut(x: jax.Array) -> jax.Array:
    """(B, C, 256): PIL ImageOps.equalize's table per image and channel."""
    _, h, w, _ = x.shape
    hist = _histograms(x)
    last_bin = 255 - jnp.argmax(hist[..., ::-1] > 0, axis=-1)
    last_count = jnp.take_along_axis(hist, last_bin[..., None], axis=-1)
    step = (h * w - last_count) // 255
    lut = (step // 2 + jnp.cumsum(hist, axis=-1) - hist) // jnp.maximum(step, 1)
    keep = (step == 0) | ((hist > 0).sum(axis=-1, keepdims=True) <= 1)
    return jnp.where(keep, jnp.arange(256), jnp.minimum(lut, 255))


def _lut_stage(x: jax.Array, op: jax.Array, level: jax.Array, sign, fill) -> jax.Array:
    """The lookup-table ops on integer-valued float32 (B, H, W, C)."""
    b, _, _, c = x.shape
    v = jnp.arange(256, dtype=jnp.int32)
    lvl = level[:, None, None]
    shift = 8 - (POSTERIZE_BITS - (lvl / MAX_LEVEL * POSTERIZE_BITS).astype(jnp.int32))
    threshold = 256 - (lvl / MAX_LEVEL * 256).astype(jnp.int32)
    add = (lvl / MAX_LEVEL * SOLARIZE_ADD).astype(jnp.int32)
    lut = _pick(op, jnp.broadcast_to(v, (b, c, 256)), {
        "AutoContrast": _auto_contrast_lut(x),
        "Equalize": _equalize_lut(x),
        "Invert": 255 - v,
        "PosterizeIncreasing": jnp.where(shift >= 8, 0, (v >> jnp.minimum(shift, 7)) << jnp.minimum(shift, 7)),
        "SolarizeIncreasing": jnp.where(v >= threshold, 255 - v, v),
        "SolarizeAdd": jnp.where(v < 128, jnp.minimum(v + add, 255), v),
    })
    offsets = (jnp.arange(b * c, dtype=jnp.int32) * 256).reshape(b, 1, 1, c)
    looked_up = lut.reshape(-1)[x.astype(jnp.int32) + offsets].astype(x.dtype)
    return jnp.where(_is(op, *_LUT_OPS)[:, None, None, None], looked_up, x)


# ----------------------------------------------------------------------------- blends


def _grey(x: jax.Array) -> jax.Array:
    """(B, H, W, 1): the rounded luma of RGB (the image itself for one channel)."""
    return x if x.shape[-1] == 1 else jnp.round(x @ jnp.asarray(LUMA, x.dtype))[..., None]


def _smooth(x: jax.Array) -> jax.Array:
    """PIL's SMOOTH filter, rounded; border pixels unchanged. (B, H, W, C)."""
    _, h, w, _ = x.shape
    inner = sum(float(SMOOTH[i, j]) * x[:, i:h - 2 + i, j:w - 2 + j] for i in range(3) for j in range(3))
    return x.at[:, 1:-1, 1:-1].set(jnp.round(inner))


def _blend_stage(x: jax.Array, op: jax.Array, level: jax.Array, sign: jax.Array, fill) -> jax.Array:
    """The ImageEnhance ops: ``degenerate + factor * (x - degenerate)``, rounded, clipped."""
    grey = _grey(x)
    degenerate = _pick(op, jnp.zeros_like(x), {
        "ColorIncreasing": jnp.broadcast_to(grey, x.shape),
        "ContrastIncreasing": jnp.floor(grey.mean(axis=(1, 2, 3), keepdims=True) + 0.5),
        "SharpnessIncreasing": _smooth(x),
    })  # BrightnessIncreasing: black
    factor = (1.0 + sign * level / MAX_LEVEL * ENHANCE)[:, None, None, None]
    blended = jnp.clip(jnp.round(degenerate + factor * (x - degenerate)), 0, 255)
    return jnp.where(_is(op, *_BLEND_OPS)[:, None, None, None], blended, x)


# ----------------------------------------------------------------------------- affine warps


def affine_matrices(op: jax.Array, level: jax.Array, sign: jax.Array, height: int,
                    width: int) -> jax.Array:
    """float32 (B, 6) ``(a, b, c, d, e, f)`` per image, as the host's geometric ops build
    them: output pixel centre (u, v) reads input ``(a u + b v + c, d u + e v + f)``.
    Identity for the other ops."""
    amount = sign * level / MAX_LEVEL
    angle = -jnp.radians(amount * ROTATE_DEGREES)
    cos, sin = jnp.cos(angle), jnp.sin(angle)
    cx, cy = width / 2.0, height / 2.0
    zero, one = jnp.zeros_like(level), jnp.ones_like(level)
    rows = lambda *entries: jnp.stack(jnp.broadcast_arrays(*entries), axis=1)  # noqa: E731
    return _pick(op, rows(one, zero, zero, zero, one, zero), {
        "Rotate": rows(cos, sin, cos * -cx + sin * -cy + cx, -sin, cos, -sin * -cx + cos * -cy + cy),
        "ShearX": rows(one, amount * SHEAR, zero, zero, one, zero),
        "ShearY": rows(one, zero, zero, amount * SHEAR, one, zero),
        "TranslateXRel": rows(one, zero, amount * TRANSLATE_REL * width, zero, one, zero),
        "TranslateYRel": rows(one, zero, zero, zero, one, amount * TRANSLATE_REL * height),
    })


def affine_warp(x: jax.Array, matrices: jax.Array, fill: jax.Array) -> jax.Array:
    """Pillow's ``transform(AFFINE, BILINEAR, fillcolor)`` per image.

    Args:
      x: float32 (B, H, W, C), integer values in [0, 255].
      matrices: (B, 6), see ``affine_matrices``.
      fill: float32 (C,).
    Returns:
      float32 (B, H, W, C), integer values (bilinear values truncated, as Pillow).
    """
    _, h, w, _ = x.shape
    v, u = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32) + 0.5, jnp.arange(w, dtype=jnp.float32) + 0.5,
                        indexing="ij")
    a, b, c, d, e, f = (m[:, None, None] for m in matrices.T)
    x_in, y_in = a * u + b * v + c, d * u + e * v + f  # (B, H, W)
    inside = (x_in >= 0) & (x_in < w) & (y_in >= 0) & (y_in < h)
    xs, ys = x_in - 0.5, y_in - 0.5
    x0, y0 = jnp.floor(xs), jnp.floor(ys)
    dx, dy = (xs - x0)[..., None], (ys - y0)[..., None]
    cols = [jnp.clip(x0.astype(jnp.int32) + i, 0, w - 1) for i in (0, 1)]
    rows = [jnp.clip(y0.astype(jnp.int32) + i, 0, h - 1) for i in (0, 1)]
    gather = jax.vmap(lambda image, r, q: image[r, q])
    top_left, top_right = (gather(x, rows[0], q) for q in cols)
    bottom_left, bottom_right = (gather(x, rows[1], q) for q in cols)
    top = top_left + (top_right - top_left) * dx
    bottom = bottom_left + (bottom_right - bottom_left) * dx
    value = jnp.floor(top + (bottom - top) * dy)
    return jnp.where(inside[..., None], value, fill)


def _affine_stage(x: jax.Array, op: jax.Array, level: jax.Array, sign: jax.Array,
                  fill: jax.Array) -> jax.Array:
    warped = affine_warp(x, affine_matrices(op, level, sign, x.shape[1], x.shape[2]), fill)
    return jnp.where(_is(op, *_AFFINE_OPS)[:, None, None, None], warped, x)


# ----------------------------------------------------------------------------- RandAugment

# Each stage maps (x, op, level, sign, fill) -> x. They run as steps of a scan
# (and the layers too) so that XLA materialises x between them: fused, a stage's
# gathers and 3x3 filter recompute the previous stages per read (two layers ran
# ~8x slower on CPU that way; XLA CPU drops optimization_barrier before fusion).
_STAGES = (_lut_stage, _blend_stage, _affine_stage)



def apply_op(x: jax.Array, op: jax.Array, level: jax.Array, sign: jax.Array,
             fill: jax.Array) -> jax.Array:
    """Applies op ``op[i]`` (index into ``OP_NAMES``; ``NO_OP`` = none) to image i.

    Args:
      x: float32 (B, H, W, C), integer values in [0, 255].
      op: int32 (B,); level: float32 (B,) in [0, 10]; sign: float32 (B,) +-1.
      fill: float32 (C,), integer values: colour of areas a warp uncovers.
    Returns:
      float32 (B, H, W, C), integer values in [0, 255].
    """
    def stage(x, index):
        return jax.lax.switch(index, _STAGES, x, op, level, sign, fill), None

    return jax.lax.scan(stage, x, jnp.arange(len(_STAGES)))[0]


def sample_layer(rng: jax.Array, batch: int, magnitude: float, magnitude_std: float,
                 prob: float) -> tuple[jax.Array, jax.Array, jax.Array]:
    """One layer's draws, as ``randaugment.sample_layer``: op int32 (B,) (``NO_OP`` where
    not applied), level float32 (B,) ``clip(N(magnitude, std), 0, 10)``, sign +-1 (B,)."""
    op_rng, apply_rng, level_rng, sign_rng = jax.random.split(rng, 4)
    op = jax.random.randint(op_rng, (batch,), 0, len(OP_NAMES))
    applied = jax.random.bernoulli(apply_rng, prob, (batch,))
    level = jnp.clip(magnitude + magnitude_std * jax.random.normal(level_rng, (batch,)), 0.0, MAX_LEVEL)
    sign = jnp.where(jax.random.bernoulli(sign_rng, 0.5, (batch,)), -1.0, 1.0)
    return jnp.where(applied, op, NO_OP), level, sign


def rand_augment(
    rng: jax.Array, images: jax.Array, *, num_ops: int = 2, magnitude: float = 9.0,
    magnitude_std: float = 0.5, fill: Sequence[float] = (0.485, 0.456, 0.406), prob: float = 0.5,
) -> jax.Array:
    """RandAugment on integer-valued (B, H, W, C) images (uint8, or float in [0, 255]).

    ``fill`` is per channel in [0, 1] units (the dataset mean, as in timm).
    Returns float32 (B, H, W, C) holding integers in [0, 255].
    """
    x = images.astype(jnp.float32)
    fill_values = jnp.asarray(randaugment.fill_uint8(fill, x.shape[-1]), jnp.float32)

    def layer(x, layer_rng):
        draws = sample_layer(layer_rng, x.shape[0], magnitude, magnitude_std, prob)
        return apply_op(x, *draws, fill_values), None

    return jax.lax.scan(layer, x, jax.random.split(rng, num_ops))[0]
