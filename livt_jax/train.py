"""One training loop for both LiVT stages, sharded over a device mesh.

`train_and_evaluate(config, workdir)` runs the stage named by `config.stage`:
`pretrain` (MGP: an MAE on the long-tailed training set), `finetune` (BFT: the
encoder fine-tuned with Bal-BCE), `eval` (a params export scored on the eval
split) or `livt` (MGP, then BFT from MGP's export). Parameters and optimizer
state are born sharded (`eval_shape` → shardings → `jit(init, out_shardings)`),
the step is one jitted function with donated state, and batches are assembled
from per-process data, so the same code runs on 1 CPU, 8 GPUs or a TPU pod.
"""

from __future__ import annotations

import signal
import time
from typing import Any, Callable, Optional

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging
from jax.experimental import multihost_utils

from livt_jax import checkpoint, losses, mesh as mesh_lib, optim, paths, report
from livt_jax.data import device_augment, mixup, pipeline
from livt_jax.metrics import EvalAccumulator
from livt_jax.models import mae as mae_lib, transfer, vit as vit_lib

STAGES = ("pretrain", "finetune", "eval", "livt")


@flax.struct.dataclass
class TrainState:
    """Everything a step changes; saved whole in checkpoints."""
    step: jax.Array
    params: Any
    opt_state: Any
    rng: jax.Array  # base key; step keys are fold_in(rng, step), so resume is exact


# ----------------------------------------------------------------------------- models

def model_dims(model_cfg: ml_collections.ConfigDict) -> dict[str, int]:
    """embed_dim / depth / num_heads / patch_size: the variant's, unless set (> 0)."""
    dims = vit_lib.vit_kwargs(model_cfg.variant) if model_cfg.variant else {}
    for key in ("embed_dim", "depth", "num_heads", "patch_size"):
        if model_cfg[key] > 0:
            dims[key] = model_cfg[key]
        elif key not in dims:
            raise ValueError(f"model.{key} must be set (> 0) when model.variant is empty")
    return dims


def _common_model_kwargs(config, image_size: int) -> dict[str, Any]:
    m = config.model
    return dict(img_size=image_size, in_chans=config.data.in_chans, mlp_ratio=m.mlp_ratio,
                attention=m.attention, pad_tokens_to=m.pad_tokens_to,
                dtype=jnp.dtype(m.dtype), **model_dims(m))


def build_vit(config, num_classes: int, image_size: int, drop_path: float
              ) -> vit_lib.VisionTransformer:
    return vit_lib.VisionTransformer(num_classes=num_classes, drop_path_rate=drop_path,
                                     global_pool=config.model.global_pool,
                                     **_common_model_kwargs(config, image_size))


def build_mae(config, image_size: int) -> mae_lib.MaskedAutoencoder:
    m = config.model
    return mae_lib.MaskedAutoencoder(
        decoder_embed_dim=m.decoder_embed_dim, decoder_depth=m.decoder_depth,
        decoder_num_heads=m.decoder_num_heads, mask_ratio=m.mask_ratio,
        norm_pix_loss=m.norm_pix_loss, **_common_model_kwargs(config, image_size))


def abstract_params(model, image_shape: tuple[int, int, int]) -> Any:
    """The model's parameter shapes (`jax.ShapeDtypeStruct`s), without computing them."""
    rngs = {"params": jax.random.key(0), "masking": jax.random.key(0)}
    return jax.eval_shape(
        lambda: model.init(rngs, jnp.zeros((1, *image_shape)), train=False)["params"])


def stage_image_size(config, stage_cfg) -> int:
    return stage_cfg.image_size or config.data.image_size


def stage_data_config(config, stage: str) -> ml_collections.ConfigDict:
    """The `{'data', 'aug'}` view the input pipeline reads for one stage."""
    stage_cfg = config[stage]
    data = ml_collections.ConfigDict(config.data.to_dict())
    data.image_size = stage_image_size(config, stage_cfg)
    return ml_collections.ConfigDict({"data": data, "aug": stage_cfg.aug.to_dict()})


# ----------------------------------------------------------------------------- losses

