"""The default LiVT config (the LiVT release's logged ViT-B/16 runs) that dataset configs edit.

Every key a run can read exists here, so a dataset config only changes values
and `ml_collections` rejects a misspelt override (`--config.finetune.blr=...`)
with an error naming it. Model sizes of 0 mean "take them from `variant`".
"""

from __future__ import annotations

import os

import ml_collections
from absl import flags
from ml_collections.config_flags import config_flags  # the parser behind --config


def _optim(**overrides) -> ml_collections.ConfigDict:
    optim = dict(blr=1e-3, min_lr=1e-6, warmup_epochs=5.0, weight_decay=0.05, b1=0.9,
                 b2=0.999, layer_decay=0.75, clip_grad_norm=0.0)
    optim.update(overrides)
    return ml_collections.ConfigDict(optim)


def _aug(**overrides) -> ml_collections.ConfigDict:
    # interpolation: of RandAugment's geometric ops, 'bicubic' (the release's timm transform)
    # or 'bilinear'.
    aug = dict(kind="bft", scale_min=0.08, hflip=True, randaug_num_ops=2, randaug_magnitude=9,
               randaug_magnitude_std=0.5, interpolation="bicubic", random_erasing_prob=0.25,
               eval_crop_pct=0.875)
    aug.update(overrides)
    return ml_collections.ConfigDict(aug)


def base_config() -> ml_collections.ConfigDict:
    """ViT-B/16 LiVT at 224 px with the release's logged hyper-parameters."""
    c = ml_collections.ConfigDict()
    c.stage = "livt"  # pretrain | finetune | eval | livt (= pretrain, then finetune)
    c.seed = 0
    c.multihost = False  # call jax.distributed.initialize() (TPU pods, SLURM, several hosts)
    # Left empty, jax detects the cluster (TPU pod, SLURM); set all three elsewhere.
    c.distributed = ml_collections.ConfigDict(dict(
        coordinator_address="", num_processes=0, process_id=-1, initialization_timeout=300))
    c.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1))

    c.model = ml_collections.ConfigDict(dict(
        variant="B", embed_dim=0, depth=0, num_heads=0, patch_size=0, mlp_ratio=4.0,
        global_pool="avg", attention="xla", pad_tokens_to=0, dtype="float32",
        decoder_embed_dim=512, decoder_depth=8, decoder_num_heads=16,
        mask_ratio=0.75, norm_pix_loss=True))

    c.data = ml_collections.ConfigDict(dict(
        source="split_list", name="", data_dir="", train_split="", eval_split="",
        # Validation, for every choice (best epoch, lr, tau): a split (tfds 'validation',
        # a split list, a folder), or val_per_class images per class held out of the
        # training pool (pipeline.heldout_validation); both empty = no validation.
        val_split="", val_per_class=0,
        imbalance_ratio=1.0, imbalance_type="exp", lt_seed=0, image_size=224, in_chans=3,
        mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
        worker_count=0,  # > 0: grain worker processes decode and augment
        # True: the train augmentation (BFT's RandAugment and erasing included) runs in the
        # jitted step on uint8 batches of one size (a cache); for hosts with few CPU cores
        # per accelerator. See docs/PERFORMANCE.md for what it costs.
        device_augment=False,
        num_classes=0,  # split lists: 0 = largest label + 1; > 0 = labels must lie below it
        bad_images="stop"))  # an undecodable image file: 'stop' the run or 'skip' it (logged)

    # MGP: MAE pretraining on the long-tailed training set.
    c.pretrain = ml_collections.ConfigDict(dict(
        epochs=800.0, batch_size=4096, grad_accum_steps=1, image_size=0,  # 0 = data.image_size
        sampler="instance",  # per stage: instance | class_balanced | sqrt | progressive
        optim=_optim(blr=1.5e-4, min_lr=0.0, warmup_epochs=40.0, b2=0.95, layer_decay=1.0),
        aug=_aug(kind="mgp", scale_min=0.2, random_erasing_prob=0.0)))

    # BFT: balanced fine-tuning with Bal-BCE from the MGP encoder.
    c.finetune = ml_collections.ConfigDict(dict(
        epochs=100.0, batch_size=2048, grad_accum_steps=1, image_size=0, sampler="instance",
        init_from="",  # params export of an MGP run ('' = from scratch, or the livt hand-over)
        init_kind="mae",  # what init_from holds: 'mae' (MGP) or 'vit' (a classifier)
        drop_path=0.1, loss="bal_bce", tau=1.0, label_smoothing=0.1,
        mixup=ml_collections.ConfigDict(dict(mixup_alpha=0.8, cutmix_alpha=1.0,
                                             switch_prob=0.5, prob=1.0)),
        optim=_optim(), aug=_aug(), eval_every_epochs=1.0))

    # test_at_end: with a validation split, BFT reads the test split once at the end, for
    # the final and the best-on-validation params; False for tuning runs (never read test).
    c.eval = ml_collections.ConfigDict(dict(batch_size=1024, params_from="", test_at_end=True))
    c.checkpoint = ml_collections.ConfigDict(dict(save_every_steps=1000, keep=2, async_save=True))
    c.log_every_steps = 50
    c.stop_after_steps = 0  # > 0: checkpoint and stop after this step (time-sliced jobs)
    c.allow_config_change = False  # resume although meaning-changing keys differ (config_guard)
    c.num_vis_images = 8  # MGP reconstruction grid
    # jax.profiler trace of num_steps train steps from start_step (0 = off); livt_jax/profiling.py.
    c.profile = ml_collections.ConfigDict(dict(start_step=10, num_steps=0))
    return c


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


class _ConfigSpecParser(config_flags.ConfigFileFlagParser):
    """`config_flags`' file parser that also takes shipped config names."""

    def parse(self, path):
        return super().parse(resolve_config_spec(path))


def define_config_flag(default: str | None, help_string: str) -> flags.FlagHolder:
    """The absl `--config NAME|PATH[:ARG]` flag (with `--config.KEY=VALUE` overrides),
    loaded and locked as `load_config_file` does."""
    holder = config_flags.DEFINE_config_file("config", None, help_string, lock_config=True)
    flags.FLAGS[holder.name].parser = _ConfigSpecParser(holder.name, lock_config=True)
    if default is not None:
        flags.FLAGS.set_default(holder.name, default)
    return holder


def load_config_file(spec: str, lock: bool = True) -> ml_collections.ConfigDict:
    """`NAME[:ARG]` (a shipped config) or `PATH[:ARG]` -> the file's `get_config(ARG)`,
    loaded (and locked) by the parser `--config` uses, for entry points without absl flags."""
    resolved = resolve_config_spec(spec)
    path = resolved.split(":", 1)[0]
    if not os.path.isfile(path):
        raise FileNotFoundError(f"config file {path!r} not found (from {spec!r}); expected a "
                                f"file or a shipped config: {', '.join(shipped_configs())}")
    return _ConfigSpecParser("config", lock_config=lock).parse(resolved)


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
