"""Mixup / CutMix: partner = reversed batch, λ bookkeeping, jit, identity cases."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from livt_jax.step import mixup
from livt_jax.losses import smooth_labels

B, H, W, CH, K = 4, 12, 10, 3, 6


def constant_images(b=B):
    """Image i is filled with the value i + 1, so every pixel tells its source."""
    return jnp.broadcast_to(jnp.arange(1.0, b + 1)[:, None, None, None], (b, H, W, CH))


def one_hot(b=B):
    return jax.nn.one_hot(jnp.arange(b), K)


@functools.lru_cache(maxsize=None)
def jitted_many(**kwargs):
    fn = functools.partial(mixup.mixup_cutmix, **kwargs)
    return jax.jit(jax.vmap(fn, in_axes=(0, None, None)))


def mix_many(num_seeds, images, targets, **kwargs):
    """Mixes the same batch with seeds 0..num_seeds-1 (one compiled, vmapped call)."""
    keys = jax.vmap(jax.random.key)(jnp.arange(num_seeds))
    out, out_t = jitted_many(**kwargs)(keys, images, targets)
    return np.asarray(out), np.asarray(out_t)


def lam_from_targets(targets):
    """λ from targets mixed from one-hot labels 0..B-1 (B even: nobody is its own partner)."""
    t = np.asarray(targets)
    lam = t[np.arange(B), np.arange(B)]
    np.testing.assert_allclose(lam, lam[0], rtol=1e-6)  # one λ per batch
    np.testing.assert_allclose(t[np.arange(B), np.arange(B)[::-1]], 1 - lam, rtol=1e-5, atol=1e-6)
    return float(lam[0])


def test_one_hot_smoothed_is_smooth_labels():
    labels = jnp.array([0, 5, 2])
    np.testing.assert_array_equal(mixup.one_hot_smoothed(labels, K, 0.1), smooth_labels(labels, K, 0.1))


def test_cutmix_lambda_is_fraction_of_own_pixels():
    # bf16 holds the values 1..B exactly: pixel provenance stays checkable.
    images, targets = constant_images().astype(jnp.bfloat16), one_hot()
    outs, outs_t = mix_many(8, images, targets, mixup_alpha=0.0, cutmix_alpha=1.0)
    assert outs.dtype == jnp.bfloat16 and outs_t.dtype == np.float32
    for out, out_t in zip(outs, outs_t):
        own = out == np.asarray(images)
        partner = out == np.asarray(images)[::-1]
        assert np.all(own | partner)  # every pixel from the image or its reversed partner
        lam = lam_from_targets(out_t)
        np.testing.assert_allclose(own.mean(axis=(1, 2, 3)), lam, rtol=1e-6)
        np.testing.assert_allclose(out_t.sum(axis=1), 1.0, rtol=1e-6)
        # One rectangular box shared by the batch and all channels.
        box = partner[0, :, :, 0]
        np.testing.assert_array_equal(partner, np.broadcast_to(box[None, :, :, None], partner.shape))
        rows, cols = np.flatnonzero(box.any(1)), np.flatnonzero(box.any(0))
        if box.any():
            expected = np.zeros_like(box)
            expected[rows.min():rows.max() + 1, cols.min():cols.max() + 1] = True
            np.testing.assert_array_equal(box, expected)
    assert sum(0 < lam_from_targets(t) < 1 for t in outs_t) >= 4  # boxes were pasted


def test_cutmix_box_size_follows_lambda():
    lam, height, width = 0.6, 40, 30
    keys = jax.vmap(jax.random.key)(jnp.arange(20))
    masks = jax.jit(jax.vmap(lambda k: mixup.cutmix_keep_mask(k, jnp.float32(lam), height, width)))(keys)
    full_h = 2 * (int(height * np.sqrt(1 - lam)) // 2)  # timm: centre ± int(side·sqrt(1−λ)) // 2
    full_w = 2 * (int(width * np.sqrt(1 - lam)) // 2)
    for keep in np.asarray(masks):
        assert set(np.unique(keep)) <= {0.0, 1.0}
        box = keep == 0
        rows, cols = box.any(1).sum(), box.any(0).sum()
        assert rows <= full_h and cols <= full_w
        assert box[0].any() or box[-1].any() or rows == full_h  # only clipping shrinks it
        assert box[:, 0].any() or box[:, -1].any() or cols == full_w


def test_mixup_pixels_are_convex_combination_with_reversed_batch():
    x = jax.random.normal(jax.random.key(100), (B, H, W, CH))
    y = smooth_labels(jnp.array([0, 1, 2, 3]), K, 0.1)
    outs, outs_t = mix_many(4, x, y, mixup_alpha=0.8, cutmix_alpha=0.0)
    _, outs_onehot = mix_many(4, x, one_hot(), mixup_alpha=0.8, cutmix_alpha=0.0)
    x64, y64 = np.asarray(x, np.float64), np.asarray(y, np.float64)
    for out, out_t, onehot_t in zip(outs, outs_t, outs_onehot):
        lam = lam_from_targets(onehot_t)
        assert 0.0 <= lam <= 1.0
        np.testing.assert_allclose(out, lam * x64 + (1 - lam) * x64[::-1], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(out_t, lam * y64 + (1 - lam) * y64[::-1], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(out_t.sum(axis=1), 1.0, rtol=1e-6)


def is_cutmix(out, images):
    """True if every pixel came unchanged from the image or its partner."""
    out, images = np.asarray(out), np.asarray(images)
    return bool(np.all((out == images) | (out == images[::-1])))


def is_identity(out, images):
    return np.array_equal(out, np.asarray(images))


def test_switch_prob_and_prob():
    # prob 0.8, switch_prob 0.7: ~20% untouched, ~56% CutMix, ~24% Mixup.
    images, targets = constant_images(), one_hot()
    outs, outs_t = mix_many(100, images, targets, switch_prob=0.7, prob=0.8)
    np.testing.assert_allclose(outs_t.sum(axis=-1), 1.0, rtol=1e-6)
    counts = {"none": 0, "cutmix": 0, "mixup": 0}
    for out, out_t in zip(outs, outs_t):
        lam = lam_from_targets(out_t)
        if is_identity(out, images):
            np.testing.assert_array_equal(out_t, targets)
            counts["none"] += 1
        elif is_cutmix(out, images):
            np.testing.assert_allclose((out == np.asarray(images)).mean(), lam, rtol=1e-6)
            counts["cutmix"] += 1
        else:  # every pixel of image 0 is λ·1 + (1−λ)·B
            np.testing.assert_allclose(out[0], lam * 1 + (1 - lam) * B, rtol=1e-6)
            counts["mixup"] += 1
    assert 8 <= counts["none"] <= 35, counts
    assert counts["cutmix"] > counts["mixup"] >= 10, counts


def test_identity_when_both_alphas_zero():
    x = jax.random.normal(jax.random.key(0), (B, H, W, CH))
    y = smooth_labels(jnp.arange(B), K, 0.1)
    fn = jax.jit(functools.partial(mixup.mixup_cutmix, mixup_alpha=0.0, cutmix_alpha=0.0))
    out, out_t = fn(jax.random.key(0), x, y)
    np.testing.assert_array_equal(out, x)
    np.testing.assert_array_equal(out_t, y)


def test_bad_arguments():
    x, y = constant_images(), one_hot()
    with pytest.raises(ValueError, match="same B"):
        mixup.mixup_cutmix(jax.random.key(0), x, y[:3])
    with pytest.raises(ValueError, match="switch_prob"):
        mixup.mixup_cutmix(jax.random.key(0), x, y, switch_prob=1.5)
    with pytest.raises(ValueError, match="alphas"):
        mixup.mixup_cutmix(jax.random.key(0), x, y, mixup_alpha=-1.0)
    with pytest.raises(ValueError, match="images must be floating"):
        mixup.mixup_cutmix(jax.random.key(0), x.astype(jnp.uint8), y)
