"""Train-step speed: `livt-benchmark [--config NAME|PATH[:ARG]] [--config.KEY=VALUE ...]
[--stages finetune,pretrain] [--batch B] [--steps N] [--warmup N] [--dtype D] [--compare-torch]`.

`python -m livt_jax.tools.benchmark` is the same command.

Times the project's real jitted train step (`stage.build_stage`, the one
`train.run_stage` runs: model, loss, Mixup/CutMix on device, AdamW with
layer-wise decay, gradient accumulation, donated state) on device-resident
random batches, and prints one table per stage:
device, images/s, step ms, MFU from analytic matmul FLOPs and from XLA's
cost analysis (both against a bf16 GEMM peak measured on the same card),
and peak device memory. With `--compare-torch` the timm/PyTorch reference
step (eager, bf16 autocast, AdamW) is timed in the same run.

Defaults: ViT-B/16 BFT and MAE-B MGP at 224 px, global batch 256, bf16
compute (the reference figures in docs/PERFORMANCE.md). With `--config.data.device_augment=True`
the step takes uint8 images (side S/0.875) and runs the stage's whole train
augmentation on the device (BFT: crop, flip, RandAugment, erasing), as training
from a cache does. A benchmark, not a test. Errors end with one line: exit 2 for
an option or a config that does not load or check, 1 for a failure while
building or timing the step (`--traceback` raises instead).
"""

from __future__ import annotations

import sys
import time
from typing import Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from livt_jax import config_checks, console, mesh as mesh_lib, stage as stage_lib
from livt_jax.config_lib import stage_image_size
from livt_jax.models import factory

DEFAULT_CONFIG = "imagenet_lt"


def build_parser() -> console.ArgumentParser:
    """The `livt-benchmark` (= `python -m livt_jax.tools.benchmark`) argument parser."""
    parser = console.command_parser("livt-benchmark", __doc__)
    console.add_config_options(parser, "Config whose model and optimizer are timed (default "
                               f"{DEFAULT_CONFIG}).", default=DEFAULT_CONFIG)
    parser.add_argument("--stages", type=console.names_of(stage_lib.TRAIN_STAGES),
                        default=["finetune", "pretrain"],
                        help=f"stages to time, comma-separated, of {stage_lib.TRAIN_STAGES}")
    parser.add_argument("--batch", type=console.int_at_least(1), default=256,
                        help="global batch size (default 256)")
    parser.add_argument("--steps", type=console.int_at_least(1), default=20,
                        help="timed steps, after warm-up (default 20)")
    parser.add_argument("--warmup", type=console.int_at_least(0), default=3,
                        help="untimed steps first, compilation included (default 3)")
    parser.add_argument("--dtype", default="bfloat16",
                        help="compute dtype, overrides model.dtype (default bfloat16)")
    parser.add_argument("--compare-torch", action="store_true",
                        help="also time the timm/PyTorch step")
    console.add_run_options(parser)
    return parser


# ----------------------------------------------------------------------------- FLOPs

def encoder_matmul_flops(tokens: int, width: int, depth: int, mlp_ratio: float = 4.0) -> float:
    """Forward matmul FLOPs of `depth` blocks on `tokens` tokens (2 per multiply-add):
    qkv 6ND², proj 2ND², MLP 4·r·ND², attention scores and mixing 4N²D."""
    per_block = (8 + 4 * mlp_ratio) * tokens * width ** 2 + 4 * tokens ** 2 * width
    return depth * per_block


