"""The CIFAR-10-LT study: LiVT's claims from scratch on long-tailed data only.

A study is data: a base config (the recipe, `configs/cifar10_lt.py`), one MGP run per seed, a
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

SEEDS = (0, 1, 2)
TUNE_KEY = "finetune.optim.blr"
TUNE_VALUES = (1e-3, 3e-3, 1e-2, 3e-2)  # the recipe records what the sweep chose
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
    """The recipe (configs/cifar10_lt.py) at IR 100, reading `data_dir`."""
    config = config_lib.load_config_file("cifar10_lt:100", lock=False)
    config.data.update(dict(data_dir=data_dir, source=source, name=name))
    return config


def arm_overrides(arm: str, mgp_export: str) -> dict[str, Any]:
    """The dotted keys of one arm (its `init` turned into `finetune.init_from`)."""
    spec = dict(ARMS[arm])
    init = spec.pop("init")
    spec["finetune.init_from"] = mgp_export if init == "mgp" else ""
    return spec
