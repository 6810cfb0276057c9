"""Input-pipeline speed: images/s of the training loader, per augmentation kind.

Usage::

  python -m livt_jax.tools.data_benchmark --config configs/demo.py --stage finetune
  python -m livt_jax.tools.data_benchmark --source animal_mnist --image-size 28 --in-chans 1
  python -m livt_jax.tools.data_benchmark --synthetic 2000,256 --image-size 224   # a 256-px cache
  python -m livt_jax.tools.data_benchmark --synthetic 1000,256 --image-size 224 --augment-on host,device --cpu-time

``--config NAME|PATH[:ARG]`` reads the data and the stage's augmentation from a
config (``--config.KEY=VALUE`` overrides any key, as for ``livt-train``); without
it, the options below describe the data.
``--synthetic N,R`` writes N random R x R RGB images into a temporary cache
folder and reads them back memory-mapped, as a stand-in for a cached large
dataset. Times ``--steps`` batches after two warm-up batches, in-process
unless ``--workers`` > 0, and prints one row per augmentation kind ('mgp',
'bft'): images/s and images/s per core (cores = worker processes, or 1).
With ``--augment-on device`` the loader only reads uint8 batches; a further
row ('jit') times the jitted device transform itself
(``device_augment.device_train_transform``) on one loader-sized batch, on
this process's default jax backend, ``--steps`` calls after compiling.

``--vs-timm`` (with ``--synthetic``) pins the process to one core, counts
images per CPU-second of the process (= images/s per core, unaffected by other
jobs on a shared machine), and adds the release's timm transform on the same
images (``timm_transform.py``), one PIL image at a time, and the ratio of our
BFT rate to timm's::

  python -m livt_jax.tools.data_benchmark --synthetic 600,256 --image-size 224 --batch-size 128 \
      --steps 4 --kinds bft --vs-timm
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from typing import Any

import ml_collections
import numpy as np

from livt_jax import config_lib, console
from livt_jax.data import augment, pipeline
from livt_jax.data.cache_manifest import write_manifest
from livt_jax.data.sources import CacheSource, cache_files


def config_from_flags(args) -> ml_collections.ConfigDict:
    """The base config's ``{'data', 'aug'}`` view of ``args.stage``, data set from the flags."""
    config = config_lib.base_config()
    chans = args.in_chans
    config.data.update(dict(
        source=args.source, name=args.name, data_dir=args.data_dir, train_split=args.train_split,
        eval_split=args.eval_split, imbalance_ratio=args.imbalance_ratio, image_size=args.image_size,
        in_chans=chans, mean=(0.5,) * chans, std=(0.25,) * chans))
    config[args.stage].sampler = args.sampler
    return config_lib.stage_data_config(config, args.stage)


def synthetic_cache(folder: str, num_images: int, side: int) -> CacheSource:
    """Random uint8 (num_images, side, side, 3) images written as a cache and opened mmapped."""
    images_path, labels_path = cache_files(folder, "train")
    images = np.lib.format.open_memmap(images_path, mode="w+", dtype=np.uint8, shape=(num_images, side, side, 3))
    rng = np.random.default_rng(0)
    for start in range(0, num_images, 256):
        images[start : start + 256] = rng.integers(0, 256, images[start : start + 256].shape, dtype=np.uint8)
    images.flush()
    labels = np.arange(num_images) % 10
    np.save(labels_path, labels)
    write_manifest(folder, [str(c) for c in range(10)], {"train": (labels, (side, side, 3))},
                   {"source": "synthetic"})
    return CacheSource(folder, "train")


def time_loader(config, source, batch_size: int, steps: int, clock=time.perf_counter) -> float:
    """Images per second of ``clock`` over ``steps`` batches after two warm-up batches."""
    loader = pipeline.make_train_loader(config, source, batch_size=batch_size, seed=0, num_steps=steps + 2,
                                        shard_index=0, shard_count=1)
    iterator = iter(loader)
    next(iterator), next(iterator)
    start = clock()
    for _ in range(steps):
        next(iterator)
    return steps * batch_size / (clock() - start)


def time_device_transform(config, source, batch_size: int, steps: int,
                          clock=time.perf_counter) -> float:
    """Images per second of ``clock``: the jitted device transform of ``config`` on the first
    ``batch_size`` images of ``source`` (one size), ``steps`` calls after a compiling one."""
    import jax  # pylint: disable=import-outside-toplevel

    from livt_jax.step import device_augment  # pylint: disable=import-outside-toplevel

    images = jax.numpy.asarray(np.stack([source[i]["image"] for i in range(batch_size)]))
    transform = jax.jit(lambda rng, x: device_augment.device_train_transform(rng, x, config.data, config.aug))
    transform(jax.random.key(0), images).block_until_ready()
    start = clock()
    for step in range(steps):
        transform(jax.random.key(step + 1), images).block_until_ready()
    return steps * batch_size / (clock() - start)


def time_timm(config, images: np.ndarray, num_images: int, clock=time.perf_counter) -> float:
    """Images per second of ``clock``: the release's timm BFT transform, first ``num_images`` images."""
    import torch  # pylint: disable=import-outside-toplevel

    from livt_jax.data import timm_transform  # pylint: disable=import-outside-toplevel

    torch.set_num_threads(1)
    transform = timm_transform.train_transform(config.data.image_size, config.data.mean,
                                               config.data.std)
    return timm_transform.images_per_second(transform, images[:num_images], clock=clock)