def vit_train_flops(img_size: int, patch: int, width: int, depth: int, num_classes: int,
                    in_chans: int = 3, mlp_ratio: float = 4.0) -> float:
    """Analytic training FLOPs per image (3 × forward) of the ViT classifier."""
    patches = (img_size // patch) ** 2
    forward = (2 * patches * patch * patch * in_chans * width
               + encoder_matmul_flops(patches + 1, width, depth, mlp_ratio)
               + 2 * width * num_classes)
    return 3 * forward


def mae_train_flops(img_size: int, patch: int, width: int, depth: int, dec_width: int,
                    dec_depth: int, mask_ratio: float, in_chans: int = 3,
                    mlp_ratio: float = 4.0) -> float:
    """Analytic training FLOPs per image of the MAE (encoder on visible tokens only)."""
    patches = (img_size // patch) ** 2
    visible = int(patches * (1 - mask_ratio)) + 1
    pixels = patch * patch * in_chans
    forward = (2 * patches * pixels * width
               + encoder_matmul_flops(visible, width, depth, mlp_ratio)
               + 2 * visible * width * dec_width
               + encoder_matmul_flops(patches + 1, dec_width, dec_depth, mlp_ratio)
               + 2 * (patches + 1) * dec_width * pixels)
    return 3 * forward


# ----------------------------------------------------------------------------- timing

def time_fn(step: Callable[[], object], steps: int, warmup: int) -> float:
    """Median seconds per call; `step()` must return something to block on."""
    for _ in range(warmup):
        jax.block_until_ready(step())
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        jax.block_until_ready(step())
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def gemm_peak_flops() -> float:
    """Measured bf16 matrix-product FLOP/s (8192³ on accelerators, 1024³ f32 on CPU)."""
    on_cpu = jax.devices()[0].platform == "cpu"
    n, dtype = (1024, jnp.float32) if on_cpu else (8192, jnp.bfloat16)
    keys = jax.random.split(jax.random.key(0), 2)
    a, b = (jax.random.normal(k, (n, n), dtype) for k in keys)
    matmul = jax.jit(jnp.matmul)
    seconds = time_fn(lambda: matmul(a, b), steps=10, warmup=2)
    return 2 * n ** 3 / seconds


def peak_memory_gib() -> float | None:
    stats = jax.devices()[0].memory_stats() or {}
    peak = stats.get("peak_bytes_in_use")
    return None if peak is None else peak / 2 ** 30


def synthetic_class_counts(num_classes: int = 1000) -> np.ndarray:
    """ImageNet-LT-like training counts (C,): 1280 / (c + 1), at least 5."""
    return np.maximum(1280 * (np.arange(num_classes) + 1.0) ** -1.0, 5).astype(np.int64)


def benchmark_stage(config, stage: str, batch: int, steps: int, warmup: int, *,
                    train_counts: np.ndarray | None = None, steps_per_epoch: int = 1000,
                    total_steps: int = 100_000) -> dict:
    """Times `stage`'s real step (`stage.build_stage` of `config` with global batch
    `batch`) on all local devices. `train_counts` (default: 1000 synthetic
    long-tailed classes) and the schedule lengths are the step's constants."""
    config = config.copy_and_resolve_references()
    config[stage].batch_size = batch
    mesh = mesh_lib.make_mesh(config.mesh.data, config.mesh.fsdp)
    counts = synthetic_class_counts() if train_counts is None else np.asarray(train_counts)
    built, state = stage_lib.build_stage(stage_lib.stage_spec(config, stage, mesh), mesh, counts,
                                         steps_per_epoch=steps_per_epoch, total_steps=total_steps)
    data = mesh_lib.global_batch_from_local(mesh, random_batch(config, stage, batch, len(counts)))
    compiled = built.step.lower(state, data).compile()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    xla_flops = float(cost.get("flops", 0.0)) / batch if cost else 0.0

    holder = {"state": state}
    del state  # donated by the first step

    def one_step():
        holder["state"], metrics = built.step(holder["state"], data)
        holder["loss"] = metrics["loss"]
        return metrics["loss"]

    seconds = time_fn(one_step, steps, warmup)
    return {"stage": stage, "img_s": batch / seconds, "step_ms": 1e3 * seconds,
            "analytic_flops": analytic_train_flops(config, stage, len(counts)),
            "xla_flops": xla_flops, "mem_gib": peak_memory_gib(), "loss": float(holder["loss"])}


def random_batch(config, stage: str, batch: int, num_classes: int) -> dict[str, np.ndarray]:
    """A batch of the shapes and dtypes `stage`'s loader gives: float images, or
    with `data.device_augment` uint8 images at side S / eval_crop_pct (a cache's)."""
    size = stage_image_size(config, stage)
    chans = config.data.in_chans
    rng = np.random.default_rng(0)
    if config.data.device_augment:
        side = int(size / config[stage].aug.eval_crop_pct)
        images = rng.integers(0, 256, (batch, side, side, chans), dtype=np.uint8)
    else:
        images = rng.normal(size=(batch, size, size, chans)).astype(np.float32)
    return {"image": images, "label": rng.integers(0, num_classes, batch).astype(np.int32)}


def analytic_train_flops(config, stage: str, num_classes: int) -> float:
    """`mae_train_flops` (pretrain) or `vit_train_flops` (finetune) of `config.model`."""
    size = stage_image_size(config, stage)
    dims = factory.model_dims(config.model)
    if stage == "pretrain":
        return mae_train_flops(size, dims["patch_size"], dims["embed_dim"], dims["depth"],
                               config.model.decoder_embed_dim, config.model.decoder_depth,
                               config.model.mask_ratio, config.data.in_chans)
    return vit_train_flops(size, dims["patch_size"], dims["embed_dim"], dims["depth"],
                           num_classes, config.data.in_chans)


def torch_reference(config, batch: int, steps: int, warmup: int) -> dict:
    """The release's path: timm ViT, eager, bf16 autocast, AdamW (BFT stage only)."""
    from livt_jax.tools import torch_reference as reference  # pylint: disable=import-outside-toplevel

    row = reference.benchmark_stage(config, "finetune", batch, steps, warmup)
    return {**row, "stage": "finetune (torch eager)",
            "analytic_flops": analytic_train_flops(config, "finetune", 1000), "xla_flops": 0.0}


def format_table(rows: list[dict], peak: float) -> str:
    device = jax.devices()[0]
    lines = [f"device: {device.device_kind} ×{jax.device_count()} ({device.platform}), "
             f"jax {jax.__version__}, measured GEMM peak {peak / 1e12:.1f} TFLOP/s",
             f"{'stage':24s}{'img/s':>10s}{'step ms':>10s}{'GFLOP/img':>11s}"
             f"{'MFU':>8s}{'XLA GFLOP':>11s}{'MFU(XLA)':>10s}{'peak GiB':>10s}"]
    for r in rows:
        mfu = r["img_s"] * r["analytic_flops"] / peak
        mfu_xla = r["img_s"] * r["xla_flops"] / peak if r["xla_flops"] else float("nan")
        mem = f"{r['mem_gib']:.1f}" if r["mem_gib"] is not None else "n/a"
        lines.append(f"{r['stage']:24s}{r['img_s']:10.1f}{r['step_ms']:10.1f}"
                     f"{r['analytic_flops'] / 1e9:11.3g}{100 * mfu:7.1f}%"
                     f"{r['xla_flops'] / 1e9:11.3g}{100 * mfu_xla:9.1f}%{mem:>10s}")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """The `livt-benchmark` command; returns the exit status."""
    args = build_parser().parse_args(argv)
    console.init_logging(args.verbosity)
    try:
        config = args.config.copy_and_resolve_references()
        config.model.dtype = args.dtype
        rows = [benchmark_stage(config, stage, args.batch, args.steps, args.warmup)
                for stage in args.stages]
        if args.compare_torch:
            rows.append(torch_reference(config, args.batch, args.steps, args.warmup))
        print(format_table(rows, gemm_peak_flops()), flush=True)
    except Exception as e:  # pylint: disable=broad-except
        if args.traceback:
            raise
        return console.report_error(e, usage=isinstance(e, config_checks.ConfigError))
    return 0


if __name__ == "__main__":
    sys.exit(main())
