"""Augmentations: shapes, dtypes, ranges, torchvision/PIL semantics."""

import math

import ml_collections
import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageOps

from livt_jax.data import augment, pipeline, randaugment
from tests.helpers.common import smooth_images, torchvision_crop_box

RNG = np.random.default_rng(0)


def test_crop_boxes_follow_torchvision_distribution():
    n, height, width, scale = 4000, 60, 80, (0.08, 1.0)
    boxes = augment.sample_crop_boxes(np.full(n, height), np.full(n, width), np.random.default_rng(1), scale)
    top, left, h, w = boxes.T
    assert np.all(top >= 0) and np.all(left >= 0) and np.all(top + h <= height) and np.all(left + w <= width)
    rng = np.random.default_rng(2)
    ref = np.array([b for b in (torchvision_crop_box(rng, height, width, scale) for _ in range(n)) if b])
    for ours, theirs in ((h * w, ref[:, 2] * ref[:, 3]), (w / h, ref[:, 3] / ref[:, 2]), (top, ref[:, 0])):
        assert abs(ours.mean() - theirs.mean()) < 4 * theirs.std() / math.sqrt(n) * math.sqrt(2)
        assert ours.min() >= theirs.min() * 0.9 and ours.max() <= theirs.max() * 1.1


def test_crop_falls_back_to_ratio_clamped_centre_crop():
    boxes = augment.sample_crop_boxes(np.array([10]), np.array([100]), np.random.default_rng(0), (0.99, 1.0))
    np.testing.assert_array_equal(boxes, [[0, (100 - 13) // 2, 10, 13]])  # w = round(10 * 4/3)


def test_random_resized_crop_on_arrays_and_lists():
    images = smooth_images(5, 40, 30)
    out = augment.random_resized_crop(images, RNG, 16, (0.2, 1.0))
    assert out.shape == (5, 16, 16, 3) and out.dtype == np.uint8
    varied = [smooth_images(1, 20 + 7 * i, 50 - 5 * i, c=1)[0] for i in range(4)]
    out = augment.random_resized_crop(varied, RNG, 12, (0.08, 1.0))
    assert out.shape == (4, 12, 12, 1) and out.dtype == np.uint8


def test_resize_boxes_matches_pil_crop_resize():
    image = smooth_images(1, 37, 29)[0]
    out = augment.resize_boxes([image], np.array([[3, 5, 20, 15]]), (11, 13))[0]
    ref = np.asarray(Image.fromarray(image).crop((5, 3, 20, 23)).resize((13, 11), Image.BICUBIC))
    np.testing.assert_allclose(out.astype(int), ref.astype(int), atol=1)


def test_hflip_mirrors_some_images_only():
    images = smooth_images(64, 8, 8)
    out = augment.random_hflip(images, np.random.default_rng(3))
    flipped = np.array([np.array_equal(o, i[:, ::-1]) for o, i in zip(out, images)])
    same = np.array([np.array_equal(o, i) for o, i in zip(out, images)])
    assert np.all(flipped | same) and 15 < flipped.sum() < 49


def test_normalize_and_channels():
    images = smooth_images(2, 4, 4)
    out = augment.normalize(images, (0.5, 0.4, 0.3), (0.2, 0.25, 0.5))
    ref = (images / 255.0 - np.array([0.5, 0.4, 0.3])) / np.array([0.2, 0.25, 0.5])
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)
    gray = augment.match_channels(images, 1)
    ref_gray = np.stack([np.asarray(Image.fromarray(im).convert("L")) for im in images])[..., None]
    np.testing.assert_allclose(gray.astype(int), ref_gray.astype(int), atol=1)
    np.testing.assert_array_equal(augment.match_channels(gray, 3), np.repeat(gray, 3, -1))
    with pytest.raises(ValueError, match="4 channels"):
        augment.match_channels(np.zeros((1, 2, 2, 4), np.uint8), 3)


def test_random_erasing_boxes():
    x = np.zeros((200, 32, 24, 3), np.float32)
    out = augment.random_erasing(x, np.random.default_rng(0), prob=1.0)
    changed = np.any(out != 0, axis=-1)  # (B, H, W)
    area = changed.mean(axis=(1, 2))
    assert np.all(area > 0.01) and np.all(area < 0.36)
    for m in changed[:20]:  # one solid rectangle
        rows, cols = np.flatnonzero(m.any(1)), np.flatnonzero(m.any(0))
        assert m[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1].all()
    values = out[np.broadcast_to(changed[..., None], out.shape)]
    assert abs(values.mean()) < 0.05 and abs(values.std() - 1) < 0.05
    np.testing.assert_array_equal(augment.random_erasing(x, RNG, prob=0.0), x)
    share = np.any(augment.random_erasing(x, np.random.default_rng(1), 0.25) != 0, axis=(1, 2, 3)).mean()
    assert 0.12 < share < 0.4


def test_eval_resize_crop_rule():
    image = smooth_images(1, 48, 64)[0]
    out = augment.eval_resize_crop([image], 32, 0.875)  # shorter side -> int(32 / 0.875) = 36
    resized = np.asarray(Image.fromarray(image).resize((48, 36), Image.BICUBIC))
    np.testing.assert_allclose(out[0].astype(int), resized[2:34, 8:40].astype(int), atol=1)
    assert augment.eval_resize_crop([image], 240, 0.875).shape == (1, 240, 240, 3)  # S > 224: resize to S


# --------------------------------------------------------------------------- RandAugment


def pil_apply(images, fn):
    return np.stack([np.asarray(fn(Image.fromarray(im))) for im in images])


FILL = np.array([124, 116, 104], np.uint8)


@pytest.mark.parametrize("name, reference, tolerance", [
    ("AutoContrast", ImageOps.autocontrast, 0),
    ("Equalize", ImageOps.equalize, 0),
    ("Invert", ImageOps.invert, 0),
    ("PosterizeIncreasing", lambda im: ImageOps.posterize(im, 4 - int(8.5 / 10 * 4)), 0),
    ("SolarizeIncreasing", lambda im: ImageOps.solarize(im, 256 - int(8.5 / 10 * 256)), 0),
    ("SolarizeAdd", lambda im: im.point(lambda v: min(v + int(8.5 / 10 * 110), 255) if v < 128 else v), 0),
    ("ColorIncreasing", lambda im: ImageEnhance.Color(im).enhance(1 + 0.85 * 0.9), 0),
    ("ContrastIncreasing", lambda im: ImageEnhance.Contrast(im).enhance(1 + 0.85 * 0.9), 0),
    ("BrightnessIncreasing", lambda im: ImageEnhance.Brightness(im).enhance(1 + 0.85 * 0.9), 0),
    ("SharpnessIncreasing", lambda im: ImageEnhance.Sharpness(im).enhance(1 + 0.85 * 0.9), 0),
    ("Rotate", lambda im: im.rotate(8.5 / 10 * 30, Image.BICUBIC, fillcolor=tuple(FILL.tolist())), 0),
    ("ShearX", lambda im: im.transform(im.size, Image.AFFINE, (1, 0.255, 0, 0, 1, 0), Image.BICUBIC,
                                       fillcolor=tuple(FILL.tolist())), 0),
    ("TranslateYRel", lambda im: im.transform(im.size, Image.AFFINE, (1, 0, 0, 0, 1, 0.85 * 0.45 * 20),
                                              Image.BICUBIC, fillcolor=tuple(FILL.tolist())), 0),
])
def test_ops_match_pil(name, reference, tolerance):
    """Each host op against Pillow called directly (geometric ops: bicubic, the default)."""
    images = smooth_images(3, 20, 24, seed=7)
    out = randaugment.OPS[name](images, np.full(3, 8.5), np.ones(3), FILL)
    assert out.dtype == np.uint8 and out.shape == images.shape
    diff = np.abs(out.astype(int) - pil_apply(images, reference).astype(int))
    assert diff.max() <= tolerance


def test_signed_ops_use_the_sign():
    images = smooth_images(2, 16, 16)
    up = randaugment.OPS["BrightnessIncreasing"](images, np.full(2, 9.0), np.ones(2), FILL)
    down = randaugment.OPS["BrightnessIncreasing"](images, np.full(2, 9.0), -np.ones(2), FILL)
    assert up.mean() > images.mean() > down.mean()


def test_rand_augment_batch():
    images = smooth_images(64, 24, 24)
    out = randaugment.rand_augment(images, np.random.default_rng(0), 2, 9, 0.5, fill=(0.5, 0.5, 0.5))
    assert out.shape == images.shape and out.dtype == np.uint8
    unchanged = np.array([np.array_equal(o, i) for o, i in zip(out, images)])
    assert 0.1 < unchanged.mean() < 0.45  # (1 - 0.5)^2 = 25% skip both ops
    again = randaugment.rand_augment(images, np.random.default_rng(0), 2, 9, 0.5, fill=(0.5, 0.5, 0.5))
    np.testing.assert_array_equal(out, again)
    gray = randaugment.rand_augment(images[..., :1], np.random.default_rng(0), 2, 9, 0.5, fill=(0.5,))
    assert gray.shape == (64, 24, 24, 1)


# --------------------------------------------------------------------------- composed transforms


def config(kind, image_size=16, in_chans=3):
    return ml_collections.ConfigDict(dict(
        data=dict(image_size=image_size, in_chans=in_chans, mean=(0.5,) * in_chans, std=(0.25,) * in_chans),
        aug=dict(kind=kind, scale_min=0.2 if kind == "mgp" else 0.08, hflip=True, randaug_num_ops=2,
                 randaug_magnitude=9, randaug_magnitude_std=0.5, interpolation="bicubic", random_erasing_prob=0.25,
                 eval_crop_pct=0.875)))


@pytest.mark.parametrize("kind", ["mgp", "bft"])
def test_train_images(kind):
    images = smooth_images(32, 20, 28)
    out = pipeline.train_images(config(kind), images, np.random.default_rng(0))
    assert out.shape == (32, 16, 16, 3) and out.dtype == np.float32
    lo, hi = (0 - 0.5) / 0.25, (1 - 0.5) / 0.25
    inside = (out >= lo - 1e-6) & (out <= hi + 1e-6)
    if kind == "mgp":
        assert inside.all()
    else:  # erasing writes N(0, 1) values, mostly inside the pixel range too
        assert inside.mean() > 0.95
    again = pipeline.train_images(config(kind), images, np.random.default_rng(0))
    np.testing.assert_array_equal(out, again)


def test_eval_images_deterministic_and_gray_to_rgb():
    images = [smooth_images(1, 30, 22, c=1)[0], smooth_images(1, 25, 40, c=1)[0]]
    cfg = config("bft", image_size=16, in_chans=3)
    a, b = pipeline.eval_images(cfg, images), pipeline.eval_images(cfg, images)
    assert a.shape == (2, 16, 16, 3) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a[..., 0], a[..., 2])
    np.testing.assert_array_equal(pipeline.eval_image(cfg, images[1]), a[1])
    with pytest.raises(ValueError, match="aug.kind 'simclr'"):
        bad = config("bft")
        bad.aug.kind = "simclr"
        pipeline.train_images(bad, np.zeros((1, 8, 8, 3), np.uint8), RNG)
