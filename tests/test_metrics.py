"""Eval metrics vs numpy references on hand-made predictions."""

import jax.numpy as jnp
import numpy as np
import pytest

from livt_jax import metrics

# Training counts: classes 0,1 many (>100), 2,3 medium (20..100), 4,5 few (<20).
TRAIN_COUNTS = [500, 101, 100, 20, 19, 2]
C = len(TRAIN_COUNTS)


def np_ece_loop(conf, correct, num_bins=15):
    """Reference ECE: explicit loop over bins (lo, hi]."""
    total = 0.0
    for b in range(num_bins):
        lo, hi = b / num_bins, (b + 1) / num_bins
        in_bin = (conf > lo) & (conf <= hi)
        if in_bin.any():
            total += in_bin.mean() * abs(correct[in_bin].mean() - conf[in_bin].mean())
    return total


def np_softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def random_eval_set(seed, n=300):
    rs = np.random.RandomState(seed)
    labels = rs.randint(0, C, size=n)
    logits = rs.randn(n, C) * 2.0
    logits[np.arange(n), labels] += rs.rand(n) * 3.0  # better than chance
    return logits.astype(np.float32), labels


def np_reference(logits, labels):
    """Brute-force metrics with per-example sorting (percentages, ECE fraction)."""
    order = np.argsort(-logits, axis=1, kind="stable")
    top1 = order[:, 0] == labels
    top5 = (order[:, :5] == labels[:, None]).any(axis=1)
    per_class = np.array([top1[labels == c].mean() * 100 for c in range(C)])
    probs = np_softmax(logits.astype(np.float64))
    return {
        "top1": top1.mean() * 100, "top5": top5.mean() * 100,
        "many": per_class[:2].mean(), "medium": per_class[2:4].mean(), "few": per_class[4:].mean(),
        "per_class_accuracy": per_class,
        "ece": np_ece_loop(probs.max(axis=1), top1.astype(float)) * 100,
    }


def test_accumulator_matches_numpy_over_several_batches():
    logits, labels = random_eval_set(0)
    acc = metrics.EvalAccumulator(C)
    for start in range(0, len(labels), 64):  # uneven last batch
        acc.update(logits[start:start + 64], labels[start:start + 64])
    got = acc.result(TRAIN_COUNTS)
    ref = np_reference(logits, labels)
    assert got["num_examples"] == len(labels)
    for key in ("top1", "top5", "many", "medium", "few", "ece"):
        np.testing.assert_allclose(got[key], ref[key], rtol=1e-9, atol=1e-9, err_msg=key)
    np.testing.assert_allclose(got["per_class_accuracy"], ref["per_class_accuracy"], rtol=1e-12)
    np.testing.assert_array_equal(got["per_class_total"], np.bincount(labels, minlength=C))


def test_hand_made_top1_top5_and_groups():
    # 3 classes (top-5 becomes top-3, always a hit) ; class 2 has no test image.
    logits = np.array([[3.0, 1.0, 0.0],   # label 0: correct
                       [0.0, 1.0, 2.0],   # label 0: wrong
                       [0.0, 5.0, 1.0],   # label 1: correct
                       [1.0, 1.0, 0.0]])  # label 1: tie with class 0 -> lower index wins: wrong
    labels = np.array([0, 0, 1, 1])
    acc = metrics.EvalAccumulator(3)
    acc.update(logits, labels)
    got = acc.result([1000, 50, 3])
    assert got["top1"] == 50.0 and got["top5"] == 100.0
    np.testing.assert_array_equal(got["per_class_accuracy"], [50.0, 50.0, 0.0])
    assert got["many"] == 50.0 and got["medium"] == 50.0
    assert "few" not in got  # its only class has no test image


def test_top5_counts_rank_within_five():
    logits = np.tile(np.arange(10, dtype=np.float32)[::-1], (3, 1))  # class k has rank k
    labels = np.array([4, 5, 0])
    acc = metrics.EvalAccumulator(10)
    acc.update(logits, labels)
    got = acc.result([200] * 10)
    np.testing.assert_allclose(got["top5"], 200 / 3)
    np.testing.assert_allclose(got["top1"], 100 / 3)


