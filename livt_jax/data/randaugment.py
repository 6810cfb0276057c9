"""RandAugment, timm's 'rand-m9-mstd0.5-inc1', vectorised over a uint8 batch.

Each of ``num_ops`` layers picks one op per image (uniformly, with
replacement across layers), applies it with probability 0.5, at a level
``clip(N(magnitude, magnitude_std), 0, 10)`` drawn per image and layer, with
a random sign for the signed ops. Images that drew the same op are processed
together. The op set is timm's increasing set (``_RAND_INCREASING_TRANSFORMS``):

  AutoContrast, Equalize, Invert, Rotate (30 deg * level / 10),
  PosterizeIncreasing (4 - int(level * 0.4) bits), SolarizeIncreasing
  (threshold 256 - int(level * 25.6)), SolarizeAdd (+int(level * 11) below 128),
  Color/Contrast/Brightness/SharpnessIncreasing (factor 1 +- 0.09 * level),
  ShearX/Y (+-0.03 * level), TranslateX/YRel (+-0.045 * level * side).

Geometric ops run through PIL per image, like timm, with the interpolation the
transform is built with (``INTERPOLATIONS``; the release builds timm's with
'bicubic', which is Pillow's affine bicubic, Keys a = -1). Pixel ops are
vectorised numpy with Pillow's arithmetic: the blend ops (Color, Contrast,
Brightness, Sharpness) are ``Image.blend(degenerate, image, factor)``, computed
in float32 and truncated to uint8; grey is Pillow's fixed-point 'L' conversion.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
from PIL import Image

# Op magnitudes at level 10 (timm's _LEVEL_DENOM), defined once for the host and
# the device (device_randaugment.py).
MAX_LEVEL = 10.0
ROTATE_DEGREES = 30.0
SHEAR = 0.3
TRANSLATE_REL = 0.45  # of the image side
ENHANCE = 0.9  # enhancement factor 1 +- ENHANCE
POSTERIZE_BITS = 4  # bits removed at level 10 (from 4 kept at level 0: 'increasing')
SOLARIZE_ADD = 110
MIN_ENHANCE = 0.1  # timm keeps the enhancement factor >= 0.1
SMOOTH = np.array([[1, 1, 1], [1, 5, 1], [1, 1, 1]], dtype=np.float32) / np.float32(13)  # PIL's SMOOTH
LUMA_FIXED = (19595, 38470, 7471)  # Pillow's RGB -> 'L': LUMA in 16.16 fixed point, rounded
INTERPOLATIONS = ("bicubic", "bilinear")  # of the geometric ops (timm's `interpolation`)
GEOMETRIC_OPS = ("Rotate", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel")
_PIL_RESAMPLE = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR}

# An op maps (x uint8 (n, H, W, C), level float (n,) in [0, 10], sign +-1 (n,),
# fill uint8 (C,)) to uint8 (n, H, W, C).
Op = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def _per_image(v: np.ndarray) -> np.ndarray:
    """(n,) -> (n, 1, 1, 1) for broadcasting against images."""
    return np.asarray(v, dtype=np.float32)[:, None, None, None]


def _gray(x: np.ndarray) -> np.ndarray:
    """float32 (n, H, W, 1): Pillow's 'L' of RGB, ``(19595 R + 38470 G + 7471 B + 2^15) >> 16``
    (the image itself for one channel)."""
    if x.shape[-1] == 1:
        return x.astype(np.float32)
    luma = (x.astype(np.int32) * np.array(LUMA_FIXED, np.int32)).sum(axis=-1, keepdims=True)
    return ((luma + (1 << 15)) >> 16).astype(np.float32)


def _blend(degenerate: np.ndarray, x: np.ndarray, factor: np.ndarray) -> np.ndarray:
    """Pillow's ``Image.blend(degenerate, x, factor)`` (ImageEnhance): float32
    ``degenerate + factor * (x - degenerate)``, clipped to [0, 255] and truncated."""
    f = _per_image(factor)
    return np.clip(degenerate + f * (x.astype(np.float32) - degenerate), 0, 255).astype(np.uint8)


def _enhance_factor(level: np.ndarray, sign: np.ndarray) -> np.ndarray:
    """timm's ``max(0.1, 1 +- level / 10 * 0.9)`` (float64, as timm computes it)."""
    return np.maximum(MIN_ENHANCE, 1.0 + sign * (level / MAX_LEVEL * ENHANCE))


# ----------------------------------------------------------------------------- pixel ops


def auto_contrast(x, level, sign, fill):
    """Per image and channel, stretch [min, max] to [0, 255] (PIL's LUT arithmetic)."""
    lo = x.min(axis=(1, 2), keepdims=True).astype(np.float64)
    hi = x.max(axis=(1, 2), keepdims=True).astype(np.float64)
    scale = 255.0 / np.maximum(hi - lo, 1.0)
    out = np.clip(np.floor(x * scale + -lo * scale), 0, 255).astype(np.uint8)
    return np.where(hi > lo, out, x)


