"""Checks of the opened training data that a run would otherwise train through.

A class with no training images breaks Bal-BCE (log 0 priors) and silently
makes a classifier with a dead output; it comes from a label out of range in a
split list (a gap of empty classes below it) or from long-tailed subsampling
too steep for the smallest class.
"""

from __future__ import annotations

import numpy as np

from livt_jax.data.sources import LabelledSource, SplitListSource, split_list_line


def _ranges(classes: np.ndarray) -> str:
    """[3, 4, 5, 9] -> '3-5, 9' (at most 8 ranges, then '...')."""
    runs, start = [], None
    for i, c in enumerate(classes):
        if start is None:
            start = c
        if i + 1 == len(classes) or classes[i + 1] != c + 1:
            runs.append(f"{start}" if start == c else f"{start}-{c}")
            start = None
    return ", ".join(runs[:8]) + (", ..." if len(runs) > 8 else "")


def check_no_empty_class(train: LabelledSource, full_train: LabelledSource, data) -> None:
    """Raises ValueError naming the classes with no training images and why.

    `train`: the (possibly long-tailed) training source; `full_train`: the split
    before subsampling; `data`: `config.data` (imbalance settings, num_classes).
    """
    empty = np.flatnonzero(np.asarray(train.class_counts) == 0)
    if not empty.size:
        return
    missing = np.flatnonzero(np.asarray(full_train.class_counts) == 0)
    classes = f"{len(empty)} of {train.num_classes} classes ({_ranges(empty)})"
    if missing.size:
        cause = "the train split itself has no images of them"
        if isinstance(full_train, SplitListSource):
            largest = int(np.argmax(full_train.labels))
            cause += (f"; the class count {train.num_classes} comes from the largest label "
                      f"{full_train.labels[largest]} at {full_train.list_file}:"
                      f"{split_list_line(full_train.list_file, largest)} (a label out of range? "
                      "set data.num_classes)")
        raise ValueError(f"{classes} have no training images: {cause}")
    n_max = int(np.max(full_train.class_counts))
    raise ValueError(
        f"{classes} have no training images after long-tailed subsampling with "
        f"data.imbalance_ratio={data.imbalance_ratio}, data.imbalance_type="
        f"{data.imbalance_type!r}: the largest class has {n_max} images, so the tail target "
        f"is below 1; use data.imbalance_ratio <= {n_max}")
