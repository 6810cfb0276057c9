"""Classify image files with a params export: top-k class names and probabilities.

    livt-predict EXPORT INPUTS... [--top-k K] [--out FILE.csv|FILE.jsonl]
                 [--batch-size B] [--bad-images skip|stop] [--root DIR]

`python -m livt_jax.predict` is the same command. EXPORT is a classifier
export with its description (`EXPORT/model.json`, see `description`), which
gives the model, the class names and the eval transform (resize, centre crop,
normalisation; `pipeline.eval_images`). INPUTS are image files, folders
(searched recursively for image files) or split lists (`.txt`, lines
`relative/path label`, paths relative to `--root`, default the list's folder),
local or `gs://`. Images are decoded in threads, batched, and the forward pass
is sharded over this machine's devices.

Output (`--out`, default CSV on stdout): one row per image, in input order,
with its path and the top-k classes and probabilities; `.csv` columns
`path,class_1,prob_1,...`, `.jsonl` objects `{"path", "top_k": [{"class",
"index", "prob"}, ...]}`. Probabilities are the softmax of the raw logits for
every loss: for CE-family models that is the model's posterior; for a BCE-
family model (`bce`, `bal_bce`, whose per-class sigmoids do not sum to 1) it
is the softmax of the same logits (the ranking is that of the logits, and the
confidence is the one eval's ECE measures). An image that does not decode is
reported on stderr and skipped (`--bad-images skip`, the default) or stops the
run (`--bad-images stop`). A progress bar is shown when stderr is a terminal.
Errors are one line on stderr: exit status 2 for usage errors (bad arguments,
missing inputs or export), 1 for an undecodable image with `stop`.
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import csv
import io
import json
import sys
import time
from typing import Iterator, Optional, Sequence

import numpy as np
from PIL import Image

from livt_jax import checkpoint, console, description, mesh as mesh_lib, paths
from livt_jax.config_lib import stage_data_config
from livt_jax.data import pipeline
from livt_jax.data.sources import decode_image, read_split_list
from livt_jax.evaluator import gather, logits_fn
from livt_jax.models import factory

IMAGE_SUFFIXES = (".bmp", ".gif", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp")
SPLIT_LIST_SUFFIX = ".txt"
FORMATS = (".csv", ".jsonl")


class BadImageError(ValueError):
    """An input image that does not decode (with `--bad-images stop`)."""


# ----------------------------------------------------------------------------- inputs

def _is_image(path: str) -> bool:
    return path.lower().endswith(IMAGE_SUFFIXES)


def list_images(inputs: Sequence[str], root: Optional[str] = None) -> list[str]:
    """The image paths named by `inputs` (files, folders searched recursively and
    sorted, split lists), in order. Raises FileNotFoundError / ValueError naming a
    missing input or one that is neither."""
    images = []
    for item in inputs:
        if paths.is_dir(item):
            found = [paths.join(item, p) for p in paths.list_files(item) if _is_image(p)]
            if not found:
                raise ValueError(f"folder {item} holds no image files (expected names ending "
                                 f"in one of {', '.join(IMAGE_SUFFIXES)})")
            images += found
        elif not paths.is_file(item):
            raise FileNotFoundError(f"input {item} does not exist (expected an image file, a "
                                    "folder or a split list)")
        elif _is_image(item):
            images.append(item)
        elif item.endswith(SPLIT_LIST_SUFFIX):
            base = root or paths.dirname(item)
            images += [paths.join(base, p) for p in read_split_list(item)[0]]
        else:
            raise ValueError(f"input {item} is neither an image ({', '.join(IMAGE_SUFFIXES)}), "
                             f"a folder nor a split list ({SPLIT_LIST_SUFFIX})")
    return images


# ----------------------------------------------------------------------------- model

class Predictor:
    """An export ready to classify: `probabilities(uint8 images) -> (B, C)`.

    `batch_size` is rounded up to a multiple of the device count; the forward
    pass (`evaluator.logits_fn`) is sharded over all devices of this process.
    """

    def __init__(self, export: str, batch_size: int):
        found = description.read(export)
        if found is None:
            if not paths.is_dir(export):
                raise FileNotFoundError(f"no params export at {export}")
            raise ValueError(f"{description.path_of(export)} is missing: livt-predict needs an "
                             "export written with its description (retrain, or convert it with "
                             "livt-convert to-torch / to-jax from a described export)")
        if found["kind"] != "vit":
            raise ValueError(f"{export} holds an MGP (MAE) export; livt-predict needs a "
                             "classifier (ViT) export, e.g. WORKDIR/finetune/export")
        config = description.model_config(found)
        self.class_names = list(found.get("class_names") or
                                [str(c) for c in range(found["model"]["num_classes"])])
        self.in_chans = config.data.in_chans
        self.data_cfg = stage_data_config(config, "finetune")
        self.mesh = mesh_lib.make_mesh()
        devices = self.mesh.devices.size
        self.batch_size = -(-batch_size // devices) * devices
        model = factory.build_vit(config.model, config.data.in_chans,
                                  found["model"]["num_classes"], config.finetune.image_size,
                                  drop_path=0.0)
        abstract = factory.abstract_params(model)
        shardings = mesh_lib.state_shardings(self.mesh, abstract)
        self.params = checkpoint.load_params_export(
            export, mesh_lib.sharded_abstract(abstract, shardings))
        self._logits = logits_fn(model, self.mesh, shardings)

    def probabilities(self, images: list[np.ndarray]) -> np.ndarray:
        """uint8 images (H, W, C), at most `batch_size` -> float64 softmax (B, C)."""
        count = len(images)
        padded = images + [images[0]] * (self.batch_size - count)
        batch = pipeline.eval_images(self.data_cfg, padded)
        arrays = mesh_lib.global_batch_from_local(self.mesh, {"image": batch})
        logits = np.asarray(gather(self._logits(self.params, arrays["image"])),
                            np.float64)[:count]
        shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
        return shifted / shifted.sum(axis=1, keepdims=True)


def top_k(probs: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (B, k) and probabilities (B, k) of the k largest, highest first
    (ties: lower class index first, like `argmax`)."""
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(probs, order, axis=1)


