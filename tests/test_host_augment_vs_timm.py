"""RandAugment against timm's own ops, pixel by pixel; posterize with 0 bits (Pillow 13
refuses it); the host benchmark beside timm's transform.

Every op of the release's ``rand-m9-mstd0.5-inc1`` runs through timm's ``AugmentOp``
(probability 1, magnitude std 0, the sign forced) on natural-looking 224-px colour
images, and through our host (``randaugment``) and device (``device_randaugment``)
ops at the same level and sign: at most 1% of values may be more than one grey level
apart and the mean difference must stay within 0.1 grey level.
"""

from __future__ import annotations

import functools
import subprocess
import sys
from pathlib import Path
from unittest import mock

import numpy as np
import PIL
import pytest
from PIL import Image, ImageFilter, ImageOps

from livt_jax.data import randaugment

ROOT = Path(__file__).resolve().parents[1]
FILL = np.array([124, 116, 104], np.uint8)
# Per image: (level, sign). Level 9 is the release's magnitude; both signs, and one lower level.
LEVELS = np.array([9.0, 9.0, 5.5])
SIGNS = np.array([1.0, -1.0, 1.0])
MAX_FAR = 0.01  # share of values more than one grey level from timm's
MAX_BIAS = 0.1  # |mean(ours - timm)| in grey levels


