"""The manifest of an image cache: what a complete build wrote, checked on load.

``manifest.json`` in a cache folder::

  {"format": 2, "class_names": [...], "build": {source, name, resize_shorter, ...},
   "splits": {"train": {"count": N, "image_shape": [R, R, C]}, ...},
   "files": {"train_images.npy": {"crc32": "1a2b3c4d", "size": B, "mtime_ns": T,
                                  "inode": I}, ...}}

The builder writes it last, into the temporary folder that then replaces the
old cache, so a cache with a manifest is complete; loading compares every
split's arrays with it, so a truncated, swapped or hand-edited file is named.

When the checksums are verified. A CRC-32 of each array file (``zlib.crc32``,
about 0.7 s per GB on one core of a loaded machine, so about 15 s for a 256-px
ImageNet-LT cache of 22 GB, plus reading it from disk) is computed when the
cache is built. Opening a cache compares each file's size, modification time and
inode with the manifest (one ``stat``, free) and computes the CRC only for a file
whose stat differs: swapping in another cache's file (``mv`` keeps the other
build's time and inode; ``cp`` gives a new one) or rewriting it is caught, and
a plain open of a 22 GB cache costs nothing, every run and every worker. A cache
copied as a whole (new times and inodes) verifies in full and passes, with a
warning; ``livt-cache --verify DIR`` checks every file in full and records the
new stats so that later opens are free again. A file rewritten in place to the
same size within the same clock tick as the build is the one change the stat
cannot see.
"""

from __future__ import annotations

import json
import logging
import os
import time
import zlib
from typing import Any, Mapping

import numpy as np

from livt_jax import paths

MANIFEST_FILE = "manifest.json"
FORMAT = 2
_CHUNK = 16 << 20  # bytes read per CRC update


def cache_files(cache_dir: str, split: str) -> tuple[str, str]:
    """Paths of a cached split: (images .npy, labels .npy)."""
    return (
        os.path.join(cache_dir, f"{split}_images.npy"),
        os.path.join(cache_dir, f"{split}_labels.npy"),
    )


def file_crc32(path: str) -> str:
    """CRC-32 of the file's bytes, as 8 hex digits."""
    crc = 0
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            crc = zlib.crc32(chunk, crc)
    return f"{crc:08x}"


def _stat_record(path: str) -> dict:
    stat = os.stat(path)
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "inode": stat.st_ino}


def file_record(path: str) -> dict:
    """The manifest's entry for one array file: its CRC-32 and stat."""
    return {"crc32": file_crc32(path), **_stat_record(path)}


def write_manifest(folder: str, class_names: list[str], splits: Mapping[str, tuple[np.ndarray, tuple]],
                   build: Mapping[str, Any]) -> None:
    """Writes ``folder/manifest.json`` for the split files already in ``folder``;
    ``splits`` maps a name to (labels, image shape)."""
    entries = {name: {"count": int(len(labels)), "image_shape": [int(d) for d in shape]}
               for name, (labels, shape) in splits.items()}
    files = {os.path.basename(path): file_record(path)
             for name in splits for path in cache_files(folder, name)}
    _write(folder, {"format": FORMAT, "class_names": list(class_names), "build": dict(build),
                    "splits": entries, "files": files})


def _write(folder: str, manifest: dict) -> None:
    """Writes the manifest so that a reader never sees half of it."""
    paths.write_text_atomic(os.path.join(folder, MANIFEST_FILE), json.dumps(manifest, indent=1))


def read_manifest(folder: str) -> dict:
    """The manifest of the cache in ``folder``; raises naming what is wrong."""
    path = os.path.join(folder, MANIFEST_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"{path!r} is missing: {folder!r} is not a complete cache (an interrupted build, or "
            "one by an older livt-jax); rebuild it with `livt-cache --source ... --split NAME=WHAT "
            f"--out {folder}` (livt-cache --help)")
    try:
        with open(path, encoding="utf-8") as f:
            manifest = json.load(f)
        if manifest.get("format") != FORMAT or "splits" not in manifest:
            raise ValueError(f"format {manifest.get('format')!r}, expected {FORMAT}: built by "
                             "another version of livt-jax")
    except ValueError as e:
        raise ValueError(f"cache manifest {path!r} is unreadable ({e}); rebuild the cache") from e
    return manifest


