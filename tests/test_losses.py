"""Losses vs hand-written float64 numpy references."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized

from livt_jax import losses

B, C = 6, 5
EXTREME_COUNTS = [1, 10**6, 37, 5, 1000]


# ---- numpy references ------------------------------------------------------


def np_softplus(x):
    return np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))


def np_log_softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def np_ce(z, y):
    return -(y * np_log_softmax(z)).sum(axis=1)


def np_bce(z, y):
    # Element-wise mean over (C) times C, the release's reduction.
    per_elem = np_softplus(z) - y * z
    return per_elem.mean(axis=1) * z.shape[1]


def np_priors(counts):
    counts = np.asarray(counts, np.float64)
    return counts / counts.sum()


def np_margins(counts, tau):
    pi = np_priors(counts)
    return tau * (np.log(pi) - np.log(1.0 - pi))


def np_cb_weights(counts, beta):
    counts = np.asarray(counts, np.float64)
    w = np.array([(1 - beta) / (1 - beta**n) for n in counts])
    return w / w.sum() * len(counts)


def random_batch(seed, b=B, c=C, scale=3.0):
    rs = np.random.RandomState(seed)
    z = rs.randn(b, c) * scale
    y = rs.rand(b, c)
    y /= y.sum(axis=1, keepdims=True)
    return z.astype(np.float32), y.astype(np.float32)


# ---- class statistics ---------------------------------------------------------


def test_log_priors_and_margins_match_numpy_and_stay_finite():
    log_pi = losses.class_log_priors(EXTREME_COUNTS)
    margins = losses.bal_bce_margins(EXTREME_COUNTS, tau=1.05)
    assert log_pi.dtype == np.float32 and margins.dtype == np.float32
    np.testing.assert_allclose(log_pi, np.log(np_priors(EXTREME_COUNTS)), rtol=1e-6)
    np.testing.assert_allclose(margins, np_margins(EXTREME_COUNTS, 1.05), rtol=1e-5)
    assert np.all(np.isfinite(margins))
    # The head class holds ~99.9% of the data: margin log(π/(1−π)) is large and positive.
    assert margins[1] > 6.0


def test_margins_finite_when_one_class_dominates_float_precision():
    counts = [1, 10**17]  # 1 − π_1 rounds to 0 in float64 if computed from π.
    margins = losses.bal_bce_margins(counts)
    np.testing.assert_allclose(margins, [-17 * np.log(10), 17 * np.log(10)], rtol=1e-6)


def test_class_balanced_weights():
    for beta in (0.9999, 0.99, 0.0):
        w = losses.class_balanced_weights(EXTREME_COUNTS, beta)
        np.testing.assert_allclose(w.sum(), len(EXTREME_COUNTS), rtol=1e-6)
        np.testing.assert_allclose(w, np_cb_weights(EXTREME_COUNTS, beta), rtol=1e-5)
    w = losses.class_balanced_weights(EXTREME_COUNTS)
    assert w[0] > w[3] > w[2] > w[4] > w[1]  # rarer class -> larger weight


@pytest.mark.parametrize("bad", [[3, 0, 2], [3, -1, 2], [[1, 2]], [1.5, 2]])
def test_bad_class_counts_raise(bad):
    with pytest.raises(ValueError, match="class_counts"):
        losses.class_log_priors(bad)


def test_margins_need_two_classes_and_beta_range():
    with pytest.raises(ValueError, match="2 classes"):
        losses.bal_bce_margins([10])
    with pytest.raises(ValueError, match="beta"):
        losses.class_balanced_weights([1, 2], beta=1.0)


# ---- label smoothing --------------------------------------------------------------


def test_smooth_labels_values():
    labels = np.array([0, 3, 4])
    y = np.asarray(losses.smooth_labels(labels, 5, 0.1))
    expected = np.full((3, 5), 0.1 / 5)
    expected[np.arange(3), labels] = 1 - 0.1 + 0.1 / 5
    np.testing.assert_allclose(y, expected, rtol=1e-6)
    np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(losses.smooth_labels(labels, 5, 0.0), np.eye(5)[labels])
    with pytest.raises(ValueError, match="smoothing"):
        losses.smooth_labels(labels, 5, 1.5)


# ---- per-example losses ------------------------------------------------------------


def loss_cases():
    """(name, jax fn(z, y), numpy fn(z, y)) with class statistics bound in."""
    margins = np_margins(EXTREME_COUNTS, 1.0)
    log_pi = np.log(np_priors(EXTREME_COUNTS))
    w = np_cb_weights(EXTREME_COUNTS, 0.9999)
    return [
        ("ce", losses.softmax_cross_entropy, np_ce),
        ("bce", losses.bce, np_bce),
        ("bal_bce", lambda z, y: losses.bal_bce(z, y, margins.astype(np.float32)),
         lambda z, y: np_bce(z + margins, y)),
        ("bal_ce", lambda z, y: losses.bal_ce(z, y, log_pi.astype(np.float32), 1.05),
         lambda z, y: np_ce(z + 1.05 * log_pi, y)),
        ("cb_ce", lambda z, y: losses.weighted_softmax_cross_entropy(z, y, w.astype(np.float32)),
         lambda z, y: (y @ w) * np_ce(z, y)),
    ]


class LossTest(chex.TestCase):

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.parameters(0, 1, 2)
    def test_losses_match_numpy(self, seed):
        z, y = random_batch(seed, scale=8.0)
        for name, fn, ref in loss_cases():
            out = self.variant(fn)(z, y)
            chex.assert_shape(out, (B,))
            assert out.dtype == jnp.float32, name
            np.testing.assert_allclose(out, ref(z.astype(np.float64), y.astype(np.float64)),
                                       rtol=2e-5, atol=2e-5, err_msg=name)

    @chex.variants(with_jit=True, without_jit=True)
    def test_make_loss_matches_direct_calls(self):
        z, y = random_batch(3)
        for name, fn, ref in loss_cases():
            tau = 1.05 if name == "bal_ce" else 1.0
            made = losses.make_loss(name, EXTREME_COUNTS, tau=tau)
            np.testing.assert_allclose(self.variant(made)(z, y), ref(z.astype(np.float64), y),
                                       rtol=2e-5, atol=2e-5, err_msg=name)


def test_bal_bce_with_tau_zero_equals_bce():
    z, y = random_batch(4)
    zero = losses.bal_bce_margins(EXTREME_COUNTS, tau=0.0)
    np.testing.assert_array_equal(losses.bal_bce(z, y, zero), losses.bce(z, y))
    np.testing.assert_array_equal(losses.make_loss("bal_bce", EXTREME_COUNTS, tau=0.0)(z, y),
                                  losses.bce(z, y))


def test_vmap_of_single_examples_matches_batch():
    z, y = random_batch(5)
    for name, fn, _ in loss_cases():
        per_example = jax.vmap(lambda zi, yi, f=fn: f(zi[None], yi[None])[0])(z, y)
        np.testing.assert_allclose(per_example, fn(z, y), rtol=1e-6, atol=1e-6, err_msg=name)


def test_gradients_finite_and_match_numpy_for_bal_bce():
    z, y = random_batch(6, scale=30.0)  # saturating logits
    margins = np_margins(EXTREME_COUNTS, 1.0)
    for name, fn, _ in loss_cases():
        grad = jax.grad(lambda zz, f=fn: f(zz, y).sum())(z)
        assert np.all(np.isfinite(grad)), name
    grad = jax.grad(lambda zz: losses.bal_bce(zz, y, margins.astype(np.float32)).sum())(z)
    expected = 1.0 / (1.0 + np.exp(-(z.astype(np.float64) + margins))) - y  # sigmoid(z') − y
    np.testing.assert_allclose(grad, expected, rtol=1e-5, atol=1e-6)


def test_bf16_logits_computed_in_float32():
    z, y = random_batch(7)
    z16 = jnp.asarray(z, jnp.bfloat16)
    out = losses.bce(z16, y)
    assert out.dtype == jnp.float32
    np.testing.assert_allclose(out, np_bce(np.asarray(z16, np.float64), y), rtol=1e-5)


def test_shape_errors_and_unknown_loss_name():
    z, y = random_batch(8)
    with pytest.raises(ValueError, match="logits and targets"):
        losses.bce(z, y[:, :-1])
    with pytest.raises(ValueError, match=r"margins must have shape \(5,\)"):
        losses.bal_bce(z, y, np.zeros(4, np.float32))
    with pytest.raises(ValueError, match="unknown loss 'focal'.*ce, bce, bal_ce, bal_bce, cb_ce"):
        losses.make_loss("focal", EXTREME_COUNTS)
    with pytest.raises(ValueError, match="needs class_counts"):
        losses.make_loss("bal_bce", None)
