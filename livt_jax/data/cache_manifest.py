"""The manifest of an image cache: what a complete build wrote, checked on load.

``manifest.json`` in a cache folder::

  {"format": 1, "class_names": [...], "build": {source, name, resize_shorter, ...},
   "splits": {"train": {"count": N, "image_shape": [R, R, C],
                        "labels_sha256": "..."}, ...}}

The builder writes it last, into the temporary folder that then replaces the
old cache, so a cache with a manifest is complete; loading compares every
split's arrays with it, so a truncated, swapped or hand-edited file is named.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any, Mapping

import numpy as np

MANIFEST_FILE = "manifest.json"
FORMAT = 1


def labels_checksum(labels: np.ndarray) -> str:
    """sha256 of the labels as little-endian int64."""
    return hashlib.sha256(np.asarray(labels, dtype="<i8").tobytes()).hexdigest()


def write_manifest(folder: str, class_names: list[str], splits: Mapping[str, tuple[np.ndarray, tuple]],
                   build: Mapping[str, Any]) -> None:
    """Writes ``folder/manifest.json``; ``splits`` maps a name to (labels, image shape)."""
    entries = {name: {"count": int(len(labels)), "image_shape": [int(d) for d in shape],
                      "labels_sha256": labels_checksum(labels)}
               for name, (labels, shape) in splits.items()}
    manifest = {"format": FORMAT, "class_names": list(class_names), "build": dict(build),
                "splits": entries}
    with open(os.path.join(folder, MANIFEST_FILE), "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=1)


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
            raise ValueError(f"format {manifest.get('format')!r}, expected {FORMAT}")
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
    elif labels_checksum(labels) != entry["labels_sha256"]:
        problems.append(f"{split}_labels.npy does not match the manifest's checksum")
    if list(image_shape) != [entry["count"], *entry["image_shape"]]:
        problems.append(f"{split}_images.npy has shape {tuple(image_shape)}, the manifest "
                        f"({entry['count']}, {', '.join(map(str, entry['image_shape']))})")
    if problems:
        raise ValueError(f"cache {folder!r} is inconsistent: {'; '.join(problems)}; rebuild it "
                         "with python -m livt_jax.tools.cache")
