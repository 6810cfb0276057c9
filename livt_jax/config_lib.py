"""Every config key, declared once: its default, its rule (`config_rules`), and whether it
may change on resume.

`SCHEMA` below is the only place a key is written down. `base_config()` turns it
into the `ml_collections.ConfigDict` that dataset configs edit (so a misspelt
override, `--config.finetune.blr=...`, is an error naming it);
`config_checks.validate` checks each value against its key's rule before anything
runs; `config_guard` lets a resumed run change only the keys marked
`may_change`; `STAGES` says which sections each `config.stage` reads. Adding a
key is one line in its section. Model sizes of 0 mean "take them from `variant`".
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import importlib.util
import os
import sys
from typing import Any, Iterator, NamedTuple

import ml_collections

from livt_jax.config_rules import FREE, Interval, Key, above, at_least, one_of


# ----------------------------------------------------------------------------- the schema

def _with_defaults(keys: dict[str, Key], defaults: dict[str, Any]) -> dict[str, Key]:
    """`keys` with the defaults of those named in `defaults` replaced."""
    unknown = set(defaults) - set(keys)
    assert not unknown, f"no such keys: {unknown}"
    return {name: dataclasses.replace(k, default=defaults[name]) if name in defaults else k
            for name, k in keys.items()}


def _optim(**defaults) -> dict[str, Key]:
    """A stage's AdamW with warm-up + cosine and layer-wise lr decay (BFT's defaults)."""
    return _with_defaults(dict(
        blr=Key(1e-3, above(0)),  # lr = blr × global batch / 256
        min_lr=Key(1e-6, at_least(0)),
        warmup_epochs=Key(5.0, at_least(0)),
        weight_decay=Key(0.05, at_least(0)),
        b1=Key(0.9, Interval("[0, 1)")),
        b2=Key(0.999, Interval("[0, 1)")),
        layer_decay=Key(0.75, Interval("(0, 1]", "1 = no decay; 0 gives every block lr 0")),
        clip_grad_norm=Key(0.0, at_least(0)),  # 0 = off
    ), defaults)


def _aug(**defaults) -> dict[str, Key]:
    """A stage's input augmentation (BFT's defaults); see `data/pipeline.py`."""
    return _with_defaults(dict(
        kind=Key("bft", one_of(names_in="data.augment.AUG_KINDS")),
        scale_min=Key(0.08, Interval("(0, 1]")),  # RandomResizedCrop scale (scale_min, 1)
        hflip=Key(True),
        randaug_num_ops=Key(2, at_least(0)),
        randaug_magnitude=Key(9, at_least(0)),
        randaug_magnitude_std=Key(0.5, at_least(0)),
        # of RandAugment's geometric ops: 'bicubic' (the release's timm transform) or 'bilinear'
        interpolation=Key("bicubic", one_of(names_in="data.randaugment.INTERPOLATIONS")),
        random_erasing_prob=Key(0.25, Interval("[0, 1]")),
        eval_crop_pct=Key(0.875, Interval("(0, 1]")),  # eval: resize to S / pct, crop S
    ), defaults)


def _stage(epochs: float, batch_size: int, **keys) -> dict[str, Key]:
    """A training stage's section: the keys both stages have, then the stage's own."""
    return dict(
        epochs=Key(epochs, above(0)),
        batch_size=Key(batch_size, above(0)),  # global, over all devices
        grad_accum_steps=Key(1, at_least(1)),
        image_size=Key(0, at_least(0)),  # 0 = data.image_size
        sampler=Key("instance", one_of(names_in="data.samplers.SAMPLERS")),
        **keys)


SCHEMA = dict(
    stage=Key("livt", one_of("pretrain", "finetune", "eval", "livt")),  # livt = MGP then BFT
    seed=Key(0),
    allow_config_change=Key(False, **FREE),  # resume although may_change=False keys differ
    log_every_steps=Key(50, above(0), **FREE),
    stop_after_steps=Key(0, at_least(0), **FREE),  # > 0: checkpoint and stop there
    multihost=Key(False, **FREE),  # call jax.distributed.initialize() (pods, SLURM)
    # Left empty, jax detects the cluster (TPU pod, SLURM); set all three elsewhere.
    distributed=dict(
        coordinator_address=Key("", **FREE),
        num_processes=Key(0, at_least(0), **FREE),
        process_id=Key(-1, at_least(-1), **FREE),
        initialization_timeout=Key(300, above(0), **FREE)),  # seconds
    mesh=dict(  # devices = data × fsdp; -1 takes the rest
        data=Key(-1, **FREE),
        fsdp=Key(1, **FREE)),
    model=dict(
        variant=Key("B", one_of("", names_in="models.vit.VARIANTS")),  # '' = sizes below
        embed_dim=Key(0, at_least(0)),
        depth=Key(0, at_least(0)),
        num_heads=Key(0, at_least(0)),
        patch_size=Key(0, at_least(0)),
        mlp_ratio=Key(4.0, above(0)),
        global_pool=Key("avg", one_of(names_in="models.vit.GLOBAL_POOLS")),
        attention=Key("xla", one_of(names_in="models.vit.ATTENTION_IMPLEMENTATIONS"), **FREE),
        pad_tokens_to=Key(0, at_least(0), **FREE),  # pad the sequence for fast kernels
        dtype=Key("float32", one_of(names_in="models.factory.COMPUTE_DTYPES")),
        decoder_embed_dim=Key(512, above(0)),
        decoder_depth=Key(8, above(0)),
        decoder_num_heads=Key(16, above(0)),
        mask_ratio=Key(0.75, Interval("[0, 1)")),
        norm_pix_loss=Key(True)),
    data=dict(
        source=Key("split_list", one_of(names_in="data.pipeline.SOURCES")),
        name=Key(""),  # tfds dataset or cache name
        data_dir=Key("", **FREE),  # the same data, elsewhere
        train_split=Key(""),
        eval_split=Key(""),  # the test split
        # Validation, for every choice (best epoch, lr, tau): a split (tfds 'validation',
        # a split list, a folder), or val_per_class images per class held out of the
        # training pool (pipeline.heldout_validation); both empty = no validation.
        val_split=Key(""),
        val_per_class=Key(0, at_least(0)),
        imbalance_ratio=Key(1.0, at_least(1)),  # 1 = keep every image
        imbalance_type=Key("exp", one_of(names_in="data.long_tail.PROFILES")),
        lt_seed=Key(0),
        image_size=Key(224, above(0)),
        in_chans=Key(3, one_of(1, 3)),
        mean=Key((0.485, 0.456, 0.406)),  # one per channel, [0, 1] units
        std=Key((0.229, 0.224, 0.225)),
        worker_count=Key(0, at_least(0), **FREE),  # > 0: grain worker processes
        # True: the train augmentation runs in the jitted step on uint8 batches of one
        # size (a cache); for hosts with few CPU cores per accelerator (docs/PERFORMANCE.md).
        device_augment=Key(False),
        num_classes=Key(0, at_least(0)),  # split lists: 0 = largest label + 1
        bad_images=Key("stop", one_of("stop", "skip"))),  # an undecodable image file
    # MGP: MAE pretraining on the long-tailed training set.
    pretrain=_stage(
        epochs=800.0, batch_size=4096,
        optim=_optim(blr=1.5e-4, min_lr=0.0, warmup_epochs=40.0, b2=0.95, layer_decay=1.0),
        aug=_aug(kind="mgp", scale_min=0.2, random_erasing_prob=0.0),
        num_vis_images=Key(8, at_least(0), **FREE)),  # images in reconstructions.png
    # BFT: balanced fine-tuning with Bal-BCE from the MGP encoder.
    finetune=_stage(
        epochs=100.0, batch_size=2048,
        init_from=Key(""),  # params export ('' = from scratch, or livt's hand-over)
        init_kind=Key("mae", one_of("mae", "vit")),  # what init_from holds
        drop_path=Key(0.1, Interval("[0, 1)")),
        loss=Key("bal_bce", one_of(names_in="losses.LOSS_NAMES")),
        tau=Key(1.0, at_least(0, "a negative tau reverses the Bal-BCE margins")),
        label_smoothing=Key(0.1, Interval("[0, 1)")),
        mixup=dict(
            mixup_alpha=Key(0.8, at_least(0)),  # 0 = off
            cutmix_alpha=Key(1.0, at_least(0)),  # 0 = off
            switch_prob=Key(0.5, Interval("[0, 1]")),
            prob=Key(1.0, Interval("[0, 1]"))),
        optim=_optim(),
        aug=_aug(),
        eval_every_epochs=Key(1.0, above(0), **FREE)),
    eval=dict(
        batch_size=Key(1024, above(0), **FREE),
        params_from=Key("", **FREE),  # stage=eval: the params export to score
        # With a validation split, BFT reads the test split once at the end, for the final
        # and the best-on-validation params; False for tuning runs (never read test).
        test_at_end=Key(True, **FREE),
        # the eval stage also writes WORKDIR/eval_logits.npz (per-image logits, labels,
        # training counts) for `livt-adjust`
        save_logits=Key(False, **FREE)),
    checkpoint=dict(
        save_every_steps=Key(1000, above(0), **FREE),
        keep=Key(2, above(0), **FREE),
        async_save=Key(True, **FREE)),
    # jax.profiler trace of num_steps train steps from start_step (0 = off); profiling.py.
    profile=dict(
        start_step=Key(10, at_least(0), **FREE),
        num_steps=Key(0, at_least(0), **FREE)),
)


class StagePlan(NamedTuple):
    trains: tuple[str, ...]  # the training stages it runs, in order
    reads: tuple[str, ...]  # the stage sections it reads (all the others are read by all)


STAGE_SECTIONS = ("pretrain", "finetune", "eval")
TRAIN_STAGES = ("pretrain", "finetune")
STAGES = {  # config.stage -> its plan
    "pretrain": StagePlan(trains=("pretrain",), reads=("pretrain",)),
    "finetune": StagePlan(trains=("finetune",), reads=("finetune", "eval")),
    "eval": StagePlan(trains=(), reads=("finetune", "eval")),  # BFT's image size and crop
    "livt": StagePlan(trains=("pretrain", "finetune"), reads=("pretrain", "finetune", "eval")),
}


def sections_read(stage: str) -> set[str]:
    """The top-level sections a run of `config.stage = stage` reads."""
    return {name for name in SCHEMA if name not in STAGE_SECTIONS} | set(STAGES[stage].reads)


def flatten(tree, prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1} for a dict or a ConfigDict (leaves as they are)."""
    flat = {}
    for name, value in tree.items():
        if isinstance(value, (dict, ml_collections.ConfigDict)):
            flat.update(flatten(value, f"{prefix}{name}."))
        else:
            flat[f"{prefix}{name}"] = value
    return flat


