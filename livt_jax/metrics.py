"""Evaluation metrics for long-tailed classification (shot groups as in Kang et al., ICLR 2020), host-side numpy.

Conventions (all values in the `EvalAccumulator.result` dict are percentages,
0-100, including ECE; the standalone `expected_calibration_error` returns a
fraction in [0, 1]):
- top-1 / top-5: over all (unmasked) test images; top-5 is top-min(5, C).
  Ties are ranked by class index (lower first), like `argmax`.
- many / medium / few: shot groups from *training* counts (many n > 100,
  medium 20 <= n <= 100, few n < 20). A group's accuracy is the mean of the
  per-class accuracies of its classes that have at least one test image; a
  group with no such class is absent from the dict (never NaN).
- per_class_accuracy (C,): 0 for classes with no test image (never NaN); use
  per_class_total (C,) to tell those classes apart.
- ece: 15 equal-width confidence bins (lo, hi], confidence = max softmax prob.
"""

from typing import Dict, Sequence

import numpy as np

from livt_jax.losses import check_class_counts

TOP_K = 5
# Shot groups of Kang et al., ICLR 2020: many n > 100, medium 20 <= n <= 100, few n < 20.
MANY_THRESHOLD, FEW_THRESHOLD = 100, 20


def shot_groups(train_class_counts: Sequence[int], many_threshold: int = MANY_THRESHOLD,
                few_threshold: int = FEW_THRESHOLD) -> Dict[str, np.ndarray]:
    """Boolean class masks (C,): many n > many_threshold, few n < few_threshold, medium otherwise."""
    if few_threshold > many_threshold:
        raise ValueError(f"few_threshold ({few_threshold}) must be <= many_threshold ({many_threshold})")
    counts = check_class_counts(train_class_counts, allow_zero=True)
    many = counts > many_threshold
    few = counts < few_threshold
    return {"many": many, "medium": ~many & ~few, "few": few}


def shot_group_names(train_class_counts: Sequence[int]) -> list[str]:
    """Each class's shot group, 'many' / 'medium' / 'few' (C,)."""
    groups = shot_groups(train_class_counts)
    return [next(name for name, members in groups.items() if members[c])
            for c in range(len(train_class_counts))]


def group_accuracies(per_class: np.ndarray, tested: np.ndarray,
                     train_class_counts: Sequence[int]) -> Dict[str, float]:
    """'many'/'medium'/'few': mean of per_class (C,) over the group's classes with
    `tested` (C,) True; a group with no tested class is absent."""
    out = {}
    for name, members in shot_groups(train_class_counts).items():
        if np.any(members & tested):
            out[name] = float(np.mean(per_class[members & tested]))
    return out


def expected_calibration_error(confidences: np.ndarray, correct: np.ndarray,
                               num_bins: int = 15) -> float:
    """ECE (fraction): Σ_b (n_b / N) |acc_b − conf_b| over equal-width bins (lo, hi].

    confidences (N,) in [0, 1]; correct (N,) bool / 0-1. Confidence 0 falls in the first bin.
    """
    confidences = np.asarray(confidences, np.float64)
    correct = np.asarray(correct, np.float64)
    if confidences.shape != correct.shape or confidences.ndim != 1:
        raise ValueError(f"confidences and correct must both be (N,); got {confidences.shape} "
                         f"and {correct.shape}")
    if confidences.size == 0:
        raise ValueError("expected_calibration_error needs at least one example")
    edges = np.linspace(0.0, 1.0, num_bins + 1)
    bins = np.clip(np.searchsorted(edges, confidences, side="left") - 1, 0, num_bins - 1)
    count = np.bincount(bins, minlength=num_bins)
    gap = np.bincount(bins, correct - confidences, minlength=num_bins)
    # |Σ(correct − conf)| / N per bin = (n_b / N) |acc_b − conf_b|.
    return float(np.abs(gap).sum() / count.sum())


def _label_ranks(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Rank (B,) of each true label among its row's logits, ties broken by class index."""
    label_logit = np.take_along_axis(logits, labels[:, None], axis=1)
    classes = np.arange(logits.shape[1])[None, :]
    ahead = (logits > label_logit) | ((logits == label_logit) & (classes < labels[:, None]))
    return ahead.sum(axis=1)


def _max_softmax(logits: np.ndarray) -> np.ndarray:
    """Max softmax probability (B,) = 1 / Σ_c exp(z_c − max z)."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    return 1.0 / np.exp(shifted).sum(axis=1)


class EvalAccumulator:
    """Accumulates eval batches on the host; `result` turns them into metrics.

    Keeps per-class correct/total counts, the top-5 hit count, and each
    example's confidence and top-1 correctness (for ECE). Arrays given to
    `update` must be fully addressable (gather multi-host arrays first).
    """

    def __init__(self, num_classes: int):
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.class_correct = np.zeros(num_classes, np.int64)
        self.class_total = np.zeros(num_classes, np.int64)
        self.topk_hits = 0
        self._confidences = []
        self._correct = []

    def update(self, logits, labels, mask=None) -> None:
        """Adds a batch: logits (B, C), labels (B,) int, mask (B,) bool/0-1 (0 = padding, ignored)."""
        logits = np.asarray(logits, np.float64)
        labels = np.asarray(labels)
        keep = np.ones(labels.shape, bool) if mask is None else np.asarray(mask).astype(bool)
        if logits.shape[1:] != (self.num_classes,) or logits.ndim != 2:
            raise ValueError(f"logits must be (B, {self.num_classes}), got {logits.shape}")
        if labels.shape != logits.shape[:1] or keep.shape != labels.shape:
            raise ValueError(f"labels {labels.shape} and mask {keep.shape} must be "
                             f"({logits.shape[0]},) like the logits' batch")
        logits, labels = logits[keep], labels[keep].astype(np.int64)
        bad = (labels < 0) | (labels >= self.num_classes)
        if np.any(bad):
            raise ValueError(f"labels must be in [0, {self.num_classes}); got {labels[bad][:10].tolist()}")
        ranks = _label_ranks(logits, labels)
        correct = ranks == 0
        self.class_correct += np.bincount(labels[correct], minlength=self.num_classes)
        self.class_total += np.bincount(labels, minlength=self.num_classes)
        self.topk_hits += int(np.sum(ranks < min(TOP_K, self.num_classes)))
        self._confidences.append(_max_softmax(logits))
        self._correct.append(correct)

    def result(self, train_class_counts: Sequence[int]) -> dict:
        """Metrics dict: 'top1', 'top5', present groups of 'many'/'medium'/'few', 'ece',
        'per_class_accuracy' (C,), 'per_class_total' (C,), 'num_examples'. Percentages."""
        counts = check_class_counts(train_class_counts, allow_zero=True)
        if counts.shape != (self.num_classes,):
            raise ValueError(f"train_class_counts has {counts.size} classes, expected {self.num_classes}")
        num_examples = int(self.class_total.sum())
        if num_examples == 0:
            raise ValueError("EvalAccumulator.result called before any unmasked example was added")
        tested = self.class_total > 0
        per_class = 100.0 * self.class_correct / np.maximum(self.class_total, 1)
        out = {
            "top1": float(100.0 * self.class_correct.sum() / num_examples),
            "top5": float(100.0 * self.topk_hits / num_examples),
            "ece": 100.0 * expected_calibration_error(
                np.concatenate(self._confidences), np.concatenate(self._correct)),
            "per_class_accuracy": per_class,
            "per_class_total": self.class_total.copy(),
            "num_examples": num_examples,
        }
        out.update(group_accuracies(per_class, tested, counts))
        return out
