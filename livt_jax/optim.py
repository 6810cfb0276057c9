"""AdamW with layer-wise lr decay, weight-decay masks and a warmup-cosine schedule.

The release scales each parameter group's learning rate (`lr_scale`) and uses
torch's decoupled AdamW, so one update is `-lr * scale * (adam + wd * p)`.
Here that is `scale_by_adam -> add_decayed_weights(mask) -> × scale tree ->
× schedule`, with the learning rate a function of the optimizer step.
"""

from __future__ import annotations

import math
import re
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import optax

PyTree = Any

# Top-level parameter names that belong to layer 0 (the embedding layer).
_EMBED_NAMES = ("patch_embed", "cls_token", "pos_embed")
# Names exempt from weight decay at fine-tuning besides every 1-D parameter.
_NO_DECAY_NAMES = ("pos_embed", "cls_token")
_BLOCK_RE = re.compile(r"^blocks_(\d+)$")


def _top_level_name(path) -> str:
    return path[0].key


def layer_id(name: str, depth: int) -> int:
    """Layer index of a top-level ViT parameter name, as in the release.

    0 = patch embed / cls / pos, i + 1 = block i, depth + 1 = everything after
    the blocks (fc_norm, norm, head).
    """
    if name in _EMBED_NAMES:
        return 0
    match = _BLOCK_RE.match(name)
    if match:
        return int(match.group(1)) + 1
    return depth + 1


def layerwise_lr_scales(params: PyTree, depth: int, layer_decay: float) -> PyTree:
    """Per-parameter lr scale `layer_decay ** (depth + 1 - layer_id)`."""
    def scale(path, _):
        return layer_decay ** (depth + 1 - layer_id(_top_level_name(path), depth))
    return jax.tree_util.tree_map_with_path(scale, params)


def finetune_decay_mask(params: PyTree) -> PyTree:
    """True where weight decay applies at BFT: not 1-D, not pos_embed / cls_token."""
    def decays(path, leaf):
        return leaf.ndim > 1 and _top_level_name(path) not in _NO_DECAY_NAMES
    return jax.tree_util.tree_map_with_path(decays, params)


def pretrain_decay_mask(params: PyTree) -> PyTree:
    """True where weight decay applies at MGP: every parameter with ndim > 1."""
    return jax.tree_util.tree_map(lambda leaf: leaf.ndim > 1, params)


def warmup_cosine_schedule(base_lr: float, min_lr: float, warmup_steps: int,
                           total_steps: int) -> Callable[[jax.Array], jax.Array]:
    """Linear warmup from 0 to `base_lr`, then half-cosine to `min_lr`.

    Matches the release's per-iteration schedule: at step s (fractional epochs
    in the release), lr = base·s/warmup, then
    min + (base − min)·½(1 + cos(π (s − warmup) / (total − warmup))).
    """
    if total_steps <= 0:
        raise ValueError(f"total_steps must be positive, got {total_steps}")
    if not 0 <= warmup_steps <= total_steps:
        raise ValueError(f"warmup_steps={warmup_steps} must be in [0, total_steps={total_steps}]")

    def schedule(step):
        step = jnp.asarray(step, jnp.float32)
        warm = base_lr * step / max(warmup_steps, 1)
        progress = (step - warmup_steps) / max(total_steps - warmup_steps, 1)
        progress = jnp.clip(progress, 0.0, 1.0)
        cosine = min_lr + (base_lr - min_lr) * 0.5 * (1.0 + jnp.cos(math.pi * progress))
        return jnp.where(step < warmup_steps, warm, cosine)

    return schedule


def _scale_by_tree(scales: PyTree) -> optax.GradientTransformation:
    """Multiplies each update by its (static) scale."""
    return optax.stateless(
        lambda updates, params=None: jax.tree_util.tree_map(lambda u, s: u * s, updates, scales))


def make_optimizer(optim: Mapping[str, Any], params: PyTree, *, stage: str, depth: int,
                   global_batch: int, steps_per_epoch: int, total_steps: int
                   ) -> tuple[optax.GradientTransformation, Callable]:
    """Builds the stage's AdamW and returns `(transformation, lr_schedule)`.

    `optim` holds blr, min_lr, warmup_epochs, weight_decay, b1, b2,
    layer_decay (BFT only; 1.0 = off) and clip_grad_norm (0 = off).
    lr = blr × global_batch / 256 (the release's linear scaling rule).
    """
    base_lr = optim["blr"] * global_batch / 256
    warmup_steps = min(int(round(optim["warmup_epochs"] * steps_per_epoch)), total_steps)
    schedule = warmup_cosine_schedule(base_lr, optim["min_lr"], warmup_steps, total_steps)
    if stage == "finetune":
        mask = finetune_decay_mask(params)
        scales = layerwise_lr_scales(params, depth, optim["layer_decay"])
    elif stage == "pretrain":
        mask = pretrain_decay_mask(params)
        scales = jax.tree_util.tree_map(lambda _: 1.0, params)
    else:
        raise ValueError(f"stage must be 'pretrain' or 'finetune', got {stage!r}")
    parts = []
    if optim["clip_grad_norm"]:
        parts.append(optax.clip_by_global_norm(optim["clip_grad_norm"]))
    parts += [
        optax.scale_by_adam(b1=optim["b1"], b2=optim["b2"], eps=1e-8),
        optax.add_decayed_weights(optim["weight_decay"], mask),
        _scale_by_tree(scales),
        optax.scale_by_learning_rate(schedule),
    ]
    return optax.chain(*parts), schedule
