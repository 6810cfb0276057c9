"""On-device augmentation: torchvision's crop rule, resampling of a box, flip, erasing,
the composed transform under jit, and the loader's uint8 path."""

import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from livt_jax.data import augment, pipeline
from livt_jax.step import device_augment
from livt_jax.data.sources import ArraySource, LabelledSource
from tests.helpers.common import smooth_images, torchvision_crop_box

KEY = jax.random.key(0)
# Jitted once per static configuration: far faster on CPU than op-by-op dispatch.
sample_crop_params = jax.jit(device_augment.sample_crop_params, static_argnums=(1, 2, 3, 4, 5))
crop_and_resize = jax.jit(device_augment.crop_and_resize, static_argnums=5, static_argnames=("method",))
random_resized_crop_flip = jax.jit(device_augment.random_resized_crop_flip,
                                   static_argnames=("out_size", "scale", "ratio", "hflip"))
random_erasing = jax.jit(device_augment.random_erasing, static_argnums=2)


def crop_params(height, width, scale, ratio=(3 / 4, 4 / 3), batch=2000, key=KEY):
    return [np.asarray(a) for a in sample_crop_params(key, batch, height, width, scale, ratio)]


# ----------------------------------------------------------------------------- crop boxes


@pytest.mark.parametrize("height,width,scale", [(32, 32, (0.08, 1.0)), (24, 40, (0.2, 1.0)), (50, 30, (0.5, 1.0))])
def test_crop_params_follow_the_rule(height, width, scale):
    ratio = (3 / 4, 4 / 3)
    top, left, h, w = crop_params(height, width, scale, ratio)
    assert all(a.dtype == np.int32 and a.shape == (2000,) for a in (top, left, h, w))
    # Inside the image.
    assert (h >= 1).all() and (w >= 1).all() and (top >= 0).all() and (left >= 0).all()
    assert (top + h <= height).all() and (left + w <= width).all()
    # Boxes that are not the fallback: area and aspect within the rule's bounds,
    # widened by the rounding of w and h to integers (|w - sqrt(T a)| <= 1/2).
    c_top, c_left, c_h, c_w = device_augment._centre_box(height, width, ratio)
    drawn = ~((top == c_top) & (left == c_left) & (h == c_h) & (w == c_w))
    h, w = h[drawn].astype(np.float64), w[drawn].astype(np.float64)
    slack = 0.5 * (h + w) + 0.25
    assert (h * w >= scale[0] * height * width - slack).all()
    assert (h * w <= scale[1] * height * width + slack).all()
    log_slack = np.log((w + 0.5) / (w - 0.5)) + np.log((h + 0.5) / np.maximum(h - 0.5, 1e-9))
    assert (np.log(w / h) >= math.log(ratio[0]) - log_slack).all()
    assert (np.log(w / h) <= math.log(ratio[1]) + log_slack).all()


def test_crop_params_distribution_matches_torchvision():
    height, width, scale = 24, 40, (0.08, 1.0)
    top, left, h, w = crop_params(height, width, scale, batch=4000)
    rng = np.random.default_rng(0)
    ref = np.array([torchvision_crop_box(rng, height, width, scale) for _ in range(4000)], np.float64)
    for ours, theirs in zip((top, left, h, w), ref.T):
        assert abs(ours.mean() - theirs.mean()) < 0.05 * theirs.mean() + 0.3
        assert abs(ours.std() - theirs.std()) < 0.1 * theirs.std() + 0.3


def test_crop_params_fall_back_to_a_clamped_centre_crop():
    # 4 x 64: no draw of area >= 0.9 * 256 with ratio <= 4/3 has h <= 4.
    top, left, h, w = crop_params(4, 64, (0.9, 1.0), batch=16)
    np.testing.assert_array_equal(np.stack([top, left, h, w], 1), np.tile([0, 29, 4, 5], (16, 1)))
    np.testing.assert_array_equal(augment._centre_boxes(np.array([4]), np.array([64]), (3 / 4, 4 / 3)),
                                  [[0, 29, 4, 5]])


def test_crop_params_are_keyed():
    a = [np.asarray(x) for x in device_augment.sample_crop_params(KEY, 64, 20, 20, (0.08, 1.0))]  # eager
    b = crop_params(20, 20, (0.08, 1.0), batch=64)
    c = crop_params(20, 20, (0.08, 1.0), batch=64, key=jax.random.key(1))
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert any(not np.array_equal(x, z) for x, z in zip(a, c))


# ----------------------------------------------------------------------------- resampling


@pytest.mark.parametrize("box,size", [((3, 5, 20, 30), 24), ((0, 0, 40, 48), 32), ((5, 7, 33, 41), 16),
                                      ((2, 3, 37, 40), 20), ((5, 5, 1, 1), 8)])
