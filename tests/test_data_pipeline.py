"""Loaders: determinism, checkpointable iterator state, process shards, eval padding."""

import numpy as np
import pytest

from livt_jax import config_lib
from livt_jax.data import pipeline
from livt_jax.data.sources import ArraySource


def config(sampler="instance", kind="bft"):
    """The base config's BFT view at 8 px, 3 channels."""
    base = config_lib.base_config()
    base.data.update(dict(source="animal_mnist", image_size=8, in_chans=3, mean=(0.5,) * 3,
                          std=(0.25,) * 3, sampler=sampler))
    view = config_lib.stage_data_config(base, "finetune")
    view.aug.kind = kind
    return view


def indexed_source(n, image_size=10):
    """Record i has label i (one class per record), so labels identify records."""
    images = np.random.default_rng(0).integers(0, 256, (n, image_size, image_size, 3), dtype=np.uint8)
    return ArraySource(images, np.arange(n), [str(i) for i in range(n)], f"indexed{n}")


def take(iterator, k):
    return [next(iterator) for _ in range(k)]


def assert_same_batches(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x["label"], y["label"])
        np.testing.assert_array_equal(x["image"], y["image"])


@pytest.mark.parametrize("sampler", ["instance", "progressive"])
def test_train_batches_deterministic_per_seed(sampler):
    source = indexed_source(40)
    make = lambda seed: pipeline.make_train_loader(  # noqa: E731
        config(sampler), source, batch_size=6, seed=seed, num_steps=5, shard_index=0, shard_count=1)
    a, b, c = list(make(3)), list(make(3)), list(make(4))
    assert len(a) == 5
    assert a[0]["image"].shape == (6, 8, 8, 3) and a[0]["image"].dtype == np.float32
    assert a[0]["label"].dtype == np.int32
    assert_same_batches(a, b)
    assert not np.array_equal(a[0]["image"], c[0]["image"])


def test_iterator_state_restores_in_a_new_loader():
    source = indexed_source(30)
    make = lambda: pipeline.make_train_loader(  # noqa: E731
        config("class_balanced"), source, batch_size=4, seed=1, num_steps=12, shard_index=1, shard_count=2)
    uninterrupted = iter(make())
    take(uninterrupted, 4)
    expected = take(uninterrupted, 3)
    first = iter(make())
    take(first, 4)
    state = first.get_state()
    restored = iter(make())
    restored.set_state(state)
    assert_same_batches(take(restored, 3), expected)


def test_process_shards_are_disjoint_and_cover_an_epoch():
    n, batch, shards = 48, 8, 2
    source = indexed_source(n)
    steps = n // (batch * shards)
    seen = []
    for index in range(shards):
        loader = pipeline.make_train_loader(config("instance", "mgp"), source, batch_size=batch, seed=0,
                                            num_steps=steps, shard_index=index, shard_count=shards)
        seen.append(np.concatenate([b["label"] for b in loader]))
    assert not set(seen[0]) & set(seen[1])
    np.testing.assert_array_equal(np.sort(np.concatenate(seen)), np.arange(n))


def test_eval_loader_pads_to_equal_batch_counts():
    source = indexed_source(10)
    per_shard = []
    for index in range(3):  # 10 records over 3 processes: 4 / 3 / 3 real, 2 batches of 3 each
        batches = list(pipeline.make_eval_loader(config(), source, batch_size=3, shard_index=index, shard_count=3))
        assert len(batches) == 2
        assert batches[0]["image"].shape == (3, 8, 8, 3) and batches[0]["mask"].dtype == np.float32
        mask = np.concatenate([b["mask"] for b in batches])
        labels = np.concatenate([b["label"] for b in batches])
        per_shard.append(labels[mask == 1])
        assert mask.sum() == len(range(index, 10, 3)) and np.all(mask[: int(mask.sum())] == 1)
    np.testing.assert_array_equal(np.sort(np.concatenate(per_shard)), np.arange(10))
    again = list(pipeline.make_eval_loader(config(), source, batch_size=3, shard_index=0, shard_count=3))
    assert_same_batches(again, list(pipeline.make_eval_loader(config(), source, batch_size=3,
                                                              shard_index=0, shard_count=3)))


def test_loader_argument_errors():
    source = indexed_source(8)
    with pytest.raises(ValueError, match="shard_index < shard_count, got 2, 2, 2"):
        pipeline.make_train_loader(config(), source, batch_size=2, seed=0, num_steps=1, shard_index=2, shard_count=2)
    with pytest.raises(ValueError, match="unknown sampler 'uniform'"):
        pipeline.make_train_loader(config("uniform"), source, batch_size=2, seed=0, num_steps=1,
                                   shard_index=0, shard_count=1)
