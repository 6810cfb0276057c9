"""Statistics for study tables: mean ± sample std, paired differences with a t
interval, and the wording a verdict may use given that interval.

Seeds are the unit: a study with n seeds has n paired differences per claim
(arms of one seed share its MGP model and its data order), and the 95%
interval is the Student-t one on their mean, `mean ± t(0.975, n-1) · sd / √n`.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
from scipy import stats as scipy_stats


def mean_std(values: Sequence[Optional[float]]) -> tuple[float, float, int]:
    """(mean, sample std (ddof 1; 0 for one value), n) over the finite values."""
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], np.float64)
    if v.size == 0:
        return float("nan"), float("nan"), 0
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0, int(v.size)


def paired_difference(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> dict:
    """Mean of a_i - b_i with its t interval and two-sided p-value (paired t-test).

    Returns {'mean', 'low', 'high', 'p', 'n', 'diffs'}; with n < 2 the interval
    and p are NaN.
    """
    diffs = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    if diffs.shape != (len(a),) or len(a) != len(b):
        raise ValueError(f"paired values need equal lengths, got {len(a)} and {len(b)}")
    n = diffs.size
    mean = float(diffs.mean()) if n else float("nan")
    if n < 2:
        return {"mean": mean, "low": float("nan"), "high": float("nan"), "p": float("nan"),
                "n": n, "diffs": diffs.tolist()}
    se = float(diffs.std(ddof=1)) / np.sqrt(n)
    half = float(scipy_stats.t.ppf(0.5 + level / 2, n - 1)) * se
    if se == 0:
        p = 1.0 if mean == 0 else 0.0
    else:
        p = float(2 * scipy_stats.t.sf(abs(mean) / se, n - 1))
    return {"mean": mean, "low": mean - half, "high": mean + half, "p": p, "n": n,
            "diffs": diffs.tolist()}


def welch_p(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided p-value of Welch's t-test (unpaired, unequal variances)."""
    return float(scipy_stats.ttest_ind(a, b, equal_var=False).pvalue)


def verdict(diff: dict, better: str, worse: str, unit: str = "points") -> str:
    """A sentence no stronger than the interval: a difference is claimed only when
    the 95% interval excludes zero."""
    if not np.isfinite(diff["low"]):
        return f"undecided (one seed): {better} − {worse} = {diff['mean']:+.2f} {unit}"
    span = f"{diff['mean']:+.2f} {unit}, 95% CI [{diff['low']:+.2f}, {diff['high']:+.2f}]"
    if diff["low"] > 0:
        return f"{better} is ahead of {worse} ({span})"
    if diff["high"] < 0:
        return f"{better} is behind {worse} ({span})"
    return f"no difference shown between {better} and {worse} ({span}; the interval includes 0)"
