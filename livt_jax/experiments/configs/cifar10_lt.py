"""The CIFAR-10-LT study: LiVT's claims from scratch on long-tailed data only.

A study is data: a base config (`configs/cifar10_lt.py`), one MGP run per seed, a
tuning sweep scored on validation only, and the arms as dotted overrides.

    TUNE    LiVT (MGP + Bal-BCE) on seed 0 for each BFT base lr; the lr with the best
            validation top-1 (at its best epoch) is used by every arm. Tuning runs
            never read the test split (`eval.test_at_end=False`).
    ARMS    LiVT (MGP + Bal-BCE), scratch + Bal-BCE, MGP + CE, MGP + BCE,
            MGP + Bal-CE: every arm of a seed fine-tunes that seed's MGP export.
    CLAIMS  the paired comparisons the study reports (first minus second).

Run order: MGP seed 0, the tuning sweep, then per seed its MGP and its arms, so a
study cut short holds whole seeds.
"""

from __future__ import annotations

from typing import Any

import ml_collections

from livt_jax import config_lib
from livt_jax.experiments.hyper import set_key

SEEDS = (0, 1, 2)
# Sized for a shared 2-core CPU (3 MGP + 3 tuning + 15 BFT runs in about 1.5 hours):
# the ViT is 96 wide, 4 blocks, with 8x8 patches (16 tokens). Measured there
# (batch 128, f32): patch 4 and width 64 ran ~50 img/s BFT vs ~110 img/s for patch 8
# and width 128 under the same load, so 4x4 patches did not fit the budget.
STUDY_OVERRIDES: dict[str, Any] = {
    "model.embed_dim": 96, "model.depth": 4, "model.num_heads": 4, "model.patch_size": 8,
    "model.decoder_embed_dim": 64, "model.decoder_depth": 1, "model.decoder_num_heads": 2,
    "pretrain.epochs": 20.0, "pretrain.batch_size": 256,
    "finetune.epochs": 10.0, "finetune.batch_size": 128,
    "finetune.optim.warmup_epochs": 1.0,
}
TUNE_KEY = "finetune.optim.blr"
TUNE_VALUES = (1e-3, 3e-3, 1e-2)
TUNE_SEED = 0
ARMS: dict[str, dict[str, Any]] = {
    "livt": {"finetune.loss": "bal_bce", "init": "mgp"},
    "scratch_bal_bce": {"finetune.loss": "bal_bce", "init": "scratch"},
    "mgp_ce": {"finetune.loss": "ce", "init": "mgp"},
    "mgp_bce": {"finetune.loss": "bce", "init": "mgp"},
    "mgp_bal_ce": {"finetune.loss": "bal_ce", "init": "mgp"},
}
TUNE_ARM = "livt"
ARM_LABELS = {"livt": "LiVT (MGP + Bal-BCE)", "scratch_bal_bce": "scratch + Bal-BCE",
              "mgp_ce": "MGP + CE", "mgp_bce": "MGP + BCE", "mgp_bal_ce": "MGP + Bal-CE"}
# (name, arm A, arm B): the paired per-seed difference A - B.
CLAIMS = (
    ("MGP > scratch (Bal-BCE)", "livt", "scratch_bal_bce"),
    ("Bal-BCE > CE (MGP)", "livt", "mgp_ce"),
    ("Bal-BCE > BCE (MGP)", "livt", "mgp_bce"),
    ("Bal-BCE vs Bal-CE (MGP)", "livt", "mgp_bal_ce"),
)
# "Bal-BCE converges within few epochs": validation top-1 after these BFT epochs.
CONVERGENCE_ARMS = ("livt", "mgp_bce", "mgp_ce")
CONVERGENCE_EPOCHS = (1, 2, 5, 10)


def get_config(data_dir: str, source: str = "image_folder", name: str = ""
               ) -> ml_collections.ConfigDict:
    """configs/cifar10_lt.py at IR 100 with the study's sizes, reading `data_dir`."""
    config = config_lib.load_config_file(_dataset_config_path() + ":100", lock=False)
    config.data.update(dict(data_dir=data_dir, source=source, name=name))
    for key, value in STUDY_OVERRIDES.items():
        set_key(config, key, value)
    return config


def _dataset_config_path() -> str:
    import os
    here = os.path.dirname(os.path.abspath(__file__))
    return os.path.join(here, "..", "..", "..", "configs", "cifar10_lt.py")


def arm_overrides(arm: str, mgp_export: str) -> dict[str, Any]:
    """The dotted keys of one arm (its `init` turned into `finetune.init_from`)."""
    spec = dict(ARMS[arm])
    init = spec.pop("init")
    spec["finetune.init_from"] = mgp_export if init == "mgp" else ""
    return spec
