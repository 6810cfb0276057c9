"""The CIFAR-10-LT study: LiVT's claims from scratch on long-tailed data only.

A study is data: a base config (the recipe, `configs/cifar10_lt.py`), one MGP run per seed, a
tuning sweep scored on validation only, and the arms as dotted overrides.

    TUNING  LiVT (MGP + Bal-BCE) on seed 0 for each BFT base lr; the lr with the best
            validation top-1 (at its best epoch) is used by every arm. Tuning runs
            never read the test split (`eval.test_at_end=False`).
    ARMS    LiVT (MGP + Bal-BCE), scratch + Bal-BCE, MGP + CE, MGP + BCE,
            MGP + Bal-CE: every MGP arm of a seed fine-tunes that seed's MGP export.
    CLAIMS  the paired comparisons the study reports (first minus second).

Run order (`experiments/study.py`): MGP seed 0, the tuning sweep, then every seed of
one arm before the next arm, so a study cut short holds whole arms.
"""

from __future__ import annotations

from typing import Any

import ml_collections

from livt_jax import config_lib
from livt_jax.experiments import hyper
from livt_jax.experiments.definition import MGP_EXPORT, Study, Tuning

SEEDS = (0, 1, 2)
# the recipe (configs/cifar10_lt.py) records what the sweep chose
TUNING = Tuning(key="finetune.optim.blr", values=(1e-3, 3e-3, 1e-2, 3e-2), arm="livt", seed=0)
_LIVT = {"finetune.loss": "bal_bce", "finetune.init_from": MGP_EXPORT}
ARMS: dict[str, dict[str, Any]] = dict(zip(
    ("livt", "scratch_bal_bce", "mgp_ce", "mgp_bce", "mgp_bal_ce"),
    hyper.chain([_LIVT], [{**_LIVT, "finetune.init_from": ""}],
                hyper.product([hyper.sweep("finetune.loss", ("ce", "bce", "bal_ce")),
                               hyper.sweep("finetune.init_from", (MGP_EXPORT,))]))))
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


def get_config(data_dir: str) -> ml_collections.ConfigDict:
    """The recipe (configs/cifar10_lt.py) at IR 100, reading the image folder `data_dir`
    (a cache: override data.source and data.name)."""
    config = config_lib.load_config_file("cifar10_lt:100", lock=False)
    config.data.data_dir = data_dir
    return config


def get_study(data_dir: str) -> Study:
    """The study reading `data_dir` (the ARG of `--study cifar10_lt:DATA_DIR`)."""
    if not data_dir:
        raise ValueError("study cifar10_lt needs its data folder: --study cifar10_lt:DATA_DIR")
    return Study(name="cifar10_lt", base=get_config(data_dir), arms=ARMS, seeds=SEEDS,
                 tuning=TUNING)
