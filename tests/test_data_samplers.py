"""Samplers against hand-written class probabilities; determinism per (seed, step, shard)."""

import numpy as np
import pytest

from livt_jax.data.samplers import make_sampler

CIFAR10_LT = np.array([5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50])
LABELS = np.random.default_rng(0).permutation(np.repeat(np.arange(10), CIFAR10_LT))


def sampler(name, seed=0, batch_size=100, num_steps=1000, shard_index=0, shard_count=1, labels=LABELS):
    return make_sampler(name, labels, seed=seed, num_classes=10, batch_size=batch_size, num_steps=num_steps,
                        shard_index=shard_index, shard_count=shard_count)


def keys(s, steps):
    return np.concatenate([s.draw(step)[0] for step in steps])


def assert_within_5_sigma(labels, probs):
    """Each class count within 5 binomial standard deviations of sum(probs) over draws."""
    probs = np.broadcast_to(np.atleast_2d(probs), (len(labels), np.shape(probs)[-1]))
    expected = probs.sum(0)
    sigma = np.sqrt((probs * (1 - probs)).sum(0))
    counts = np.bincount(labels, minlength=probs.shape[1])
    assert np.all(np.abs(counts - expected) < 5 * sigma), (counts, expected, sigma)


def test_class_balanced_is_uniform_over_classes():
    drawn = LABELS[keys(sampler("class_balanced"), range(200))]  # 20,000 draws
    assert len(drawn) == 20000
    assert_within_5_sigma(drawn, np.full(10, 0.1))


def test_sqrt_follows_sqrt_counts():
    probs = np.sqrt(CIFAR10_LT) / np.sqrt(CIFAR10_LT).sum()
    assert_within_5_sigma(LABELS[keys(sampler("sqrt"), range(200))], probs)


def test_instance_epochs_are_permutations_following_the_counts():
    n = len(LABELS)  # 12,406 = 124 batches of 100 + 6
    s = sampler("instance")
    stream = keys(s, range(2 * n // 100 + 1))
    first, second = stream[:n], stream[n:2 * n]
    np.testing.assert_array_equal(np.sort(first), np.arange(n))
    np.testing.assert_array_equal(np.sort(second), np.arange(n))
    assert not np.array_equal(first, second)  # reshuffled every epoch
    np.testing.assert_array_equal(np.bincount(LABELS[first]), CIFAR10_LT)


def test_instance_shards_split_each_epoch():
    labels = np.arange(60)
    shards = [sampler("instance", batch_size=5, shard_index=p, shard_count=3, labels=labels % 10)
              for p in range(3)]
    per_shard = [keys(s, range(4)) for s in shards]  # 3 shards x 4 steps x 5 = one epoch
    np.testing.assert_array_equal(np.sort(np.concatenate(per_shard)), labels)


def test_progressive_moves_from_instance_to_balanced():
    num_steps = 1000
    s = sampler("progressive", num_steps=num_steps)
    instance = CIFAR10_LT / CIFAR10_LT.sum()
    for steps in (range(200), range(num_steps - 200, num_steps)):
        t = np.repeat(np.array(steps) / num_steps, 100)[:, None]
        assert_within_5_sigma(LABELS[keys(s, steps)], (1 - t) * instance + t / 10)
    early = np.bincount(LABELS[keys(s, range(40))], minlength=10)
    late = np.bincount(LABELS[keys(s, range(num_steps - 40, num_steps))], minlength=10)
    assert early[0] > 1200 and early[-1] < 100  # ~instance: 40% head, 0.4% tail of 4000
    assert late[0] < 600 and late[-1] > 250  # ~balanced: 10% each
    beyond = np.bincount(LABELS[keys(s, range(num_steps, num_steps + 40))], minlength=10)
    assert beyond[-1] > 250  # t stays 1 after num_steps


@pytest.mark.parametrize("name", ["instance", "class_balanced", "sqrt", "progressive"])
def test_deterministic_per_seed_step_and_shard(name):
    a, b = sampler(name, seed=4), sampler(name, seed=4)
    steps = [0, 7, 123]
    drawn = [a.draw(step) for step in steps]
    for step, (k, rng) in reversed(list(zip(steps, drawn))):
        k2, rng2 = b.draw(step)
        np.testing.assert_array_equal(k, k2)
        assert rng.random() == rng2.random()  # the augmentation stream continues identically
    assert not np.array_equal(a.draw(7)[0], sampler(name, seed=5).draw(7)[0])
    assert not np.array_equal(a.draw(7)[0], a.draw(8)[0])
    other_shard = sampler(name, seed=4, shard_index=1, shard_count=2).draw(7)[0]
    assert not np.array_equal(sampler(name, seed=4, shard_count=2).draw(7)[0], other_shard)


def test_errors_and_empty_classes():
    with pytest.raises(ValueError, match="unknown sampler 'balanced'"):
        sampler("balanced")
    with pytest.raises(ValueError, match="num_steps > 0"):
        sampler("progressive", num_steps=None)
    with pytest.raises(ValueError, match="shard_index < shard_count"):
        sampler("instance", shard_index=2, shard_count=2)
    labels = np.array([0, 0, 2, 2, 2])
    s = make_sampler("class_balanced", labels, seed=0, num_classes=4, batch_size=1000)
    drawn = labels[s.draw(0)[0]]
    assert set(drawn) == {0, 2} and abs((drawn == 0).mean() - 0.5) < 0.06
