"""Input pipeline: sources from ``config.data``, grain loaders with ``config.aug``.

Config keys read (``config`` is the ``{'data', 'aug'}`` view of one stage,
``config_lib.stage_data_config``; every key below is declared in ``config_lib``):

``config.data``
  - ``source``: 'animal_mnist' | 'tfds' | 'split_list' | 'cache'.
  - ``name``: tfds dataset name (e.g. 'cifar10') or cache name (the cache is
    ``data_dir/name``); unused by 'animal_mnist' and 'split_list'.
  - ``data_dir``: tfds data_dir / image root of the split lists / folder that
    holds caches / folder of the Animal-MNIST pickles. None or '' = the tfds
    default, or the pickles inside the installed ``animal_mnist`` package.
  - ``train_split``, ``eval_split``: tfds split names, split-list files
    (absolute, relative to the working directory, or relative to
    ``data_dir``), or cache split names. Animal-MNIST ignores them: its
    split is fixed (200 test images per class, seeded).
  - ``imbalance_ratio`` (float, 1 = keep all), ``imbalance_type`` ('exp' |
    'step'), ``lt_seed`` (int): long-tailed subsampling of the train split.
  - ``image_size`` (int, model input side S), ``in_chans`` (1 | 3),
    ``mean``, ``std`` (per channel, [0, 1] units).
  - ``sampler``: 'instance' | 'class_balanced' | 'sqrt' | 'progressive'.
  - ``worker_count``: grain worker processes (0 = read in-process).
  - ``device_augment`` (bool): the train loader yields
    ``{'image': uint8 (b, H, W, C), 'label'}`` with no host augmentation (all
    training images must have one size, e.g. a cache) and the train step
    augments on the device (``device_augment.device_train_transform``: the
    same steps, RandAugment and erasing included). The eval loader is unchanged.

``config.aug``
  - ``kind``: 'mgp' (RandomResizedCrop + flip + normalise) or 'bft'
    (+ RandAugment before normalising and RandomErasing after).
  - ``scale_min``: RandomResizedCrop scale (scale_min, 1); ratio 3/4..4/3.
  - ``hflip`` (bool).
  - ``randaug_num_ops``, ``randaug_magnitude``, ``randaug_magnitude_std``,
    ``interpolation`` of the geometric ops ('bicubic' or 'bilinear') (bft only).
  - ``random_erasing_prob`` (bft only).
  - ``eval_crop_pct``: eval resize to int(S / crop_pct) then centre crop S
    (S <= 224); for larger S the shorter side is resized to S (then the
    centre S x S crop).

Batches: train ``{'image': float32 (b, S, S, C), 'label': int32 (b,)}``
(uint8 (b, H, W, C) source pixels with ``data.device_augment``);
eval adds ``'mask'`` float32 (b,) (0 = padding). ``b`` is the per-process
batch. A loader is ``grain.MapDataset.range(steps).map(make batch)``: the
sampler draws a whole batch of record keys at once, records are read, and
the augmentation is vectorised over the batch. Reading is in-process
(``ReadOptions(num_threads=0)``: grain's thread pool cost more than it saved
on small hosts); ``data.worker_count`` > 0 adds grain worker processes.
"""

from __future__ import annotations

import math
import sys
from typing import NamedTuple, Optional

import grain
import numpy as np
from absl import flags

from livt_jax import paths
from livt_jax.data import augment, checks, randaugment
from livt_jax.data.animal_mnist import load_animal_mnist
from livt_jax.data.long_tail import long_tail_indices
from livt_jax.data.samplers import make_sampler
from livt_jax.data.sources import (CacheSource, ImageFolderSource, LabelledSource, SplitListSource,
                                   SubsetSource, TfdsSource, read_split_list)

SOURCES = ("animal_mnist", "tfds", "split_list", "image_folder", "cache")
_READ_OPTIONS = grain.ReadOptions(num_threads=0, prefetch_buffer_size=0)


# ----------------------------------------------------------------------------- sources


