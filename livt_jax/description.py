"""The description a params export carries beside its arrays: `EXPORT/model.json`.

Training writes it at the end of a stage (`describe` + `write`), so the export
alone says what it is: the model (kind 'vit' or 'mae', width, depth, heads,
patch, MLP ratio, image size, channels, pooling, classes), the class names
(folder names, tfds label names, or indices), the normalisation mean/std, the
eval resize / crop, the training class counts (the prior), the loss and τ,
and the full config and git commit that produced it. Example (abridged)::

    {"format": 1, "kind": "vit",
     "model": {"embed_dim": 64, "depth": 4, "num_heads": 4, "patch_size": 4,
               "mlp_ratio": 4.0, "img_size": 28, "in_chans": 1,
               "num_classes": 10, "global_pool": "avg"},
     "class_names": ["cat", ...], "train_class_counts": [800, ...],
     "mean": [0.5], "std": [0.5], "eval_crop_pct": 0.875, "eval_resize": 32,
     "loss": "bal_bce", "tau": 1.0, "config": {...}, "commit": "c08417d..."}

`eval`, `convert` and `finetune.init_from` read it (`read`) and take the
model from it (`apply`): config model flags are then not needed. A config
value that differs from the description is an error naming both when it was
set on the command line, else a warning (the description wins). An export
without a description (written before it existed) still loads with flags.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from typing import Any, Optional, Sequence

import ml_collections
from absl import logging

from livt_jax import config_checks, config_lib, paths
from livt_jax.config_lib import stage_data_config, stage_image_size
from livt_jax.data import augment
from livt_jax.models import factory, vit as vit_lib

FILE = "model.json"
FORMAT = 1
KINDS = ("vit", "mae")
ARCH = ("embed_dim", "depth", "num_heads", "patch_size", "mlp_ratio")
DECODER = ("decoder_embed_dim", "decoder_depth", "decoder_num_heads")
# The description keys a stage reading an export takes from it.
EVAL_KEYS = (*ARCH, "img_size", "in_chans", "global_pool", "mean", "std", "eval_crop_pct")
INIT_KEYS = {"mae": (*ARCH, "in_chans", "mean", "std", "img_size"),  # img_size: the MGP grid
             "vit": (*ARCH, "in_chans", "mean", "std", "global_pool")}


def path_of(export_dir: str) -> str:
    """Where the description of the export `export_dir` lives."""
    return paths.join(export_dir, FILE)


def git_commit() -> Optional[str]:
    """The commit of the checkout this package runs from (None outside a git checkout)."""
    try:
        result = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10, check=True,
                                cwd=os.path.dirname(os.path.abspath(__file__)))
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None


def _model_fields(config, kind: str, image_size: int, num_classes: Optional[int]) -> dict:
    """The `model` entry for `config.model` at `image_size`."""
    m = config.model
    fields = {**factory.model_dims(m), "mlp_ratio": float(m.mlp_ratio), "img_size": image_size,
              "in_chans": config.data.in_chans}
    if kind == "vit":
        fields.update(num_classes=num_classes, global_pool=m.global_pool)
    else:
        fields.update({k: m[k] for k in DECODER})
    return fields


def describe(config: ml_collections.ConfigDict, stage: str, train_source) -> dict:
    """The description of the export of `stage` ('pretrain' -> an MAE, 'finetune' ->
    a ViT classifier) trained by `config` on `train_source` (a LabelledSource)."""
    kind = "mae" if stage == "pretrain" else "vit"
    size = stage_image_size(config, stage)
    crop_pct = float(stage_data_config(config, stage).aug.eval_crop_pct)
    return {
        "format": FORMAT, "kind": kind,
        "model": _model_fields(config, kind, size, train_source.num_classes),
        "class_names": [str(n) for n in train_source.class_names],
        "train_class_counts": [int(n) for n in train_source.class_counts],
        "mean": [float(v) for v in config.data.mean], "std": [float(v) for v in config.data.std],
        "eval_crop_pct": crop_pct, "eval_resize": augment.eval_resize_side(size, crop_pct),
        "loss": config.finetune.loss if kind == "vit" else None,
        "tau": float(config.finetune.tau) if kind == "vit" else None,
        "config": json.loads(json.dumps(config.to_dict(), default=str)),
        "commit": git_commit(),
    }


def write(export_dir: str, description: dict) -> None:
    """Writes `export_dir/model.json` atomically (local or gs://)."""
    paths.write_text_atomic(path_of(export_dir), json.dumps(description, indent=1) + "\n")


def read(export_dir: str) -> Optional[dict]:
    """The description of an export, or None for an export written without one."""
    path = path_of(export_dir)
    if not paths.is_file(path):
        return None
    try:
        description = json.loads(paths.read_text(path, "an export description"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e}); delete it to load the export "
                         "with config flags") from None
    if description.get("kind") not in KINDS or not isinstance(description.get("model"), dict):
        raise ValueError(f"{path} is not an export description: expected 'kind' in {KINDS} "
                         "and a 'model' object")
    return description


