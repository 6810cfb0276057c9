"""The Animal-MNIST-LT studies: one base config and, per study, its arms as sweeps.

    get_study("ablation", "100")  # the Study that experiments/study.py runs
    get_hyper("ablation")  # {"loss": [{"finetune.loss": "ce", ...}, ...], "init": ..., "sampler": ...}
    get_hyper("tau")       # {"tau": [{"finetune.tau": 1.0, "finetune.loss": "bal_ce", ...}, ...]}
    config = build_config(100, seed=0, stage="finetune", arm=Arm("bal_bce"), mgp_export=...)

`get_config(IR)` spells out the whole model and recipe the IR-100 study ran
with (`STUDY_OVERRIDES` on top of `config_lib.base_config()` and the demo
data), so nothing the stored results depend on is left to `configs/demo.py`,
and this module is importable from any directory (it is installed code).
An arm changes only `finetune.loss`, `finetune.tau`, `finetune.init_from`
and `finetune.sampler` (`Arm` reads them back: its name is the run folder's).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import ml_collections

from livt_jax import config_lib
from livt_jax.experiments import hyper
from livt_jax.experiments.definition import MGP_EXPORT, Study, config_for
from livt_jax.experiments.hyper import set_key

# The demo data (configs/demo.py at the time of the study).
DATA: dict[str, Any] = {
    "data.source": "animal_mnist", "data.name": "animal_mnist", "data.image_size": 28,
    "data.in_chans": 1, "data.mean": (0.5,), "data.std": (0.5,),
    "model.variant": "",
}

# Sized so that 3 MGP + 21 BFT runs fit in under an hour on a (shared) 2-core
# CPU: measured step times (batch 128) were ~0.47 s (BFT) / 0.33 s (MGP) with
# 4x4 patches (49 tokens) but ~0.11 s / 0.09 s with 7x7 patches (16 tokens),
# see docs/RESULTS.md.
STUDY_OVERRIDES: dict[str, Any] = {
    # model: ViT 64 wide, 4 blocks, 4 heads, 7x7 patches (4x4 grid); MAE decoder 64/2/2
    "model.embed_dim": 64,
    "model.depth": 4,
    "model.num_heads": 4,
    "model.patch_size": 7,
    "model.decoder_embed_dim": 64,
    "model.decoder_depth": 2,
    "model.decoder_num_heads": 2,
    "model.mask_ratio": 0.75,
    "model.norm_pix_loss": True,
    # MGP: 60 epochs at batch 128, blr 1.2e-3 (lr 6e-4), warmup 5, crop scale 0.2-1 + flip
    "pretrain.epochs": 60.0,
    "pretrain.batch_size": 128,
    "pretrain.optim.blr": 1.2e-3,
    "pretrain.optim.warmup_epochs": 5.0,
    "pretrain.aug.scale_min": 0.2,
    # BFT: 30 epochs at batch 128, warmup 3, layer decay 0.75, drop path 0.05,
    # label smoothing 0.1, mixup 0.2 (no cutmix), crop scale 0.08-1 + flip +
    # RandAugment 2 ops magnitude 5, no random erasing
    "finetune.epochs": 30.0,
    "finetune.batch_size": 128,
    # Chosen from {1e-3, 3e-3, 6e-3} by the final *training* loss of CE and
    # Bal-BCE on seed 0 (docs/RESULTS.md), never by test accuracy.
    "finetune.optim.blr": 3e-3,
    "finetune.optim.warmup_epochs": 3.0,
    "finetune.optim.layer_decay": 0.75,
    "finetune.drop_path": 0.05,
    "finetune.label_smoothing": 0.1,
    "finetune.mixup.mixup_alpha": 0.2,
    "finetune.mixup.cutmix_alpha": 0.0,
    "finetune.aug.scale_min": 0.08,
    "finetune.aug.randaug_num_ops": 2,
    "finetune.aug.randaug_magnitude": 5,
    "finetune.aug.random_erasing_prob": 0.0,
    "finetune.eval_every_epochs": 1.0,
    "finetune.tau": 1.0,
    "finetune.init_kind": "mae",
    "eval.batch_size": 250,  # 2,000 test images = 8 full batches
    "checkpoint.save_every_steps": 150,
    "checkpoint.keep": 1,
    "log_every_steps": 15,
}

LOSSES = ("ce", "bce", "bal_ce", "bal_bce")
LOSS_LABELS = {"ce": "CE", "bce": "BCE", "bal_ce": "Bal-CE", "bal_bce": "Bal-BCE"}
# The τ study's grid, in run order (τ = 1 first, then the nearest values).
TAU_GRID = (1.0, 0.75, 1.25, 0.5, 1.5)


@dataclasses.dataclass(frozen=True)
class Arm:
    """One BFT arm read off its overrides: loss, initialisation ('mgp' | 'scratch'),
    sampler, τ; `name` is its run folder's name."""
    loss: str
    init: str = "mgp"
    sampler: str = "instance"
    tau: float = 1.0

    @classmethod
    def of(cls, overrides: dict[str, Any]) -> "Arm":
        o = {**ARM_DEFAULTS, **overrides}
        return cls(o["finetune.loss"], "mgp" if o["finetune.init_from"] else "scratch",
                   o["finetune.sampler"], o["finetune.tau"])

    @property
    def name(self) -> str:
        base = f"{self.loss}-{self.init}-{self.sampler}"
        return base if self.tau == 1.0 else f"{base}-tau{self.tau:g}"

    @property
    def overrides(self) -> dict[str, Any]:
        """The keys that make one arm differ from another (nothing schedule-related)."""
        if self.init not in ("mgp", "scratch"):
            raise ValueError(f"Arm.init must be 'mgp' or 'scratch', got {self.init!r}")
        return {"finetune.loss": self.loss, "finetune.tau": self.tau,
                "finetune.init_from": MGP_EXPORT if self.init == "mgp" else "",
                "finetune.sampler": self.sampler}


