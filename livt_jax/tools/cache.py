"""Decode and resize a dataset once into a memory-mappable cache.

The build is atomic: every split is written into a temporary folder beside
``--out``, which replaces the old cache only when all splits succeeded (an image
that does not decode stops the build naming its file, and the old cache stays
as it was). A ``manifest.json`` (splits, counts, classes, build settings, a
checksum of each file) written last marks the cache complete; loading checks it.
``--out`` must be a new (or empty) folder or an existing cache: anything else
(a file, a folder of other things, the data itself) is refused with exit status 2
before any work, so the build never deletes what it did not write.
``livt-cache --verify DIR`` checks every file of a cache against its checksum.

Each image is resized so its shorter side is ``--resize-shorter`` R (bicubic)
and centre-cropped to R x R (the crop drops the ends of the longer side; with
R = 256 and training crops of 224 this is what ImageNet-style pipelines see
anyway), then stored in one uint8 array. ``--resize-shorter 0`` stores images
as they are (they must then all have one size). Output folder:

  {split}_images.npy  uint8 (N, R, R, C)   read with np.load(mmap_mode='r')
  {split}_labels.npy  int64 (N,)
  manifest.json       see livt_jax.data.cache_manifest

Read it with ``data.source='cache'``, ``data.data_dir`` = the folder above,
``data.name`` = the folder's name, splits = the split names. Examples::

  livt-cache --source split_list --data-dir /data/imagenet \\
      --split train=ImageNet_LT_train.txt --split test=ImageNet_LT_test.txt \\
      --out /data/cache/imagenet_lt_256 --resize-shorter 256 --workers 16
  livt-cache --source tfds --name cifar10 --split train --split test \\
      --out /data/cache/cifar10 --resize-shorter 0

A split argument is ``NAME`` or ``NAME=WHAT``: WHAT is the tfds split (e.g.
``train[:90%]``) or the split-list file; NAME alone means WHAT = NAME.
Long-tailed subsampling is not applied here; the cache holds the full split.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
from typing import Sequence

import numpy as np

from livt_jax import config_lib, console, paths
from livt_jax.data import augment, cache_manifest, pipeline
from livt_jax.data.cache_manifest import MANIFEST_FILE, cache_files, write_manifest
from livt_jax.data.sources import LabelledSource

CACHE_SOURCES = ("tfds", "split_list", "image_folder", "animal_mnist")


class OutRefused(ValueError):
    """``--out`` names something a build could not replace without deleting what the
    user made; nothing was written."""


def cached_image(image: np.ndarray, resize_shorter: int) -> np.ndarray:
    """The stored form of one uint8 (H, W, C) image: (R, R, C), or unchanged for R = 0."""
    if resize_shorter == 0:
        return image
    return augment.center_crop(augment.resize_shorter(image, resize_shorter), resize_shorter)


def open_split(source: str, what: str, *, name: str, data_dir: str | None, in_chans: int,
               train: LabelledSource | None = None) -> LabelledSource:
    """The full (not long-tailed) split ``what`` of ``source``, opened as training
    opens it (``pipeline.open_split``); ``train``, an already opened split,
    gives the classes the others share."""
    if source not in CACHE_SOURCES:
        raise ValueError(f"unknown --source {source!r}; expected one of {CACHE_SOURCES}")
    if source in ("split_list", "image_folder") and not data_dir:
        raise ValueError(f"--source {source} needs --data-dir (the image root)")
    data = config_lib.base_config().data
    data.update(dict(source=source, name=name, data_dir=data_dir or "", in_chans=in_chans))
    return pipeline.open_split(data, what, train=train)


_WORKER_STATE: dict = {}


def _init_worker(source: LabelledSource, resize_shorter: int) -> None:
    _WORKER_STATE.update(source=source, resize_shorter=resize_shorter)


def _load(index: int) -> np.ndarray:
    return cached_image(_WORKER_STATE["source"][index]["image"], _WORKER_STATE["resize_shorter"])


def write_split(source: LabelledSource, out_dir: str, split: str, resize_shorter: int, workers: int = 0
                ) -> tuple[int, ...]:
    """Writes ``{split}_images.npy`` / ``{split}_labels.npy``; returns one image's shape."""
    images_path, labels_path = cache_files(out_dir, split)
    _init_worker(source, resize_shorter)
    first = _load(0)
    array = np.lib.format.open_memmap(images_path, mode="w+", dtype=np.uint8, shape=(len(source), *first.shape))
    pool = multiprocessing.Pool(workers, _init_worker, (source, resize_shorter)) if workers > 0 else None
    images = pool.imap(_load, range(len(source)), chunksize=64) if pool else map(_load, range(len(source)))
    start = time.time()
    try:
        for i, image in enumerate(images):
            if image.shape != first.shape:
                raise ValueError(f"{split}[{i}] has shape {image.shape}, not {first.shape}; use --resize-shorter R > 0")
            array[i] = image
            if (i + 1) % 10000 == 0:
                logging.info("%s: %d/%d images, %.0f img/s", split, i + 1, len(source), (i + 1) / (time.time() - start))
    finally:
        if pool:
            pool.terminate()
    array.flush()
    del array
    np.save(labels_path, source.labels)
    return first.shape