KEYS: dict[str, Key] = flatten(SCHEMA)  # 'finetune.optim.blr' -> Key(...)


def _defaults(section: dict) -> dict:
    return {name: _defaults(v) if isinstance(v, dict) else v.default
            for name, v in section.items()}


def base_config() -> ml_collections.ConfigDict:
    """Every key at its default: ViT-B/16 LiVT at 224 px with the hyper-parameters of the
    LiVT release's logged runs."""
    return ml_collections.ConfigDict(_defaults(SCHEMA))


# ----------------------------------------------------------------------------- config files

class ConfigFileError(ValueError):
    """A config file that cannot be loaded; the message is one line."""


def config_dir() -> str:
    """The folder of the shipped dataset configs: `livt_jax/configs` in an installed
    package, the top-level `configs/` beside `livt_jax/` in a checkout or an editable install."""
    package = os.path.dirname(os.path.abspath(__file__))
    installed = os.path.join(package, "configs")
    return installed if os.path.isdir(installed) else os.path.join(os.path.dirname(package), "configs")


def shipped_configs() -> list[str]:
    """Names of the shipped dataset configs (`demo`, `cifar_lt`, ...)."""
    return sorted(name[:-3] for name in os.listdir(config_dir())
                  if name.endswith(".py") and not name.startswith("_"))