# ----------------------------------------------------------------------------- output

def format_rows(fmt: str, image_paths: Sequence[str], indices: np.ndarray, probs: np.ndarray,
                class_names: Sequence[str]) -> str:
    """Rows of `.csv` or `.jsonl` output for one batch."""
    if fmt == ".jsonl":
        return "".join(json.dumps({"path": p, "top_k": [
            {"class": class_names[i], "index": int(i), "prob": round(float(q), 6)}
            for i, q in zip(row_i, row_p)]}) + "\n"
            for p, row_i, row_p in zip(image_paths, indices, probs))
    text = io.StringIO(newline="")
    writer = csv.writer(text, lineterminator="\n")
    for p, row_i, row_p in zip(image_paths, indices, probs):
        writer.writerow([p, *(x for i, q in zip(row_i, row_p)
                              for x in (class_names[i], f"{q:.6f}"))])
    return text.getvalue()


def csv_header(k: int) -> str:
    return ",".join(["path", *(f"{c}_{j}" for j in range(1, k + 1) for c in ("class", "prob"))]
                    ) + "\n"


class Output:
    """Rows written as they come to stdout or a local file; an object in a bucket is
    written once, at `close`."""

    def __init__(self, out: Optional[str]):
        self.out = out
        self.fmt = ".csv" if out is None else next((f for f in FORMATS if out.endswith(f)), None)
        if self.fmt is None:
            raise ValueError(f"--out {out}: expected a name ending in {' or '.join(FORMATS)}")
        self._pending = []
        self._file = sys.stdout if out is None else (
            None if paths.is_url(out) else open(out, "w", encoding="utf-8"))

    def write(self, text: str) -> None:
        if self._file is None:
            self._pending.append(text)
        else:
            self._file.write(text)
            self._file.flush()

    def close(self) -> None:
        if self._file is None:
            paths.write_text(self.out, "".join(self._pending))
        elif self._file is not sys.stdout:
            self._file.close()


# ----------------------------------------------------------------------------- the run

def _decode(path: str, in_chans: int) -> tuple[str, Optional[np.ndarray], Optional[str]]:
    """(path, uint8 image or None, error or None)."""
    try:
        return path, decode_image(path, in_chans), None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        return path, None, " ".join(str(e).split())[:200] or type(e).__name__


def decoded_batches(image_paths: Sequence[str], in_chans: int, batch_size: int,
                    bad_images: str, threads: int = 8, read_ahead: int = 2
                    ) -> Iterator[tuple[list[str], list[np.ndarray]]]:
    """(paths, images) of the decodable images of each run of `batch_size` paths,
    decoded in `threads` threads while up to `read_ahead` batches wait. An
    undecodable image is reported on stderr and left out, or raises BadImageError."""
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        queue = collections.deque()
        for start in range(0, len(image_paths), batch_size):
            queue.append([pool.submit(_decode, p, in_chans)
                          for p in image_paths[start:start + batch_size]])
            if len(queue) > read_ahead:
                yield from _keep_decoded([f.result() for f in queue.popleft()], bad_images)
        while queue:
            yield from _keep_decoded([f.result() for f in queue.popleft()], bad_images)