def pretrain_loss_fn(model: mae_lib.MaskedAutoencoder) -> Callable:
    """(params, batch, rng) -> scalar MAE loss."""
    def loss_fn(params, batch, rng):
        mask_rng, drop_rng = jax.random.split(rng)
        loss, _, _ = model.apply({"params": params}, batch["image"], train=True,
                                 rngs={"masking": mask_rng, "dropout": drop_rng})
        return loss
    return loss_fn


def finetune_loss_fn(model: vit_lib.VisionTransformer, stage_cfg, class_counts: np.ndarray
                     ) -> Callable:
    """(params, batch, rng) -> mean classification loss after on-device Mixup/CutMix."""
    per_example = losses.make_loss(stage_cfg.loss, class_counts, tau=stage_cfg.tau)
    num_classes = len(class_counts)
    mix = stage_cfg.mixup

    def loss_fn(params, batch, rng):
        mix_rng, drop_rng = jax.random.split(rng)
        targets = mixup.one_hot_smoothed(batch["label"], num_classes, stage_cfg.label_smoothing)
        images, targets = mixup.mixup_cutmix(
            mix_rng, batch["image"], targets, mixup_alpha=mix.mixup_alpha,
            cutmix_alpha=mix.cutmix_alpha, switch_prob=mix.switch_prob, prob=mix.prob)
        logits = model.apply({"params": params}, images, train=True, rngs={"dropout": drop_rng})
        return per_example(logits, targets).mean()
    return loss_fn


# ----------------------------------------------------------------------------- steps

def make_train_step(loss_fn: Callable, tx: optax.GradientTransformation,
                    schedule: Callable, grad_accum_steps: int) -> Callable:
    """(state, batch) -> (state, metrics). With `grad_accum_steps = k` the batch is
    split into k micro-batches whose gradients are averaged before one update."""
    grad_fn = jax.value_and_grad(loss_fn)

    def micro_batches(batch):
        # (B, ...) -> (k, B/k, ...) taking every k-th example, so each device
        # keeps its own rows (no data movement for a batch-sharded array).
        def split(x):
            return x.reshape(x.shape[0] // grad_accum_steps, grad_accum_steps,
                             *x.shape[1:]).swapaxes(0, 1)
        return jax.tree_util.tree_map(split, batch)

    def step_fn(state: TrainState, batch):
        rng = jax.random.fold_in(state.rng, state.step)
        if grad_accum_steps == 1:
            loss, grads = grad_fn(state.params, batch, rng)
        else:
            def body(carry, xs):
                i, micro = xs
                loss, grads = grad_fn(state.params, micro, jax.random.fold_in(rng, i))
                return jax.tree_util.tree_map(jnp.add, carry, (loss, grads)), None
            zeros = (jnp.zeros(()), jax.tree_util.tree_map(jnp.zeros_like, state.params))
            (loss, grads), _ = jax.lax.scan(
                body, zeros, (jnp.arange(grad_accum_steps), micro_batches(batch)))
            loss, grads = jax.tree_util.tree_map(lambda x: x / grad_accum_steps, (loss, grads))
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = {"loss": loss, "lr": schedule(state.step),
                   "grad_norm": optax.tree_utils.tree_norm(grads)}
        return state.replace(step=state.step + 1, params=params, opt_state=opt_state), metrics

    return step_fn


def init_state(model, tx, image_shape, rng, mesh, init_params: Optional[Callable] = None):
    """Creates the train state born sharded. `init_params(params) -> params` may
    replace the random parameters (e.g. the MGP hand-over) inside the same jit.
    Returns `(state, state_shardings)`."""
    init_rng, state_rng = jax.random.split(rng)

    def create(rng_):
        dummy = jnp.zeros((1, *image_shape), jnp.float32)
        params = model.init({"params": rng_, "dropout": rng_, "masking": rng_}, dummy,
                            train=False)["params"]
        if init_params is not None:
            params = init_params(params)
        return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                          opt_state=tx.init(params), rng=state_rng)

    abstract = jax.eval_shape(create, init_rng)
    shardings = mesh_lib.state_shardings(mesh, abstract)
    state = jax.jit(create, out_shardings=shardings)(init_rng)
    return state, shardings