def equalize(x, level, sign, fill):
    """PIL ImageOps.equalize per image and channel, through per-row lookup tables."""
    n, h, w, c = x.shape
    rows = np.moveaxis(x, -1, 1).reshape(n * c, h * w).astype(np.int64)
    offsets = (np.arange(n * c) * 256)[:, None]
    hist = np.bincount((rows + offsets).ravel(), minlength=n * c * 256).reshape(n * c, 256)
    last_bin = 255 - np.argmax(hist[:, ::-1] > 0, axis=1)
    last_count = hist[np.arange(n * c), last_bin]
    step = (h * w - last_count) // 255
    lut = (step[:, None] // 2 + np.cumsum(hist, axis=1) - hist) // np.maximum(step, 1)[:, None]
    keep = (step == 0) | ((hist > 0).sum(axis=1) <= 1)
    lut = np.where(keep[:, None], np.arange(256), np.minimum(lut, 255))
    out = np.take_along_axis(lut, rows, axis=1).astype(np.uint8)
    return np.moveaxis(out.reshape(n, c, h, w), 1, -1)


def invert(x, level, sign, fill):
    return 255 - x


def posterize_increasing(x, level, sign, fill):
    """Keep 4 - int(level / 10 * 4) bits."""
    shift = (8 - (POSTERIZE_BITS - (level / MAX_LEVEL * POSTERIZE_BITS).astype(np.int64))).astype(np.uint8)
    s = shift[:, None, None, None]
    return np.where(s >= 8, 0, (x >> np.minimum(s, 7)) << np.minimum(s, 7)).astype(np.uint8)


def solarize_increasing(x, level, sign, fill):
    """Invert pixels >= 256 - int(level / 10 * 256)."""
    threshold = 256 - (level / MAX_LEVEL * 256).astype(np.int64)
    return np.where(x >= threshold[:, None, None, None], 255 - x, x)


def solarize_add(x, level, sign, fill):
    """Add int(level / 10 * 110) to pixels below 128, clipped."""
    add = (level / MAX_LEVEL * SOLARIZE_ADD).astype(np.int64)[:, None, None, None]
    return np.where(x < 128, np.minimum(x.astype(np.int64) + add, 255), x).astype(np.uint8)


def color_increasing(x, level, sign, fill):
    return _blend(_gray(x), x, _enhance_factor(level, sign))


def contrast_increasing(x, level, sign, fill):
    """Blend with the mean grey level, ``int(mean + 0.5)`` (exact in integers)."""
    total = _gray(x).astype(np.int64).sum(axis=(1, 2, 3), keepdims=True)
    count = x.shape[1] * x.shape[2]
    mean = ((2 * total + count) // (2 * count)).astype(np.float32)
    return _blend(mean, x, _enhance_factor(level, sign))


def brightness_increasing(x, level, sign, fill):
    return _blend(np.zeros((), np.float32), x, _enhance_factor(level, sign))


def smooth_inner(x):
    """Pillow's SMOOTH filter before truncation, on the inner pixels of float32 (n, H, W, C)
    grey levels (numpy or jax): ``0.5 +`` the rows below, at and above, each summed left to
    right in float32, as Pillow's C loop does. Returns (n, H - 2, W - 2, C)."""
    _, h, w, _ = x.shape
    total = np.float32(0.5)
    for i in (2, 1, 0):  # Pillow starts at the row below
        window = x[:, i:h - 2 + i]
        total = total + (window[:, :, :w - 2] * SMOOTH[i, 0] + window[:, :, 1:w - 1] * SMOOTH[i, 1]
                         + window[:, :, 2:] * SMOOTH[i, 2])
    return total


def sharpness_increasing(x, level, sign, fill):
    """Blend with Pillow's SMOOTH filter (3x3, truncated; border pixels unchanged)."""
    smooth = x.astype(np.float32)
    smooth[:, 1:-1, 1:-1] = np.floor(np.clip(smooth_inner(smooth), 0, 255))
    return _blend(smooth, x, _enhance_factor(level, sign))


# ----------------------------------------------------------------------------- geometric ops


def check_interpolation(interpolation: str) -> None:
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"unknown RandAugment interpolation {interpolation!r}; expected one of "
                         f"{INTERPOLATIONS}")


def affine(x: np.ndarray, matrices: np.ndarray, fill: np.ndarray, interpolation: str = "bicubic") -> np.ndarray:
    """PIL ``Image.transform(AFFINE)`` per image, ``fill`` outside.

    (Per-image PIL measured ~4-10x faster than a vectorised numpy gather.)

    Args:
      x: uint8 (n, H, W, C).
      matrices: float (n, 6) ``(a, b, c, d, e, f)``: output (u, v) reads input
        ``(a u + b v + c, d u + e v + f)``.
      fill: uint8 (C,).
      interpolation: one of ``INTERPOLATIONS``.
    """
    check_interpolation(interpolation)
    size = (x.shape[2], x.shape[1])
    fill_color = tuple(int(v) for v in fill) if len(fill) > 1 else int(fill[0])
    out = np.empty_like(x)
    for i, (image, matrix) in enumerate(zip(x, matrices)):
        pil = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
        warped = pil.transform(size, Image.AFFINE, tuple(float(v) for v in matrix), _PIL_RESAMPLE[interpolation],
                               fillcolor=fill_color)
        out[i] = np.asarray(warped).reshape(out.shape[1:])
    return out


# The geometric ops take the interpolation as a keyword (rand_augment passes it).


def rotate(x, level, sign, fill, interpolation="bicubic"):
    """PIL ``Image.rotate(30 * level / 10 * sign)`` about the centre (counter-clockwise)."""
    h, w = x.shape[1:3]
    angle = -np.radians(sign * level / MAX_LEVEL * ROTATE_DEGREES)
    cos, sin = np.cos(angle), np.sin(angle)
    cx, cy = w / 2.0, h / 2.0
    c = cos * -cx + sin * -cy + cx
    f = -sin * -cx + cos * -cy + cy
    return affine(x, np.stack([cos, sin, c, -sin, cos, f], axis=1), fill, interpolation)


def _matrices(n: int, b=0.0, c=0.0, d=0.0, f=0.0) -> np.ndarray:
    """(n, 6) affine rows ``(1, b, c, d, 1, f)`` (shears b/d, translations c/f)."""
    one, zero = np.ones(n), np.zeros(n)
    return np.stack([one, zero + b, zero + c, zero + d, one, zero + f], axis=1)


def shear_x(x, level, sign, fill, interpolation="bicubic"):
    return affine(x, _matrices(len(x), b=sign * level / MAX_LEVEL * SHEAR), fill, interpolation)


def shear_y(x, level, sign, fill, interpolation="bicubic"):
    return affine(x, _matrices(len(x), d=sign * level / MAX_LEVEL * SHEAR), fill, interpolation)


def translate_x_rel(x, level, sign, fill, interpolation="bicubic"):
    return affine(x, _matrices(len(x), c=sign * level / MAX_LEVEL * TRANSLATE_REL * x.shape[2]), fill, interpolation)


def translate_y_rel(x, level, sign, fill, interpolation="bicubic"):
    return affine(x, _matrices(len(x), f=sign * level / MAX_LEVEL * TRANSLATE_REL * x.shape[1]), fill, interpolation)


OPS: dict[str, Op] = {
    "AutoContrast": auto_contrast,
    "Equalize": equalize,
    "Invert": invert,
    "Rotate": rotate,
    "PosterizeIncreasing": posterize_increasing,
    "SolarizeIncreasing": solarize_increasing,
    "SolarizeAdd": solarize_add,
    "ColorIncreasing": color_increasing,
    "ContrastIncreasing": contrast_increasing,
    "BrightnessIncreasing": brightness_increasing,
    "SharpnessIncreasing": sharpness_increasing,
    "ShearX": shear_x,
    "ShearY": shear_y,
    "TranslateXRel": translate_x_rel,
    "TranslateYRel": translate_y_rel,
}


def fill_uint8(fill: Sequence[float], channels: int) -> np.ndarray:
    """Per-channel fill in [0, 1] units -> uint8 (channels,), rounded to nearest."""
    return np.broadcast_to(np.rint(np.asarray(fill, np.float32) * 255), (channels,)).astype(np.uint8)


def sample_layer(
    rng: np.random.Generator, batch: int, magnitude: float, magnitude_std: float, prob: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One RandAugment layer's draws per image: op index into ``OPS`` (int64), applied
    (bool, p ``prob``), level ``clip(N(magnitude, magnitude_std), 0, 10)`` and sign +-1
    (float64); (batch,) each."""
    choice = rng.integers(len(OPS), size=batch)
    applied = rng.random(batch) < prob
    level = np.clip(magnitude + magnitude_std * rng.standard_normal(batch), 0.0, MAX_LEVEL)
    sign = np.where(rng.random(batch) < 0.5, -1.0, 1.0)
    return choice, applied, level, sign


def rand_augment(
    images: np.ndarray,
    rng: np.random.Generator,
    num_ops: int = 2,
    magnitude: float = 9.0,
    magnitude_std: float = 0.5,
    fill: Sequence[float] = (0.485, 0.456, 0.406),
    prob: float = 0.5,
    interpolation: str = "bicubic",
) -> np.ndarray:
    """RandAugment on uint8 (B, H, W, C); returns a new uint8 array of the same shape.

    ``fill`` (per channel, [0, 1] units; the dataset mean as in timm) colours
    the areas geometric ops uncover; ``interpolation`` (``INTERPOLATIONS``) is
    how they resample.
    """
    check_interpolation(interpolation)
    x = np.array(images, dtype=np.uint8, copy=True)
    fill_u8 = fill_uint8(fill, x.shape[-1])
    for _ in range(num_ops):
        choice, applied, level, sign = sample_layer(rng, len(x), magnitude, magnitude_std, prob)
        for k, (name, op) in enumerate(OPS.items()):
            sel = np.flatnonzero(applied & (choice == k))
            if sel.size:
                kwargs = {"interpolation": interpolation} if name in GEOMETRIC_OPS else {}
                x[sel] = op(x[sel], level[sel], sign[sel], fill_u8, **kwargs)
    return x
