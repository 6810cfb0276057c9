"""Train-step speed: `python -m livt_jax.benchmark [--config ...] [--compare-torch]`.

Times the project's real jitted train step (the one `train.run_stage` uses:
model, loss, Mixup/CutMix on device, AdamW with layer-wise decay, donated
state) on device-resident random batches, and prints one table per stage:
device, images/s, step ms, MFU from analytic matmul FLOPs and from XLA's
cost analysis (both against a bf16 GEMM peak measured on the same card),
and peak device memory. With `--compare-torch` the timm/PyTorch reference
step (eager, bf16 autocast, AdamW) is timed in the same run.

Defaults: ViT-B/16 BFT and MAE-B MGP at 224 px, global batch 256, bf16
compute (the anchors in docs/PERFORMANCE.md). With `--config.data.device_augment=True`
the step takes uint8 images (side S/0.875) and crops/flips them on the device,
as training from a cache does. A benchmark, not a test.
"""

from __future__ import annotations

import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags
from ml_collections import config_flags

from livt_jax import mesh as mesh_lib, optim, train
from livt_jax.data import device_augment

_CONFIG = config_flags.DEFINE_config_file(
    "config", "configs/imagenet_lt.py", "Config whose model/optimizer are timed.",
    lock_config=True)
_STAGES = flags.DEFINE_list("stages", ["finetune", "pretrain"], "Stages to time.")
_BATCH = flags.DEFINE_integer("batch", 256, "Global batch size.")
_STEPS = flags.DEFINE_integer("steps", 20, "Timed steps (after warm-up).")
_WARMUP = flags.DEFINE_integer("warmup", 3, "Untimed steps first (compilation included).")
_DTYPE = flags.DEFINE_string("dtype", "bfloat16", "Compute dtype (overrides model.dtype).")
_COMPARE_TORCH = flags.DEFINE_bool("compare_torch", False, "Also time the timm/PyTorch step.")


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


def stage_train_flops(config, stage: str, num_classes: int = 1000) -> float:
    """Analytic training FLOPs per image of ``config``'s MAE (pretrain) or ViT (finetune)."""
    size = train.stage_image_size(config, config[stage])
    dims = train.model_dims(config.model)
    if stage == "pretrain":
        return mae_train_flops(size, dims["patch_size"], dims["embed_dim"], dims["depth"],
                               config.model.decoder_embed_dim, config.model.decoder_depth,
                               config.model.mask_ratio, config.data.in_chans)
    return vit_train_flops(size, dims["patch_size"], dims["embed_dim"], dims["depth"],
                           num_classes, config.data.in_chans)


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


def benchmark_stage(config, stage: str, batch: int, steps: int, warmup: int) -> dict:
    """Builds the stage's real step on all local devices and times it."""
    mesh = mesh_lib.make_mesh(config.mesh.data, config.mesh.fsdp)
    mesh_lib.check_global_batch(batch, mesh)
    size = train.stage_image_size(config, config[stage])
    num_classes = 1000
    counts = np.maximum(1280 * (np.arange(num_classes) + 1.0) ** -1.0, 5).astype(np.int64)
    dims = train.model_dims(config.model)
    if stage == "pretrain":
        model = train.build_mae(config, size)
        loss_fn = train.pretrain_loss_fn(model)
    else:
        model = train.build_vit(config, num_classes, size, config.finetune.drop_path)
        loss_fn = train.finetune_loss_fn(model, config.finetune, counts)
    analytic = stage_train_flops(config, stage, num_classes)
    loss_fn = device_augment.wrap_loss_fn(loss_fn, train.stage_data_config(config, stage))
    shape = (size, size, config.data.in_chans)
    tx, schedule = optim.make_optimizer(config[stage].optim, train.abstract_params(model, shape),
                                        stage=stage, depth=dims["depth"], global_batch=batch,
                                        steps_per_epoch=1000, total_steps=100_000)
    state, shardings = train.init_state(model, tx, shape, jax.random.key(0), mesh)
    step_fn = jax.jit(train.make_train_step(loss_fn, tx, schedule, 1),
                      in_shardings=(shardings, mesh_lib.batch_sharding(mesh)),
                      out_shardings=(shardings, mesh_lib.replicated(mesh)), donate_argnums=0)
    rng = np.random.default_rng(0)
    if config.data.device_augment:  # uint8 images as a cache at size / 0.875 holds them
        side = int(size / config[stage].aug.eval_crop_pct)
        images = rng.integers(0, 256, (batch, side, side, shape[-1]), dtype=np.uint8)
    else:
        images = rng.normal(size=(batch, *shape)).astype(np.float32)
    data = mesh_lib.global_batch_from_local(mesh, {
        "image": images,
        "label": rng.integers(0, num_classes, batch).astype(np.int32)})
    compiled = step_fn.lower(state, data).compile()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    xla_flops = float(cost.get("flops", 0.0)) / batch if cost else 0.0

    holder = {"state": state}

    def one_step():
        holder["state"], metrics = step_fn(holder["state"], data)
        holder["loss"] = metrics["loss"]
        return metrics["loss"]

    seconds = time_fn(one_step, steps, warmup)
    return {"stage": stage, "img_s": batch / seconds, "step_ms": 1e3 * seconds,
            "analytic_flops": analytic, "xla_flops": xla_flops, "mem_gib": peak_memory_gib(),
            "loss": float(holder["loss"])}


def torch_reference(config, batch: int, steps: int, warmup: int) -> dict:
    """The release's path: timm ViT, eager, bf16 autocast, AdamW (BFT stage only)."""
    from livt_jax import torch_reference as reference  # pylint: disable=import-outside-toplevel

    row = reference.benchmark_stage(config, "finetune", batch, steps, warmup)
    return {**row, "stage": "finetune (torch eager)",
            "analytic_flops": stage_train_flops(config, "finetune"), "xla_flops": 0.0}


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


def main(argv):
    del argv
    config = _CONFIG.value.copy_and_resolve_references()
    config.model.dtype = _DTYPE.value
    rows = [benchmark_stage(config, stage, _BATCH.value, _STEPS.value, _WARMUP.value)
            for stage in _STAGES.value]
    if _COMPARE_TORCH.value:
        rows.append(torch_reference(config, _BATCH.value, _STEPS.value, _WARMUP.value))
    print(format_table(rows, gemm_peak_flops()), flush=True)


if __name__ == "__main__":
    app.run(main)
