"""Config values checked for meaning before anything runs.

`ml_collections` checks types and key names; `validate(config, num_devices)`
checks what the values mean for every stage the run will execute (both MGP and
BFT for `stage='livt'`), so a negative τ or an indivisible eval batch is refused
before MGP spends hours, not after. Each key's own rule is declared with the key
in `config_lib.SCHEMA`; the checks here relate keys to each other, to the model
and to the devices (a patch grid, heads dividing the width, a batch over the
mesh). Every problem names its key, the value and what was expected; all of
them are reported, each once, in one one-line `ConfigError`.
"""

from __future__ import annotations

import difflib

import ml_collections

from livt_jax import config_lib


class ConfigError(ValueError):
    """A config value that cannot work; the message names every bad key."""


def validate(config: ml_collections.ConfigDict, num_devices: int) -> None:
    """Raises ConfigError listing every value of `config` that cannot work.

    `num_devices`: devices of the mesh every global batch is split over.
    """
    bad = key_problems(config)
    problems = list(bad.values())
    if "stage" not in bad:
        problems += relation_problems(config, num_devices, skip=set(bad))
    if problems:
        raise ConfigError("invalid config: " + "; ".join(dict.fromkeys(problems)))


def key_problems(config: ml_collections.ConfigDict) -> dict[str, str]:
    """{key: message} for keys the schema does not declare and for values breaking their
    key's rule, in the sections the run reads."""
    stage_problem = config_lib.KEYS["stage"].rule.problem("stage", config.stage)
    if stage_problem:
        return {"stage": stage_problem}
    read = config_lib.sections_read(config.stage)
    problems = {}
    for key, value in config_lib.flatten(config).items():
        if key not in config_lib.KEYS:
            problems[key] = unknown_key_message(key, list(config_lib.KEYS))
        elif key.partition(".")[0] in read and config_lib.KEYS[key].rule is not None:
            problems[key] = config_lib.KEYS[key].rule.problem(key, value)
    return {key: message for key, message in problems.items() if message}


def relation_problems(config: ml_collections.ConfigDict, num_devices: int,
                      skip: frozenset[str] = frozenset()) -> list[str]:
    """Values that only fail together: with each other, the model or the devices. A
    relation one of whose keys is in `skip` (already refused on its own) is not checked."""
    from livt_jax import mesh as mesh_lib  # pylint: disable=import-outside-toplevel

    plan = config_lib.STAGES[config.stage]
    problems = [] if "data.in_chans" in skip else _data_problems(config.data)
    if not any(key.startswith(("model.", "data.image_size")) or key.endswith(".image_size")
               for key in skip):
        problems += _model_problems(config, plan)
    try:
        mesh_lib.mesh_shape(config.mesh.data, config.mesh.fsdp, num_devices)
    except ValueError as e:
        problems.append(str(e))
    for stage in plan.trains:
        if not {f"{stage}.batch_size", f"{stage}.grad_accum_steps"} & skip:
            problems += batch_problems(f"{stage}.batch_size", config[stage].batch_size,
                                        num_devices, config[stage].grad_accum_steps)
    if "eval" in plan.reads and "eval.batch_size" not in skip:
        problems += batch_problems("eval.batch_size", config.eval.batch_size, num_devices)
    if config.stage == "eval" and not config.eval.params_from:
        problems.append("stage='eval' needs eval.params_from (a params export to score)")
    return problems


def batch_problems(key: str, batch: int, num_devices: int, grad_accum_steps: int = 1
                   ) -> list[str]:
    """What is wrong with global batch `batch` (config key `key`) split over `num_devices`
    devices and `grad_accum_steps` micro-batches: [] or one message."""
    if batch % num_devices:
        return [f"{key}={batch} does not divide over the {num_devices} devices; "
                f"use a multiple of {num_devices}"]
    if (batch // num_devices) % grad_accum_steps:
        stage = key.partition(".")[0]
        return [f"{stage}.grad_accum_steps={grad_accum_steps} must divide the per-device "
                f"batch {batch // num_devices} ({key}={batch} over {num_devices} devices)"]
    return []


def _model_problems(config, plan: config_lib.StagePlan) -> list[str]:
    """The patch grid of each stage's image size, heads dividing widths, a visible patch."""
    from livt_jax.models import factory, mae  # pylint: disable=import-outside-toplevel

    try:
        dims = factory.model_dims(config.model)
    except ValueError as e:
        return [str(e)]
    m, patch = config.model, dims["patch_size"]
    problems = []
    if dims["embed_dim"] % dims["num_heads"]:
        problems.append(f"model.num_heads={dims['num_heads']} must divide the width "
                        f"model.embed_dim={dims['embed_dim']}")
    if "pretrain" in plan.reads and m.decoder_embed_dim % m.decoder_num_heads:
        problems.append(f"model.decoder_num_heads={m.decoder_num_heads} must divide the "
                        f"width model.decoder_embed_dim={m.decoder_embed_dim}")
    for stage in (s for s in config_lib.TRAIN_STAGES if s in plan.reads):
        key = f"{stage}.image_size" if config[stage].image_size else "data.image_size"
        size = config_lib.stage_image_size(config, stage)
        if size % patch:
            problems.append(f"{key}={size} must be a multiple of the patch size {patch}")
        elif stage == "pretrain" and mae.num_kept((size // patch) ** 2, m.mask_ratio) < 1:
            patches = (size // patch) ** 2
            problems.append(
                f"model.mask_ratio={m.mask_ratio} keeps no visible patch of the {patches} "
                f"({key}={size}, patch {patch}); the MAE needs at least one: use a ratio "
                f"< {1 - 1 / patches:.4f}")
    return problems


def _data_problems(data) -> list[str]:
    problems = []
    for key in ("mean", "std"):
        if len(data[key]) != data.in_chans:
            problems.append(f"data.{key} has {len(data[key])} values, expected data.in_chans="
                            f"{data.in_chans}")
    if any(v <= 0 for v in data.std):
        problems.append(f"data.std={tuple(data.std)} must be > 0")
    if data.val_split and data.val_per_class:
        problems.append(f"data.val_split={data.val_split!r} and data.val_per_class="
                        f"{data.val_per_class}: set one (a split, or images held out of train)")
    return problems


def unknown_key_message(key: str, known: list[str]) -> str:
    """'unknown config key ...; did you mean ...?' for a key that is no leaf of the schema."""
    leaf = key.rsplit(".", 1)[-1]
    same_leaf = [k for k in known if k.rsplit(".", 1)[-1] == leaf]
    same_leaf.sort(key=lambda k: (not k.startswith(key.split(".")[0] + "."), len(k)))
    close = difflib.get_close_matches(key, known, n=3, cutoff=0.6)
    guesses = list(dict.fromkeys(same_leaf[:2] + close))[:3]
    hint = f"; did you mean {' or '.join(repr(g) for g in guesses)}?" if guesses else ""
    return f"unknown config key {key!r}{hint}"