def _keep_decoded(results: list, bad_images: str
                  ) -> Iterator[tuple[list[str], list[np.ndarray]]]:
    """(paths, images) of the decoded ones of `_decode` results (nothing when none
    decoded); reports or raises for the rest."""
    names, images = [], []
    for path, image, error in results:
        if error is None:
            names.append(path)
            images.append(image)
        elif bad_images == "stop":
            raise BadImageError(f"cannot decode image {path}: {error} (--bad-images skip to "
                                "skip such files)")
        else:
            print(f"skipped {path}: cannot decode it: {error}", file=sys.stderr, flush=True)
    if names:
        yield names, images


def predict(args: argparse.Namespace, started: float) -> dict:
    """Runs the command; returns counts and timings (also printed on stderr)."""
    output = Output(args.out)  # a bad --out fails before the model loads
    predictor = Predictor(args.export, args.batch_size)
    image_paths = list_images(args.inputs, args.root)
    k = min(args.top_k, len(predictor.class_names))
    if output.fmt == ".csv":
        output.write(csv_header(k))
    progress = None
    if sys.stderr.isatty():
        from tqdm import tqdm  # pylint: disable=import-outside-toplevel
        progress = tqdm(total=len(image_paths), unit="img", dynamic_ncols=True)
    done, first_batch, first_output, loop_start = 0, 0, None, time.perf_counter()
    try:
        for names, images in decoded_batches(image_paths, predictor.in_chans,
                                             predictor.batch_size, args.bad_images):
            indices, probs = top_k(predictor.probabilities(images), k)
            output.write(format_rows(output.fmt, names, indices, probs, predictor.class_names))
            if first_output is None:  # the rate is measured after the first batch (compile)
                first_output, loop_start, first_batch = (time.perf_counter() - started,
                                                         time.perf_counter(), len(names))
            done += len(names)
            if progress is not None:
                progress.update(len(names))
    finally:
        if progress is not None:
            progress.close()
        output.close()
    later = done - first_batch
    rate = later / max(time.perf_counter() - loop_start, 1e-9) if later else None
    stats = {"images": done, "skipped": len(image_paths) - done,
             "seconds": time.perf_counter() - started, "img_per_s": rate,
             "first_output_s": first_output}
    print(f"predicted {done} image(s), skipped {stats['skipped']}, in {stats['seconds']:.1f} s; "
          + ("no output" if first_output is None else f"first rows after {first_output:.1f} s")
          + ("" if rate is None else f"; {rate:.0f} img/s after the first batch"),
          file=sys.stderr, flush=True)
    return stats


def build_parser() -> console.ArgumentParser:
    """The `livt-predict` (= `python -m livt_jax.predict`) argument parser."""
    parser = console.command_parser("livt-predict", __doc__)
    parser.add_argument("export", help="classifier export folder (WORKDIR/finetune/export)")
    parser.add_argument("inputs", nargs="+",
                        help="image files, folders (recursive) or split lists (.txt); local or "
                        "gs://")
    parser.add_argument("--top-k", type=console.int_at_least(1), default=5, help="classes per image (default 5)")
    parser.add_argument("--out", help="output file ending in .csv or .jsonl, local or gs:// "
                        "(default: CSV on stdout)")
    parser.add_argument("--batch-size", type=console.int_at_least(1), default=64,
                        help="images per forward pass, rounded up to a multiple of the devices")
    parser.add_argument("--bad-images", choices=("skip", "stop"), default="skip",
                        help="an image that does not decode: report and skip it (default), or "
                        "stop")
    parser.add_argument("--root", help="folder the paths of split lists are relative to "
                        "(default: the list's folder)")
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    """The `livt-predict` command; returns the exit status."""
    started = time.perf_counter()
    args = build_parser().parse_args(argv)
    try:
        predict(args, started)
    except BadImageError as e:
        print(f"error: {e}", file=sys.stderr)
        return console.RUNTIME_ERROR
    except (ValueError, OSError) as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return console.USAGE_ERROR
    return 0


if __name__ == "__main__":
    sys.exit(main())