def resolve_config_spec(spec: str) -> str:
    """`PATH[:ARG]`, or `NAME[:ARG]` of a shipped config (`cifar_lt:cifar10,100`), as
    `PATH[:ARG]`; a spec that is neither comes back unchanged (the loader reports it)."""
    path, sep, arg = spec.partition(":")
    shipped = os.path.join(config_dir(), f"{path}.py")
    if not os.path.isfile(path) and path in shipped_configs():
        return f"{shipped}{sep}{arg}"
    return spec


def load_config_file(spec: str, lock: bool = True) -> ml_collections.ConfigDict:
    """`NAME[:ARG]` (a shipped config) or `PATH[:ARG]` -> the file's `get_config(ARG)`
    (locked: a new key is an error). Raises ConfigFileError naming the file and what
    is wrong with it, in one line."""
    path, has_arg, arg = resolve_config_spec(spec).partition(":")
    if not os.path.isfile(path):
        where = "" if os.path.isabs(path) else f" in the working directory {os.getcwd()}"
        raise ConfigFileError(f"config file {path!r} not found{where}; expected a file or a "
                              f"shipped config: {', '.join(shipped_configs())}")
    module_spec = importlib.util.spec_from_file_location("livt_config_file", path)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[module_spec.name] = module  # as an import does (dataclasses look their module up)
    try:
        module_spec.loader.exec_module(module)
    except SyntaxError as e:
        raise ConfigFileError(f"config file {path!r} line {e.lineno}: {e.msg}") from e
    except Exception as e:  # pylint: disable=broad-except
        raise ConfigFileError(f"config file {path!r} failed to run: {_error_line(e)}") from e
    namespace = vars(module)
    if not callable(namespace.get("get_config")):
        raise ConfigFileError(f"config file {path!r} has no get_config() function")
    call = f"get_config({arg!r})" if has_arg else "get_config()"
    try:
        config = namespace["get_config"](*([arg] if has_arg else []))
    except Exception as e:  # pylint: disable=broad-except
        raise ConfigFileError(f"config file {path!r}: {call} failed: {_error_line(e)}") from e
    if not isinstance(config, ml_collections.ConfigDict):
        raise ConfigFileError(f"config file {path!r}: {call} returned {type(config).__name__}, "
                              "expected an ml_collections.ConfigDict")
    if lock:
        config.lock()
    return config