# ----------------------------------------------------------------------------- evaluation

def make_eval_fn(model, params_sharding, mesh) -> Callable:
    """(params, images) -> logits (B, C) as a numpy array on every process."""
    apply = jax.jit(lambda params, images: model.apply({"params": params}, images, train=False),
                    in_shardings=(params_sharding, mesh_lib.batch_sharding(mesh)),
                    out_shardings=mesh_lib.batch_sharding(mesh))

    return lambda params, images: _gather(apply(params, images))


def evaluate(eval_fn, params, loader, mesh, num_classes: int, train_counts) -> dict:
    """Top-1/5, many/medium/few, ECE over the eval loader (padded rows masked out)."""
    acc = EvalAccumulator(num_classes)
    for local in loader:
        batch = mesh_lib.global_batch_from_local(mesh, local)
        logits = eval_fn(params, batch["image"])
        labels, mask = (_gather(batch[k]) for k in ("label", "mask"))
        acc.update(logits, labels, mask)
    return acc.result(train_counts)


def _gather(x: jax.Array) -> np.ndarray:
    """A batch-sharded global array as one numpy array on every process."""
    if jax.process_count() > 1:
        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(x)


def write_eval_outputs(workdir: str, name: str, result: dict, source) -> None:
    """Per-class CSV and accuracy-vs-count plot for one evaluation."""
    counts = np.asarray(source.class_counts)
    report.write_per_class_csv(paths.join(workdir, f"{name}_per_class.csv"),
                               source.class_names, counts, result["per_class_accuracy"])
    report.plot_per_class_accuracy(paths.join(workdir, f"{name}_per_class.png"), counts,
                                   result["per_class_accuracy"], f"per-class accuracy ({name})")


def scalar_metrics(result: dict) -> dict:
    return {k: v for k, v in result.items() if np.ndim(v) == 0}


# ----------------------------------------------------------------------------- the loop

class _Preemption:
    """Turns SIGTERM (TPU maintenance, SLURM time limit) into a flag the loop polls."""

    def __init__(self):
        self.requested = False
        self._previous = signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum, frame):
        logging.warning("SIGTERM received: saving a checkpoint before exiting")
        self.requested = True

    def restore(self):
        signal.signal(signal.SIGTERM, self._previous)


class _Progress:
    """One progress line on process 0: step, loss, lr, images/s, ETA."""

    def __init__(self, stage: str, total_steps: int, start_step: int, global_batch: int):
        self.bar = None
        self.global_batch = global_batch
        self.last_time, self.last_step = time.time(), start_step
        if report.is_writer():
            from tqdm import tqdm
            self.bar = tqdm(total=total_steps, initial=start_step, desc=stage,
                            dynamic_ncols=True, mininterval=1.0)

    def update(self, step: int, metrics: dict) -> float:
        now = time.time()
        rate = (step - self.last_step) * self.global_batch / max(now - self.last_time, 1e-9)
        self.last_time, self.last_step = now, step
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{metrics['loss']:.4f}", lr=f"{metrics['lr']:.2e}",
                                 img_s=f"{rate:.0f}", refresh=False)
            self.bar.update(step - self.bar.n)
        return rate

    def close(self):
        if self.bar is not None:
            self.bar.close()


def _check_finite(losses_by_step: list[tuple[int, Any]]) -> None:
    """Raises naming the first step whose loss is NaN or Inf."""
    values = jax.device_get([v for _, v in losses_by_step])
    for (step, _), value in zip(losses_by_step, values):
        if not np.isfinite(value):
            raise FloatingPointError(f"loss is {value} at step {step}: stopping the run")


def stage_model(config, stage: str, image_size: int, counts: np.ndarray):
    """`(model, loss_fn, init_params)` of a training stage; `init_params` is the
    BFT hand-over (None for MGP or BFT from scratch)."""
    stage_cfg = config[stage]
    if stage == "pretrain":
        model = build_mae(config, image_size)
        return model, pretrain_loss_fn(model), None
    model = build_vit(config, len(counts), image_size, stage_cfg.drop_path)
    return model, finetune_loss_fn(model, stage_cfg, counts), handover_fn(config, stage_cfg, model)