def natural_images(n: int = len(LEVELS), size: int = 224, seed: int = 0) -> np.ndarray:
    """uint8 (n, size, size, 3) images with what photos have: smooth colour gradients
    (sums of sinusoids), blurred noise at two scales, sharp-edged shapes, fine texture;
    values kept inside [16, 240] so that AutoContrast has something to stretch."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    images = []
    for _ in range(n):
        image = np.zeros((size, size, 3))
        for _ in range(4):
            fx, fy, phase = rng.uniform(0.5, 4, 2).tolist() + [rng.uniform(0, 2 * np.pi)]
            image += rng.uniform(-40, 40, 3) * np.sin(2 * np.pi * (fx * x + fy * y) + phase)[..., None]
        for cells, amplitude in ((8, 60), (32, 25)):
            noise = Image.fromarray(rng.integers(0, 256, (cells, cells, 3), dtype=np.uint8))
            blurred = noise.resize((size, size), Image.BICUBIC).filter(ImageFilter.GaussianBlur(2))
            image += amplitude * (np.asarray(blurred) / 255.0 - 0.5)
        image += 128
        for _ in range(5):  # rectangles and discs with sharp edges
            cx, cy, r = rng.uniform(0.1, 0.9), rng.uniform(0.1, 0.9), rng.uniform(0.04, 0.2)
            inside = ((x - cx) ** 2 + (y - cy) ** 2 < r**2) if rng.random() < 0.5 else (
                (np.abs(x - cx) < r) & (np.abs(y - cy) < r * rng.uniform(0.3, 1)))
            image[inside] = 0.3 * image[inside] + 0.7 * rng.uniform(16, 240, 3)
        image += rng.normal(0, 4, image.shape)  # texture
        images.append(np.clip(np.rint(image), 16, 240).astype(np.uint8))
    return np.stack(images)


@functools.lru_cache(maxsize=None)
def images_224() -> np.ndarray:
    return natural_images()


@functools.lru_cache(maxsize=None)
def timm_outputs(name: str, interpolation: str) -> np.ndarray:
    """uint8 (n, 224, 224, 3): timm's ``AugmentOp(name)`` on each of ``images_224()`` at its
    level and sign, as the release builds it (fill = FILL, the given interpolation)."""
    from timm.data import auto_augment  # pylint: disable=import-outside-toplevel

    from livt_jax.data import timm_transform  # pylint: disable=import-outside-toplevel

    resample = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR}[interpolation]
    hparams = dict(img_mean=tuple(int(v) for v in FILL), interpolation=resample, magnitude_std=0)
    outputs = []
    for image, level, sign in zip(images_224(), LEVELS, SIGNS):
        op = auto_augment.AugmentOp(name, prob=1.0, magnitude=float(level), hparams=hparams)
        if name.startswith("Posterize"):
            op.aug_fn = timm_transform.posterize
        with mock.patch.object(auto_augment, "_randomly_negate", lambda v, s=sign: v if s > 0 else -v):
            outputs.append(np.asarray(op(Image.fromarray(image))))
    return np.stack(outputs)


def host_outputs(name: str, interpolation: str) -> np.ndarray:
    kwargs = {"interpolation": interpolation} if name in randaugment.GEOMETRIC_OPS else {}
    return randaugment.OPS[name](images_224(), LEVELS, SIGNS, FILL, **kwargs)


@functools.lru_cache(maxsize=None)
def _jitted_apply_op():
    import jax  # pylint: disable=import-outside-toplevel

    from livt_jax.data import device_randaugment  # pylint: disable=import-outside-toplevel

    return jax.jit(device_randaugment.apply_op, static_argnames="interpolation")


def device_outputs(name: str, interpolation: str) -> np.ndarray:
    import jax.numpy as jnp  # pylint: disable=import-outside-toplevel

    from livt_jax.data import device_randaugment  # pylint: disable=import-outside-toplevel

    op = jnp.full(len(LEVELS), device_randaugment.OP_NAMES.index(name), jnp.int32)
    out = _jitted_apply_op()(jnp.asarray(images_224(), jnp.float32), op, jnp.asarray(LEVELS, jnp.float32),
                             jnp.asarray(SIGNS, jnp.float32), jnp.asarray(FILL, jnp.float32),
                             interpolation=interpolation)
    return np.asarray(out)


def agreement(ours: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    """(share of values more than one grey level apart, mean difference in grey levels)."""
    diff = ours.astype(np.float64) - reference.astype(np.float64)
    return float((np.abs(diff) > 1).mean()), float(diff.mean())


CASES = [(name, "bicubic") for name in randaugment.OPS] + [
    (name, "bilinear") for name in randaugment.GEOMETRIC_OPS]


@pytest.mark.torch
@pytest.mark.parametrize("path", ["host", "device"])
@pytest.mark.parametrize("name, interpolation", CASES)
def test_each_op_matches_timm(name, interpolation, path):
    pytest.importorskip("timm")
    reference = timm_outputs(name, interpolation)
    assert not np.array_equal(reference, images_224())  # the op does something here
    ours = (host_outputs if path == "host" else device_outputs)(name, interpolation)
    assert ours.shape == reference.shape
    np.testing.assert_array_equal(ours, np.round(ours))  # integer grey levels
    far, bias = agreement(ours, reference)
    assert far <= MAX_FAR and abs(bias) < MAX_BIAS, (far, bias)


@pytest.mark.torch
def test_rounding_instead_of_truncating_would_fail():
    """The bound can fail: Pillow's blends truncate; rounding them is 0.4-0.5 level high."""
    pytest.importorskip("timm")
    reference = timm_outputs("BrightnessIncreasing", "bicubic")
    factor = np.maximum(0.1, 1 + SIGNS * LEVELS / 10 * 0.9)[:, None, None, None]
    rounded = np.clip(np.rint(images_224() * factor), 0, 255)
    assert agreement(rounded, reference)[1] > MAX_BIAS
    np.testing.assert_array_equal(host_outputs("BrightnessIncreasing", "bicubic"), reference)


@pytest.mark.torch
def test_bilinear_warps_differ_from_the_release_bicubic():
    pytest.importorskip("timm")
    far, bias = agreement(host_outputs("Rotate", "bilinear"), timm_outputs("Rotate", "bicubic"))
    assert far > MAX_FAR or abs(bias) > MAX_BIAS


def test_interpolation_is_checked():
    with pytest.raises(ValueError, match="interpolation 'nearest'; expected one of"):
        randaugment.rand_augment(images_224()[:1], np.random.default_rng(0), interpolation="nearest")


