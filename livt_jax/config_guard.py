"""The config a workdir was started with, and a refusal to resume it with another meaning.

At the start of every run `check_and_record(config, workdir)` compares the
resolved config with `WORKDIR/config.json` (if a previous run wrote one) and
then writes the current one there (process 0). A resume whose config differs
in a key that changes what is being trained (model shape, dataset, split,
imbalance, batch, epochs, loss, τ, seed, augmentation, optimizer, ...) is
refused with a `ConfigChangeError` naming every such key with its old and new
value, unless `--config.allow_config_change=True`. Keys in `HARMLESS` (logging,
evaluation batch, checkpoint cadence, data workers and location, the device
layout) may change freely: resuming on another topology is supported.

Keys present on one side only are not compared: they come from a code version
that added or removed an option, not from the user.
"""

from __future__ import annotations

import json
from typing import Any

import jax
import ml_collections
from absl import logging
from etils import epath

CONFIG_FILE = "config.json"

# Dotted keys (a section name covers all its keys) that may differ on resume.
HARMLESS = (
    "allow_config_change", "log_every_steps", "stop_after_steps", "num_vis_images",
    "checkpoint", "eval.batch_size", "eval.params_from", "finetune.eval_every_epochs",
    "data.worker_count", "data.data_dir",  # the same data, read by other workers / elsewhere
    "multihost", "distributed", "mesh",  # the topology
    "model.attention", "model.pad_tokens_to",  # kernels computing the same function
)


class ConfigChangeError(ValueError):
    """A resume's config changes keys that change the run's meaning."""


def flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1}, with values as JSON stores them (tuples as lists)."""
    flat = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def _as_json(config: ml_collections.ConfigDict) -> dict:
    return json.loads(json.dumps(config.to_dict(), default=str))


def is_harmless(key: str) -> bool:
    return any(key == h or key.startswith(h + ".") for h in HARMLESS)


def meaningful_changes(old: dict, new: dict) -> list[tuple[str, Any, Any]]:
    """`(key, old value, new value)` for every compared key that differs, sorted by key."""
    old, new = flatten(old), flatten(new)
    return [(key, old[key], new[key]) for key in sorted(old.keys() & new.keys())
            if old[key] != new[key] and not is_harmless(key)]


def check_and_record(config: ml_collections.ConfigDict, workdir: str) -> None:
    """Refuses a meaning-changing resume (see the module docstring), then records `config`."""
    directory = epath.Path(workdir)
    path = directory / CONFIG_FILE
    current = _as_json(config)
    if path.exists():
        changes = meaningful_changes(json.loads(path.read_text()), current)
        listed = "\n".join(f"  {key}: {old!r} -> {new!r}" for key, old, new in changes)
        if changes and not config.get("allow_config_change", False):
            raise ConfigChangeError(
                f"{workdir} was started with another config ({path}); these keys change "
                f"what the run trains:\n{listed}\nUse a new --workdir, or pass "
                "--config.allow_config_change=True to resume with the new values.")
        if changes:
            logging.warning("resuming %s with changed keys (allow_config_change=True):\n%s",
                            workdir, listed)
    if jax.process_index() == 0:
        directory.mkdir(parents=True, exist_ok=True)
        partial = directory / (CONFIG_FILE + ".tmp")
        partial.write_text(json.dumps(current, indent=2, sort_keys=True) + "\n")
        partial.replace(path)  # readers on other processes never see half a file
