"""On-device Mixup / CutMix and label smoothing (the release's recipe), jittable with static shapes.

Semantics follow the release (timm's batch mode): one λ per batch, the partner
of example i is example B−1−i (the batch reversed), CutMix's λ is corrected to
the clipped box area, and targets are mixed as λ·y + (1−λ)·y_reversed.
"""

from typing import Tuple

import jax
import jax.numpy as jnp

from livt_jax.losses import smooth_labels


def one_hot_smoothed(labels: jax.Array, num_classes: int, smoothing: float = 0.0) -> jax.Array:
    """Smoothed one-hot targets (B, C) float32; see `livt_jax.losses.smooth_labels`."""
    return smooth_labels(labels, num_classes, smoothing)


def _check_args(images, targets, mixup_alpha, cutmix_alpha, switch_prob, prob) -> None:
    if images.ndim != 4 or targets.ndim != 2 or images.shape[0] != targets.shape[0]:
        raise ValueError(f"images must be (B, H, W, C) and targets (B, K) with the same B; got "
                         f"{images.shape} and {targets.shape}")
    for name, x in (("images", images), ("targets", targets)):
        if not jnp.issubdtype(x.dtype, jnp.floating):
            raise ValueError(f"{name} must be floating point, got {x.dtype}")
    if mixup_alpha < 0 or cutmix_alpha < 0:
        raise ValueError(f"alphas must be >= 0; got mixup_alpha={mixup_alpha}, "
                         f"cutmix_alpha={cutmix_alpha}")
    for name, value in (("switch_prob", switch_prob), ("prob", prob)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {value}")


def cutmix_keep_mask(rng: jax.Array, lam: jax.Array, height: int, width: int) -> jax.Array:
    """Float32 (H, W) mask, 0 inside a CutMix box of area ratio ≈ 1−λ, 1 outside.

    timm's rand_bbox: cut = int(side·sqrt(1−λ)), centre uniform over the
    image, box = centre ± cut // 2 clipped to the image. Built from iota
    comparisons so it is jittable with static shapes.
    """
    ratio = jnp.sqrt(1.0 - lam)
    rng_y, rng_x = jax.random.split(rng)

    def span(key, side):
        half = jnp.floor(side * ratio).astype(jnp.int32) // 2
        centre = jax.random.randint(key, (), 0, side)
        coords = jnp.arange(side)
        return (coords >= jnp.clip(centre - half, 0, side)) & (coords < jnp.clip(centre + half, 0, side))

    inside = span(rng_y, height)[:, None] & span(rng_x, width)[None, :]
    return 1.0 - inside.astype(jnp.float32)


def mixup_cutmix(rng: jax.Array, images: jax.Array, targets: jax.Array, *,
                 mixup_alpha: float = 0.8, cutmix_alpha: float = 1.0,
                 switch_prob: float = 0.5, prob: float = 1.0) -> Tuple[jax.Array, jax.Array]:
    """Mixes a batch with its reverse: images (B, H, W, C), targets (B, K) -> same shapes.

    With probability `prob` the batch is mixed; CutMix is chosen with
    probability `switch_prob` when both alphas are > 0 (otherwise the one
    with α > 0). λ ~ Beta(α, α). Mixup: λ·x + (1−λ)·x_rev; CutMix: a box
    from x_rev pasted into x, λ = 1 − box_area / (H·W). Targets: λ·y +
    (1−λ)·y_rev. Identity when both alphas are 0. Alphas and probabilities
    are static Python floats.
    """
    images, targets = jnp.asarray(images), jnp.asarray(targets)
    _check_args(images, targets, mixup_alpha, cutmix_alpha, switch_prob, prob)
    if mixup_alpha == 0 and cutmix_alpha == 0:
        return images, targets
    rng_apply, rng_switch, rng_lam, rng_box = jax.random.split(rng, 4)
    if mixup_alpha > 0 and cutmix_alpha > 0:
        use_cutmix = jax.random.bernoulli(rng_switch, switch_prob)
        alpha = jnp.where(use_cutmix, cutmix_alpha, mixup_alpha)
    else:
        use_cutmix = cutmix_alpha > 0
        alpha = cutmix_alpha if use_cutmix else mixup_alpha
    apply = jax.random.bernoulli(rng_apply, prob)
    lam = jax.random.beta(rng_lam, alpha, alpha, dtype=jnp.float32)

    keep = cutmix_keep_mask(rng_box, lam, *images.shape[1:3])
    # Per-pixel weight of the example itself (its partner gets 1 − weight).
    weight = jnp.where(apply, jnp.where(use_cutmix, keep, lam), 1.0)
    lam = jnp.where(apply, jnp.where(use_cutmix, jnp.mean(keep), lam), 1.0)
    return _mix(images, weight[None, :, :, None]), _mix(targets, lam)


def _mix(x: jax.Array, weight: jax.Array) -> jax.Array:
    """weight·x + (1 − weight)·x[::-1] computed in float32, returned in x's dtype."""
    x32 = x.astype(jnp.float32)
    return (weight * x32 + (1.0 - weight) * x32[::-1]).astype(x.dtype)