# ----------------------------------------------------------------------------- posterize, benchmark


def old_pillow_posterize(x: np.ndarray, bits: int) -> np.ndarray:
    """Pillow < 13: keep the top ``bits`` bits (0 bits: every bit cleared)."""
    return x & np.uint8((0xFF << (8 - bits)) & 0xFF)


def test_our_posterize_follows_the_level_rule_down_to_zero_bits():
    x = np.random.default_rng(0).integers(0, 256, (11, 6, 6, 3), dtype=np.uint8)
    levels = np.arange(11.0)  # timm: 4 - int(level / 10 * 4) bits, 0 bits from level 10
    out = randaugment.OPS["PosterizeIncreasing"](x, levels, np.ones(11), FILL)
    for i, level in enumerate(levels):
        bits = 4 - int(level / 10 * 4)
        np.testing.assert_array_equal(out[i], old_pillow_posterize(x[i], bits))
        if bits > 0:  # where Pillow 13 still accepts the call, it agrees
            np.testing.assert_array_equal(out[i], np.asarray(ImageOps.posterize(Image.fromarray(x[i]), bits)))
    assert not out[10].any()


def test_rand_augment_at_the_top_magnitude_runs():
    images = np.random.default_rng(1).integers(0, 256, (60, 12, 12, 3), dtype=np.uint8)
    out = randaugment.rand_augment(images, np.random.default_rng(0), num_ops=3, magnitude=10,
                                   magnitude_std=0.0, prob=1.0)
    assert out.shape == images.shape and out.dtype == np.uint8


def posterize_op(transform):
    from timm.data.auto_augment import RandAugment

    rand_augment = next(t for t in transform.transforms if isinstance(t, RandAugment))
    op = next(o for o in rand_augment.ops if o.name == "PosterizeIncreasing")
    op.prob, op.magnitude, op.magnitude_std = 1.0, 10, 0
    return op


@pytest.mark.torch
def test_timm_transform_copes_with_zero_bits():
    pytest.importorskip("timm")
    from timm.data import create_transform

    from livt_jax.data import timm_transform

    image = Image.fromarray(np.random.default_rng(2).integers(1, 256, (16, 16, 3), dtype=np.uint8))
    ours = posterize_op(timm_transform.train_transform(16, (0.5,) * 3, (0.25,) * 3))
    assert not np.asarray(ours(image)).any()  # black, as Pillow < 13 gave
    for bits in range(1, 8):
        np.testing.assert_array_equal(np.asarray(timm_transform.posterize(image, bits)),
                                      np.asarray(ImageOps.posterize(image, bits)))
    if int(PIL.__version__.split(".")[0]) >= 13:  # the release's transform fails here
        stock = posterize_op(create_transform(16, is_training=True,
                                              auto_augment="rand-m9-mstd0.5-inc1"))
        with pytest.raises(ValueError, match="bits"):
            stock(image)


@pytest.mark.torch
@pytest.mark.slow
def test_data_benchmark_side_by_side_with_timm():
    pytest.importorskip("timm")
    out = subprocess.run(
        [sys.executable, "-m", "livt_jax.tools.data_benchmark", "--synthetic", "24,40", "--image-size", "32",
         "--batch-size", "4", "--steps", "2", "--kinds", "bft", "--vs-timm"],
        capture_output=True, text=True, cwd=ROOT, timeout=300, check=True).stdout
    rows = {line.split()[0]: line.split() for line in out.splitlines()}
    ours, timm = float(rows["synthetic"][-2]), float(rows["timm"][-2])
    ratio = float(out.split("one core: ")[1].split("x")[0])
    assert ours > 0 and timm > 0
    assert ratio == pytest.approx(ours / timm, rel=0.05)  # the rows are rounded to 1 img/s


def test_vs_timm_needs_synthetic_images():
    from livt_jax.tools import data_benchmark as benchmark

    with pytest.raises(SystemExit):
        benchmark.main(["--source", "animal_mnist", "--vs-timm"])