@pytest.mark.parametrize("method", ["bicubic", "linear"])
def test_crop_of_a_box_equals_resizing_the_sliced_box(box, size, method):
    image = smooth_images(1, 40, 48, 3)[0]
    top, left, h, w = box
    out = crop_and_resize(jnp.asarray(image), *(jnp.int32(v) for v in box), size, method=method)
    ref = jax.image.resize(image[top:top + h, left:left + w].astype(np.float32), (size, size, 3), method)
    assert out.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(out), np.asarray(ref), atol=2e-2)


@pytest.mark.parametrize("box,size", [((3, 5, 20, 30), 24), ((5, 7, 33, 41), 16), ((0, 0, 40, 48), 40)])
def test_bicubic_crop_is_within_a_grey_level_of_pillow(box, size):
    """The default (bicubic, antialias) is Pillow's resize of the crop, as on the host."""
    image = smooth_images(1, 40, 48, 3, seed=3)[0]
    out = np.clip(np.asarray(crop_and_resize(
        jnp.asarray(image), *(jnp.int32(v) for v in box), size)), 0, 255)
    pil = augment.resize_boxes([image], np.array([box]), (size, size))[0].astype(np.float32)
    assert np.abs(out - pil).max() <= 1.01


def test_identity_crop_returns_the_input():
    images = smooth_images(3, 16, 16, 3)
    out = random_resized_crop_flip(KEY, jnp.asarray(images), out_size=16, scale=(1.0, 1.0),
                                                  ratio=(1.0, 1.0), hflip=False)
    np.testing.assert_allclose(np.asarray(out), images.astype(np.float32), atol=1e-3)


def test_flip_mirrors_about_half_the_batch_exactly():
    images = smooth_images(64, 12, 12, 3, seed=1)
    out = np.asarray(random_resized_crop_flip(
        KEY, jnp.asarray(images), out_size=12, scale=(1.0, 1.0), ratio=(1.0, 1.0), hflip=True))
    same = np.abs(out - images).max(axis=(1, 2, 3)) < 1e-3
    mirrored = np.abs(out - images[:, :, ::-1]).max(axis=(1, 2, 3)) < 1e-3
    assert (same ^ mirrored).all()  # every image is exactly one of the two
    assert 16 <= mirrored.sum() <= 48


def test_random_resized_crop_output_dtype_shape_range():
    images = smooth_images(8, 20, 28, 3)
    images[0] = 255  # flat extremes: bicubic overshoot would leave [0, 255] without the clip
    images[1] = 0
    images[2, :, ::2] = 255
    out = random_resized_crop_flip(KEY, jnp.asarray(images), out_size=16, scale=(0.08, 1.0))
    assert out.shape == (8, 16, 16, 3) and out.dtype == jnp.float32
    assert float(out.min()) >= 0.0 and float(out.max()) <= 255.0


# ----------------------------------------------------------------------------- pixel ops


def test_normalize_matches_the_host():
    images = smooth_images(2, 6, 6, 3)
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    np.testing.assert_allclose(np.asarray(device_augment.normalize(jnp.asarray(images), mean, std)),
                               augment.normalize(images, mean, std), rtol=1e-5, atol=1e-5)


def test_random_erasing_boxes():
    x = jnp.zeros((200, 20, 20, 3), jnp.float32)
    np.testing.assert_array_equal(np.asarray(random_erasing(KEY, x, 0.0)), 0.0)
    erased = np.asarray(random_erasing(KEY, x, 0.5)) != 0
    hit = erased.any(axis=(1, 2, 3))
    assert 70 <= hit.sum() <= 130
    for mask in erased[hit].any(axis=-1):
        rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        assert mask[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1].all()  # one filled rectangle
        area = len(rows) * len(cols)
        assert len(rows) < 20 and len(cols) < 20
        assert 0.02 * 400 - 0.5 * (len(rows) + len(cols)) - 1 <= area <= 400 / 3 + 0.5 * (len(rows) + len(cols)) + 1


def transform_config(kind="bft", in_chans=3, **aug):
    data = ml_collections.ConfigDict(dict(image_size=8, in_chans=in_chans, mean=(0.5,) * in_chans,
                                          std=(0.25,) * in_chans, device_augment=False))
    settings = dict(kind=kind, scale_min=0.08, hflip=True, randaug_num_ops=2, randaug_magnitude=9,
                    randaug_magnitude_std=0.5, interpolation="bicubic", random_erasing_prob=0.25)
    settings.update(aug)
    return data, ml_collections.ConfigDict(settings)


@pytest.mark.parametrize("kind,channels,in_chans", [("bft", 3, 3), ("mgp", 1, 3), ("mgp", 3, 1)])
def test_device_train_transform_under_jit(kind, channels, in_chans):
    data, aug = transform_config(kind, in_chans)
    images = jnp.asarray(smooth_images(6, 12, 12, channels))
    fn = jax.jit(lambda rng, x: device_augment.device_train_transform(rng, x, data, aug))
    a, b, c = fn(KEY, images), fn(KEY, images), fn(jax.random.key(5), images)
    assert a.shape == (6, 8, 8, in_chans) and a.dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert not np.array_equal(np.asarray(a), np.asarray(c))
    if kind == "mgp":  # no erasing: values are normalised [0, 255] pixels
        assert float(a.min()) >= -2.0 - 1e-5 and float(a.max()) <= 2.0 + 1e-5


