"""Long-tailed subsampling: the CIFAR-LT sizes of the literature, from label arrays."""

import numpy as np
import pytest

from livt_jax.data.long_tail import long_tail_counts, long_tail_indices


def balanced_labels(num_classes, per_class, seed=0):
    """Shuffled labels with `per_class` images of each class (like CIFAR's train split)."""
    return np.random.default_rng(seed).permutation(np.repeat(np.arange(num_classes), per_class))


@pytest.mark.parametrize(
    "num_classes, per_class, ratio, total",
    [(10, 5000, 100, 12406), (10, 5000, 10, 20431), (100, 500, 100, 10847), (100, 500, 10, 19573)],
)
def test_cifar_lt_sizes(num_classes, per_class, ratio, total):
    labels = balanced_labels(num_classes, per_class)
    indices = long_tail_indices(labels, ratio, "exp", seed=0)
    assert len(indices) == total
    counts = np.bincount(labels[indices], minlength=num_classes)
    assert counts[0] == per_class and counts[-1] == int(per_class / ratio)
    assert np.all(np.diff(counts) <= 0)


def test_cifar10_lt_100_per_class():
    labels = balanced_labels(10, 5000)
    counts = np.bincount(labels[long_tail_indices(labels, 100.0, "exp", seed=3)])
    np.testing.assert_array_equal(counts, [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50])


def test_counts_formula_and_step_profile():
    ratio, n_max, c = 50.0, 400, 7
    expected = [int(n_max * (1 / ratio) ** (i / (c - 1))) for i in range(c)]
    np.testing.assert_array_equal(long_tail_counts(n_max, c, ratio, "exp"), expected)
    np.testing.assert_array_equal(long_tail_counts(500, 4, 10, "step"), [500, 500, 50, 50])
    np.testing.assert_array_equal(long_tail_counts(500, 3, 10, "step"), [500, 50, 50])


def test_selection_is_seeded_unique_and_within_class():
    labels = balanced_labels(10, 300, seed=1)
    a = long_tail_indices(labels, 10, "exp", seed=5)
    assert np.array_equal(a, long_tail_indices(labels, 10, "exp", seed=5))
    assert not np.array_equal(a, long_tail_indices(labels, 10, "exp", seed=6))
    assert len(np.unique(a)) == len(a) and np.all(np.diff(a) > 0)


def test_ratio_one_keeps_everything_and_bad_args_raise():
    labels = balanced_labels(5, 20)
    np.testing.assert_array_equal(long_tail_indices(labels, 1.0), np.arange(100))
    with pytest.raises(ValueError, match="profile 'linear'"):
        long_tail_counts(10, 3, 10, "linear")
    with pytest.raises(ValueError, match="imbalance_ratio"):
        long_tail_counts(10, 3, 0.5)