def _is_within(path: str, folder: str) -> bool:
    """Whether ``path`` is ``folder`` or below it (both real, absolute paths)."""
    return os.path.commonpath([path, folder]) == folder


def _cache_contents(out_dir: str) -> set[str]:
    """The files a cache build writes in ``out_dir``, per its manifest (any format)."""
    try:
        with open(os.path.join(out_dir, MANIFEST_FILE), encoding="utf-8") as f:
            splits = json.load(f)["splits"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise OutRefused(f"--out {out_dir} holds a {MANIFEST_FILE} that is not a cache manifest "
                         f"({e}); choose another --out (nothing was changed)") from e
    return {MANIFEST_FILE} | {os.path.basename(p) for split in splits for p in cache_files(out_dir, split)}


def check_out(out_dir: str, data_dir: str | None) -> None:
    """Raises OutRefused unless ``out_dir`` is new, an empty folder or an existing cache
    holding only what a build wrote, and lies outside ``data_dir``."""
    def refuse(what: str) -> OutRefused:
        return OutRefused(f"--out {out_dir} {what}; livt-cache writes only into a new folder or "
                          "an existing cache (nothing was changed)")

    if data_dir and not paths.is_url(data_dir) and _is_within(
            os.path.realpath(out_dir), os.path.realpath(data_dir)):
        raise refuse(f"is --data-dir {data_dir} or inside it, and a build replaces its --out")
    if os.path.islink(out_dir) or (os.path.lexists(out_dir) and not os.path.isdir(out_dir)):
        raise refuse("is an existing file or link")
    if not os.path.isdir(out_dir) or not (contents := set(os.listdir(out_dir))):
        return
    if MANIFEST_FILE not in contents:
        raise refuse(f"is an existing folder that is not a cache (it holds {len(contents)} "
                     f"entries, e.g. {min(contents)!r}, and no {MANIFEST_FILE})")
    if extra := sorted(contents - _cache_contents(out_dir)):
        raise refuse(f"is a cache that also holds {extra[:3]} (not written by livt-cache); "
                     "move them out first or choose another --out")


def _replace_folder(new: str, out_dir: str) -> None:
    """Puts the complete folder ``new`` at ``out_dir``, then deletes the old cache (which
    ``check_out`` allowed); if the swap fails, the old cache is put back."""
    if not os.path.exists(out_dir):
        os.replace(new, out_dir)
        return
    old = tempfile.mkdtemp(prefix=f"{os.path.basename(out_dir)}.old-", dir=os.path.dirname(out_dir))
    os.replace(out_dir, old)
    try:
        os.replace(new, out_dir)
    except OSError:
        os.replace(old, out_dir)
        raise
    shutil.rmtree(old)


def build_cache(
    source: str, splits: Sequence[str], out_dir: str, *, name: str = "", data_dir: str | None = None,
    resize_shorter: int = 256, in_chans: int = 3, workers: int = 0,
) -> None:
    """Writes every split of ``splits`` (``NAME`` or ``NAME=WHAT``) and the manifest into a
    temporary folder, then replaces ``out_dir`` with it; on any error ``out_dir`` is untouched.
    The sources may be read from a bucket; ``out_dir`` must be local (memory-mapped later).
    Raises OutRefused (before reading anything) for an ``out_dir`` that ``check_out`` refuses."""
    if paths.is_url(out_dir):
        raise OutRefused(f"--out {out_dir}: a cache is memory-mapped and must be written to "
                         "local disk (copy it to a bucket afterwards if you want it there)")
    out_dir = os.path.normpath(out_dir)
    check_out(out_dir, data_dir)
    opened = {}
    for spec in splits:
        split, _, what = spec.partition("=")
        first = next(iter(opened.values()), None)
        opened[split] = open_split(source, what or split, name=name, data_dir=data_dir,
                                   in_chans=in_chans, train=first)
    # Split lists name classes "0".."K-1" from their own labels: keep the longest list.
    class_names = max((s.class_names for s in opened.values()), key=len)
    os.makedirs(os.path.dirname(os.path.abspath(out_dir)), exist_ok=True)
    building = tempfile.mkdtemp(prefix=f"{os.path.basename(out_dir)}.building-",
                                dir=os.path.dirname(os.path.abspath(out_dir)))
    try:
        written = {}
        for split, split_source in opened.items():
            logging.info("caching %s (%d images) into %s", split, len(split_source), out_dir)
            shape = write_split(split_source, building, split, resize_shorter, workers)
            written[split] = (split_source.labels, shape)
        write_manifest(building, class_names, written, {
            "source": source, "name": name, "splits": list(splits), "resize_shorter": resize_shorter,
            "in_chans": in_chans})
        _replace_folder(building, out_dir)
    finally:
        shutil.rmtree(building, ignore_errors=True)


def verify_cache(folder: str) -> int:
    """``--verify``: every file of the cache against its checksum; prints one line."""
    bad = cache_manifest.verify(folder)
    if bad:
        print(f"error: cache {folder}: {', '.join(bad)} do(es) not match the manifest's checksum; "
              "rebuild it", file=sys.stderr)
        return console.RUNTIME_ERROR
    print(f"cache {folder}: every file matches its checksum")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = console.command_parser("livt-cache", __doc__)
    parser.add_argument("--source", choices=CACHE_SOURCES)
    parser.add_argument("--name", default="", help="tfds dataset name")
    parser.add_argument("--data-dir", default=None, help="tfds data_dir / image root / pickles folder")
    parser.add_argument("--split", action="append", help="NAME or NAME=WHAT; repeatable")
    parser.add_argument("--out", help="output folder: a new folder or an existing cache")
    parser.add_argument("--resize-shorter", type=int, default=256, help="R (0 = keep sizes)")
    parser.add_argument("--in-chans", type=int, default=3, choices=(1, 3))
    parser.add_argument("--workers", type=int, default=0, help="decode processes (0 = in-process)")
    parser.add_argument("--verify", metavar="DIR",
                        help="instead of building: check every file of the cache DIR in full")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    outcome = ""  # what a failure leaves at --out
    try:
        if args.verify:
            return verify_cache(args.verify)
        if not (args.source and args.split and args.out):
            raise OutRefused("--source, --split and --out are required (or --verify DIR)")
        outcome = (f" (the cache at {args.out} was left unchanged)" if os.path.exists(args.out)
                   else f" (nothing was written at {args.out})")
        build_cache(
            args.source, args.split, args.out, name=args.name, data_dir=args.data_dir,
            resize_shorter=args.resize_shorter, in_chans=args.in_chans, workers=args.workers,
        )
    except (ValueError, OSError) as e:
        return console.report_error(e, usage=isinstance(e, OutRefused), hint=outcome)
    return 0

if __name__ == "__main__":
    sys.exit(main())