def test_device_train_transform_identity_settings_normalise_only():
    data, aug = transform_config("mgp", scale_min=1.0, hflip=False)
    images = smooth_images(2, 8, 8, 3)  # square, same size as the output: crop = whole image
    out = jax.jit(lambda rng, x: device_augment.device_train_transform(rng, x, data, aug))(KEY, jnp.asarray(images))
    np.testing.assert_allclose(np.asarray(out), augment.normalize(images, data.mean, data.std), atol=1e-4)


def test_make_batch_transform_is_opt_in():
    data, aug = transform_config()
    assert device_augment.make_batch_transform(ml_collections.ConfigDict({"data": data, "aug": aug})) is None
    data.device_augment = True
    fn = device_augment.make_batch_transform(ml_collections.ConfigDict({"data": data, "aug": aug}))
    assert jax.eval_shape(fn, KEY, jnp.asarray(smooth_images(2, 10, 10, 3))).shape == (2, 8, 8, 3)


# ----------------------------------------------------------------------------- loader


def loader_config(device_augment=True):
    return ml_collections.ConfigDict(dict(
        data=dict(source="animal_mnist", image_size=8, in_chans=3, mean=(0.5,) * 3, std=(0.25,) * 3,
                  sampler="instance", worker_count=0, device_augment=device_augment),
        aug=dict(kind="bft", scale_min=0.08, hflip=True, randaug_num_ops=2, randaug_magnitude=9,
                 randaug_magnitude_std=0.5, interpolation="bicubic", random_erasing_prob=0.25,
                 eval_crop_pct=0.875)))


class ListSource(LabelledSource):
    def __init__(self, images):
        self.images, self.labels, self.class_names = images, np.zeros(len(images), np.int64), ["a"]

    def __getitem__(self, index):
        return {"image": self.images[index], "label": 0}

    def __repr__(self):
        return "ListSource()"


def test_loader_yields_raw_uint8_batches():
    images = np.random.default_rng(0).integers(0, 256, (20, 10, 12, 3), dtype=np.uint8)
    source = ArraySource(images, np.arange(20), [str(i) for i in range(20)], "raw")
    batches = list(pipeline.make_train_loader(loader_config(), source, batch_size=4, seed=0, num_steps=3))
    assert len(batches) == 3
    for batch in batches:
        assert batch["image"].dtype == np.uint8 and batch["image"].shape == (4, 10, 12, 3)
        np.testing.assert_array_equal(batch["image"], images[batch["label"]])  # label i = record i
    evaluation = next(iter(pipeline.make_eval_loader(loader_config(), source, batch_size=4)))
    assert evaluation["image"].dtype == np.float32 and evaluation["image"].shape == (4, 8, 8, 3)


def test_loader_rejects_mixed_sizes_naming_them():
    images = [np.zeros((10, 10, 3), np.uint8)] * 3 + [np.zeros((12, 9, 3), np.uint8)] * 3
    loader = pipeline.make_train_loader(loader_config(), ListSource(images), batch_size=6, seed=0, num_steps=1)
    with pytest.raises(ValueError, match=r"\(10, 10, 3\).*\(12, 9, 3\).*cache"):
        list(loader)
    # Off (the default), the host pipeline resizes mixed sizes as before.
    batch = next(iter(pipeline.make_train_loader(loader_config(False), ListSource(images), batch_size=6,
                                                 seed=0, num_steps=1)))
    assert batch["image"].shape == (6, 8, 8, 3) and batch["image"].dtype == np.float32


@pytest.mark.slow
def test_wrap_loss_fn_augments_the_batch_before_the_loss():
    data, aug = transform_config("mgp")
    view = ml_collections.ConfigDict({"data": data, "aug": aug})
    loss = lambda params, batch, rng: (batch["image"] * params).mean()  # noqa: E731
    assert device_augment.wrap_loss_fn(loss, view) is loss  # off by default
    view.data.device_augment = True
    wrapped = jax.jit(device_augment.wrap_loss_fn(loss, view))
    batch = {"image": jnp.asarray(smooth_images(4, 12, 12, 3)), "label": jnp.zeros(4, jnp.int32)}
    value, grad = jax.value_and_grad(wrapped)(2.0, batch, KEY)
    images = device_augment.device_train_transform(jax.random.split(KEY)[1], batch["image"], data, aug)
    np.testing.assert_allclose(float(value), float(images.mean() * 2.0), rtol=1e-5)
    np.testing.assert_allclose(float(grad), float(images.mean()), rtol=1e-5)