# What an arm sets unless its sweep says otherwise: MGP init, instance sampling, τ = 1.
ARM_DEFAULTS: dict[str, Any] = {"finetune.init_from": MGP_EXPORT,
                                "finetune.sampler": "instance", "finetune.tau": 1.0}
SCRATCH = ""  # finetune.init_from of an arm trained from scratch


def get_hyper(study: str) -> dict[str, list[dict[str, Any]]]:
    """comparison name -> its arms as dotted overrides (arms shared between comparisons
    run once: `arm_list`)."""
    def arms(sweeps):
        return [{**ARM_DEFAULTS, **o} for o in hyper.product(sweeps)]
    if study == "ablation":
        return {
            "loss": arms([hyper.sweep("finetune.loss", LOSSES)]),
            "init": arms([hyper.sweep("finetune.init_from", (MGP_EXPORT, SCRATCH)),
                          hyper.sweep("finetune.loss", ("bal_bce",))]),
            "sampler": arms([hyper.sweep("finetune.loss", ("ce", "bal_bce")),
                             hyper.sweep("finetune.sampler", ("instance", "class_balanced"))]),
        }
    if study == "tau":
        return {"tau": arms([hyper.sweep("finetune.tau", TAU_GRID),
                             hyper.sweep("finetune.loss", ("bal_ce", "bal_bce"))])}
    raise ValueError(f"unknown study {study!r}; expected 'ablation' or 'tau'")


def arm_list(comparisons: dict[str, list[dict[str, Any]]]) -> list[Arm]:
    """Every arm the comparisons need, each once, in first-seen order."""
    return list(dict.fromkeys(Arm.of(o) for group in comparisons.values() for o in group))


def get_config(imbalance_ratio: float = 100.0) -> ml_collections.ConfigDict:
    """The study's config at one imbalance ratio (stage and seed still to set)."""
    config = config_lib.base_config()
    config.data.imbalance_ratio = float(imbalance_ratio)
    for key, value in {**DATA, **STUDY_OVERRIDES}.items():
        set_key(config, key, value)
    return config


def get_study(study: str, imbalance_ratio: str = "100") -> Study:
    """'ablation' or 'tau' at an imbalance ratio: 3 seeds, MGP as in STUDY_OVERRIDES."""
    try:
        ratio = float(imbalance_ratio)
    except ValueError:
        raise ValueError(f"study {study}: the imbalance ratio must be a number, "
                         f"got {imbalance_ratio!r}") from None
    return Study(name=f"{study}:{ratio:g}", base=get_config(ratio), seeds=(0, 1, 2),
                 arms={arm.name: arm.overrides for arm in arm_list(get_hyper(study))})


def build_config(imbalance_ratio: float, seed: int, stage: str, *, arm: Arm | None = None,
                 mgp_export: str = "", epochs_scale: float = 1.0) -> ml_collections.ConfigDict:
    """get_config(IR) for one seed and stage (+ the arm's keys for 'finetune', its
    MGP init from `mgp_export`)."""
    if stage not in ("pretrain", "finetune"):
        raise ValueError(f"stage must be 'pretrain' or 'finetune', got {stage!r}")
    if stage == "finetune" and arm is None:
        raise ValueError("a finetune config needs an arm")
    overrides = {} if arm is None else {
        k: mgp_export if v == MGP_EXPORT else v for k, v in arm.overrides.items()}
    study = Study(name="", base=get_config(imbalance_ratio), arms={}, seeds=())
    return config_for(study, seed, stage, overrides if stage == "finetune" else {}, epochs_scale)


def schedule_signature(config) -> dict[str, Any]:
    """What must be identical across arms: model, data, BFT schedule and recipe."""
    ft = config.finetune.to_dict()
    for key in ("loss", "init_from", "tau", "sampler"):
        ft.pop(key)
    return {"model": config.model.to_dict(), "data": config.data.to_dict(), "finetune": ft,
            "pretrain": config.pretrain.to_dict(), "eval": config.eval.to_dict()}
