"""Batch-level numpy augmentations (torchvision/timm semantics).

Images are uint8 NHWC until ``normalize``; float32 after it. A "batch of
images" argument may be a uint8 array (B, H, W, C) or a sequence of B uint8
(H_i, W_i, C) arrays of different sizes (split lists); the resizing functions
turn either into one array (B, S, S, C). Random parameters are drawn for the
whole batch at once from one ``np.random.Generator``; resampling runs per
image through PIL (bicubic, as torchvision on PIL images), which measured
faster than dense interpolation matrices at 224 px and as fast at 32 px.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from PIL import Image

# The augmentation constants, defined once: the device path (device_augment.py,
# device_randaugment.py) and RandAugment (randaugment.py) import them from here.
AUG_KINDS = ("mgp", "bft")  # as the release: MGP crop + flip; BFT adds RandAugment and erasing
RRC_RATIO = (3 / 4, 4 / 3)  # RandomResizedCrop aspect ratio range (torchvision)
ERASE_AREA = (0.02, 1 / 3)  # RandomErasing area fraction range (timm)
ERASE_LOG_RATIO = (math.log(0.3), math.log(1 / 0.3))  # RandomErasing log aspect range
ATTEMPTS = 10  # box draws before the fallback (crop) or no erasing
LUMA = (0.299, 0.587, 0.114)  # ITU-R 601-2 luma, PIL's 'L' conversion
_LUMA = np.array(LUMA, dtype=np.float32)

Images = np.ndarray | Sequence[np.ndarray]


def image_sizes(images: Images) -> tuple[np.ndarray, np.ndarray]:
    """(heights, widths), int64 (B,) each."""
    if isinstance(images, np.ndarray):
        b, h, w = images.shape[:3]
        return np.full(b, h, np.int64), np.full(b, w, np.int64)
    return (
        np.array([im.shape[0] for im in images], np.int64),
        np.array([im.shape[1] for im in images], np.int64),
    )


def sample_crop_boxes(
    heights: np.ndarray,
    widths: np.ndarray,
    rng: np.random.Generator,
    scale: tuple[float, float],
    ratio: tuple[float, float] = RRC_RATIO,
) -> np.ndarray:
    """RandomResizedCrop boxes, torchvision's rule vectorised over the batch.

    Up to 10 attempts per image: area fraction ~ U(scale), log aspect ratio ~
    U(log ratio); the first attempt that fits is used; otherwise a centre crop
    with the ratio clamped to ``ratio``.

    Returns:
      int64 (B, 4): top, left, height, width.
    """
    b = len(heights)
    area = (heights * widths)[:, None]
    target = area * rng.uniform(scale[0], scale[1], (b, ATTEMPTS))
    aspect = np.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1]), (b, ATTEMPTS)))
    w = np.rint(np.sqrt(target * aspect)).astype(np.int64)
    h = np.rint(np.sqrt(target / aspect)).astype(np.int64)
    fits = (w > 0) & (h > 0) & (w <= widths[:, None]) & (h <= heights[:, None])
    first = np.argmax(fits, axis=1)
    rows = np.arange(b)
    h, w = h[rows, first], w[rows, first]
    top = (rng.random(b) * (heights - h + 1)).astype(np.int64)
    left = (rng.random(b) * (widths - w + 1)).astype(np.int64)
    boxes = np.stack([top, left, h, w], axis=1)
    fallback = ~fits.any(axis=1)
    boxes[fallback] = _centre_boxes(heights[fallback], widths[fallback], ratio)
    return boxes


def _centre_boxes(heights: np.ndarray, widths: np.ndarray, ratio: tuple[float, float]) -> np.ndarray:
    """Centre crops with aspect ratio clamped to ``ratio`` (RRC fallback), int64 (B, 4)."""
    in_ratio = widths / heights
    w = np.where(in_ratio > ratio[1], np.rint(heights * ratio[1]), widths).astype(np.int64)
    h = np.where(in_ratio < ratio[0], np.rint(widths / ratio[0]), heights).astype(np.int64)
    return np.stack([(heights - h) // 2, (widths - w) // 2, h, w], axis=1)


def resize_boxes(images: Images, boxes: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Crops ``boxes`` (B, 4: top, left, h, w), then resizes each crop to ``size``
    (h, w), bicubic (torchvision's ``resized_crop`` on PIL images).

    Returns:
      uint8 (B, size[0], size[1], C).
    """
    out = []
    for image, (top, left, h, w) in zip(images, boxes):
        crop = np.ascontiguousarray(image[top : top + h, left : left + w])
        pil = Image.fromarray(crop[..., 0] if crop.shape[-1] == 1 else crop)
        resized = np.asarray(pil.resize((size[1], size[0]), Image.BICUBIC))
        out.append(resized.reshape(size[0], size[1], crop.shape[-1]))
    return np.stack(out)


