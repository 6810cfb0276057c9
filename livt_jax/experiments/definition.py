"""A study as data: base config, MGP settings, arms as dotted overrides, seeds, tuning.

    study = get_study("ablation:10")      # NAME[:ARG], the modules in experiments/configs/
    study.arms["bal_bce-mgp-instance"]    # {"finetune.loss": "bal_bce", ..., "finetune.init_from": MGP_EXPORT}
    config_for(study, seed=0, stage="finetune", overrides={...})

An arm whose `finetune.init_from` is `MGP_EXPORT` fine-tunes its seed's MGP export
(`experiments/study.py` puts the path in); "" fine-tunes from scratch. The studies:

    ablation[:IR]        Animal-MNIST-LT: losses, MGP vs scratch, samplers (IR default 100)
    tau[:IR]             Animal-MNIST-LT: Bal-CE vs Bal-BCE over a τ grid
    cifar10_lt:DATA_DIR  CIFAR-10-LT IR 100: the LiVT claims, BFT lr tuned on validation
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional

import ml_collections

from livt_jax.experiments.hyper import set_key

MGP_EXPORT = "<mgp export>"  # an arm's finetune.init_from: its seed's MGP export


@dataclasses.dataclass(frozen=True)
class Tuning:
    """A validation sweep run before the arms: `key` over `values` on (`arm`, `seed`);
    the value whose run scores the highest `best_val[metric]` (validation at the best
    epoch) is set in every arm. Tuning runs never read the test split."""
    key: str
    values: tuple[Any, ...]
    arm: str
    seed: int
    metric: str = "top1"

    @property
    def rule(self) -> str:
        return f"highest validation {self.metric.replace('top1', 'top-1')} at the best epoch"

    def select(self, scores: dict[Any, float]) -> Any:
        """The value with the highest score (ties: the first in `values` order)."""
        if not scores:
            raise ValueError(f"no tuning run of {self.key} finished")
        return max(scores, key=scores.get)


@dataclasses.dataclass(frozen=True)
class Study:
    """base: the config both stages start from (seed and stage still to set);
    mgp: overrides of the MGP run; arms: name -> dotted overrides of its BFT run, in
    run order; seeds: the study's seeds; tuning: an optional validation sweep."""
    name: str
    base: ml_collections.ConfigDict
    arms: dict[str, dict[str, Any]]
    seeds: tuple[int, ...]
    mgp: dict[str, Any] = dataclasses.field(default_factory=dict)
    tuning: Optional[Tuning] = None

    def select_arms(self, names: str) -> list[str]:
        """The arms named in a comma-separated list ('' = all) in study order; an
        unknown name is an error."""
        wanted = [n.strip() for n in names.split(",") if n.strip()]
        unknown = [n for n in wanted if n not in self.arms]
        if unknown:
            raise ValueError(f"unknown arm(s) {', '.join(unknown)} for study {self.name}; "
                             f"expected some of {', '.join(self.arms)}")
        return [a for a in self.arms if not wanted or a in wanted]


def config_for(study: Study, seed: int, stage: str, overrides: dict[str, Any],
               epochs_scale: float = 1.0) -> ml_collections.ConfigDict:
    """study.base for one seed and stage with `overrides`, both stages' epochs times
    `epochs_scale` (a smoke test's shortcut; 1 for the study)."""
    config = study.base.copy_and_resolve_references()
    config.seed, config.stage = seed, stage
    for key, value in overrides.items():
        set_key(config, key, value)
    config.pretrain.epochs = config.pretrain.epochs * epochs_scale
    config.finetune.epochs = config.finetune.epochs * epochs_scale
    return config


def _studies() -> dict[str, Callable[[str], Study]]:
    from livt_jax.experiments.configs import animal_mnist, cifar10_lt
    return {"ablation": lambda arg: animal_mnist.get_study("ablation", arg or "100"),
            "tau": lambda arg: animal_mnist.get_study("tau", arg or "100"),
            "cifar10_lt": cifar10_lt.get_study}


def get_study(spec: str) -> Study:
    """The study named by 'NAME[:ARG]' (see the module docstring)."""
    name, _, arg = spec.partition(":")
    studies = _studies()
    if name not in studies:
        raise ValueError(f"unknown study {name!r}; expected one of {', '.join(studies)}")
    return studies[name](arg)
