"""Study statistics against hand-written numpy references and scipy's own tests."""

import numpy as np
import pytest
from scipy import stats as scipy_stats

from livt_jax.experiments import stats


def test_mean_std_skips_missing_values():
    mean, std, n = stats.mean_std([1.0, None, 3.0, float("nan"), 5.0])
    assert (mean, n) == (3.0, 3)
    assert std == pytest.approx(np.sqrt(((1 - 3) ** 2 + 0 + (5 - 3) ** 2) / 2))
    assert stats.mean_std([7.0]) == (7.0, 0.0, 1)


def test_paired_difference_hand_computed_three_seeds():
    # diffs 2, 4, 9: mean 5, sd sqrt(((-3)^2 + (-1)^2 + 4^2) / 2) = sqrt(13)
    out = stats.paired_difference([12.0, 14.0, 19.0], [10.0, 10.0, 10.0])
    se = np.sqrt(13.0) / np.sqrt(3.0)
    half = 4.302652729911275 * se  # t(0.975, df 2), from tables
    assert out["n"] == 3 and out["diffs"] == [2.0, 4.0, 9.0]
    assert out["mean"] == pytest.approx(5.0)
    assert (out["low"], out["high"]) == pytest.approx((5.0 - half, 5.0 + half))
    # p from the t statistic 5 / se with 2 degrees of freedom: 2·(1 − F(t)), F in closed
    # form for df 2: F(t) = 1/2 + t / (2·sqrt(2 + t²))
    t = 5.0 / se
    assert out["p"] == pytest.approx(1.0 - t / np.sqrt(2.0 + t * t))


def test_paired_difference_matches_scipy():
    rng = np.random.default_rng(0)
    a, b = rng.normal(50, 3, 5), rng.normal(48, 3, 5)
    out = stats.paired_difference(a, b, level=0.9)
    d = a - b
    half = scipy_stats.t.ppf(0.95, 4) * d.std(ddof=1) / np.sqrt(5)
    assert (out["low"], out["high"]) == pytest.approx((d.mean() - half, d.mean() + half))
    assert out["p"] == pytest.approx(scipy_stats.ttest_rel(a, b).pvalue)


def test_paired_difference_edge_cases():
    one = stats.paired_difference([3.0], [1.0])
    assert one["mean"] == 2.0 and np.isnan(one["low"]) and np.isnan(one["p"])
    same = stats.paired_difference([2.0, 3.0], [1.0, 2.0])
    assert (same["low"], same["high"], same["p"]) == (1.0, 1.0, 0.0)
    with pytest.raises(ValueError, match="equal lengths, got 2 and 3"):
        stats.paired_difference([1.0, 2.0], [1.0, 2.0, 3.0])


def test_welch_p_matches_hand_computed_statistic():
    a, b = np.array([52.0, 55.0, 49.0]), np.array([46.0, 47.5, 45.0, 44.0])
    va, vb = a.var(ddof=1) / 3, b.var(ddof=1) / 4
    t = (a.mean() - b.mean()) / np.sqrt(va + vb)
    df = (va + vb) ** 2 / (va ** 2 / 2 + vb ** 2 / 3)
    assert stats.welch_p(a, b) == pytest.approx(2 * scipy_stats.t.sf(abs(t), df))
    assert stats.welch_p(b, a) == pytest.approx(stats.welch_p(a, b))


def test_welch_difference_from_summaries_matches_raw_values():
    a, b = np.array([52.0, 55.0, 49.0]), np.array([46.0, 47.5, 45.0, 44.0])
    out = stats.welch_difference((a.mean(), a.std(ddof=1), 3), (b.mean(), b.std(ddof=1), 4))
    ref = scipy_stats.ttest_ind(a, b, equal_var=False)
    ci = ref.confidence_interval(0.95)
    assert out["mean"] == pytest.approx(a.mean() - b.mean())
    assert (out["low"], out["high"]) == pytest.approx((ci.low, ci.high))
    assert out["p"] == pytest.approx(ref.pvalue) and out["p"] == pytest.approx(stats.welch_p(a, b))
    assert out["n"] == 3 and out["diffs"] is None


def test_welch_difference_degenerate_and_bad_input():
    tie = stats.welch_difference((0.0, 0.0, 3), (0.0, 0.0, 3))
    assert (tie["low"], tie["high"], tie["p"]) == (0.0, 0.0, 1.0)
    with pytest.raises(ValueError, match="n >= 2 per group, got 1 and 3"):
        stats.welch_difference((1.0, 0.0, 1), (0.0, 1.0, 3))


def test_missing_value_completes_and_checks_the_summary():
    values = np.array([55.15, 48.75, 52.55])
    got = stats.missing_value(values.mean(), values.std(ddof=1), values[:2])
    assert got == pytest.approx(52.55)
    with pytest.raises(ValueError, match="do not fit mean"):
        stats.missing_value(values.mean(), values.std(ddof=1) + 0.1, values[:2])


@pytest.mark.parametrize("low,high,expected", [
    (1.0, 3.0, "A is ahead of B (+2.00 points, 95% CI [+1.00, +3.00])"),
    (-3.0, -1.0, "A is behind B (-2.00 points, 95% CI [-3.00, -1.00])"),
])
def test_verdict_claims_only_when_the_interval_excludes_zero(low, high, expected):
    mean = (low + high) / 2
    assert stats.verdict({"mean": mean, "low": low, "high": high}, "A", "B") == expected


def test_verdict_interval_including_zero_and_one_seed():
    text = stats.verdict({"mean": 1.0, "low": -0.5, "high": 2.5}, "A", "B")
    assert text.startswith("no difference shown between A and B") and "includes 0" in text
    assert "ahead" not in text and "behind" not in text
    one = stats.verdict({"mean": 1.0, "low": float("nan"), "high": float("nan")}, "A", "B")
    assert one.startswith("undecided (one seed)")
