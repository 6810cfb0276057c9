"""Animal-MNIST demo set: 10,000 real 28x28 grayscale images, 10 balanced classes.

The data ship as gzipped pickles inside the ``animal-mnist`` wheel (install it
with ``pip install --no-deps animal-mnist``; its declared dependencies are
not needed). The pickles are read with ``NumpyOnlyUnpickler``, which resolves
only the three globals a pickled ndarray needs and refuses anything else
before it can run.

Split: a fixed, seeded split keeps ``test_per_class`` images of every class
for a balanced test set; the rest (800 per class by default) is training data.
"""

from __future__ import annotations

import gzip
import importlib
import importlib.metadata
import importlib.util
import io
import os
import pickle
import re

import numpy as np

from livt_jax import paths
from livt_jax.data.sources import ArraySource

NUM_CLASSES = 10
_DATA_FILES = ("animal_data_version_3.gz", "animal_label_version_3.gz")

# (module, name) pairs a pickled numpy array refers to; numpy 2 moved
# numpy.core to numpy._core, so both spellings map to the current module.
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"): ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"): ("numpy", "ndarray"),
    ("numpy", "dtype"): ("numpy", "dtype"),
}


class NumpyOnlyUnpickler(pickle.Unpickler):
    """An unpickler that can rebuild numpy arrays and nothing else."""

    def find_class(self, module: str, name: str):
        target = _ALLOWED_GLOBALS.get((module, name))
        if target is None:
            raise pickle.UnpicklingError(
                f"refusing to unpickle global {module}.{name}: only numpy arrays are allowed"
            )
        return getattr(importlib.import_module(target[0]), target[1])


def load_numpy_pickle(data: bytes) -> np.ndarray:
    """Unpickles bytes that must hold a single numpy array."""
    array = NumpyOnlyUnpickler(io.BytesIO(data)).load()
    if not isinstance(array, np.ndarray):
        raise pickle.UnpicklingError(f"expected a numpy array, got {type(array).__name__}")
    return array


def package_data_dir() -> str:
    """Folder of the pickles inside the installed ``animal_mnist`` package."""
    spec = importlib.util.find_spec("animal_mnist")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "package 'animal_mnist' is not installed: pip install --no-deps animal-mnist"
        )
    return os.path.join(spec.submodule_search_locations[0], "data", "Animal_MNIST")


def class_names_from_metadata() -> list[str]:
    """Class names listed in the package description (its labels sort alphabetically).

    The description says "10 classes of animals (including Bear, Bird, ...)";
    the names are assigned to labels 0..9 in that (alphabetical) order, which
    is an assumption the package does not state. Falls back to "0".."9".
    """
    try:
        description = importlib.metadata.metadata("animal_mnist").get_payload() or ""
    except importlib.metadata.PackageNotFoundError:
        description = ""
    match = re.search(r"\(including ([^)]*)\)", description)
    names = [n.strip() for n in match.group(1).split(",")] if match else []
    return names if len(names) == NUM_CLASSES else [str(c) for c in range(NUM_CLASSES)]


def load_arrays(data_dir: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """All images and labels.

    Returns:
      (uint8 (10000, 28, 28, 1), int64 (10000,)).
    """
    data_dir = package_data_dir() if data_dir is None else data_dir
    arrays = []
    for filename in _DATA_FILES:
        path = paths.join(data_dir, filename)
        if not paths.is_file(path):
            raise FileNotFoundError(f"Animal-MNIST file {path!r} not found")
        arrays.append(load_numpy_pickle(gzip.decompress(paths.read_bytes(path))))
    images, labels = arrays
    return images.astype(np.uint8)[..., None], labels.astype(np.int64)


def balanced_split(labels: np.ndarray, test_per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split with exactly ``test_per_class`` test images per class.

    Returns:
      (train indices, test indices), int64, ascending.
    """
    rng = np.random.default_rng(seed)
    test = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        if len(members) <= test_per_class:
            raise ValueError(f"class {c} has {len(members)} images, not more than test_per_class={test_per_class}")
        test.append(rng.choice(members, size=test_per_class, replace=False))
    test = np.sort(np.concatenate(test))
    train = np.setdiff1d(np.arange(len(labels)), test)
    return train.astype(np.int64), test.astype(np.int64)


def load_animal_mnist(
    data_dir: str | None = None, test_per_class: int = 200, split_seed: int = 0
) -> tuple[ArraySource, ArraySource]:
    """(train, test) sources before any long-tailed subsampling."""
    images, labels = load_arrays(data_dir)
    train, test = balanced_split(labels, test_per_class, split_seed)
    names = class_names_from_metadata()
    return (
        ArraySource(images[train], labels[train], names, "animal_mnist_train"),
        ArraySource(images[test], labels[test], names, "animal_mnist_test"),
    )
