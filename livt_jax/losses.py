"""Per-example classification losses for long-tailed training (Bal-BCE: Xu et al., CVPR 2023; logit adjustment: Menon et al., ICLR 2021).

Every loss is a plain, jittable function of arrays,
``(logits (B, C), targets (B, C) soft) -> (B,)``, computed in float32 whatever
the logits' dtype. The trainer takes the mean over the batch. Targets are soft
(label smoothing and mixup/cutmix make them so); rows should sum to 1.

Class-count statistics (priors, Bal-BCE margins, class-balanced weights) are
computed once, on the host, in float64 numpy and returned as float32 arrays.
"""

from typing import Callable, Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np

ArrayLike = Union[np.ndarray, jax.Array]
LossFn = Callable[[jax.Array, jax.Array], jax.Array]

LOSS_NAMES = ("ce", "bce", "bal_ce", "bal_bce", "cb_ce")


# --------------------------------------------------------------------------
# Class-count statistics (host side, float64)
# --------------------------------------------------------------------------


def check_class_counts(class_counts: Sequence[int], *, allow_zero: bool = False) -> np.ndarray:
    """Validates per-class training image counts and returns them as int64 (C,).

    Raises ValueError for a non-1-D input, non-integer values, or any entry
    that is negative (or zero, unless ``allow_zero``), naming the bad classes.
    """
    counts = np.asarray(class_counts)
    if counts.ndim != 1 or counts.size == 0:
        raise ValueError(f"class_counts must be a non-empty 1-D sequence, got shape {counts.shape}")
    if not np.all(np.equal(np.mod(counts, 1), 0)):
        raise ValueError(f"class_counts must be integers, got {counts[np.mod(counts, 1) != 0][:10]}")
    counts = counts.astype(np.int64)
    bad = counts < 0 if allow_zero else counts <= 0
    if np.any(bad):
        idx = np.flatnonzero(bad)
        need = "non-negative" if allow_zero else "positive"
        raise ValueError(
            f"class_counts must be {need}; classes {idx[:10].tolist()} have counts "
            f"{counts[idx[:10]].tolist()}")
    return counts


def class_log_priors(class_counts: Sequence[int], dtype=np.float32) -> np.ndarray:
    """log π_c = log(n_c / Σn) (C,) in `dtype` (computed in float64). Counts must all
    be positive."""
    counts = check_class_counts(class_counts).astype(np.float64)
    return (np.log(counts) - np.log(counts.sum())).astype(dtype)


def bal_bce_margins(class_counts: Sequence[int], tau: float = 1.0, dtype=np.float32
                    ) -> np.ndarray:
    """Bal-BCE logit margins τ·(log π_c − log(1 − π_c)) (C,) in `dtype` (float32, what
    training adds; float64 for post-hoc scoring).

    Computed as τ·(log n_c − log(Σn − n_c)), exact for any imbalance (both
    π_c and 1 − π_c are ratios of integers); needs at least two classes.
    """
    counts = check_class_counts(class_counts)
    if counts.size < 2:
        raise ValueError("bal_bce_margins needs at least 2 classes (1 - π is 0 otherwise)")
    rest = counts.sum() - counts  # integer arithmetic: exact where float64 would round
    return (tau * (np.log(counts.astype(np.float64)) - np.log(rest.astype(np.float64)))
            ).astype(dtype)


def class_balanced_weights(class_counts: Sequence[int], beta: float = 0.9999) -> np.ndarray:
    """Cui et al. class-balanced weights (1−β)/(1−β^n_c), scaled to sum to C; float32 (C,)."""
    if not 0.0 <= beta < 1.0:
        raise ValueError(f"beta must be in [0, 1), got {beta}")
    counts = check_class_counts(class_counts).astype(np.float64)
    # 1 - β^n = -expm1(n log β): accurate when β is close to 1.
    effective_num = -np.expm1(counts * np.log(beta)) if beta > 0 else np.ones_like(counts)
    weights = (1.0 - beta) / effective_num
    return (weights * counts.size / weights.sum()).astype(np.float32)


# --------------------------------------------------------------------------
# Targets
# --------------------------------------------------------------------------