def _synthetic(text: str) -> tuple[int, int]:
    try:
        num_images, side = (console.int_at_least(1)(v) for v in text.split(","))
    except (ValueError, argparse.ArgumentTypeError) as e:
        raise argparse.ArgumentTypeError(f"{text!r} is not N,R with N, R > 0") from e
    return num_images, side


def parse_args(argv=None) -> argparse.Namespace:
    """The options; a bad one ends with one line and exit status 2 (``console.ArgumentParser``).
    ``args.config``: the loaded config (``--config`` and its ``--config.KEY=VALUE`` overrides), or None."""
    parser = console.command_parser("python -m livt_jax.tools.data_benchmark", __doc__)
    console.add_config_options(parser, "Config whose data and stage augmentation are read "
                               "(else the options below).")
    parser.add_argument("--stage", default="finetune", choices=("pretrain", "finetune"))
    parser.add_argument("--source", default="animal_mnist")
    parser.add_argument("--name", default="")
    parser.add_argument("--data-dir", default="")
    parser.add_argument("--train-split", default="train")
    parser.add_argument("--eval-split", default="test")
    parser.add_argument("--imbalance-ratio", type=float, default=1.0)
    parser.add_argument("--image-size", type=console.int_at_least(1), default=28)
    parser.add_argument("--in-chans", type=int, default=1, choices=(1, 3))
    parser.add_argument("--sampler", default="instance")
    parser.add_argument("--synthetic", type=_synthetic,
                        help="N,R: N random R x R RGB images in a temporary cache")
    parser.add_argument("--batch-size", type=console.int_at_least(1), default=256)
    parser.add_argument("--steps", type=console.int_at_least(1), default=20)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--kinds", type=console.names_of(augment.AUG_KINDS), default="mgp,bft",
                        help="augmentation kinds to time")
    parser.add_argument("--augment-on", type=console.names_of(("host", "device")), default="host",
                        help="host,device: where the augmentation runs (device = data.device_augment: "
                             "the loader only reads and stacks uint8 images)")
    parser.add_argument("--cpu-time", action="store_true",
                        help="rates per CPU-second of this process (per core, in-process only)")
    parser.add_argument("--vs-timm", action="store_true",
                        help="one core; also time timm's BFT transform on the same images")
    args = parser.parse_args(argv)
    if args.vs_timm and (not args.synthetic or "bft" not in args.kinds or args.workers):
        parser.error("--vs-timm compares on --synthetic images, needs 'bft' in --kinds and --workers 0")
    return args


def open_data(args, folder: str) -> tuple[ml_collections.ConfigDict, Any, str]:
    """(the data config, the source to read, its label in the table); a synthetic cache
    is written into ``folder``."""
    config = (config_lib.stage_data_config(args.config, args.stage) if args.config
              else config_from_flags(args))
    config.data.worker_count = args.workers
    if not args.synthetic:
        return config, pipeline.load_sources(config.data).train, config.data.source
    num_images, side = args.synthetic
    config.data.in_chans = 3
    config.data.mean, config.data.std = (0.5,) * 3, (0.25,) * 3
    return config, synthetic_cache(folder, num_images, side), f"synthetic cache {side}px"


def main(argv=None) -> int:
    """Runs the benchmark; returns the exit status. Data or a config that cannot be opened
    ends with one line and status 2, a failure while timing with one line and status 1."""
    args = parse_args(argv)
    # On one core, images per CPU-second is images/s per core, and other jobs sharing
    # the core do not count against either side.
    clock = time.process_time if args.vs_timm or args.cpu_time else time.perf_counter
    if args.vs_timm:
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    with tempfile.TemporaryDirectory() as folder:
        try:
            config, source, label = open_data(args, folder)
        except (ValueError, OSError) as e:
            return console.report_error(e, usage=True)
        try:
            time_all(args, config, source, label, clock)
        except (ValueError, OSError, RuntimeError) as e:
            return console.report_error(e, usage=False, hint="")
    return 0


def time_all(args, config, source, label: str, clock) -> None:
    """Prints one row per place and augmentation kind (and timm's with ``--vs-timm``)."""
    cores = max(args.workers, 1)
    print(f"{'source':<24} {'aug':<4} {'on':<6} {'size':>5} {'batch':>6} {'img/s':>9} "
          f"{'img/s/core':>11}")
    rates = {}
    for place in args.augment_on:
        config.data.device_augment = place == "device"
        for kind in args.kinds:
            config.aug.kind = kind
            rate = time_loader(config, source, args.batch_size, args.steps, clock)
            rates.setdefault(kind, rate)  # --vs-timm compares the host path
            print(f"{label:<24} {kind:<4} {place:<6} {config.data.image_size:>5} "
                  f"{args.batch_size:>6} {rate:>9.0f} {rate / cores:>11.0f}")
            if place == "device":
                rate = time_device_transform(config, source, args.batch_size, args.steps, clock)
                print(f"{label:<24} {kind:<4} {'jit':<6} {config.data.image_size:>5} "
                      f"{args.batch_size:>6} {rate:>9.1f} {rate:>11.1f}")
    if args.vs_timm:
        rate = time_timm(config, source.images, args.batch_size * args.steps, clock)
        print(f"{'timm ' + label:<24} {'bft':<4} {'host':<6} {config.data.image_size:>5} {1:>6} "
              f"{rate:>9.0f} {rate:>11.0f}")
        print(f"ours / timm, bft, one core: {rates['bft'] / rate:.2f}x")


if __name__ == "__main__":
    sys.exit(main())
