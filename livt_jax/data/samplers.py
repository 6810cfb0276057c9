"""Training samplers: instance, class-balanced, sqrt, progressive; one batch per call.

``sampler.draw(step) -> (record keys int64 (b,), generator)`` gives this
process's batch of training step ``step``. Everything is a function of
``(seed, step, shard_index)``: an iterator restored at any step reproduces the
same batches, and no state needs saving beyond the step. The generator
(seeded by ``(seed, step, shard_index)``) has made the draws and is handed on
to the augmentations of the same batch.

Process ``p`` of ``K`` with per-process batch ``b`` owns the global stream
positions ``step * b * K + p * b + [0, b)``, so processes never share a
position:

- ``instance``: position ``g`` reads record ``perm_e[g % N]`` of epoch
  ``e = g // N``, a fresh seeded permutation per epoch (without replacement:
  together the processes see every record once per epoch).
- ``class_balanced``: a class uniformly (among classes with images), then a
  member uniformly.
- ``sqrt``: a class with probability proportional to ``sqrt(n_c)``, then a member.
- ``progressive`` (Kang et al. 2020): class probability
  ``(1 - t) * n_c / N + t / C``, ``t = min(step / num_steps, 1)``; drawn as
  the mixture: with probability ``t`` a class-balanced draw, else a uniform
  record.

The class-based samplers draw with replacement.
"""

from __future__ import annotations

import numpy as np

SAMPLERS = ("instance", "class_balanced", "sqrt", "progressive")
_BATCH_STREAM, _EPOCH_STREAM = 0, 1


def stream_rng(seed: int, stream: int, *ids: int) -> np.random.Generator:
    """A generator determined by ``(seed, stream, *ids)``."""
    return np.random.default_rng([seed % 2**64, stream, *ids])


class BatchSampler:
    """Common part: this process's slice of the global stream and its generator."""

    def __init__(self, labels: np.ndarray, *, seed: int, batch_size: int, shard_index: int = 0, shard_count: int = 1):
        self.labels = np.asarray(labels, dtype=np.int64)
        if self.labels.size == 0:
            raise ValueError("cannot sample from an empty source")
        if batch_size <= 0 or not 0 <= shard_index < shard_count:
            raise ValueError(f"need batch_size > 0 and 0 <= shard_index < shard_count, got "
                             f"{batch_size}, {shard_index}, {shard_count}")
        self.seed, self.batch_size = int(seed), int(batch_size)
        self.shard_index, self.shard_count = int(shard_index), int(shard_count)

    def positions(self, step: int) -> np.ndarray:
        """int64 (b,): global stream positions of this process's batch at ``step``."""
        start = (step * self.shard_count + self.shard_index) * self.batch_size
        return np.arange(start, start + self.batch_size, dtype=np.int64)

    def draw(self, step: int) -> tuple[np.ndarray, np.random.Generator]:
        """(record keys int64 (b,), the batch's generator)."""
        rng = stream_rng(self.seed, _BATCH_STREAM, step, self.shard_index)
        return self.record_keys(step, rng), rng

    def record_keys(self, step: int, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError


class InstanceSampler(BatchSampler):
    """Every record once per epoch, in a fresh seeded order each epoch."""

    def __init__(self, labels, **kwargs):
        super().__init__(labels, **kwargs)
        self._permutations: dict[int, np.ndarray] = {}

    def permutation(self, epoch: int) -> np.ndarray:
        """int64 (N,): the record order of ``epoch`` (the last two are cached)."""
        if epoch not in self._permutations:
            if len(self._permutations) >= 2:
                self._permutations.pop(min(self._permutations))
            rng = stream_rng(self.seed, _EPOCH_STREAM, epoch)
            self._permutations[epoch] = rng.permutation(len(self.labels))
        return self._permutations[epoch]

    def record_keys(self, step, rng):
        epochs, offsets = np.divmod(self.positions(step), len(self.labels))
        keys = np.empty_like(offsets)
        for epoch in np.unique(epochs):
            at = epochs == epoch
            keys[at] = self.permutation(int(epoch))[offsets[at]]
        return keys


class ClassWeightedSampler(BatchSampler):
    """A class drawn with fixed probabilities ``class_probs``, then a member uniformly."""

    def __init__(self, labels, class_probs: np.ndarray, **kwargs):
        super().__init__(labels, **kwargs)
        class_probs = np.asarray(class_probs, dtype=np.float64)
        counts = np.bincount(self.labels, minlength=len(class_probs))
        if len(counts) != len(class_probs):
            raise ValueError(f"labels reach class {len(counts) - 1} but class_probs has {len(class_probs)} entries")
        class_probs = np.where(counts > 0, class_probs, 0.0)
        if class_probs.sum() <= 0:
            raise ValueError("class_probs give no weight to any class with images")
        self.class_probs = class_probs / class_probs.sum()
        self._classes = np.flatnonzero(self.class_probs > 0)
        self._cum_probs = np.cumsum(self.class_probs[self._classes])
        self._by_class = np.argsort(self.labels, kind="stable")
        self._starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        self._counts = counts

    def draw_classes(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """int64 (n,) classes drawn with ``class_probs``."""
        pos = np.searchsorted(self._cum_probs, rng.random(n) * self._cum_probs[-1], side="right")
        return self._classes[np.minimum(pos, len(self._classes) - 1)]

    def draw_members(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """int64 (n,) record keys: a class, then a uniform member of it."""
        classes = self.draw_classes(rng, n)
        members = (rng.random(n) * self._counts[classes]).astype(np.int64)
        return self._by_class[self._starts[classes] + members]

    def record_keys(self, step, rng):
        return self.draw_members(rng, self.batch_size)


class ProgressiveSampler(ClassWeightedSampler):
    """Instance-balanced at step 0 moving linearly to class-balanced at ``num_steps``."""

    def __init__(self, labels, num_classes: int, num_steps: int | None, **kwargs):
        super().__init__(labels, np.ones(num_classes), **kwargs)
        if num_steps is None or num_steps <= 0:
            raise ValueError(f"progressive sampling needs num_steps > 0, got {num_steps}")
        self.num_steps = int(num_steps)

    def balance(self, step: int) -> float:
        """t in [0, 1]: the class-balanced share at ``step``."""
        return min(step / self.num_steps, 1.0)

    def record_keys(self, step, rng):
        balanced = rng.random(self.batch_size) < self.balance(step)
        uniform = rng.integers(len(self.labels), size=self.batch_size)
        return np.where(balanced, self.draw_members(rng, self.batch_size), uniform)


def make_sampler(
    name: str, labels: np.ndarray, *, seed: int, num_classes: int, batch_size: int,
    shard_index: int = 0, shard_count: int = 1, num_steps: int | None = None,
) -> BatchSampler:
    """The sampler ``name`` over ``labels`` for one process (``num_steps``: progressive only)."""
    common = dict(seed=seed, batch_size=batch_size, shard_index=shard_index, shard_count=shard_count)
    if name == "instance":
        return InstanceSampler(labels, **common)
    if name == "class_balanced":
        return ClassWeightedSampler(labels, np.ones(num_classes), **common)
    if name == "sqrt":
        counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_classes)
        return ClassWeightedSampler(labels, np.sqrt(counts), **common)
    if name == "progressive":
        return ProgressiveSampler(labels, num_classes, num_steps, **common)
    raise ValueError(f"unknown sampler {name!r}; expected one of {SAMPLERS}")
