"""Posterize with 0 bits (Pillow 13 refuses it) and the host comparison against timm."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import PIL
import pytest
from PIL import Image, ImageOps

from livt_jax.data import randaugment

ROOT = Path(__file__).resolve().parents[1]
FILL = np.array([124, 116, 104], np.uint8)


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