def _error_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}".rstrip(": ")


_command_line_keys: frozenset[str] = frozenset()  # set only by `overrides_from_command_line`


@contextlib.contextmanager
def overrides_from_command_line(keys: frozenset[str]) -> Iterator[None]:
    """Within it, `command_line_overrides()` is `keys`: a command (`livt-train`) runs its
    work inside it with the dotted keys its `--config.KEY=VALUE` options set."""
    global _command_line_keys  # pylint: disable=global-statement
    previous, _command_line_keys = _command_line_keys, frozenset(keys)
    try:
        yield
    finally:
        _command_line_keys = previous


def command_line_overrides() -> frozenset[str]:
    """The dotted keys the running command's `--config.KEY=VALUE` options set (empty
    outside `overrides_from_command_line`, e.g. when called from Python)."""
    return _command_line_keys


# ----------------------------------------------------------------------------- stage views

def stage_image_size(config: ml_collections.ConfigDict, stage: str) -> int:
    """The image side (pixels) `stage` trains at: its own `image_size`, else `data.image_size`."""
    return config[stage].image_size or config.data.image_size


def stage_data_config(config: ml_collections.ConfigDict, stage: str) -> ml_collections.ConfigDict:
    """The `{'data', 'aug'}` view the input pipeline reads for `stage` ('pretrain' or
    'finetune'): `config.data` at the stage's image size and with the stage's
    sampler, and the stage's `aug`."""
    data = ml_collections.ConfigDict(config.data.to_dict())
    data.image_size = stage_image_size(config, stage)
    data.sampler = config[stage].sampler
    return ml_collections.ConfigDict({"data": data, "aug": config[stage].aug.to_dict()})