def _resolve_split_file(path: str, data_dir: str) -> str:
    for candidate in (path, paths.join(data_dir, path)):
        if paths.is_file(candidate):
            return candidate
    raise FileNotFoundError(f"split list {path!r} not found (also tried under data_dir {data_dir!r})")


def open_split(data, split: str, train: LabelledSource | None = None) -> LabelledSource:
    """The whole split ``split`` of ``data.source`` (no subsampling).

    ``train``, the train split opened first, gives the classes every other
    split shares (a split list's label range, an image folder's class folders).
    Animal-MNIST has the fixed splits 'train' and 'test' ('' = train for the
    train split, test otherwise).
    """
    data_dir = data.data_dir or None
    if data.source == "animal_mnist":
        splits = dict(zip(("train", "test"), load_animal_mnist(data_dir)))
        name = split or ("train" if train is None else "test")
        if name not in splits:
            raise ValueError(f"animal_mnist has the splits {list(splits)}, not {split!r}")
        return splits[name]
    if data.source == "tfds":
        return TfdsSource(data.name, split, data_dir)
    if data_dir is None:
        raise ValueError(f"data.source={data.source!r} needs data.data_dir")
    if data.source == "split_list":
        list_file = _resolve_split_file(split, data_dir)
        # Classes: data.num_classes, else the train list's largest label + 1.
        num_classes = data.num_classes or (
            train.num_classes if train is not None else int(read_split_list(list_file)[1].max()) + 1)
        return SplitListSource(data_dir, list_file, data.in_chans, num_classes,
                               bad_images=data.bad_images)
    if data.source == "image_folder":
        return ImageFolderSource(paths.join(data_dir, split), data.in_chans, data.bad_images,
                                 class_names=None if train is None else train.class_names)
    if data.source == "cache":
        return CacheSource(paths.join(data_dir, data.name), split)
    raise ValueError(f"unknown data.source {data.source!r}; expected one of {SOURCES}")


class Splits(NamedTuple):
    """The data of a run: ``train`` (long-tailed when ``imbalance_ratio > 1``, minus
    the validation images), ``test`` (``data.eval_split``) and ``val`` (None
    without a validation split)."""
    train: LabelledSource
    test: LabelledSource
    val: Optional[LabelledSource]


