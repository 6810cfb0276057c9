"""One training stage built from the config: model, optimizer, sharded state, jitted step.

`build_stage(config, stage, mesh, train_counts, ...)` is the only place the
train step is assembled; `train.run_stage` loops over it and
`benchmark.benchmark_stage` times it, so the benchmark measures exactly the
step training runs (gradient accumulation, on-device augmentation and the
BFT hand-over included). Parameters and optimizer state are born sharded
(`eval_shape` -> shardings -> `jit(init, out_shardings)`); the step is one
jitted function of `(state, batch)` with the state donated.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging
from jax.sharding import Mesh

from livt_jax import checkpoint, description, losses, mesh as mesh_lib, optim
from livt_jax.config_lib import TRAIN_STAGES, stage_data_config, stage_image_size
from livt_jax.models.timm_convert import detect_kind
from livt_jax.step import device_augment, mixup
from livt_jax.models import factory, mae as mae_lib, transfer, vit as vit_lib


@flax.struct.dataclass
class TrainState:
    """Everything a step changes; saved whole in checkpoints."""
    step: jax.Array
    params: Any
    opt_state: Any
    rng: jax.Array  # base key; step keys are fold_in(rng, step), so resume is exact


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


# ----------------------------------------------------------------------------- step and state

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


def with_init_description(config):
    """`config` with the model of `finetune.init_from`'s description (dims, channels,
    normalisation; an MGP export's image size as `pretrain.image_size`, which sets
    the hand-over's grid), or `config` itself when there is none."""
    path = config.finetune.init_from
    found = description.read(path) if path else None
    if found is None:
        return config
    stage = "pretrain" if found["kind"] == "mae" else "finetune"
    return description.apply(config, found, description.INIT_KEYS[found["kind"]], stage=stage,
                             source=path)


def handover_fn(config, model: vit_lib.VisionTransformer) -> Optional[Callable]:
    """The params replacement for BFT's initialisation, or None (from scratch).

    An MGP export (`mae`): encoder → ViT (pos-embed resized to the BFT grid,
    fresh fc_norm and head). A classifier export (`vit`): loaded whole, its
    names and shapes checked against the model. The kind is read from the
    export (an MAE has a decoder); when it differs from `finetune.init_kind`
    the export wins, with a warning.
    """
    stage_cfg = config.finetune
    if not stage_cfg.init_from:
        return None
    path = stage_cfg.init_from
    loaded = checkpoint.load_params_export(path)
    kind = detect_kind(loaded)
    if kind != stage_cfg.init_kind:
        logging.warning("finetune.init_from=%r holds a %s export, not finetune.init_kind=%r: "
                        "initialising from it as a %s export", path,
                        {"mae": "MGP (MAE)", "vit": "classifier (ViT)"}[kind],
                        stage_cfg.init_kind, kind)
    if kind == "vit":
        def load_whole(params):
            checkpoint.check_same_structure(loaded, params, path)
            return jax.tree_util.tree_map(jnp.asarray, loaded)
        return load_whole
    mae_grid = stage_image_size(config, "pretrain") // model.patch_size
    vit_grid = model.img_size // model.patch_size
    return lambda params: transfer.vit_params_from_mae(loaded, params, mae_grid=mae_grid,
                                                       vit_grid=vit_grid)


def stage_model(config, stage: str, train_counts: np.ndarray):
    """`(model, loss_fn, init_params)` of a training stage; `init_params` is the
    BFT hand-over (None for MGP or BFT from scratch)."""
    image_size = stage_image_size(config, stage)
    if stage == "pretrain":
        model = factory.build_mae(config, image_size)
        return model, pretrain_loss_fn(model), None
    model = factory.build_vit(config, len(train_counts), image_size, config.finetune.drop_path)
    return (model, finetune_loss_fn(model, config.finetune, train_counts),
            handover_fn(config, model))


# ----------------------------------------------------------------------------- the stage

@dataclasses.dataclass(frozen=True)
class Stage:
    """A training stage ready to run: `state, metrics = stage.step(state, batch)`.

    The state is not kept here (`build_stage` returns it beside the stage), so
    the caller's last reference to it is the only one and donation frees it.
    """
    name: str  # 'pretrain' | 'finetune'
    model: Any  # MaskedAutoencoder (pretrain) or VisionTransformer (finetune)
    tx: optax.GradientTransformation
    schedule: Callable  # step -> learning rate
    shardings: Any  # TrainState of NamedShardings
    step: Callable  # jitted (state, global batch) -> (state, metrics); donates state
    mesh: Mesh
    global_batch: int  # images per step over all processes


def check_stage_batch(config, stage: str, mesh: Mesh) -> int:
    """`config[stage].batch_size`, checked against the mesh and grad accumulation."""
    stage_cfg = config[stage]
    global_batch = stage_cfg.batch_size
    mesh_lib.check_global_batch(global_batch, mesh)
    if (global_batch // mesh.devices.size) % stage_cfg.grad_accum_steps:
        raise ValueError(f"{stage}.grad_accum_steps={stage_cfg.grad_accum_steps} must divide the "
                         f"per-device batch {global_batch // mesh.devices.size}")
    return global_batch


def build_stage(config, stage: str, mesh: Mesh, train_counts: np.ndarray, *,
                steps_per_epoch: int, total_steps: int) -> tuple[Stage, TrainState]:
    """`(stage, initial_state)`: the model, optimizer and jitted step of `stage`
    ('pretrain' or 'finetune'), and its sharded state seeded by `config.seed`.
    `train_counts` (C,) are the training set's images per class (the
    classifier's width and Bal-BCE's prior); `steps_per_epoch` and
    `total_steps` size the learning-rate schedule."""
    if stage not in TRAIN_STAGES:
        raise ValueError(f"stage={stage!r}; expected one of {TRAIN_STAGES}")
    stage_cfg = config[stage]
    global_batch = check_stage_batch(config, stage, mesh)
    counts = np.asarray(train_counts)
    model, loss_fn, init_params = stage_model(config, stage, counts)
    # No-op unless data.device_augment: then the step augments uint8 batches itself.
    loss_fn = device_augment.wrap_loss_fn(loss_fn, stage_data_config(config, stage))
    tx, schedule = optim.make_optimizer(
        stage_cfg.optim, factory.abstract_params(model), stage=stage,
        depth=factory.model_dims(config.model)["depth"], global_batch=global_batch,
        steps_per_epoch=steps_per_epoch, total_steps=total_steps)
    state, shardings = init_state(model, tx, factory.image_shape(model),
                                  jax.random.key(config.seed), mesh, init_params)
    step = jax.jit(make_train_step(loss_fn, tx, schedule, stage_cfg.grad_accum_steps),
                   in_shardings=(shardings, mesh_lib.batch_sharding(mesh)),
                   out_shardings=(shardings, mesh_lib.replicated(mesh)), donate_argnums=0)
    return Stage(name=stage, model=model, tx=tx, schedule=schedule, shardings=shardings,
                 step=step, mesh=mesh, global_batch=global_batch), state
