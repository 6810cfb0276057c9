"""Long-tailed subsampling of a balanced training split (CIFAR-LT protocol).

Class 0 is the head. With the exponential profile class ``i`` of ``C`` keeps
``int(n_max * (1 / IR) ** (i / (C - 1)))`` images; with the step profile the
first ``C // 2`` classes keep ``n_max`` and the others ``int(n_max / IR)``.
Members are picked per class after a seeded shuffle, so the subset depends only
on ``(labels, imbalance_ratio, profile, seed)``.
"""

from __future__ import annotations

import numpy as np

PROFILES = ("exp", "step")


def long_tail_counts(
    max_count: int, num_classes: int, imbalance_ratio: float, profile: str = "exp"
) -> np.ndarray:
    """Target images per class, head first.

    Returns:
      int64 array (num_classes,).
    """
    if profile not in PROFILES:
        raise ValueError(f"unknown imbalance profile {profile!r}; expected one of {PROFILES}")
    if imbalance_ratio < 1:
        raise ValueError(f"imbalance_ratio must be >= 1, got {imbalance_ratio}")
    if num_classes < 1 or max_count < 1:
        raise ValueError(f"need num_classes >= 1 and max_count >= 1, got {num_classes}, {max_count}")
    if profile == "step":
        head = num_classes // 2
        counts = [max_count] * head + [int(max_count / imbalance_ratio)] * (num_classes - head)
    else:
        denom = max(num_classes - 1, 1)
        counts = [
            int(max_count * (1.0 / imbalance_ratio) ** (i / denom)) for i in range(num_classes)
        ]
    return np.asarray(counts, dtype=np.int64)


def long_tail_indices(
    labels: np.ndarray,
    imbalance_ratio: float,
    profile: str = "exp",
    seed: int = 0,
    num_classes: int | None = None,
) -> np.ndarray:
    """Indices into ``labels`` of a long-tailed subset.

    ``n_max`` is the largest class size in ``labels``; a class smaller than its
    target keeps all its images.

    Args:
      labels: int array (N,) of class ids in ``[0, num_classes)``.
      imbalance_ratio: n_max / n_min; 1 keeps everything.
      profile: 'exp' or 'step'.
      seed: seed of the per-class shuffles.
      num_classes: defaults to ``labels.max() + 1``.

    Returns:
      int64 array of selected indices, ascending.
    """
    labels = np.asarray(labels, dtype=np.int64)
    num_classes = int(labels.max()) + 1 if num_classes is None else num_classes
    available = np.bincount(labels, minlength=num_classes)
    targets = long_tail_counts(int(available.max()), num_classes, imbalance_ratio, profile)
    rng = np.random.default_rng(seed)
    chosen = []
    for c in range(num_classes):
        members = np.flatnonzero(labels == c)
        chosen.append(rng.permutation(members)[: targets[c]])
    return np.sort(np.concatenate(chosen)).astype(np.int64)