def flat_fields(description: dict) -> dict[str, Any]:
    """The description's comparable fields: its `model` entries plus mean, std and
    eval_crop_pct (lists as tuples)."""
    flat = {**description["model"], "mean": description.get("mean"),
            "std": description.get("std"), "eval_crop_pct": description.get("eval_crop_pct")}
    return {k: tuple(v) if isinstance(v, list) else v for k, v in flat.items()}


def _config_fields(config, kind: str, stage: str) -> dict[str, Any]:
    """`flat_fields` of what `config` alone would describe for `stage`."""
    fields = _model_fields(config, kind, stage_image_size(config, stage), None)
    return {**fields, "mean": tuple(config.data.mean), "std": tuple(config.data.std),
            "eval_crop_pct": config[stage].aug.eval_crop_pct}


def _config_keys(field: str, stage: str) -> tuple[str, ...]:
    """The config keys that set description field `field` (the first is set by `apply`)."""
    if field in factory.DIM_KEYS:
        return (f"model.{field}", "model.variant")
    if field == "img_size":
        return (f"{stage}.image_size", "data.image_size")
    if field == "eval_crop_pct":
        return (f"{stage}.aug.eval_crop_pct",)
    if field in ("in_chans", "mean", "std"):
        return (f"data.{field}",)
    return (f"model.{field}",)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return abs(a - b) <= 1e-9 * max(abs(a), abs(b), 1.0)
    return a == b


def apply(config: ml_collections.ConfigDict, description: dict, fields: Sequence[str], *,
          stage: str, source: str, check: bool = True) -> ml_collections.ConfigDict:
    """A copy of `config` whose keys for `fields` hold the description's values.

    `stage` is the config section the export's image size and eval crop go to
    ('finetune' for a classifier, 'pretrain' for an MGP encoder); `source`
    names the export in messages. A field the config gives differently is a
    ConfigError (one line naming config key, both values and the export) when
    its key was set on the command line, else a warning and the description wins
    (`check=False`: no comparison).
    """
    if check:
        _check_against(config, description, fields, stage, source)
    config = config.copy_and_resolve_references()
    theirs = flat_fields(description)
    for field in fields:
        if theirs.get(field) is None:
            continue
        if field in factory.DIM_KEYS:
            config.model.variant = ""
        section, _, name = _config_keys(field, stage)[0].rpartition(".")
        config_section = config
        for part in section.split("."):
            config_section = config_section[part]
        config_section[name] = theirs[field]
    return config


def _check_against(config, description: dict, fields: Sequence[str], stage: str,
                   source: str) -> None:
    """`apply`'s comparison: ConfigError for command-line keys, else a warning."""
    kind = description["kind"]
    theirs = flat_fields(description)
    mine = _config_fields(config, kind, stage)
    differing = [f for f in fields if f in theirs and not _same(mine[f], theirs[f])]
    overridden = config_lib.command_line_overrides()
    explicit = [f for f in differing if set(_config_keys(f, stage)) & overridden]

    def listing(names):
        return "; ".join(f"{_config_keys(f, stage)[0]}={mine[f]!r} but the export has "
                         f"{theirs[f]!r}" for f in names)
    if explicit:
        raise config_checks.ConfigError(
            f"{listing(explicit)} ({path_of(source)}): drop the flag or use another export")
    if differing:
        logging.warning("%s (%s): using the export's values", listing(differing),
                        path_of(source))


def model_config(description: dict) -> ml_collections.ConfigDict:
    """A config that builds the described model and its eval transform by itself
    (the `finetune` section for a ViT, `pretrain` for an MAE)."""
    stage = "finetune" if description["kind"] == "vit" else "pretrain"
    fields = EVAL_KEYS if stage == "finetune" else (*INIT_KEYS["mae"], *DECODER)
    return apply(config_lib.base_config(), description, fields, stage=stage, source="",
                 check=False)


def check_num_classes(description: dict, num_classes: int, source: str, what: str) -> None:
    """Raises ValueError when the described classifier has another number of classes."""
    described = description["model"].get("num_classes")
    if described is not None and described != num_classes:
        raise ValueError(f"{path_of(source)} describes {described} classes but {what} has "
                         f"{num_classes}")


# ----------------------------------------------------------------------------- timm's form

TIMM_CONFIG_FILE = "config.json"  # beside model.safetensors, as timm and the HF hub lay it out
_TIMM_SIZES = {"tiny": "Ti", "small": "S", "base": "B", "large": "L", "huge": "H"}
_TIMM_NAME = re.compile(r"vit_(tiny|small|base|large|huge)_patch(\d+)_(\d+)")
# timm architectures of these names exist; any other model is built as vit_base_patch16_224
# with model_args giving every size.
_TIMM_REGISTERED = {f"vit_{n}_patch16_{s}" for n in ("tiny", "small", "base", "large")
                    for s in (224, 384)} | {"vit_huge_patch14_224"}


