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
    if len(a) != len(b):
        raise ValueError(f"paired values need equal lengths, got {len(a)} and {len(b)}")
    diffs = np.asarray(a, np.float64) - np.asarray(b, np.float64)
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


def welch_difference(a: tuple[float, float, int], b: tuple[float, float, int],
                     level: float = 0.95) -> dict:
    """Mean_a - mean_b with Welch's t interval and two-sided p, from summaries only.

    `a`, `b`: (mean, sample std (ddof 1), n) of two independent groups; for
    stored results that keep no per-seed values. Degrees of freedom:
    Welch–Satterthwaite. Returns paired_difference's keys ('diffs' None,
    'n' = min of the group sizes); with both stds 0 the interval is the point.
    """
    (ma, sa, na), (mb, sb, nb) = a, b
    if min(na, nb) < 2:
        raise ValueError(f"Welch's interval needs n >= 2 per group, got {na} and {nb}")
    va, vb = sa * sa / na, sb * sb / nb
    mean, se = float(ma - mb), float(np.sqrt(va + vb))
    if se == 0:
        return {"mean": mean, "low": mean, "high": mean, "p": 1.0 if mean == 0 else 0.0,
                "n": min(na, nb), "diffs": None}
    df = (va + vb) ** 2 / (va * va / (na - 1) + vb * vb / (nb - 1))
    half = float(scipy_stats.t.ppf(0.5 + level / 2, df)) * se
    p = float(2 * scipy_stats.t.sf(abs(mean) / se, df))
    return {"mean": mean, "low": mean - half, "high": mean + half, "p": p,
            "n": min(na, nb), "diffs": None}


def missing_value(mean: float, std: float, known: Sequence[float], tol: float = 1e-6) -> float:
    """The one value absent from `known` that a stored (mean, sample std) of all
    len(known) + 1 values implies: n·mean − Σ known, checked against `std`.

    Raises ValueError when the completed values' sample std is off by more than
    `tol` (the known values are then not a subset of those summarised).
    """
    n = len(known) + 1
    value = n * mean - float(np.sum(known))
    got = float(np.std(np.append(np.asarray(known, np.float64), value), ddof=1))
    if abs(got - std) > tol:
        raise ValueError(f"known values {list(known)} do not fit mean {mean} and std {std} "
                         f"(completed std {got})")
    return value


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
