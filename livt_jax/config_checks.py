"""Config values checked for meaning before anything runs.

`ml_collections` checks types and key names; `validate(config)` checks what the
values mean for every stage the run will execute (both MGP and BFT for
`stage='livt'`), so a negative τ or an indivisible eval batch is refused
before MGP spends hours, not after. Every problem names its key, the value and
what was expected; all of them are reported in one `ConfigError`.
"""

from __future__ import annotations

import ml_collections

STAGES = ("pretrain", "finetune", "eval", "livt")
INIT_KINDS = ("mae", "vit")
BAD_IMAGE_POLICIES = ("stop", "skip")


class ConfigError(ValueError):
    """A config value that cannot work; the message names every bad key."""


def stages_run(stage: str) -> tuple[str, ...]:
    """The training stages `config.stage` executes, in order."""
    return {"livt": ("pretrain", "finetune"), "pretrain": ("pretrain",),
            "finetune": ("finetune",), "eval": ()}[stage]


def validate(config: ml_collections.ConfigDict, num_devices: int) -> None:
    """Raises ConfigError listing every value of `config` that cannot work.

    `num_devices`: devices of the mesh every global batch is split over.
    """
    if config.stage not in STAGES:
        raise ConfigError(f"stage={config.stage!r}; expected one of {STAGES}")
    problems = _data_problems(config.data) + _run_problems(config)
    for stage in stages_run(config.stage):
        problems += _stage_problems(config, stage, num_devices)
    if config.stage in ("finetune", "livt", "eval"):
        problems += _batch_problems("eval.batch_size", config.eval.batch_size, num_devices)
        problems += _model_problems(config, "finetune")
    if problems:
        raise ConfigError("invalid config: " + "; ".join(problems))


def _batch_problems(key: str, batch: int, num_devices: int) -> list[str]:
    if batch <= 0:
        return [f"{key}={batch} must be > 0"]
    if batch % num_devices:
        return [f"{key}={batch} does not divide over the {num_devices} devices; "
                f"use a multiple of {num_devices}"]
    return []


