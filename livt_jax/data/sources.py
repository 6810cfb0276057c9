"""Random-access image sources: in-memory arrays, subsets, tfds, split lists, image
folders, caches.

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
import logging
import os
from typing import Sequence

import numpy as np
from PIL import Image

from livt_jax import paths
from livt_jax.data import cache_manifest
from livt_jax.data.cache_manifest import cache_files

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


def split_list_line(path: str, record: int) -> int:
    """The 1-based line of ``path`` holding record ``record`` (blank lines skipped)."""
    lines = paths.read_text(path, "a split list").splitlines()
    non_blank = (n for n, line in enumerate(lines, start=1) if line.strip())
    for i, line_no in enumerate(non_blank):
        if i == record:
            return line_no
    raise IndexError(f"{path} has no record {record}")


def _to_8_bit(img: Image.Image) -> Image.Image:
    """A 16-bit grayscale image (modes ``I;16``, ``I;16B``, ..., or ``I`` holding 0..65535)
    as 8-bit ``L`` by its high byte (value >> 8); any other image unchanged.

    Pillow's own ``convert('L')`` clips such values at 255 (a dark 16-bit image turns
    white). The high byte is what Pillow keeps of a 16-bit RGB(A) PNG, so a 16-bit
    image decodes alike in gray and in colour.
    """
    if not img.mode.startswith("I"):
        return img
    values = np.asarray(img)  # uint16 of either byte order, or int32 for mode I
    if values.size and (values.min() < 0 or values.max() > 0xFFFF):
        raise ValueError(f"{img.mode} image with values in [{values.min()}, {values.max()}]; "
                         "expected 8-bit or 16-bit (0..65535) pixels")
    return Image.fromarray((values.astype(np.uint32) >> 8).astype(np.uint8))  # mode L


def decode_image(path: str, in_chans: int) -> np.ndarray:
    """Decodes a JPEG/PNG/... file to uint8 (H, W, in_chans) (RGB for 3, L for 1).

    8-bit files keep their values; 16-bit ones keep the high byte (``_to_8_bit``).
    """
    modes = {1: "L", 3: "RGB"}
    if in_chans not in modes:
        raise ValueError(f"in_chans must be 1 or 3, got {in_chans}")
    with Image.open(io.BytesIO(paths.read_bytes(path, "an image file"))) as img:
        return _with_channel_axis(np.asarray(_to_8_bit(img).convert(modes[in_chans])))


class ImageFilesSource(LabelledSource):
    """Image files under ``root`` (relative paths, labels and class names given).

    An image that does not decode stops with an error naming its path (and
    where it was listed, ``where(index)``) when ``bad_images='stop'``, or
    (``'skip'``) is replaced by the next decodable image of the same class, with
    a warning counting the files skipped so far. Subclasses say where the file
    list comes from.
    """

    def __init__(self, root: str, relative_paths: Sequence[str], labels: np.ndarray,
                 class_names: Sequence[str], in_chans: int, bad_images: str, where: str):
        if bad_images not in ("stop", "skip"):
            raise ValueError(f"bad_images={bad_images!r}; expected 'stop' or 'skip'")
        self.root, self.paths, self.in_chans = root, list(relative_paths), in_chans
        self.bad_images, self.skipped = bad_images, set()
        self.class_names = list(class_names)
        self.labels = _check_labels(labels, len(self.class_names), where)
        self.where_listed = where

    def where(self, index: int) -> str:
        """Where record ``index`` was listed, for error messages."""
        return self.where_listed

    def _decode(self, index: int) -> np.ndarray:
        path = paths.join(self.root, self.paths[index])
        try:
            return decode_image(path, self.in_chans)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
            raise ValueError(f"cannot decode image {path!r} ({self.where(index)}): {e}") from e

    def __getitem__(self, index: int) -> dict:
        label = int(self.labels[index])
        if self.bad_images == "stop":
            return {"image": self._decode(index), "label": label}
        same_class = np.flatnonzero(self.labels == label)
        start = int(np.searchsorted(same_class, index))
        for candidate in np.roll(same_class, -start):  # index first, then the next ones
            try:
                return {"image": self._decode(int(candidate)), "label": label}
            except ValueError as e:
                if int(candidate) not in self.skipped:
                    self.skipped.add(int(candidate))
                    logging.warning("data.bad_images='skip': skipped %d undecodable image(s) "
                                    "of %s so far; latest: %s", len(self.skipped),
                                    self.where_listed, e)
        raise ValueError(f"class {self.class_names[label]!r} of {self.where_listed} has no "
                         "decodable image")


class SplitListSource(ImageFilesSource):
    """Image files under ``root`` named by a split list (ImageNet-LT / iNat / Places style).

    A label outside ``[0, num_classes)`` is refused naming its file and line;
    class names are the label numbers.
    """

    def __init__(self, root: str, list_file: str, in_chans: int, num_classes: int | None = None,
                 bad_images: str = "stop"):
        if not paths.is_dir(root):
            raise FileNotFoundError(f"image root {root!r} is not a directory")
        self.list_file = list_file
        relative_paths, labels = read_split_list(list_file)
        num_classes = int(labels.max()) + 1 if num_classes is None else num_classes
        if labels.max() >= num_classes:
            record = int(np.argmax(labels >= num_classes))
            raise ValueError(
                f"{list_file}:{split_list_line(list_file, record)}: label {labels[record]} is "
                f"outside [0, {num_classes}) (data.num_classes or the train list's largest label)")
        super().__init__(root, relative_paths, labels, [str(c) for c in range(num_classes)],
                         in_chans, bad_images, paths.basename(list_file))

    def where(self, index: int) -> str:
        return f"{self.list_file}:{split_list_line(self.list_file, index)}"

    def __repr__(self) -> str:
        return f"SplitListSource(list={paths.basename(self.list_file)!r}, num_records={len(self)})"


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def _list_images(folder: str) -> list[str]:
    """Image files under ``folder`` (recursive), relative to it, sorted."""
    return [f for f in paths.list_files(folder) if f.lower().endswith(IMAGE_SUFFIXES)]


class ImageFolderSource(ImageFilesSource):
    """``root/<class>/<image>`` files (JPEG, PNG, ...; any size), torchvision
    ImageFolder style: the class folders sorted by name are labels 0..C-1, and
    images may sit in sub-folders of their class folder. ``class_names``, when
    given (e.g. the train split's, for a test split), must hold every folder
    found; a class without images is kept with zero records.
    """

    def __init__(self, root: str, in_chans: int, bad_images: str = "stop",
                 class_names: Sequence[str] | None = None):
        root = root.rstrip("/")
        if not paths.is_dir(root):
            raise FileNotFoundError(f"image folder {root!r} is not a directory")
        folders = sorted(name for name in paths.listdir(root)
                         if paths.is_dir(paths.join(root, name)))
        if not folders:
            raise ValueError(f"image folder {root!r} has no class folders (expected "
                             f"{root}/<class>/<image>)")
        if class_names is None:
            class_names = folders
        unknown = sorted(set(folders) - set(class_names))
        if unknown:
            raise ValueError(f"image folder {root!r} has class folders {unknown} that the "
                             f"train split lacks (its classes: {list(class_names)})")
        relative_paths, labels = [], []
        for name in folders:
            files = _list_images(paths.join(root, name))
            relative_paths += [f"{name}/{f}" for f in files]
            labels += [list(class_names).index(name)] * len(files)
        if not relative_paths:
            raise ValueError(f"image folder {root!r} holds no image files "
                             f"({', '.join(IMAGE_SUFFIXES)})")
        super().__init__(root, relative_paths, np.asarray(labels, np.int64), class_names,
                         in_chans, bad_images, paths.basename(root))

    def __repr__(self) -> str:
        return f"ImageFolderSource(folder={paths.basename(self.root)!r}, num_records={len(self)})"


def _load_npy(path: str, mmap_mode: str | None = None) -> np.ndarray:
    """``np.load`` whose errors (a truncated or garbled file) name the file."""
    try:
        return np.load(path, mmap_mode=mmap_mode, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise ValueError(f"cache file {path!r} is truncated or corrupt ({e}); rebuild the cache "
                         "with python -m livt_jax.tools.cache") from e


class CacheSource(LabelledSource):
    """A split written by ``python -m livt_jax.tools.cache``, memory-mapped.

    Layout of ``cache_dir``: ``{split}_images.npy`` uint8 (N, R, R, C),
    ``{split}_labels.npy`` int64 (N,), ``manifest.json`` (class names, build
    settings, each split's count and image shape, each file's checksum; see
    ``cache_manifest``, which says when the checksums are verified). Opening checks
    both arrays against the manifest and names a missing, truncated, swapped or
    mismatched file. The image array is
    memory-mapped (again after unpickling in a worker process).
    """

    def __init__(self, cache_dir: str, split: str):
        if paths.is_url(cache_dir):
            raise ValueError(
                f"the cache {cache_dir} is in a bucket, but a cache is memory-mapped and must be "
                "on local disk: copy it (`gcloud storage cp -r URL LOCAL_DIR`) or mount the "
                "bucket with gcsfuse, and point data.data_dir there")
        self.cache_dir, self.split = cache_dir, split
        manifest = cache_manifest.read_manifest(cache_dir)
        cache_manifest.require_split(manifest, cache_dir, split)
        self._images_path, labels_path = cache_files(cache_dir, split)
        for path in (self._images_path, labels_path):
            if not os.path.isfile(path):
                raise FileNotFoundError(f"cache file {path!r} is missing: rebuild the cache with "
                                        f"{cache_manifest.build_command(manifest, cache_dir)}")
        self.class_names = list(manifest["class_names"])
        self._images = None
        labels = _load_npy(labels_path)
        cache_manifest.check_split(manifest, cache_dir, split, labels, self.images.shape)
        self.labels = _check_labels(labels, len(self.class_names), labels_path)

    @property
    def images(self) -> np.ndarray:
        if self._images is None:
            self._images = _load_npy(self._images_path, mmap_mode="r")
        return self._images

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_images": None}

    def __getitem__(self, index: int) -> dict:
        return {"image": np.array(self.images[index]), "label": int(self.labels[index])}

    def __repr__(self) -> str:
        name = os.path.basename(os.path.normpath(self.cache_dir))
        return f"CacheSource(cache={name!r}, split={self.split!r}, num_records={len(self)})"
