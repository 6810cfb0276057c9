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
2. **Blend with a degenerate image**, Pillow's ``Image.blend`` as ImageEnhance
   calls it (Color = Pillow's fixed-point grey, Contrast = ``int(mean grey +
   0.5)``, Brightness = black, Sharpness = 3x3 SMOOTH filter summed in
   Pillow's order, border pixels kept): float32 ``degenerate + factor * (x -
   degenerate)``, clipped and truncated, as Pillow (and the host) do.
3. **Affine warp** (Rotate, ShearX/Y, TranslateX/YRel): Pillow's
   ``Image.transform(AFFINE, BICUBIC or BILINEAR)`` written out: each output
   pixel centre is mapped into the input; outside the image it takes the fill
   colour (the dataset mean, as in timm); inside it reads the 4 x 4 (bicubic:
   Pillow's cubic, Keys a = -1) or 2 x 2 (bilinear) nearest pixel centres,
   edge pixels repeated, in one gather, interpolates along x then y in
   Pillow's form, clips to [0, 255] and truncates, as Pillow does. Float32
   coordinates and sums where Pillow uses float64: a value can truncate one
   grey level apart.

Draws come from ``jax.random`` (not the host's numpy stream), with the host's
distribution (tested over many draws).
"""

from __future__ import annotations

import functools
from typing import Sequence

import jax
import jax.numpy as jnp

from livt_jax.data import randaugment
from livt_jax.data.randaugment import (ENHANCE, GEOMETRIC_OPS, LUMA_FIXED, MAX_LEVEL, MIN_ENHANCE,
                                       POSTERIZE_BITS, ROTATE_DEGREES, SHEAR, SOLARIZE_ADD,
                                       TRANSLATE_REL)

OP_NAMES = tuple(randaugment.OPS)  # op index k of a draw = position in the host's table
_INDEX = {name: k for k, name in enumerate(OP_NAMES)}
NO_OP = -1  # the op index of an image whose layer was not applied
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
    """(B, H, W, 1): Pillow's fixed-point 'L' of RGB (the image itself for one channel)."""
    if x.shape[-1] == 1:
        return x
    luma = (x.astype(jnp.int32) * jnp.asarray(LUMA_FIXED, jnp.int32)).sum(axis=-1, keepdims=True)
    return ((luma + (1 << 15)) >> 16).astype(x.dtype)


def _mean_grey(x: jax.Array) -> jax.Array:
    """(B, 1, 1, 1): ``int(mean grey + 0.5)`` per image, in exact integers."""
    total = _grey(x).astype(jnp.int32).sum(axis=(1, 2, 3), keepdims=True)
    count = x.shape[1] * x.shape[2]
    return ((2 * total + count) // (2 * count)).astype(x.dtype)


def _smooth(x: jax.Array) -> jax.Array:
    """Pillow's SMOOTH filter (``randaugment.smooth_inner``), truncated; border pixels
    unchanged. (B, H, W, C)."""
    return x.at[:, 1:-1, 1:-1].set(jnp.floor(jnp.clip(randaugment.smooth_inner(x), 0, 255)))


def _blend_stage(x: jax.Array, op: jax.Array, level: jax.Array, sign: jax.Array, fill) -> jax.Array:
    """The ImageEnhance ops: ``degenerate + factor * (x - degenerate)``, clipped, truncated."""
    degenerate = _pick(op, jnp.zeros_like(x), {
        "ColorIncreasing": jnp.broadcast_to(_grey(x), x.shape),
        "ContrastIncreasing": _mean_grey(x),
        "SharpnessIncreasing": _smooth(x),
    })  # BrightnessIncreasing: black
    factor = jnp.maximum(MIN_ENHANCE, 1.0 + sign * (level / MAX_LEVEL * ENHANCE))[:, None, None, None]
    blended = jnp.floor(jnp.clip(degenerate + factor * (x - degenerate), 0, 255))
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


def _linear(v: jax.Array, d: jax.Array) -> jax.Array:
    """Pillow's BILINEAR along the tap axis -2 of ``v`` (..., 2, C) at offset ``d`` in [0, 1)."""
    return v[..., 0, :] + (v[..., 1, :] - v[..., 0, :]) * d


def _cubic(v: jax.Array, d: jax.Array) -> jax.Array:
    """Pillow's affine BICUBIC (Keys a = -1, its Horner form) along the tap axis -2 of
    ``v`` (..., 4, C), taps at -1, 0, 1, 2 from the sample, ``d`` in [0, 1)."""
    v1, v2, v3, v4 = (v[..., i, :] for i in range(4))
    p2 = v3 - v1
    p3 = 2 * (v1 - v2) + v3 - v4
    p4 = -v1 + v2 - v3 + v4
    return v2 + d * (p2 + d * (p3 + d * p4))


# interpolation -> (first tap's offset from the sample's floor, taps per axis, 1-D interpolant)
_KERNELS = {"bilinear": (0, 2, _linear), "bicubic": (-1, 4, _cubic)}


def affine_warp(x: jax.Array, matrices: jax.Array, fill: jax.Array,
                interpolation: str = "bicubic") -> jax.Array:
    """Pillow's ``transform(AFFINE, BICUBIC | BILINEAR, fillcolor)`` per image.

    Args:
      x: float32 (B, H, W, C), integer values in [0, 255].
      matrices: (B, 6), see ``affine_matrices``.
      fill: float32 (C,).
      interpolation: one of ``randaugment.INTERPOLATIONS`` (static).
    Returns:
      float32 (B, H, W, C), integer values (clipped and truncated, as Pillow).
    """
    randaugment.check_interpolation(interpolation)
    first, taps, interpolate = _KERNELS[interpolation]
    _, h, w, _ = x.shape
    v, u = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32) + 0.5, jnp.arange(w, dtype=jnp.float32) + 0.5,
                        indexing="ij")
    a, b, c, d, e, f = (m[:, None, None] for m in matrices.T)
    x_in, y_in = a * u + b * v + c, d * u + e * v + f  # (B, H, W)
    inside = (x_in >= 0) & (x_in < w) & (y_in >= 0) & (y_in < h)
    xs, ys = x_in - 0.5, y_in - 0.5
    x0, y0 = jnp.floor(xs), jnp.floor(ys)
    offsets = jnp.arange(first, first + taps, dtype=jnp.int32)
    cols = jnp.clip(x0.astype(jnp.int32)[..., None] + offsets, 0, w - 1)  # (B, H, W, taps)
    rows = jnp.clip(y0.astype(jnp.int32)[..., None] + offsets, 0, h - 1)
    gather = jax.vmap(lambda image, r, q: image[r, q])
    window = gather(x, rows[..., :, None], cols[..., None, :])  # (B, H, W, taps, taps, C)
    along_x = interpolate(window, (xs - x0)[..., None, None])  # (B, H, W, taps, C)
    value = interpolate(along_x, (ys - y0)[..., None])  # (B, H, W, C)
    return jnp.where(inside[..., None], jnp.floor(jnp.clip(value, 0, 255)), fill)


def _affine_stage(x: jax.Array, op: jax.Array, level: jax.Array, sign: jax.Array,
                  fill: jax.Array, interpolation: str = "bicubic") -> jax.Array:
    matrices = affine_matrices(op, level, sign, x.shape[1], x.shape[2])
    warped = affine_warp(x, matrices, fill, interpolation)
    return jnp.where(_is(op, *GEOMETRIC_OPS)[:, None, None, None], warped, x)


# ----------------------------------------------------------------------------- RandAugment

# Each stage (lookup table, blend, warp) maps (x, op, level, sign, fill) -> x. They
# run as steps of a scan (and the layers too) so that XLA materialises x between
# them: fused, a stage's gathers and 3x3 filter recompute the previous stages per
# read (two layers ran ~8x slower on CPU that way; XLA CPU drops
# optimization_barrier before fusion).
def apply_op(x: jax.Array, op: jax.Array, level: jax.Array, sign: jax.Array,
             fill: jax.Array, interpolation: str = "bicubic") -> jax.Array:
    """Applies op ``op[i]`` (index into ``OP_NAMES``; ``NO_OP`` = none) to image i.

    Args:
      x: float32 (B, H, W, C), integer values in [0, 255].
      op: int32 (B,); level: float32 (B,) in [0, 10]; sign: float32 (B,) +-1.
      fill: float32 (C,), integer values: colour of areas a warp uncovers.
      interpolation: the warps' resampling, one of ``randaugment.INTERPOLATIONS`` (static).
    Returns:
      float32 (B, H, W, C), integer values in [0, 255].
    """
    stages = (_lut_stage, _blend_stage, functools.partial(_affine_stage, interpolation=interpolation))

    def stage(x, index):
        return jax.lax.switch(index, stages, x, op, level, sign, fill), None

    return jax.lax.scan(stage, x, jnp.arange(len(stages)))[0]


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
    interpolation: str = "bicubic",
) -> jax.Array:
    """RandAugment on integer-valued (B, H, W, C) images (uint8, or float in [0, 255]).

    ``fill`` is per channel in [0, 1] units (the dataset mean, as in timm);
    ``interpolation`` (``randaugment.INTERPOLATIONS``) is the warps' resampling.
    Returns float32 (B, H, W, C) holding integers in [0, 255].
    """
    x = images.astype(jnp.float32)
    fill_values = jnp.asarray(randaugment.fill_uint8(fill, x.shape[-1]), jnp.float32)

    def layer(x, layer_rng):
        draws = sample_layer(layer_rng, x.shape[0], magnitude, magnitude_std, prob)
        return apply_op(x, *draws, fill_values, interpolation), None

    return jax.lax.scan(layer, x, jax.random.split(rng, num_ops))[0]