def timm_config(description: dict) -> dict:
    """The description as timm's `config.json` (`architecture`, `num_classes`,
    `global_pool`, `pretrained_cfg` with input size, interpolation, crop and
    mean/std, `model_args`, `label_names`), the whole description under `livt`.
    `timm.create_model('local-dir:FOLDER', pretrained=True)` builds a classifier
    from it and FOLDER/model.safetensors; an MGP encoder has no timm architecture."""
    m = description["model"]
    size = m["img_size"]
    names = {v: k for k, v in _TIMM_SIZES.items()}
    variant = next((n for n, dims in vit_lib.VARIANTS.items()
                    if dims == (m["embed_dim"], m["depth"], m["num_heads"], m["patch_size"])), "B")
    vit = description["kind"] == "vit"
    model_args = {"img_size": size, "in_chans": m["in_chans"],
                  **{k: m[k] for k in ARCH}}
    if vit:
        model_args.update(num_classes=m["num_classes"], global_pool=m["global_pool"])
    crop_pct = description.get("eval_crop_pct") or 0.875
    name = f"vit_{names[variant]}_patch{m['patch_size']}_{size}"
    return {
        "architecture": (name if name in _TIMM_REGISTERED else "vit_base_patch16_224") if vit
        else None,
        "num_classes": m.get("num_classes", 0),
        "num_features": m["embed_dim"],
        "global_pool": m.get("global_pool"),
        "pretrained_cfg": {
            "input_size": [m["in_chans"], size, size], "fixed_input_size": True,
            "interpolation": "bicubic", "crop_pct": crop_pct if size <= 224 else 1.0,
            "crop_mode": "center", "mean": description.get("mean"),
            "std": description.get("std"), "num_classes": m.get("num_classes", 0),
            "first_conv": "patch_embed.proj", "classifier": "head", "custom_load": False},
        "model_args": model_args,
        "label_names": description.get("class_names"),
        "livt": description,
    }


def from_timm_config(config: dict, kind: str, path: str) -> dict:
    """The description in a timm `config.json`: ours when it holds one (`livt`), else
    built from timm's fields (the model from `model_args` over the dims of a
    `vit_<size>_patch<P>_<S>` architecture). Raises ValueError naming what is missing."""
    if isinstance(config.get("livt"), dict):
        return config["livt"]
    cfg = config.get("pretrained_cfg", config)
    args = dict(config.get("model_args") or {})
    match = _TIMM_NAME.fullmatch(str(config.get("architecture", "")))
    dims = dict(vit_lib.vit_kwargs(_TIMM_SIZES[match.group(1)]),
                patch_size=int(match.group(2)), img_size=int(match.group(3))) if match else {}
    dims.update({k: v for k, v in args.items() if k in (*ARCH, "img_size", "in_chans")})
    input_size = cfg.get("input_size") or [3, dims.get("img_size", 224)]
    dims.setdefault("in_chans", input_size[0])
    dims.setdefault("img_size", input_size[-1])
    dims.setdefault("mlp_ratio", 4.0)
    missing = [k for k in (*ARCH, "img_size") if k not in dims]
    if missing:
        raise ValueError(f"{path}: cannot tell the model's {missing} (expected a "
                         "vit_<size>_patch<P>_<S> architecture or model_args)")
    model = {k: dims[k] for k in (*ARCH, "img_size", "in_chans")}
    if kind == "vit":
        model.update(num_classes=config.get("num_classes", cfg.get("num_classes")),
                     global_pool=config.get("global_pool") or args.get("global_pool", "token"))
    labels = config.get("label_names") or cfg.get("label_names")
    return {"format": FORMAT, "kind": kind, "model": model,
            "class_names": list(labels) if labels else None,
            "mean": cfg.get("mean"), "std": cfg.get("std"),
            "eval_crop_pct": cfg.get("crop_pct"), "config": None, "commit": None}


def timm_config_path(weights_file: str) -> str:
    """The `config.json` in the folder of a converted weights file."""
    return paths.join(paths.dirname(weights_file), TIMM_CONFIG_FILE)


def write_timm_config(weights_file: str, description: dict) -> str:
    """Writes `timm_config(description)` beside `weights_file`; returns its path."""
    path = timm_config_path(weights_file)
    paths.write_text_atomic(path, json.dumps(timm_config(description), indent=1) + "\n")
    return path


def read_timm_config(weights_file: str, kind: str) -> Optional[dict]:
    """The description in the `config.json` beside `weights_file` (None without one)."""
    path = timm_config_path(weights_file)
    if not paths.is_file(path):
        return None
    try:
        config = json.loads(paths.read_text(path, "a timm config.json"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e})") from None
    return from_timm_config(config, kind, path)


def model_kwargs(description: dict) -> dict:
    """`VisionTransformer` / `MaskedAutoencoder` fields of the described model."""
    m = description["model"]
    keys = (*ARCH, "img_size", "in_chans", *(("num_classes", "global_pool")
                                              if description["kind"] == "vit" else DECODER))
    return {k: m[k] for k in keys if m.get(k) is not None}