def build_command(manifest: dict, folder: str) -> str:
    """The `livt-cache` command line that builds ``folder`` again with the manifest's settings
    (DIR stands for the data root, which the manifest does not keep)."""
    build = manifest.get("build", {})
    source = str(build.get("source", "..."))
    words = ["livt-cache", "--source", source,
             *(["--name", build["name"]] if build.get("name") else []),
             *([] if source == "tfds" else ["--data-dir", "DIR"]),
             *(f"--split {split}" for split in build.get("splits", manifest["splits"])),
             "--resize-shorter", str(build.get("resize_shorter", 256)),
             *(["--in-chans", str(build["in_chans"])] if build.get("in_chans", 3) != 3 else []),
             "--out", folder]
    return "`" + " ".join(words) + "`"


def require_split(manifest: dict, folder: str, split: str) -> None:
    """Raises FileNotFoundError naming the cache's splits when ``split`` is not one of them."""
    if split not in manifest["splits"]:
        raise FileNotFoundError(
            f"cache {folder!r} has no split {split!r}; it holds {sorted(manifest['splits'])} "
            "(set data.train_split / data.eval_split to those names, or build the split: "
            f"`livt-cache ... --split {split}=WHAT --out {folder}`)")


def check_split(manifest: dict, folder: str, split: str, labels: np.ndarray,
                image_shape: tuple[int, ...]) -> None:
    """Raises ValueError naming the split and file when its arrays differ from the manifest.

    ``image_shape``: shape of the images array (N, R, R, C).
    """
    require_split(manifest, folder, split)
    entry = manifest["splits"][split]
    problems = []
    if len(labels) != entry["count"]:
        problems.append(f"{split}_labels.npy has {len(labels)} labels, the manifest {entry['count']}")
    if list(image_shape) != [entry["count"], *entry["image_shape"]]:
        problems.append(f"{split}_images.npy has shape {tuple(image_shape)}, the manifest "
                        f"({entry['count']}, {', '.join(map(str, entry['image_shape']))})")
    problems += [f"{os.path.basename(path)} does not match the manifest's checksum (another "
                 "cache's file, or edited)" for path in cache_files(folder, split)
                 if not _matches(manifest, path, full=False)]
    if problems:
        raise ValueError(f"cache {folder!r} is inconsistent: {'; '.join(problems)}; rebuild it "
                         "with python -m livt_jax.tools.cache")


def _matches(manifest: dict, path: str, full: bool) -> bool:
    """Whether ``path`` is the file the manifest describes: its stat as recorded (unless
    ``full``), else its CRC-32 (with a warning when only the stat changed)."""
    recorded = manifest["files"][os.path.basename(path)]
    if not os.path.isfile(path):
        return False
    if not full and _stat_record(path) == {k: recorded[k] for k in ("size", "mtime_ns", "inode")}:
        return True
    start = time.time()
    if file_crc32(path) != recorded["crc32"]:
        return False
    if not full:
        logging.warning("cache file %s was copied or touched since the build; its checksum "
                        "matches (verified in %.1f s; run `livt-cache --verify %s` once so that "
                        "later opens skip this)", path, time.time() - start, os.path.dirname(path))
    return True


def verify(folder: str) -> list[str]:
    """Checks every file of the cache in ``folder`` against its CRC-32; records the current
    stats of the matching ones (so opening skips the CRC). Returns the files that differ."""
    manifest = read_manifest(folder)
    bad = [name for name in sorted(manifest["files"])
           if not _matches(manifest, os.path.join(folder, name), full=True)]
    for name, record in manifest["files"].items():
        if name not in bad:
            record.update(_stat_record(os.path.join(folder, name)))
    _write(folder, manifest)
    return bad