def heldout_validation(pool: LabelledSource, train_indices: np.ndarray, per_class: int,
                       seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``per_class`` validation images per class from a training pool.

    Each class gives images the long-tailed subsampling left out first (seeded
    shuffle), and only when it has too few of those (the head class keeps all
    of its pool) the rest from its training images. Depends only on
    ``(pool labels, train_indices, per_class, seed)``.

    Returns:
      (train indices without the validation images, validation indices), both
      sorted int64 indices into ``pool``.
    """
    rng = np.random.default_rng([seed, per_class])
    in_train = np.zeros(len(pool), bool)
    in_train[train_indices] = True
    picks = []
    for c in range(pool.num_classes):
        members = np.flatnonzero(pool.labels == c)
        unused, used = rng.permutation(members[~in_train[members]]), rng.permutation(members[in_train[members]])
        if len(members) <= per_class:
            raise ValueError(
                f"class {pool.class_names[c]!r} has {len(members)} training images: it cannot "
                f"give data.val_per_class={per_class} to validation and keep one for training")
        picks.append(np.concatenate([unused, used])[:per_class])
    val = np.sort(np.concatenate(picks))
    return np.setdiff1d(train_indices, val), val


def load_sources(data) -> Splits:
    """The train, test and validation sources of ``config.data``.

    The train split is long-tailed when ``imbalance_ratio > 1`` (its
    ``class_counts`` are the subsampled counts). Validation is the split
    ``data.val_split``, or ``data.val_per_class`` images per class held out
    of the training pool (``heldout_validation``), or absent.
    """
    pool = open_split(data, data.train_split)
    test = open_split(data, data.eval_split, train=pool)
    ratio = float(data.imbalance_ratio)
    if ratio < 1:
        raise ValueError(f"data.imbalance_ratio must be >= 1, got {ratio}")
    indices = np.arange(len(pool))
    tags = []
    if ratio > 1:
        indices = long_tail_indices(pool.labels, ratio, data.imbalance_type, data.lt_seed,
                                    pool.num_classes)
        tags.append(f"lt(ratio={ratio}, {data.imbalance_type}, seed={data.lt_seed})")
    val = None
    if data.val_split and data.val_per_class:
        raise ValueError("set one of data.val_split (a split) and data.val_per_class "
                         f"(held out of train), not both (got {data.val_split!r} and "
                         f"{data.val_per_class})")
    if data.val_split:
        val = open_split(data, data.val_split, train=pool)
    elif data.val_per_class:
        indices, val_indices = heldout_validation(pool, indices, data.val_per_class, data.lt_seed)
        val = SubsetSource(pool, val_indices, f"validation({data.val_per_class}/class)")
        tags.append(f"minus validation({data.val_per_class}/class)")
    train = SubsetSource(pool, indices, ", ".join(tags)) if tags else pool
    checks.check_no_empty_class(train, pool, data)
    return Splits(train, test, val)


# ----------------------------------------------------------------------------- transforms


def read_batch(source, keys: np.ndarray) -> tuple[augment.Images, np.ndarray]:
    """Records ``keys`` -> (uint8 (B, H, W, C) if they share a shape else a list, int32 labels (B,))."""
    records = [source[int(k)] for k in keys]
    images = [r["image"] for r in records]
    same = all(im.shape == images[0].shape for im in images)
    return (np.stack(images) if same else images), np.array([r["label"] for r in records], np.int32)


def train_images(config, images: augment.Images, rng: np.random.Generator) -> np.ndarray:
    """Training augmentation of one batch -> float32 (B, S, S, C), normalised."""
    data, aug = config.data, config.aug
    if aug.kind not in augment.AUG_KINDS:
        raise ValueError(f"unknown aug.kind {aug.kind!r}; expected one of {augment.AUG_KINDS}")
    x = augment.random_resized_crop(images, rng, data.image_size, (aug.scale_min, 1.0))
    x = augment.match_channels(x, data.in_chans)
    if aug.hflip:
        x = augment.random_hflip(x, rng)
    if aug.kind == "bft":
        x = randaugment.rand_augment(
            x, rng, aug.randaug_num_ops, aug.randaug_magnitude, aug.randaug_magnitude_std, fill=data.mean,
            interpolation=aug.interpolation,
        )
    x = augment.normalize(x, data.mean, data.std)
    if aug.kind == "bft" and aug.random_erasing_prob > 0:
        x = augment.random_erasing(x, rng, aug.random_erasing_prob)
    return x


def eval_images(config, images: augment.Images) -> np.ndarray:
    """Deterministic eval preprocessing of one batch -> float32 (B, S, S, C)."""
    data = config.data
    x = augment.eval_resize_crop(images, data.image_size, config.aug.eval_crop_pct)
    return augment.normalize(augment.match_channels(x, data.in_chans), data.mean, data.std)


def eval_image(config, image: np.ndarray) -> np.ndarray:
    """One uint8 (H, W, C) image -> float32 (S, S, C) as the eval loader makes it."""
    return eval_images(config, [image])[0]


class TrainBatches:
    """step -> this process's augmented training batch (picklable, for worker processes).

    With ``data.device_augment`` the batch is the raw uint8 images (one size for
    every record) and ``device_augment.device_train_transform`` augments them in
    the train step.
    """

    def __init__(self, config, source, sampler):
        self.config, self.source, self.sampler = config, source, sampler
        # --- device_augment (begin)
        self.raw_shape = None
        if config.data.device_augment and len(source):
            self.raw_shape = tuple(source[0]["image"].shape)
        # --- device_augment (end)

    def __call__(self, step: int) -> dict:
        keys, rng = self.sampler.draw(step)
        images, labels = read_batch(self.source, keys)
        if self.raw_shape is not None:  # device_augment
            return {"image": _same_size_images(images, self.raw_shape, self.source), "label": labels}
        return {"image": train_images(self.config, images, rng), "label": labels}


# --- device_augment (begin)
def _same_size_images(images: augment.Images, expected: tuple, source) -> np.ndarray:
    """The uint8 (B, H, W, C) batch when every image has shape ``expected``, else a ValueError."""
    shapes = sorted({tuple(im.shape) for im in images} | {expected})
    if len(shapes) > 1:
        raise ValueError(
            f"data.device_augment=True needs training images of one size, but source {source!r} "
            f"has images of sizes {shapes} (H, W, C). Build a fixed-size cache (python -m "
            f"livt_jax.tools.cache ... --resize-shorter R, then data.source='cache') or set "
            f"data.device_augment=False.")
    return images if isinstance(images, np.ndarray) else np.stack(images)
# --- device_augment (end)


class EvalBatches:
    """batch index -> ``{'image', 'label', 'mask'}`` of this process's padded eval shard.

    The shard is records ``shard_index::shard_count``; positions past its end
    repeat its first record with mask 0.
    """

    def __init__(self, config, source, batch_size: int, shard_index: int, shard_count: int):
        if len(source) == 0:
            raise ValueError("cannot evaluate on an empty source")
        self.config, self.source, self.batch_size = config, source, batch_size
        self.indices = np.arange(shard_index, len(source), shard_count)
        self.num_batches = math.ceil(math.ceil(len(source) / shard_count) / batch_size)
        self._pad_key = int(self.indices[0]) if len(self.indices) else 0

    def __call__(self, batch_index: int) -> dict:
        positions = np.arange(batch_index * self.batch_size, (batch_index + 1) * self.batch_size)
        real = positions < len(self.indices)
        keys = np.full(self.batch_size, self._pad_key)
        keys[real] = self.indices[positions[real]]
        images, labels = read_batch(self.source, keys)
        return {"image": eval_images(self.config, images), "label": labels, "mask": real.astype(np.float32)}


# ----------------------------------------------------------------------------- loaders


def _iterable(length: int, batches, worker_count: int) -> grain.IterDataset:
    """``batches(i)`` for i in [0, length) as a grain IterDataset (checkpointable iterators)."""
    dataset = grain.MapDataset.range(length).map(batches).to_iter_dataset(_READ_OPTIONS)
    if worker_count > 0:
        if not flags.FLAGS.is_parsed():  # grain's workers read absl flags (defaults suffice)
            flags.FLAGS.mark_as_parsed()
        dataset = dataset.mp_prefetch(grain.MultiprocessingOptions(num_workers=worker_count))
    return dataset


def make_train_loader(
    config, source: LabelledSource, *, batch_size: int, seed: int, num_steps: int | None,
    shard_index: int = 0, shard_count: int = 1,
) -> grain.IterDataset:
    """Training batches of this process: ``num_steps`` of them (endless when None).

    ``iter(loader)`` gives a grain ``DatasetIterator`` (``get_state`` /
    ``set_state``; its state is the next step). Batch ``step`` depends only on
    ``(seed, step, shard_index)``; see ``samplers`` for how processes split
    the stream.
    """
    sampler = make_sampler(
        config.data.sampler, source.labels, seed=seed, num_classes=source.num_classes, batch_size=batch_size,
        shard_index=shard_index, shard_count=shard_count, num_steps=num_steps,
    )
    length = sys.maxsize if num_steps is None else num_steps
    return _iterable(length, TrainBatches(config, source, sampler), config.data.worker_count)


def make_eval_loader(
    config, source: LabelledSource, *, batch_size: int, shard_index: int = 0, shard_count: int = 1
) -> grain.IterDataset:
    """Eval batches ``{'image', 'label', 'mask'}``; every process yields the same
    number of batches, ``ceil(ceil(N / shard_count) / batch_size)``."""
    if not 0 <= shard_index < shard_count or batch_size <= 0:
        raise ValueError(f"need batch_size > 0 and 0 <= shard_index < shard_count, got "
                         f"{batch_size}, {shard_index}, {shard_count}")
    batches = EvalBatches(config, source, batch_size, shard_index, shard_count)
    return _iterable(batches.num_batches, batches, config.data.worker_count)
