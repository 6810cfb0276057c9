"""The release's training transform (timm), as the host-side speed reference.

LiVT's BFT (like MAE's fine-tuning) builds its training transform with
``timm.data.create_transform``: RandomResizedCrop (scale 0.08-1, bicubic),
horizontal flip, RandAugment ``rand-m9-mstd0.5-inc1``, ToTensor + Normalize,
random erasing p 0.25 with per-pixel random values. It runs per PIL image.

Pillow 13 refuses ``ImageOps.posterize(img, 0)``; timm's PosterizeIncreasing
asks for 0 bits at magnitude >= 10, which ``mstd0.5`` reaches, so the stock
transform raises now and then. ``train_transform`` swaps in a posterize that
keeps the older Pillow result for 0 bits: a black image (every bit cleared).
Our own RandAugment (``randaugment.posterize_increasing``) gives the same.
"""

from __future__ import annotations

import time
from typing import Callable, Sequence

import numpy as np
from PIL import Image, ImageOps

RELEASE_RAND_AUGMENT = "rand-m9-mstd0.5-inc1"


def posterize(img: Image.Image, bits_to_keep: int, **_) -> Image.Image:
    """timm's posterize, with 0 bits giving black (Pillow < 13) instead of an error."""
    if bits_to_keep >= 8:
        return img
    if bits_to_keep <= 0:
        return img.point([0] * 256 * len(img.getbands()))
    return ImageOps.posterize(img, bits_to_keep)


def train_transform(image_size: int, mean: Sequence[float], std: Sequence[float],
                    auto_augment: str = RELEASE_RAND_AUGMENT) -> Callable:
    """The release's BFT transform, PIL RGB image -> normalised float tensor (3, S, S)."""
    from timm.data import create_transform  # pylint: disable=import-outside-toplevel
    from timm.data.auto_augment import RandAugment  # pylint: disable=import-outside-toplevel

    transform = create_transform(image_size, is_training=True, auto_augment=auto_augment,
                                 interpolation="bicubic", re_prob=0.25, re_mode="pixel",
                                 re_count=1, mean=tuple(mean), std=tuple(std))
    rand_augments = [t for t in transform.transforms if isinstance(t, RandAugment)]
    if not rand_augments:
        raise ValueError(f"timm built no RandAugment from auto_augment={auto_augment!r}")
    for op in rand_augments[0].ops:
        if op.name.startswith("Posterize"):
            op.aug_fn = posterize
    return transform


def images_per_second(transform: Callable, images: np.ndarray, warmup: int = 2,
                      clock: Callable[[], float] = time.perf_counter) -> float:
    """Images per second of ``clock``: ``transform`` over uint8 (N, H, W, 3), image by image."""
    for image in images[:warmup]:
        transform(Image.fromarray(image))
    start = clock()
    for image in images:
        transform(Image.fromarray(image))
    return len(images) / (clock() - start)
