"""Training augmentation on the accelerator, over a batch of same-size uint8 images.

Opt-in with ``config.data.device_augment = True``: the train loader then yields
``{'image': uint8 (b, H, W, C), 'label'}`` read from a fixed-size source (a
cache built with ``--resize-shorter R``, i.e. R x R centre crops), and the
train step calls ``device_train_transform`` on the device. A GPU host then
only has to read bytes; see docs/PERFORMANCE.md (a host cannot decode and augment
3,000+ img/s on its CPUs).

What runs here, per image, all jittable with static shapes, vectorised over
the batch (no loop over images), the same steps as ``pipeline.train_images``:
  RandomResizedCrop (torchvision's box rule) -> horizontal flip ->
  channel matching -> RandAugment (bft; ``device_randaugment``) ->
  normalise -> RandomErasing (timm, 'pixel' mode; bft).

Choices, and how they differ from the host pipeline (``augment.py``):
- **Resampling** uses ``jax.image.scale_and_translate`` with the crop box
  mapped onto the output grid, method 'bicubic' (Keys a = -0.5) and
  ``antialias=True`` by default. That is Pillow's bicubic, which is what the
  release uses (torchvision transforms applied to PIL images) and what the host
  pipeline uses; torch's tensor bicubic (a = -0.75, no antialiasing) is *not*
  what the release sees. ``antialias`` only matters when a crop is larger than
  the output (downscaling); from a cache of side ~S/0.875 that is a factor of
  at most ~1.14. ``antialias=False`` is available.
- **Crop borders**: the resampling kernel is confined to the crop box and its
  weights renormalised there, exactly as resizing the cropped array (PIL's
  ``crop`` then ``resize``): outside pixels are zeroed and the result is
  divided by the resampled box indicator (the kernel is separable, so this is
  the per-axis renormalisation).
- Values are clipped to [0, 255] after resampling but not rounded to integers
  (Pillow rounds to uint8; the difference is below one grey level), except
  before RandAugment, whose ops need integer grey levels: there they are
  rounded to nearest, as Pillow does.
- Channel matching (grey -> RGB repeat, RGB -> luma) happens after the crop,
  in float (the host rounds luma to uint8).

Randomness comes from one ``jax.random`` key per call; it is not the host
pipeline's numpy stream, so batches are not bit-identical between the paths.
The train step derives that key from (seed, step, process) and each device
augments its own shard of the batch.
"""

from __future__ import annotations

import math
from typing import Callable, Optional, Sequence

import jax
import jax.numpy as jnp

from livt_jax.step import device_randaugment
from livt_jax.data.augment import ATTEMPTS, AUG_KINDS, ERASE_AREA, ERASE_LOG_RATIO, LUMA, RRC_RATIO

METHODS = ("bicubic", "linear")


# ----------------------------------------------------------------------------- crop boxes


def _first_fitting(fits: jax.Array, *values: jax.Array) -> tuple[jax.Array, ...]:
    """Per row, the values of the first attempt where ``fits`` (B, A) holds (attempt 0 if none)."""
    first = jnp.argmax(fits, axis=1)
    return tuple(jnp.take_along_axis(v, first[:, None], axis=1)[:, 0] for v in values)


def _uniform_offset(rng: jax.Array, room: jax.Array) -> jax.Array:
    """Uniform integers in [0, room] (room >= 0), int32 (B,): ``randint(0, room + 1)``."""
    u = jax.random.uniform(rng, room.shape)
    return jnp.minimum(jnp.floor(u * (room + 1).astype(jnp.float32)).astype(jnp.int32), room)


def _centre_box(height: int, width: int, ratio: tuple[float, float]) -> tuple[int, int, int, int]:
    """torchvision's fallback: whole image, aspect ratio clamped to ``ratio``, centred."""
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        h, w = height, int(round(height * max(ratio)))
    else:
        h, w = height, width
    return (height - h) // 2, (width - w) // 2, h, w