def random_resized_crop(
    images: Images, rng: np.random.Generator, size: int, scale: tuple[float, float], ratio=RRC_RATIO
) -> np.ndarray:
    """RandomResizedCrop to (size, size), bicubic: uint8 (B, size, size, C)."""
    boxes = sample_crop_boxes(*image_sizes(images), rng, scale, ratio)
    return resize_boxes(images, boxes, (size, size))


def resize_shorter(image: np.ndarray, target: int) -> np.ndarray:
    """Resizes uint8 (H, W, C) so its shorter side is ``target`` (bicubic; the longer
    side becomes ``int(target * long / short)``, as torchvision's ``Resize(int)``)."""
    h, w = image.shape[:2]
    new_h, new_w = (target, int(target * w / h)) if h <= w else (int(target * h / w), target)
    return resize_boxes([image], np.array([[0, 0, h, w]]), (new_h, new_w))[0]


def center_crop(image: np.ndarray, size: int) -> np.ndarray:
    """Central (size, size) window of (H, W, C), offsets rounded as torchvision."""
    h, w = image.shape[:2]
    if h < size or w < size:
        raise ValueError(f"cannot centre-crop {size}x{size} from a {h}x{w} image")
    top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))
    return image[top : top + size, left : left + size]


def eval_resize_side(size: int, crop_pct: float) -> int:
    """The shorter side (pixels) the eval transform resizes to before its ``size`` crop."""
    return int(size / crop_pct) if size <= 224 else size


def eval_resize_crop(images: Images, size: int, crop_pct: float) -> np.ndarray:
    """Eval transform: resize the shorter side to ``eval_resize_side(size, crop_pct)``
    (bicubic; ``int(size / crop_pct)`` when ``size <= 224``, else ``size``); then
    centre crop ``size``.

    Returns:
      uint8 (B, size, size, C).
    """
    resize_to = eval_resize_side(size, crop_pct)
    return np.stack([center_crop(resize_shorter(image, resize_to), size) for image in images])


def random_hflip(images: np.ndarray, rng: np.random.Generator, prob: float = 0.5) -> np.ndarray:
    """Flips each image left-right with probability ``prob``; same shape and dtype."""
    flip = rng.random(len(images)) < prob
    out = images.copy()
    out[flip] = images[flip][:, :, ::-1]
    return out


def match_channels(images: np.ndarray, in_chans: int) -> np.ndarray:
    """uint8 (B, H, W, C) -> (B, H, W, in_chans): gray repeated to RGB, RGB to luma."""
    c = images.shape[-1]
    if c == in_chans:
        return images
    if c == 1 and in_chans == 3:
        return np.repeat(images, 3, axis=-1)
    if c == 3 and in_chans == 1:
        return np.rint(images.astype(np.float32) @ _LUMA)[..., None].astype(np.uint8)
    raise ValueError(f"cannot convert images with {c} channels to in_chans={in_chans}")


def normalize(images: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """uint8 (B, H, W, C) -> float32 ``(x / 255 - mean) / std``; mean/std in [0, 1] units."""
    b, h, w, c = images.shape
    if len(mean) != c or len(std) != c:
        raise ValueError(f"mean {tuple(mean)} / std {tuple(std)} do not match {c} channels")
    # Rows of W * C values: numpy's inner loops then run long instead of over C.
    scale = np.tile(1.0 / (np.asarray(std, np.float32) * 255.0), w)
    shift = np.tile(np.asarray(mean, np.float32) / np.asarray(std, np.float32), w)
    out = np.multiply(images.reshape(b * h, w * c), scale, dtype=np.float32)
    out -= shift
    return out.reshape(b, h, w, c)


def random_erasing(images: np.ndarray, rng: np.random.Generator, prob: float) -> np.ndarray:
    """timm RandomErasing, mode 'pixel', one box: with probability ``prob`` a box of
    area U(0.02, 1/3) and log aspect U(log 0.3, log 1/0.3) (first of 10 attempts
    that fits) is filled with N(0, 1) values per pixel and channel.

    Args:
      images: float32 (B, H, W, C), normalised.
    Returns:
      float32 (B, H, W, C), a new array.
    """
    b, height, width, c = images.shape
    target = height * width * rng.uniform(*ERASE_AREA, (b, ATTEMPTS))
    aspect = np.exp(rng.uniform(*ERASE_LOG_RATIO, (b, ATTEMPTS)))
    h = np.rint(np.sqrt(target * aspect)).astype(np.int64)
    w = np.rint(np.sqrt(target / aspect)).astype(np.int64)
    fits = (h < height) & (w < width)
    first = np.argmax(fits, axis=1)
    rows = np.arange(b)
    h, w = h[rows, first], w[rows, first]
    erase = (rng.random(b) < prob) & fits.any(axis=1)
    top = (rng.random(b) * (height - h + 1)).astype(np.int64)
    left = (rng.random(b) * (width - w + 1)).astype(np.int64)
    out = images.copy()
    for i in np.flatnonzero(erase):
        out[i, top[i] : top[i] + h[i], left[i] : left[i] + w[i]] = rng.standard_normal((h[i], w[i], c), np.float32)
    return out