class _EvalTracker:
    """Per-epoch BFT evaluations: final, best (by top-1) and the history.

    On resume the history is read back from `metrics.jsonl`, so "best" covers
    the whole run, not only the part after the restart.
    """

    def __init__(self, writer: report.MetricWriter, earlier: list[dict]):
        self.writer = writer
        self.history = earlier
        self.best = max(earlier, key=lambda r: r["top1"]) if earlier else None
        self.last = None  # the newest result with per-class arrays

    def add(self, step: int, result: dict) -> None:
        scalars = scalar_metrics(result)
        self.writer.write(step, {f"eval_{k}": v for k, v in scalars.items()})
        self.history.append(scalars)
        self.last = result
        if self.best is None or scalars["top1"] > self.best["top1"]:
            self.best = scalars


def run_stage(config, workdir: str, stage: str) -> dict:
    """Trains one stage ('pretrain' or 'finetune') in `workdir`; returns its summary."""
    paths.makedirs(workdir)
    stage_cfg = config[stage]
    mesh = mesh_lib.make_mesh(config.mesh.data, config.mesh.fsdp)
    global_batch = stage_cfg.batch_size
    mesh_lib.check_global_batch(global_batch, mesh)
    if (global_batch // mesh.devices.size) % stage_cfg.grad_accum_steps:
        raise ValueError(f"{stage}.grad_accum_steps={stage_cfg.grad_accum_steps} must divide the "
                         f"per-device batch {global_batch // mesh.devices.size}")
    data_cfg = stage_data_config(config, stage)
    train_source, eval_source = pipeline.load_sources(data_cfg.data)
    steps_per_epoch = max(len(train_source) // global_batch, 1)
    total_steps = int(round(stage_cfg.epochs * steps_per_epoch))
    image_size = stage_image_size(config, stage_cfg)
    image_shape = (image_size, image_size, config.data.in_chans)
    counts = np.asarray(train_source.class_counts)

    model, loss_fn, init_params = stage_model(config, stage, image_size, counts)
    loss_fn = device_augment.wrap_loss_fn(loss_fn, data_cfg)  # no-op unless data.device_augment
    tx, schedule = optim.make_optimizer(
        stage_cfg.optim, abstract_params(model, image_shape), stage=stage, depth=model_dims(config.model)["depth"],
        global_batch=global_batch, steps_per_epoch=steps_per_epoch, total_steps=total_steps)
    state, shardings = init_state(model, tx, image_shape, jax.random.key(config.seed), mesh,
                                  init_params)

    shard = dict(shard_index=jax.process_index(), shard_count=jax.process_count())
    per_process_batch = global_batch // jax.process_count()
    train_iter = iter(pipeline.make_train_loader(
        data_cfg, train_source, batch_size=per_process_batch, seed=config.seed,
        num_steps=total_steps, **shard))
    manager = checkpoint.make_manager(
        paths.join(workdir, "checkpoints"), save_every_steps=config.checkpoint.save_every_steps,
        keep=config.checkpoint.keep, keep_best=stage == "finetune",
        async_save=config.checkpoint.async_save)
    abstract_state = jax.tree_util.tree_map(
        lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), state, shardings)
    restored, start_step = checkpoint.restore_latest(manager, abstract_state, train_iter)
    writer = report.MetricWriter(workdir, stage)
    if restored is not None:
        state = restored
        writer.truncate_after(start_step)  # drop lines logged after the last checkpoint
        logging.warning("resumed %s from step %d", stage, start_step)

    step_fn = jax.jit(make_train_step(loss_fn, tx, schedule, stage_cfg.grad_accum_steps),
                      in_shardings=(shardings, mesh_lib.batch_sharding(mesh)),
                      out_shardings=(shardings, mesh_lib.replicated(mesh)), donate_argnums=0)
    evaluating = stage == "finetune"
    if evaluating:
        mesh_lib.check_global_batch(config.eval.batch_size, mesh)
        eval_loader = pipeline.make_eval_loader(
            data_cfg, eval_source, batch_size=config.eval.batch_size // jax.process_count(),
            **shard)
        eval_fn = make_eval_fn(model, shardings.params, mesh)

    progress = _Progress(stage, total_steps, start_step, global_batch)
    preemption = _Preemption()
    evals = _EvalTracker(writer, writer.read_eval_history())
    pending = []
    eval_every = max(int(round(stage_cfg.get("eval_every_epochs", 1) * steps_per_epoch)), 1)
    stop_after = config.stop_after_steps
    step = start_step
    try:
        while step < total_steps:
            batch = mesh_lib.global_batch_from_local(mesh, next(train_iter))
            state, metrics = step_fn(state, batch)
            step += 1
            pending.append((step, metrics["loss"]))
            if step % config.log_every_steps == 0 or step == total_steps:
                _check_finite(pending)
                pending = []
                scalars = jax.device_get(metrics)
                scalars["img_per_s"] = progress.update(step, scalars)
                writer.write(step, scalars)
            eval_result = None
            if evaluating and (step % eval_every == 0 or step == total_steps):
                eval_result = evaluate(eval_fn, state.params, eval_loader, mesh, len(counts),
                                       counts)
                eval_result["epoch"] = step / steps_per_epoch
                evals.add(step, eval_result)
            stopping = preemption.requested or step == stop_after
            checkpoint.save(manager, step, state, train_iter, eval_result,
                            force=stopping or step == total_steps)
            if stopping:
                manager.wait_until_finished()
                logging.warning("%s stopped at step %d (checkpoint saved; rerun to resume)",
                                stage, step)
                return {"stopped_at": step, "state": state}
        _check_finite(pending)
    finally:
        preemption.restore()
        progress.close()
        writer.close()
        manager.wait_until_finished()

    export_dir = paths.join(workdir, "export")
    checkpoint.save_params_export(export_dir, state.params)
    summary = {"state": state, "export": export_dir, "total_steps": total_steps}
    if stage == "pretrain":
        write_reconstructions(config, data_cfg, workdir, model, state.params, eval_source)
    else:
        final = evals.last
        if final is None:  # resumed at the very end: score the final params once more
            final = evaluate(eval_fn, state.params, eval_loader, mesh, len(counts), counts)
            final["epoch"] = step / steps_per_epoch
        write_eval_outputs(workdir, "final", final, train_source)
        summary.update(final=scalar_metrics(final), best=evals.best or scalar_metrics(final),
                       history=evals.history)
        if report.is_writer():
            print(report.format_results_table(summary["final"], summary["best"]), flush=True)
    return summary


def handover_fn(config, stage_cfg, model: vit_lib.VisionTransformer) -> Optional[Callable]:
    """The params replacement for BFT's initialisation, or None (from scratch).

    `init_kind='mae'`: MGP encoder → ViT (pos-embed resized to the BFT grid,
    fresh fc_norm and head). `init_kind='vit'`: a classifier export, loaded whole.
    """
    if not stage_cfg.init_from:
        return None
    path = stage_cfg.init_from
    if stage_cfg.init_kind == "vit":
        loaded = checkpoint.load_params_export(path)
        return lambda params: jax.tree_util.tree_map(jnp.asarray, loaded)
    if stage_cfg.init_kind != "mae":
        raise ValueError(f"finetune.init_kind must be 'mae' or 'vit', got {stage_cfg.init_kind!r}")
    mae_params = checkpoint.load_params_export(path)
    mae_grid = stage_image_size(config, config.pretrain) // model.patch_size
    vit_grid = model.img_size // model.patch_size
    return lambda params: transfer.vit_params_from_mae(mae_params, params, mae_grid=mae_grid,
                                                       vit_grid=vit_grid)


def write_reconstructions(config, data_cfg, workdir: str, model: mae_lib.MaskedAutoencoder,
                          params, eval_source) -> None:
    """PNG grid of fixed validation images: original, masked input, reconstruction.

    The reconstruction undoes the per-patch target normalisation (norm-pix)
    with each patch's own mean/variance and the dataset normalisation, so it
    is shown in pixel space; visible patches are pasted from the input.
    """
    n = min(config.num_vis_images, len(eval_source))
    if n == 0 or not report.is_writer():
        return
    picks = np.linspace(0, len(eval_source) - 1, n).astype(int)  # spread over the classes
    images = np.stack([pipeline.eval_image(data_cfg, eval_source[i]["image"]) for i in picks])
    loss, pred, mask = jax.jit(lambda p, x: model.apply(
        {"params": p}, x, train=False, rngs={"masking": jax.random.key(config.seed)}))(
            jax.device_get(params), jnp.asarray(images))
    p = model.patch_size
    target = mae_lib.patchify(jnp.asarray(images), p)
    if model.norm_pix_loss:
        mean = target.mean(-1, keepdims=True)
        var = target.var(-1, keepdims=True, ddof=1)
        pred = pred * jnp.sqrt(var + 1e-6) + mean
    keep = mask[..., None]
    recon = mae_lib.unpatchify(pred * keep + target * (1 - keep), p)
    masked = mae_lib.unpatchify(target * (1 - keep), p)
    mean = np.asarray(config.data.mean, np.float32)
    std = np.asarray(config.data.std, np.float32)
    to_pixels = lambda x: np.asarray(x) * std + mean  # noqa: E731
    report.save_image_grid(paths.join(workdir, "reconstructions.png"),
                           [to_pixels(images), to_pixels(masked), to_pixels(recon)],
                           ["original", "masked input", f"reconstruction (loss {float(loss):.3f})"])


def evaluate_export(config, workdir: str) -> dict:
    """The `eval` stage: scores `config.eval.params_from` (a ViT params export)."""
    if not config.eval.params_from:
        raise ValueError("stage 'eval' needs --config.eval.params_from=PATH (a params export)")
    paths.makedirs(workdir)
    mesh = mesh_lib.make_mesh(config.mesh.data, config.mesh.fsdp)
    mesh_lib.check_global_batch(config.eval.batch_size, mesh)
    data_cfg = stage_data_config(config, "finetune")
    train_source, eval_source = pipeline.load_sources(data_cfg.data)
    counts = np.asarray(train_source.class_counts)
    model = build_vit(config, len(counts), stage_image_size(config, config.finetune), 0.0)
    image_shape = (model.img_size, model.img_size, config.data.in_chans)
    abstract = abstract_params(model, image_shape)
    shardings = mesh_lib.state_shardings(mesh, abstract)
    abstract = jax.tree_util.tree_map(
        lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), abstract, shardings)
    params = checkpoint.load_params_export(config.eval.params_from, abstract)
    loader = pipeline.make_eval_loader(
        data_cfg, eval_source, batch_size=config.eval.batch_size // jax.process_count(),
        shard_index=jax.process_index(), shard_count=jax.process_count())
    result = evaluate(make_eval_fn(model, shardings, mesh), params, loader, mesh,
                      len(counts), counts)
    write_eval_outputs(workdir, "eval", result, train_source)
    writer = report.MetricWriter(workdir, "eval")
    writer.write(0, scalar_metrics(result))
    writer.close()  # flushes TensorBoard (an object in a bucket is written on close)
    if report.is_writer():
        print(report.format_results_table(scalar_metrics(result)), flush=True)
    return {"final": scalar_metrics(result)}


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Runs `config.stage` in `workdir`; returns the stage summary (metrics, export path).

    `livt` runs MGP in `workdir/pretrain` and BFT in `workdir/finetune`, the
    latter initialised from the former's export.
    """
    if config.stage not in STAGES:
        raise ValueError(f"config.stage={config.stage!r}; expected one of {STAGES}")
    if config.stage == "eval":
        return evaluate_export(config, workdir)
    if config.stage != "livt":
        return run_stage(config, workdir, config.stage)
    pretrain = run_stage(config, paths.join(workdir, "pretrain"), "pretrain")
    if "stopped_at" in pretrain:
        return pretrain
    config = config.copy_and_resolve_references()
    config.finetune.init_from = pretrain["export"]
    config.finetune.init_kind = "mae"
    return run_stage(config, paths.join(workdir, "finetune"), "finetune")
