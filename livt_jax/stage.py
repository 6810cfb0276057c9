"""One training stage built from the config: model, optimizer, sharded state, jitted step.

`stage_spec(config, stage, mesh)` resolves what a stage reads from the config
(image size, global batch, model, its section, data view, BFT's init source)
into a typed `StageSpec`; `build_stage(spec, mesh, train_counts, ...)` is the
only place the train step is assembled; `train.run_stage` loops over it and
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

from livt_jax import checkpoint, config_checks, description, losses, mesh as mesh_lib, optim
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


def handover_fn(spec: "StageSpec", model: vit_lib.VisionTransformer) -> Optional[Callable]:
    """The params replacement for BFT's initialisation, or None (from scratch).

    An MGP export (`mae`): encoder → ViT (pos-embed resized from the MAE's grid,
    `spec.mae_image_size // patch`, to the BFT grid; fresh fc_norm and head). A
    classifier export (`vit`): loaded whole, its names and shapes checked against
    the model. The kind is read from the export (an MAE has a decoder); when it
    differs from `spec.init_kind` the export wins, with a warning.
    """
    if not spec.init_from:
        return None
    path = spec.init_from
    loaded = checkpoint.load_params_export(path)
    kind = detect_kind(loaded)
    if kind != spec.init_kind:
        logging.warning("finetune.init_from=%r holds a %s export, not finetune.init_kind=%r: "
                        "initialising from it as a %s export", path,
                        {"mae": "MGP (MAE)", "vit": "classifier (ViT)"}[kind],
                        spec.init_kind, kind)
    if kind == "vit":
        def load_whole(params):
            checkpoint.check_same_structure(loaded, params, path)
            return jax.tree_util.tree_map(jnp.asarray, loaded)
        return load_whole
    mae_grid = spec.mae_image_size // model.patch_size
    vit_grid = model.img_size // model.patch_size
    return lambda params: transfer.vit_params_from_mae(loaded, params, mae_grid=mae_grid,
                                                       vit_grid=vit_grid)


def stage_model(spec: "StageSpec", train_counts: np.ndarray):
    """`(model, loss_fn, init_params)` of a training stage; `init_params` is the
    BFT hand-over (None for MGP or BFT from scratch)."""
    if spec.name == "pretrain":
        model = factory.build_mae(spec.model, spec.in_chans, spec.image_size)
        return model, pretrain_loss_fn(model), None
    model = factory.build_vit(spec.model, spec.in_chans, len(train_counts), spec.image_size,
                              spec.settings.drop_path)
    return (model, finetune_loss_fn(model, spec.settings, train_counts),
            handover_fn(spec, model))


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


@dataclasses.dataclass(frozen=True)
class StageSpec:
    """What a training stage reads from the config, resolved once by `stage_spec`."""
    name: str  # 'pretrain' (MGP) | 'finetune' (BFT)
    seed: int  # parameter initialisation and per-step keys
    image_size: int  # pixels per side the stage trains at
    global_batch: int  # images per optimizer step over all processes
    in_chans: int  # image channels
    model: Any  # the config's `model` section (dims resolved by factory.model_dims)
    settings: Any  # the config's stage section: epochs, optim, loss, mixup, grad_accum_steps...
    data: Any  # the input pipeline's {'data', 'aug'} view (config_lib.stage_data_config)
    init_from: str = ""  # BFT: the params export it starts from ('' = from scratch)
    init_kind: str = "mae"  # what `init_from` is expected to hold: 'mae' | 'vit'
    mae_image_size: int = 0  # BFT from an MGP export: the MAE's image side (hand-over grid)


def stage_spec(config, stage: str, mesh: Mesh) -> StageSpec:
    """`stage`'s view of `config` ('pretrain' or 'finetune'), its batch checked
    against `mesh` and its grad accumulation. For BFT from an export, apply
    `with_init_description` first so the model and MAE image size are the export's."""
    if stage not in TRAIN_STAGES:
        raise ValueError(f"stage={stage!r}; expected one of {TRAIN_STAGES}")
    settings = config[stage]
    global_batch = settings.batch_size
    mesh_lib.check_global_batch(global_batch, mesh)
    if problems := config_checks.batch_problems(f"{stage}.batch_size", global_batch,
                                                mesh.devices.size, settings.grad_accum_steps):
        raise config_checks.ConfigError(problems[0])
    handover = {}
    if stage == "finetune":
        handover = dict(init_from=settings.init_from, init_kind=settings.init_kind,
                        mae_image_size=stage_image_size(config, "pretrain"))
    return StageSpec(name=stage, seed=config.seed, image_size=stage_image_size(config, stage),
                     global_batch=global_batch, in_chans=config.data.in_chans,
                     model=config.model, settings=settings,
                     data=stage_data_config(config, stage), **handover)


def build_stage(spec: StageSpec, mesh: Mesh, train_counts: np.ndarray, *,
                steps_per_epoch: int, total_steps: int) -> tuple[Stage, TrainState]:
    """`(stage, initial_state)`: the model, optimizer and jitted step of the stage
    `spec` describes (`stage_spec`), and its sharded state seeded by `spec.seed`.
    `train_counts` (C,) are the training set's images per class (the
    classifier's width and Bal-BCE's prior); `steps_per_epoch` and
    `total_steps` size the learning-rate schedule."""
    counts = np.asarray(train_counts)
    model, loss_fn, init_params = stage_model(spec, counts)
    # No-op unless data.device_augment: then the step augments uint8 batches itself.
    loss_fn = device_augment.wrap_loss_fn(loss_fn, spec.data)
    tx, schedule = optim.make_optimizer(
        spec.settings.optim, factory.abstract_params(model), stage=spec.name,
        depth=factory.model_dims(spec.model)["depth"], global_batch=spec.global_batch,
        steps_per_epoch=steps_per_epoch, total_steps=total_steps)
    state, shardings = init_state(model, tx, factory.image_shape(model),
                                  jax.random.key(spec.seed), mesh, init_params)
    step = jax.jit(make_train_step(loss_fn, tx, schedule, spec.settings.grad_accum_steps),
                   in_shardings=(shardings, mesh_lib.batch_sharding(mesh)),
                   out_shardings=(shardings, mesh_lib.replicated(mesh)), donate_argnums=0)
    return Stage(name=spec.name, model=model, tx=tx, schedule=schedule, shardings=shardings,
                 step=step, mesh=mesh, global_batch=spec.global_batch), state
