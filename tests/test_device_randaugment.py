"""RandAugment on the device against the host's (randaugment.py): each op on fixed
parameters, the draws' distribution, and the whole BFT transform under jit and sharding."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from livt_jax import mesh as mesh_lib
from livt_jax.data import augment, randaugment
from livt_jax.step import device_augment, device_randaugment as dra
from tests.helpers.common import smooth_images

KEY = jax.random.key(0)
apply_op = jax.jit(dra.apply_op, static_argnames="interpolation")
rand_augment = jax.jit(dra.rand_augment, static_argnames=("num_ops", "magnitude", "magnitude_std", "fill", "prob"))
random_erasing = jax.jit(device_augment.random_erasing, static_argnums=2)

LEVELS = np.array([0.0, 2.5, 5.0, 7.3, 9.0, 10.0])  # 10: posterize to 0 bits, solarize everything
SIGNS = np.array([1.0, -1.0, 1.0, -1.0, 1.0, -1.0])
# Ops whose device output equals the host's exactly: integer tables and the blends
# against a degenerate image that needs no grey. The others differ by at most one grey
# level, on few pixels: AutoContrast (exact integer table vs PIL's float one), Color and
# Contrast (the factor from a float32 level), the warps (float32 coordinates, truncated).
EXACT = ("Equalize", "Invert", "PosterizeIncreasing", "SolarizeIncreasing", "SolarizeAdd",
         "BrightnessIncreasing", "SharpnessIncreasing")
MAX_DIFFERING = 0.01  # fraction of values one grey level apart (measured <= 0.4%)
CASES = [(name, "bicubic") for name in randaugment.OPS] + [
    (name, "bilinear") for name in randaugment.GEOMETRIC_OPS]


def fixed_images(channels):
    images = smooth_images(len(LEVELS), 20, 26, channels, seed=2)
    images[0, :5] = 0  # a flat band: equalize/autocontrast edge cases
    images[1] = 77  # one flat image: autocontrast and equalize leave it alone
    return images


def host_fill(channels):
    return randaugment.fill_uint8((0.485, 0.456, 0.406) if channels == 3 else (0.5,), channels)


@pytest.mark.parametrize("channels", [3, 1])
@pytest.mark.parametrize("name, interpolation", CASES)
def test_each_op_matches_the_host(name, interpolation, channels):
    images, fill = fixed_images(channels), host_fill(channels)
    kwargs = {"interpolation": interpolation} if name in randaugment.GEOMETRIC_OPS else {}
    host = randaugment.OPS[name](images.copy(), LEVELS, SIGNS, fill, **kwargs).astype(np.float64)
    op = jnp.full(len(LEVELS), dra.OP_NAMES.index(name), jnp.int32)
    device = np.asarray(apply_op(jnp.asarray(images, jnp.float32), op, jnp.asarray(LEVELS, jnp.float32),
                                 jnp.asarray(SIGNS, jnp.float32), jnp.asarray(fill, jnp.float32),
                                 interpolation=interpolation))
    assert device.shape == images.shape and device.dtype == np.float32
    np.testing.assert_array_equal(device, np.round(device))  # integer grey levels
    diff = np.abs(device - host)
    if name in EXACT:
        np.testing.assert_array_equal(device, host)
    assert diff.max() <= 1.0
    assert (diff > 0).mean() <= MAX_DIFFERING
    assert not np.array_equal(host, images) or name in ("ColorIncreasing", "SharpnessIncreasing")


def test_no_op_and_unapplied_layers_leave_images_unchanged():
    images = jnp.asarray(fixed_images(3), jnp.float32)
    level = jnp.full(len(LEVELS), 9.0)
    out = apply_op(images, jnp.full(len(LEVELS), dra.NO_OP, jnp.int32), level, jnp.ones(len(LEVELS)),
                   jnp.zeros(3))
    np.testing.assert_array_equal(np.asarray(out), np.asarray(images))
    out = rand_augment(KEY, images, num_ops=2, fill=(0.5, 0.5, 0.5), prob=0.0)
    np.testing.assert_array_equal(np.asarray(out), np.asarray(images))


def test_warp_fills_what_it_uncovers():
    images = jnp.full((1, 10, 10, 3), 200.0)
    out = np.asarray(apply_op(images, jnp.asarray([dra.OP_NAMES.index("TranslateXRel")]),
                              jnp.asarray([10.0]), jnp.asarray([1.0]), jnp.asarray([1.0, 2.0, 3.0])))
    # Shift by 4.5 px: reading x + 4.5 leaves the 4 (or 5) right-most columns outside.
    np.testing.assert_array_equal(out[0, :, :5], 200.0)
    np.testing.assert_array_equal(out[0, :, 6:], np.broadcast_to([1.0, 2.0, 3.0], (10, 4, 3)))


# ----------------------------------------------------------------------------- distributions


def test_layer_draws_match_the_host_distribution():
    n, magnitude, std, prob = 40_000, 9.0, 0.5, 0.5
    op, level, sign = (np.asarray(a) for a in jax.jit(dra.sample_layer, static_argnums=(1, 2, 3, 4))(
        KEY, n, magnitude, std, prob))
    choice, applied, host_level, host_sign = randaugment.sample_layer(np.random.default_rng(0), n, magnitude,
                                                                       std, prob)
    host_op = np.where(applied, choice, dra.NO_OP)
    k = len(dra.OP_NAMES)
    ours = np.bincount(op + 1, minlength=k + 1) / n
    theirs = np.bincount(host_op + 1, minlength=k + 1) / n
    expected = np.array([1 - prob] + [prob / k] * k)
    sigma = np.sqrt(expected * (1 - expected) / n)
    assert np.all(np.abs(ours - expected) < 5 * sigma) and np.all(np.abs(theirs - expected) < 5 * sigma)
    for a, b in ((level, host_level), (sign, host_sign)):
        assert abs(a.mean() - b.mean()) < 0.02 and abs(a.std() - b.std()) < 0.02
    assert level.min() >= 0 and level.max() == 10.0  # clipped: P(N(9, 0.5) > 10) = 2.3%
    assert abs((level == 10).mean() - (host_level == 10).mean()) < 0.005
    assert set(np.unique(sign)) == {-1.0, 1.0}


def test_rand_augment_changes_images_as_the_host_does():
    """Over many draws on one image: how often it is left unchanged, and how much it changes."""
    n = 1500
    images = np.repeat(smooth_images(1, 16, 16, 3, seed=4), n, axis=0)
    fill = (0.485, 0.456, 0.406)
    host = randaugment.rand_augment(images, np.random.default_rng(0), 2, 9.0, 0.5, fill=fill).astype(np.float32)
    device = np.asarray(rand_augment(KEY, jnp.asarray(images), num_ops=2, magnitude=9.0, magnitude_std=0.5,
                                     fill=fill))
    change = [np.abs(out - images).mean(axis=(1, 2, 3)) for out in (host, device)]
    unchanged = [(c == 0).mean() for c in change]
    assert 0.2 < unchanged[0] < 0.4 and abs(unchanged[0] - unchanged[1]) < 0.05
    assert abs(change[0].mean() - change[1].mean()) < 0.08 * change[0].mean()
    for q in (0.5, 0.75, 0.9):
        assert abs(np.quantile(change[0], q) - np.quantile(change[1], q)) < 0.1 * np.quantile(change[0], q) + 1


def test_erasing_areas_match_the_host():
    n, h, w = 6000, 24, 20
    zeros = np.zeros((n, h, w, 1), np.float32)
    masks = [augment.random_erasing(zeros, np.random.default_rng(1), 0.25) != 0,
             np.asarray(random_erasing(KEY, jnp.asarray(zeros), 0.25)) != 0]
    stats = []
    for mask in masks:
        mask = mask[..., 0]
        hit = mask.any(axis=(1, 2))
        rows, cols = mask[hit].any(axis=2).sum(axis=1), mask[hit].any(axis=1).sum(axis=1)
        np.testing.assert_array_equal(mask[hit].sum(axis=(1, 2)), rows * cols)  # rectangles
        stats.append((hit.mean(), (rows * cols).mean() / (h * w), (rows * cols).std() / (h * w),
                      np.log(rows / cols).mean()))
    (rate, area, spread, log_ratio), (rate_d, area_d, spread_d, log_ratio_d) = stats
    assert abs(rate - 0.25) < 0.025 and abs(rate_d - 0.25) < 0.025  # 5 sigma
    assert abs(area - area_d) < 0.015 and abs(spread - spread_d) < 0.015  # area fraction ~0.17 +- 0.09
    assert abs(log_ratio - log_ratio_d) < 0.1


# ----------------------------------------------------------------------------- the transform


def bft_config(**aug):
    data = ml_collections.ConfigDict(dict(image_size=12, in_chans=3, mean=(0.5, 0.4, 0.3),
                                          std=(0.25, 0.25, 0.25), device_augment=True))
    settings = dict(kind="bft", scale_min=0.08, hflip=True, randaug_num_ops=2, randaug_magnitude=9,
                    randaug_magnitude_std=0.5, interpolation="bicubic", random_erasing_prob=0.25)
    settings.update(aug)
    return data, ml_collections.ConfigDict(settings)


@pytest.mark.slow
def test_transform_applies_rand_augment_after_the_crop():
    data, aug = bft_config(scale_min=1.0, hflip=False, random_erasing_prob=0.0)
    images = jnp.asarray(smooth_images(8, 12, 12, 3))  # crop = the whole image: rounding gives it back
    out = jax.jit(lambda rng, x: device_augment.device_train_transform(rng, x, data, aug))(KEY, images)
    randaug_rng = jax.random.split(KEY, 3)[1]
    expected = dra.rand_augment(randaug_rng, images, num_ops=2, magnitude=9.0, magnitude_std=0.5, fill=data.mean)
    np.testing.assert_allclose(np.asarray(out), np.asarray(device_augment.normalize(expected, data.mean, data.std)),
                               atol=1e-5)
    assert not np.allclose(np.asarray(out), np.asarray(device_augment.normalize(images, data.mean, data.std)))


@pytest.mark.slow
def test_transform_is_keyed_and_independent_of_the_batch_sharding():
    """Sharded over 8 devices, as the train step shards the batch: the same images as on one."""
    data, aug = bft_config()
    images = jnp.asarray(smooth_images(16, 14, 14, 3, seed=6))
    fn = lambda rng, x: device_augment.device_train_transform(rng, x, data, aug)  # noqa: E731
    single = np.asarray(jax.jit(fn)(KEY, images))
    mesh = mesh_lib.make_mesh(-1, 1)
    batch = mesh_lib.batch_sharding(mesh)
    sharded = jax.jit(fn, in_shardings=(None, batch), out_shardings=batch)(KEY, jax.device_put(images, batch))
    assert len(sharded.sharding.device_set) == 8
    np.testing.assert_array_equal(np.asarray(sharded), single)
    assert not np.array_equal(np.asarray(jax.jit(fn)(jax.random.key(1), images)), single)