def smooth_labels(labels: ArrayLike, num_classes: int, smoothing: float = 0.0) -> jax.Array:
    """Label-smoothed one-hot targets, float32 (B, C) from int labels (B,).

    off = s/C, on = 1 − s + s/C (timm's convention), so rows sum to 1.
    """
    if not 0.0 <= smoothing <= 1.0:
        raise ValueError(f"smoothing must be in [0, 1], got {smoothing}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    off = smoothing / num_classes
    one_hot = jax.nn.one_hot(labels, num_classes, dtype=jnp.float32)
    return one_hot * (1.0 - smoothing) + off


# --------------------------------------------------------------------------
# Per-example losses (jittable)
# --------------------------------------------------------------------------


def _as_float32_pair(logits: ArrayLike, targets: ArrayLike):
    """Casts to float32 and checks both are (B, C) with equal shapes."""
    logits = jnp.asarray(logits, jnp.float32)
    targets = jnp.asarray(targets, jnp.float32)
    if logits.ndim != 2 or logits.shape != targets.shape:
        raise ValueError(
            f"logits and targets must both be (B, C); got {logits.shape} and {targets.shape}")
    return logits, targets


def _as_class_vector(values: ArrayLike, num_classes: int, name: str) -> jax.Array:
    """float32 (C,) per-class vector, checked against the logits' class count."""
    values = jnp.asarray(values, jnp.float32)
    if values.shape != (num_classes,):
        raise ValueError(f"{name} must have shape ({num_classes},), got {values.shape}")
    return values


def softmax_cross_entropy(logits: ArrayLike, targets: ArrayLike) -> jax.Array:
    """Soft-target softmax CE, −Σ_c y_c log softmax(z)_c: (B, C), (B, C) -> (B,)."""
    logits, targets = _as_float32_pair(logits, targets)
    return -jnp.sum(targets * jax.nn.log_softmax(logits, axis=-1), axis=-1)


def bce(logits: ArrayLike, targets: ArrayLike) -> jax.Array:
    """Sigmoid BCE summed over classes, Σ_c softplus(z_c) − y_c z_c: (B, C), (B, C) -> (B,).

    The sum equals the release's reduction (C × the element-wise mean).
    """
    logits, targets = _as_float32_pair(logits, targets)
    return jnp.sum(jax.nn.softplus(logits) - targets * logits, axis=-1)


def bal_bce(logits: ArrayLike, targets: ArrayLike, margins: ArrayLike) -> jax.Array:
    """Bal-BCE: BCE on z + margins, margins (C,) from `bal_bce_margins`. Returns (B,).

    Training only: evaluation uses the raw logits.
    """
    logits, targets = _as_float32_pair(logits, targets)
    margins = _as_class_vector(margins, logits.shape[-1], "margins")
    return bce(logits + margins, targets)


def bal_ce(logits: ArrayLike, targets: ArrayLike, log_priors: ArrayLike,
           tau: float = 1.0) -> jax.Array:
    """Balanced softmax / logit-adjusted CE on z + τ·log π; log_priors (C,). Returns (B,)."""
    logits, targets = _as_float32_pair(logits, targets)
    log_priors = _as_class_vector(log_priors, logits.shape[-1], "log_priors")
    return softmax_cross_entropy(logits + tau * log_priors, targets)


def weighted_softmax_cross_entropy(logits: ArrayLike, targets: ArrayLike,
                                   weights: ArrayLike) -> jax.Array:
    """Class-weighted soft CE: (Σ_c y_c w_c) · CE(z, y); weights (C,). Returns (B,)."""
    logits, targets = _as_float32_pair(logits, targets)
    weights = _as_class_vector(weights, logits.shape[-1], "weights")
    return (targets @ weights) * softmax_cross_entropy(logits, targets)


# --------------------------------------------------------------------------
# Factory
# --------------------------------------------------------------------------


def make_loss(name: str, class_counts: Optional[Sequence[int]] = None, tau: float = 1.0,
              cb_beta: float = 0.9999) -> LossFn:
    """Returns ``fn(logits (B, C), targets (B, C)) -> (B,)`` for a loss name.

    Names: 'ce', 'bce' (class_counts unused), 'bal_ce' (τ·log π added to the
    logits), 'bal_bce' (margins τ·(log π − log(1−π))), 'cb_ce' (class-balanced
    weights with β = cb_beta). Class statistics are computed here, once.
    """
    if name not in LOSS_NAMES:
        raise ValueError(f"unknown loss {name!r}; valid names: {', '.join(LOSS_NAMES)}")
    if name == "ce":
        return softmax_cross_entropy
    if name == "bce":
        return bce
    if class_counts is None:
        raise ValueError(f"loss {name!r} needs class_counts (training images per class)")
    if name == "bal_bce":
        margins = bal_bce_margins(class_counts, tau)
        return lambda logits, targets: bal_bce(logits, targets, margins)
    if name == "bal_ce":
        log_priors = class_log_priors(class_counts)
        return lambda logits, targets: bal_ce(logits, targets, log_priors, tau)
    weights = class_balanced_weights(class_counts, cb_beta)
    return lambda logits, targets: weighted_softmax_cross_entropy(logits, targets, weights)