def _stage_problems(config, stage: str, num_devices: int) -> list[str]:
    from livt_jax import losses  # pylint: disable=import-outside-toplevel
    from livt_jax.data import samplers  # pylint: disable=import-outside-toplevel

    s = config[stage]
    problems = []
    if s.sampler not in samplers.SAMPLERS:
        problems.append(f"{stage}.sampler={s.sampler!r}; expected one of {samplers.SAMPLERS}")
    if s.epochs <= 0:
        problems.append(f"{stage}.epochs={s.epochs} must be > 0")
    problems += _batch_problems(f"{stage}.batch_size", s.batch_size, num_devices)
    if s.grad_accum_steps < 1:
        problems.append(f"{stage}.grad_accum_steps={s.grad_accum_steps} must be >= 1")
    elif s.batch_size > 0 and (s.batch_size // num_devices) % s.grad_accum_steps:
        problems.append(f"{stage}.grad_accum_steps={s.grad_accum_steps} must divide the "
                        f"per-device batch {s.batch_size // num_devices}")
    if s.optim.blr <= 0:
        problems.append(f"{stage}.optim.blr={s.optim.blr} must be > 0")
    if s.optim.warmup_epochs < 0:
        problems.append(f"{stage}.optim.warmup_epochs={s.optim.warmup_epochs} must be >= 0")
    problems += _model_problems(config, stage)
    problems += _aug_problems(stage, s.aug)
    if stage == "pretrain":
        problems += _mask_problems(config)
    else:
        if s.loss not in losses.LOSS_NAMES:
            problems.append(f"finetune.loss={s.loss!r}; expected one of {losses.LOSS_NAMES}")
        if s.tau < 0:
            problems.append(f"finetune.tau={s.tau} must be >= 0 (a negative tau reverses the "
                            "Bal-BCE margins)")
        if not 0 <= s.label_smoothing < 1:
            problems.append(f"finetune.label_smoothing={s.label_smoothing} must be in [0, 1)")
        if not 0 <= s.drop_path < 1:
            problems.append(f"finetune.drop_path={s.drop_path} must be in [0, 1)")
        if s.init_kind not in INIT_KINDS:
            problems.append(f"finetune.init_kind={s.init_kind!r}; expected one of {INIT_KINDS}")
    return problems


def _aug_problems(stage: str, aug) -> list[str]:
    from livt_jax.data import randaugment  # pylint: disable=import-outside-toplevel

    if aug.interpolation not in randaugment.INTERPOLATIONS:
        return [f"{stage}.aug.interpolation={aug.interpolation!r}; expected one of "
                f"{randaugment.INTERPOLATIONS}"]
    return []


def _image_size(config, stage: str) -> tuple[str, int]:
    """(key, value) of the input side a stage uses."""
    if config[stage].image_size:
        return f"{stage}.image_size", config[stage].image_size
    return "data.image_size", config.data.image_size


def _patch_size(config) -> int:
    from livt_jax.models import vit  # pylint: disable=import-outside-toplevel

    if config.model.patch_size > 0:
        return config.model.patch_size
    return vit.vit_kwargs(config.model.variant)["patch_size"] if config.model.variant else 0


def _model_problems(config, stage: str) -> list[str]:
    key, size = _image_size(config, stage)
    patch = _patch_size(config)
    if patch <= 0:
        return [f"model.patch_size={config.model.patch_size} must be > 0 when model.variant "
                "is empty"]
    if size <= 0 or size % patch:
        return [f"{key}={size} must be a positive multiple of the patch size {patch}"]
    return []


def _mask_problems(config) -> list[str]:
    from livt_jax.models import mae  # pylint: disable=import-outside-toplevel

    ratio = config.model.mask_ratio
    if not 0 <= ratio < 1:
        return [f"model.mask_ratio={ratio} must be in [0, 1)"]
    key, size = _image_size(config, "pretrain")
    patch = _patch_size(config)
    if patch <= 0 or size % patch:
        return []  # reported by _model_problems
    patches = (size // patch) ** 2
    if mae.num_kept(patches, ratio) < 1:
        return [f"model.mask_ratio={ratio} keeps no visible patch of the {patches} "
                f"({key}={size}, patch {patch}); the MAE needs at least one: use a ratio "
                f"< {1 - 1 / patches:.4f}"]
    return []


def _data_problems(data) -> list[str]:
    from livt_jax.data import long_tail, pipeline  # pylint: disable=import-outside-toplevel

    problems = []
    if data.source not in pipeline.SOURCES:
        problems.append(f"data.source={data.source!r}; expected one of {pipeline.SOURCES}")
    if data.imbalance_ratio < 1:
        problems.append(f"data.imbalance_ratio={data.imbalance_ratio} must be >= 1")
    if data.imbalance_type not in long_tail.PROFILES:
        problems.append(f"data.imbalance_type={data.imbalance_type!r}; expected one of "
                        f"{long_tail.PROFILES}")
    if data.in_chans not in (1, 3):
        problems.append(f"data.in_chans={data.in_chans} must be 1 or 3")
    for key in ("mean", "std"):
        if len(data[key]) != data.in_chans:
            problems.append(f"data.{key} has {len(data[key])} values, expected data.in_chans="
                            f"{data.in_chans}")
    if any(v <= 0 for v in data.std):
        problems.append(f"data.std={tuple(data.std)} must be > 0")
    if data.get("bad_images", "stop") not in BAD_IMAGE_POLICIES:
        problems.append(f"data.bad_images={data.bad_images!r}; expected one of "
                        f"{BAD_IMAGE_POLICIES}")
    if data.get("num_classes", 0) < 0:
        problems.append(f"data.num_classes={data.num_classes} must be >= 0 (0 = from the labels)")
    return problems


def _run_problems(config) -> list[str]:
    problems = []
    for key, value in (("log_every_steps", config.log_every_steps),
                       ("checkpoint.save_every_steps", config.checkpoint.save_every_steps),
                       ("checkpoint.keep", config.checkpoint.keep)):
        if value <= 0:
            problems.append(f"{key}={value} must be > 0")
    if config.stop_after_steps < 0:
        problems.append(f"stop_after_steps={config.stop_after_steps} must be >= 0 (0 = never)")
    return problems


def leaf_keys(config: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
    """Dotted names of every leaf of `config` (`finetune.optim.blr`, ...)."""
    keys = []
    for name, value in config.items():
        if isinstance(value, ml_collections.ConfigDict):
            keys += leaf_keys(value, f"{prefix}{name}.")
        else:
            keys.append(f"{prefix}{name}")
    return keys


def unknown_key_message(key: str, known: list[str]) -> str:
    """'unknown config key ...; did you mean ...?' for an override naming no leaf."""
    import difflib  # pylint: disable=import-outside-toplevel

    leaf = key.rsplit(".", 1)[-1]
    same_leaf = [k for k in known if k.rsplit(".", 1)[-1] == leaf]
    same_leaf.sort(key=lambda k: (not k.startswith(key.split(".")[0] + "."), len(k)))
    close = difflib.get_close_matches(key, known, n=3, cutoff=0.6)
    guesses = list(dict.fromkeys(same_leaf[:2] + close))[:3]
    hint = f"; did you mean {' or '.join(repr(g) for g in guesses)}?" if guesses else ""
    return f"unknown config key {key!r}{hint}"