def _box_sides(area_rng, ratio_rng, shape, image_area: int, area_scale, log_ratio):
    """Draws box sides `(round(sqrt(A·r)), round(sqrt(A/r)))`, int32 `shape` each, with
    area A ~ U(area_scale)·image_area and r = exp(U(log_ratio))."""
    target = image_area * jax.random.uniform(area_rng, shape, minval=area_scale[0],
                                             maxval=area_scale[1])
    aspect = jnp.exp(jax.random.uniform(ratio_rng, shape, minval=log_ratio[0],
                                        maxval=log_ratio[1]))
    return (jnp.round(jnp.sqrt(target * aspect)).astype(jnp.int32),
            jnp.round(jnp.sqrt(target / aspect)).astype(jnp.int32))


def sample_crop_params(
    rng: jax.Array, batch: int, height: int, width: int, scale: Sequence[float],
    ratio: Sequence[float] = RRC_RATIO, attempts: int = ATTEMPTS,
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """RandomResizedCrop boxes, torchvision's ``get_params`` vectorised over a batch.

    Per image, up to ``attempts`` draws of area ``U(scale) * H * W`` and
    aspect ratio ``exp(U(log ratio))``; ``w = round(sqrt(area * aspect))``,
    ``h = round(sqrt(area / aspect))``; the first draw with ``0 < w <= W`` and
    ``0 < h <= H`` wins, placed uniformly (``top ~ randint(0, H - h + 1)``).
    If none fits: the centre crop with the aspect ratio clamped to ``ratio``.

    Args:
      rng: a jax PRNG key.
      batch, height, width: static ints (the images' shape).
    Returns:
      (top, left, crop_h, crop_w), int32 (batch,) each.
    """
    area_rng, ratio_rng, top_rng, left_rng = jax.random.split(rng, 4)
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    w, h = _box_sides(area_rng, ratio_rng, (batch, attempts), height * width, scale, log_ratio)
    fits = (w > 0) & (h > 0) & (w <= width) & (h <= height)
    h, w = _first_fitting(fits, h, w)
    top = _uniform_offset(top_rng, height - h)
    left = _uniform_offset(left_rng, width - w)
    fallback = ~fits.any(axis=1)
    c_top, c_left, c_h, c_w = _centre_box(height, width, (min(ratio), max(ratio)))
    pick = lambda centre, drawn: jnp.where(fallback, jnp.int32(centre), drawn)  # noqa: E731
    return pick(c_top, top), pick(c_left, left), pick(c_h, h), pick(c_w, w)


# ----------------------------------------------------------------------------- resampling


def _box_indicator(size: int, start: jax.Array, length: jax.Array) -> jax.Array:
    idx = jnp.arange(size)
    return ((idx >= start) & (idx < start + length)).astype(jnp.float32)


def crop_and_resize(
    image: jax.Array, top: jax.Array, left: jax.Array, crop_h: jax.Array, crop_w: jax.Array,
    out_size: int | tuple[int, int], *, method: str = "bicubic", antialias: bool = True,
) -> jax.Array:
    """One image (H, W, C) -> float32 (out_h, out_w, C): its box resized, as resizing
    ``image[top:top+crop_h, left:left+crop_w]`` with ``jax.image.resize``.

    The box is a traced value; the box is mapped onto the output grid with
    ``jax.image.scale_and_translate`` (scale = out / crop, translation =
    -start * scale) and the kernel is confined to the box (see module doc).
    """
    if method not in METHODS:
        raise ValueError(f"unknown resize method {method!r}; expected one of {METHODS}")
    out_h, out_w = (out_size, out_size) if isinstance(out_size, int) else out_size
    height, width, channels = image.shape
    scale = jnp.stack([out_h / crop_h.astype(jnp.float32), out_w / crop_w.astype(jnp.float32)])
    translation = -jnp.stack([top.astype(jnp.float32), left.astype(jnp.float32)]) * scale
    rows = _box_indicator(height, top, crop_h)
    cols = _box_indicator(width, left, crop_w)
    masked = image.astype(jnp.float32) * rows[:, None, None] * cols[None, :, None]
    resampled = jax.image.scale_and_translate(
        masked, (out_h, out_w, channels), (0, 1), scale, translation, method=method,
        antialias=antialias)
    # Each axis's weights were normalised over the whole image; dividing by the
    # in-box weight mass renormalises them over the box alone.
    row_mass = jax.image.scale_and_translate(rows, (out_h,), (0,), scale[:1], translation[:1],
                                             method=method, antialias=antialias)
    col_mass = jax.image.scale_and_translate(cols, (out_w,), (0,), scale[1:], translation[1:],
                                             method=method, antialias=antialias)
    mass = row_mass[:, None, None] * col_mass[None, :, None]
    return resampled / jnp.where(jnp.abs(mass) > 1e-6, mass, 1.0)


def random_resized_crop_flip(
    rng: jax.Array, images_uint8: jax.Array, *, out_size: int, scale: Sequence[float],
    ratio: Sequence[float] = RRC_RATIO, hflip: bool = True, method: str = "bicubic",
    antialias: bool = True,
) -> jax.Array:
    """RandomResizedCrop (torchvision's box rule) then a random horizontal flip (p 0.5).

    Args:
      rng: a jax PRNG key.
      images_uint8: (B, H, W, C), uint8 (any real dtype works).
    Returns:
      float32 (B, out_size, out_size, C) in [0, 255].
    """
    b, height, width, _ = images_uint8.shape
    crop_rng, flip_rng = jax.random.split(rng)
    top, left, crop_h, crop_w = sample_crop_params(crop_rng, b, height, width, scale, ratio)
    resize = lambda im, t, l, h, w: crop_and_resize(  # noqa: E731
        im, t, l, h, w, out_size, method=method, antialias=antialias)
    out = jnp.clip(jax.vmap(resize)(images_uint8, top, left, crop_h, crop_w), 0.0, 255.0)
    if hflip:
        flip = jax.random.bernoulli(flip_rng, 0.5, (b,))
        out = jnp.where(flip[:, None, None, None], out[:, :, ::-1], out)
    return out


# ----------------------------------------------------------------------------- pixel ops


def match_channels(images: jax.Array, in_chans: int) -> jax.Array:
    """(B, H, W, C) float -> (B, H, W, in_chans): grey repeated to RGB, RGB to luma."""
    c = images.shape[-1]
    if c == in_chans:
        return images
    if c == 1 and in_chans == 3:
        return jnp.repeat(images, 3, axis=-1)
    if c == 3 and in_chans == 1:
        return (images @ jnp.asarray(LUMA, images.dtype))[..., None]
    raise ValueError(f"cannot convert images with {c} channels to in_chans={in_chans}")


def normalize(images: jax.Array, mean: Sequence[float], std: Sequence[float]) -> jax.Array:
    """[0, 255] values -> float32 ``(x / 255 - mean) / std``; mean/std in [0, 1] units."""
    c = images.shape[-1]
    if len(mean) != c or len(std) != c:
        raise ValueError(f"mean {tuple(mean)} / std {tuple(std)} do not match {c} channels")
    mean = jnp.asarray(mean, jnp.float32)
    std = jnp.asarray(std, jnp.float32)
    return (images.astype(jnp.float32) / 255.0 - mean) / std


def random_erasing(rng: jax.Array, images: jax.Array, prob: float) -> jax.Array:
    """timm RandomErasing, mode 'pixel', one box per image, on normalised images.

    With probability ``prob`` per image: up to 10 draws of area
    ``U(0.02, 1/3) * H * W`` and ``aspect = exp(U(log 0.3, log 1/0.3))``,
    ``h = round(sqrt(area * aspect))``, ``w = round(sqrt(area / aspect))``;
    the first with ``h < H`` and ``w < W`` is placed uniformly and filled with
    N(0, 1) per pixel and channel; no fitting draw means no erasing.
    """
    b, height, width, _ = images.shape
    area_rng, ratio_rng, top_rng, left_rng, apply_rng, fill_rng = jax.random.split(rng, 6)
    h, w = _box_sides(area_rng, ratio_rng, (b, ATTEMPTS), height * width, ERASE_AREA,
                      ERASE_LOG_RATIO)
    fits = (h < height) & (w < width)
    h, w = _first_fitting(fits, h, w)
    erase = jax.random.bernoulli(apply_rng, prob, (b,)) & fits.any(axis=1)
    top = _uniform_offset(top_rng, jnp.maximum(height - h, 0))
    left = _uniform_offset(left_rng, jnp.maximum(width - w, 0))
    rows = jnp.arange(height)[None, :]
    cols = jnp.arange(width)[None, :]
    in_rows = (rows >= top[:, None]) & (rows < (top + h)[:, None])
    in_cols = (cols >= left[:, None]) & (cols < (left + w)[:, None])
    box = in_rows[:, :, None] & in_cols[:, None, :] & erase[:, None, None]
    noise = jax.random.normal(fill_rng, images.shape, images.dtype)
    return jnp.where(box[..., None], noise, images)


# ----------------------------------------------------------------------------- the transform


def device_train_transform(
    rng: jax.Array, images_uint8: jax.Array, data_cfg, aug_cfg, *, method: str = "bicubic",
    antialias: bool = True,
) -> jax.Array:
    """The training augmentation of ``pipeline.train_images``, on device.

    Args:
      rng: a jax PRNG key.
      images_uint8: (B, H, W, C) uint8, one size for the batch.
      data_cfg: ``config.data`` (``image_size``, ``in_chans``, ``mean``, ``std``;
        ``mean`` is also RandAugment's fill colour, as on the host).
      aug_cfg: ``config.aug`` (``kind``, ``scale_min``, ``hflip``, and for 'bft'
        ``randaug_num_ops``, ``randaug_magnitude``, ``randaug_magnitude_std``,
        ``interpolation``, ``random_erasing_prob``).
    Returns:
      float32 (B, S, S, in_chans), normalised.
    """
    if aug_cfg.kind not in AUG_KINDS:
        raise ValueError(f"unknown aug.kind {aug_cfg.kind!r}; expected one of {AUG_KINDS}")
    bft = aug_cfg.kind == "bft"
    crop_rng, randaug_rng, erase_rng = jax.random.split(rng, 3)
    x = random_resized_crop_flip(
        crop_rng, images_uint8, out_size=int(data_cfg.image_size),
        scale=(float(aug_cfg.scale_min), 1.0), hflip=bool(aug_cfg.hflip), method=method,
        antialias=antialias)
    x = match_channels(x, int(data_cfg.in_chans))
    if bft and aug_cfg.randaug_num_ops > 0:
        x = device_randaugment.rand_augment(
            randaug_rng, jnp.round(x), num_ops=int(aug_cfg.randaug_num_ops),
            magnitude=float(aug_cfg.randaug_magnitude),
            magnitude_std=float(aug_cfg.randaug_magnitude_std), fill=data_cfg.mean,
            interpolation=str(aug_cfg.interpolation))
    x = normalize(x, data_cfg.mean, data_cfg.std)
    if bft and aug_cfg.random_erasing_prob > 0:
        x = random_erasing(erase_rng, x, float(aug_cfg.random_erasing_prob))
    return x


def make_batch_transform(config) -> Optional[Callable[[jax.Array, jax.Array], jax.Array]]:
    """``(rng, images_uint8) -> float32 normalised images`` for the ``{'data', 'aug'}``
    view of one stage when ``data.device_augment`` is on, else None."""
    if not config.data.device_augment:
        return None
    data_cfg, aug_cfg = config.data, config.aug
    return lambda rng, images: device_train_transform(rng, images, data_cfg, aug_cfg)


def wrap_loss_fn(loss_fn: Callable, config) -> Callable:
    """``loss_fn(params, batch, rng)`` that first augments ``batch['image']`` (uint8) on
    the device when ``config.data.device_augment`` is on; ``loss_fn`` itself otherwise.

    ``config`` is the ``{'data', 'aug'}`` view of the stage. The augmentation key
    is split off ``rng``, so the wrapped loss sees a different key than unwrapped.
    Under gradient accumulation each micro-batch gets its own key (the train
    step folds the micro-batch index into ``rng``).
    """
    transform = make_batch_transform(config)
    if transform is None:
        return loss_fn

    def augmented_loss_fn(params, batch, rng):
        rng, aug_rng = jax.random.split(rng)
        return loss_fn(params, {**batch, "image": transform(aug_rng, batch["image"])}, rng)

    return augmented_loss_fn