def test_empty_group_absent_not_nan():
    logits, labels = random_eval_set(1, n=50)
    acc = metrics.EvalAccumulator(C)
    acc.update(logits, labels)
    got = acc.result([500] * C)  # every class is "many"
    assert "medium" not in got and "few" not in got
    assert not any(isinstance(v, float) and np.isnan(v) for v in got.values())
    np.testing.assert_allclose(got["many"], np_reference(logits, labels)["per_class_accuracy"].mean())


def test_masked_rows_ignored():
    logits, labels = random_eval_set(2, n=80)
    mask = np.random.RandomState(3).rand(80) > 0.3
    # Padding rows carry garbage labels (out of range) and logits: must not matter.
    garbage_labels = np.where(mask, labels, -1)
    garbage_logits = np.where(mask[:, None], logits, 1e6)
    acc = metrics.EvalAccumulator(C)
    acc.update(garbage_logits, garbage_labels, mask.astype(np.int32))
    got = acc.result(TRAIN_COUNTS)
    ref = np_reference(logits[mask], labels[mask])
    assert got["num_examples"] == mask.sum()
    for key in ("top1", "top5", "many", "medium", "few", "ece"):
        np.testing.assert_allclose(got[key], ref[key], rtol=1e-9, err_msg=key)


def test_accepts_jax_arrays():
    logits, labels = random_eval_set(4, n=40)
    acc = metrics.EvalAccumulator(C)
    acc.update(jnp.asarray(logits), jnp.asarray(labels), jnp.ones(40, bool))
    np.testing.assert_allclose(acc.result(TRAIN_COUNTS)["top1"], np_reference(logits, labels)["top1"])


def test_ece_matches_loop_and_edge_cases():
    rs = np.random.RandomState(5)
    conf = rs.rand(1000)
    correct = (rs.rand(1000) < conf).astype(float)
    np.testing.assert_allclose(metrics.expected_calibration_error(conf, correct),
                               np_ece_loop(conf, correct), rtol=1e-12)
    np.testing.assert_allclose(metrics.expected_calibration_error(conf, correct, num_bins=7),
                               np_ece_loop(conf, correct, 7), rtol=1e-12)
    # Bins are (lo, hi]: a confidence on an upper edge stays in that bin, so
    # with one example per bin ECE is the mean |correct − confidence|.
    edges = np.linspace(0.0, 1.0, 16)[1:]
    hits = np.arange(15) % 2
    np.testing.assert_allclose(metrics.expected_calibration_error(edges, hits),
                               np.abs(hits - edges).mean(), rtol=1e-12)
    # Perfect confidence + all correct -> 0; confidence 1 but all wrong -> 1.
    assert metrics.expected_calibration_error(np.ones(4), np.ones(4)) == 0.0
    assert metrics.expected_calibration_error(np.ones(4), np.zeros(4)) == 1.0


def test_shot_groups_thresholds():
    groups = metrics.shot_groups(TRAIN_COUNTS)
    np.testing.assert_array_equal(groups["many"], [1, 1, 0, 0, 0, 0])
    np.testing.assert_array_equal(groups["medium"], [0, 0, 1, 1, 0, 0])
    np.testing.assert_array_equal(groups["few"], [0, 0, 0, 0, 1, 1])
    groups = metrics.shot_groups(TRAIN_COUNTS, many_threshold=19, few_threshold=3)
    np.testing.assert_array_equal(groups["medium"], [0, 0, 0, 0, 1, 0])


def test_errors():
    acc = metrics.EvalAccumulator(C)
    with pytest.raises(ValueError, match="before any"):
        acc.result(TRAIN_COUNTS)
    with pytest.raises(ValueError, match=r"logits must be \(B, 6\)"):
        acc.update(np.zeros((2, 5)), np.zeros(2, int))
    with pytest.raises(ValueError, match=r"labels must be in \[0, 6\); got \[6\]"):
        acc.update(np.zeros((2, C)), np.array([1, 6]))
    acc.update(np.zeros((2, C)), np.array([1, 2]))
    with pytest.raises(ValueError, match="expected 6"):
        acc.result([10, 20])
    with pytest.raises(ValueError, match="class_counts must be non-negative"):
        metrics.shot_groups([5, -1])


def test_shot_group_names_follow_the_boundaries():
    """n > 100 many, 20 <= n <= 100 medium, n < 20 few (the per-class CSV's group column)."""
    counts = [500, 101, 100, 20, 19, 1, 0]
    assert metrics.shot_group_names(counts) == [
        "many", "many", "medium", "medium", "few", "few", "few"]
