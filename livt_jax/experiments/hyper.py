"""big_vision-style sweeps: lists of override dicts built with `sweep`, `product`, `chain`.

    product([sweep("finetune.loss", ["bal_ce", "bal_bce"]),
             sweep("finetune.tau", [0.5, 1.0])])
    -> [{"finetune.loss": "bal_ce", "finetune.tau": 0.5}, ..., 4 dicts]
"""

from __future__ import annotations

import itertools
from typing import Any, Sequence


def sweep(key: str, values: Sequence[Any]) -> list[dict[str, Any]]:
    """One override dict per value of `key`."""
    return [{key: v} for v in values]


def product(sweeps: Sequence[Sequence[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Every combination of one dict from each sweep (the first sweep varies slowest)."""
    out = []
    for combo in itertools.product(*sweeps):
        merged: dict[str, Any] = {}
        for part in combo:
            clash = set(merged) & set(part)
            if clash:
                raise ValueError(f"keys {sorted(clash)} are swept twice")
            merged.update(part)
        out.append(merged)
    return out


def chain(*sweeps: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The sweeps one after the other."""
    return [dict(d) for s in sweeps for d in s]


def set_key(config, dotted: str, value: Any) -> None:
    """config[a][b][c] = value for 'a.b.c'; a key the config lacks is an error
    (an unlocked ConfigDict would silently add it)."""
    *parents, leaf = dotted.split(".")
    node = config
    for p in parents:
        node = node[p]
    if leaf not in node:
        raise KeyError(f"unknown config key {dotted!r}")
    node[leaf] = value
