"""Random-access image sources: in-memory arrays, subsets, tfds, split lists, caches.

Every source is a grain-compatible random-access data source:

- ``len(source)``; ``source[i] -> {'image': uint8 (H, W, C), 'label': int}``;
- ``labels``: int64 (N,), the label of every record (read once, used by the
  samplers and the long-tail subsampling);
- ``num_classes``, ``class_names`` (list of str), ``class_counts`` (int64
  (num_classes,) = bincount of ``labels``);
- a short ``repr`` naming the data (files without their directories).

Image sizes may differ between records (split lists); the pipeline resizes.
"""

from __future__ import annotations

import io
import json
import logging
from typing import Sequence

import numpy as np
from PIL import Image

from livt_jax import paths

CACHE_CLASSES_FILE = "classes.json"


class LabelledSource:
    """Base class: the class statistics every source exposes, from ``labels``."""

    labels: np.ndarray
    class_names: list[str]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def class_counts(self) -> np.ndarray:
        """int64 (num_classes,): records per class."""
        return np.bincount(self.labels, minlength=self.num_classes).astype(np.int64)

    def __len__(self) -> int:
        return len(self.labels)


def _check_labels(labels: np.ndarray, num_classes: int, where: str) -> np.ndarray:
    labels = np.asarray(labels, dtype=np.int64)
    if labels.ndim != 1:
        raise ValueError(f"{where}: labels must be 1-D, got shape {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(
            f"{where}: labels must lie in [0, {num_classes}), got range "
            f"[{labels.min()}, {labels.max()}]"
        )
    return labels


def _with_channel_axis(image: np.ndarray) -> np.ndarray:
    """(H, W) -> (H, W, 1); (H, W, C) unchanged."""
    image = np.asarray(image)
    return image[..., None] if image.ndim == 2 else image


class ArraySource(LabelledSource):
    """Images in one uint8 array (N, H, W, C) or (N, H, W); may be memory-mapped."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, class_names: Sequence[str], name: str):
        if len(images) != len(labels):
            raise ValueError(f"{name}: {len(images)} images but {len(labels)} labels")
        self.images = images
        self.class_names = list(class_names)
        self.labels = _check_labels(labels, len(self.class_names), name)
        self.name = name

    def __getitem__(self, index: int) -> dict:
        return {"image": _with_channel_axis(self.images[index]), "label": int(self.labels[index])}

    def __repr__(self) -> str:
        return f"ArraySource(name={self.name!r}, num_records={len(self)})"


class SubsetSource(LabelledSource):
    """The records ``indices`` of ``parent`` (e.g. a long-tailed subset)."""

    def __init__(self, parent: LabelledSource, indices: np.ndarray, tag: str):
        self.parent = parent
        self.indices = np.asarray(indices, dtype=np.int64)
        self.labels = parent.labels[self.indices]
        self.class_names = parent.class_names
        self.tag = tag

    def __getitem__(self, index: int) -> dict:
        return self.parent[int(self.indices[index])]

    def __repr__(self) -> str:
        return f"SubsetSource({self.parent!r}, {self.tag}, num_records={len(self)})"


class TfdsSource(LabelledSource):
    """A tfds split read through ``tfds.data_source`` (ArrayRecord; no TensorFlow).

    The dataset must already be prepared in ArrayRecord format under
    ``data_dir`` (nothing is downloaded). Any dataset with 'image' and 'label'
    features works. Labels are read once by scanning the split (a few seconds
    for CIFAR).
    """

    def __init__(self, name: str, split: str, data_dir: str | None):
        import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel

        try:
            self._ds = tfds.data_source(name, split=split, data_dir=data_dir, download=False)
        except Exception as e:  # tfds raises several types for a missing or unknown set
            raise ValueError(
                f"cannot open tfds dataset {name!r} split {split!r} in data_dir {data_dir!r} "
                "(it must be prepared in ArrayRecord format, e.g. "
                f"`tfds build {name} --file_format=array_record`): {e}"
            ) from e
        features = self._ds.dataset_info.features
        for key in ("image", "label"):
            if key not in features:
                raise ValueError(f"tfds dataset {name!r} has no {key!r} feature: {list(features)}")
        self.class_names = list(features["label"].names)
        self.name, self.split = name, split
        logging.info("tfds %s[%s]: scanning %d labels", name, split, len(self._ds))
        labels = [self._ds[i]["label"] for i in range(len(self._ds))]
        self.labels = _check_labels(np.asarray(labels), len(self.class_names), f"tfds {name}[{split}]")

    def __getitem__(self, index: int) -> dict:
        example = self._ds[index]
        return {"image": _with_channel_axis(example["image"]), "label": int(example["label"])}

    def __repr__(self) -> str:
        return f"TfdsSource(name={self.name!r}, split={self.split!r}, num_records={len(self)})"


def read_split_list(path: str) -> tuple[list[str], np.ndarray]:
    """Parses a split list: one ``relative/path label`` per line (blank lines skipped).

    The label is the last whitespace-separated field, so paths may hold spaces.

    Returns:
      (relative paths, int64 labels (N,)).
    """
    relative_paths, labels = [], []
    text = paths.read_text(path, "a split list")
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.rsplit(None, 1)
        if len(fields) != 2 or not fields[1].lstrip("-").isdigit() or int(fields[1]) < 0:
            raise ValueError(
                f"{path}:{line_no}: expected 'relative/path label' with a label >= 0, "
                f"got {line.rstrip()!r}"
            )
        relative_paths.append(fields[0].strip())
        labels.append(int(fields[1]))
    if not relative_paths:
        raise ValueError(f"split list {path} holds no records")
    return relative_paths, np.asarray(labels, dtype=np.int64)


def decode_image(path: str, in_chans: int) -> np.ndarray:
    """Decodes a JPEG/PNG/... file to uint8 (H, W, in_chans) (RGB for 3, L for 1)."""
    modes = {1: "L", 3: "RGB"}
    if in_chans not in modes:
        raise ValueError(f"in_chans must be 1 or 3, got {in_chans}")
    with Image.open(io.BytesIO(paths.read_bytes(path, "an image file"))) as img:
        return _with_channel_axis(np.asarray(img.convert(modes[in_chans])))


class SplitListSource(LabelledSource):
    """Image files under ``root`` named by a split list (ImageNet-LT / iNat / Places style)."""

    def __init__(self, root: str, list_file: str, in_chans: int, num_classes: int | None = None):
        if not paths.is_dir(root):
            raise FileNotFoundError(f"image root {root!r} is not a directory")
        self.root, self.list_file, self.in_chans = root, list_file, in_chans
        self.paths, labels = read_split_list(list_file)
        num_classes = int(labels.max()) + 1 if num_classes is None else num_classes
        self.class_names = [str(c) for c in range(num_classes)]
        self.labels = _check_labels(labels, num_classes, list_file)

    def __getitem__(self, index: int) -> dict:
        image = decode_image(paths.join(self.root, self.paths[index]), self.in_chans)
        return {"image": image, "label": int(self.labels[index])}

    def __repr__(self) -> str:
        return f"SplitListSource(list={paths.basename(self.list_file)!r}, num_records={len(self)})"


def cache_files(cache_dir: str, split: str) -> tuple[str, str]:
    """Paths of a cached split: (images .npy, labels .npy)."""
    return (
        paths.join(cache_dir, f"{split}_images.npy"),
        paths.join(cache_dir, f"{split}_labels.npy"),
    )


class CacheSource(LabelledSource):
    """A split written by ``python -m livt_jax.data.cache``, memory-mapped.

    Layout of ``cache_dir``: ``{split}_images.npy`` uint8 (N, R, R, C),
    ``{split}_labels.npy`` int64 (N,), ``classes.json`` ({"class_names": [...]}).
    The image array is opened lazily (and again after unpickling in a worker
    process) with ``np.load(mmap_mode='r')``.
    """

    def __init__(self, cache_dir: str, split: str):
        if paths.is_url(cache_dir):
            raise ValueError(
                f"the cache {cache_dir} is in a bucket, but a cache is memory-mapped and must be "
                "on local disk: copy it (`gcloud storage cp -r URL LOCAL_DIR`) or mount the "
                "bucket with gcsfuse, and point data.data_dir there")
        self.cache_dir, self.split = cache_dir, split
        self._images_path, labels_path = cache_files(cache_dir, split)
        classes_path = paths.join(cache_dir, CACHE_CLASSES_FILE)
        for path in (self._images_path, labels_path, classes_path):
            if not paths.is_file(path):
                raise FileNotFoundError(f"cache file {path!r} is missing (build it with livt_jax.data.cache)")
        self.class_names = list(json.loads(paths.read_text(classes_path))["class_names"])
        self.labels = _check_labels(np.load(labels_path), len(self.class_names), labels_path)
        self._images = None

    @property
    def images(self) -> np.ndarray:
        if self._images is None:
            self._images = np.load(self._images_path, mmap_mode="r")
        return self._images

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_images": None}

    def __getitem__(self, index: int) -> dict:
        return {"image": np.array(self.images[index]), "label": int(self.labels[index])}

    def __repr__(self) -> str:
        name = paths.basename(self.cache_dir)
        return f"CacheSource(cache={name!r}, split={self.split!r}, num_records={len(self)})"
