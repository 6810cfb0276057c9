"""The config a workdir was started with, and a refusal to resume it with another meaning.

At the start of every run `check_and_record(config, workdir)` compares the
resolved config with `WORKDIR/config.json` (if a previous run wrote one and got
as far as writing anything else: a run refused before it started leaves
nothing to resume) and then writes the current one there (process 0). Only the
stage sections this run executes are compared (`stage=finetune` ignores
`pretrain.*`). A resume whose config differs
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
import os
from typing import Any

import jax
import ml_collections
from absl import logging

from livt_jax import paths, workdir_lock

CONFIG_FILE = "config.json"
# The stage sections each `config.stage` trains or reads.
STAGE_SECTIONS = {"pretrain": ("pretrain",), "finetune": ("finetune",), "eval": ("finetune",),
                  "livt": ("pretrain", "finetune")}

# Dotted keys (a section name covers all its keys) that may differ on resume.
HARMLESS = (
    "allow_config_change", "log_every_steps", "stop_after_steps", "num_vis_images",
    "checkpoint", "eval.batch_size", "eval.params_from", "eval.save_logits",
    "finetune.eval_every_epochs",
    "data.worker_count", "data.data_dir",  # the same data, read by other workers / elsewhere
    "multihost", "distributed", "mesh",  # the topology
    "model.attention", "model.pad_tokens_to",  # kernels computing the same function
    "profile",  # a profiler window
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
    """`(key, old value, new value)` for every compared key that differs, sorted by key.
    Sections of stages that `new`'s stage does not run are not compared."""
    skipped = {"pretrain", "finetune"} - set(STAGE_SECTIONS.get(new.get("stage"), ()))
    old, new = flatten(old), flatten(new)
    return [(key, old[key], new[key]) for key in sorted(old.keys() & new.keys())
            if old[key] != new[key] and not is_harmless(key)
            and key.partition(".")[0] not in skipped]


def _has_started(workdir: str) -> bool:
    """Whether a run in `workdir` got past its start (wrote more than its config and lock)."""
    ours = {CONFIG_FILE, CONFIG_FILE + ".tmp", workdir_lock.LOCK_FILE}
    return paths.is_dir(workdir) and any(n not in ours for n in paths.listdir(workdir))


def check_and_record(config: ml_collections.ConfigDict, workdir: str) -> None:
    """Refuses a meaning-changing resume (see the module docstring), then records `config`."""
    path = paths.join(workdir, CONFIG_FILE)
    current = _as_json(config)
    if paths.exists(path) and _has_started(workdir):
        recorded = json.loads(paths.read_text(path, "the config the workdir was started with"))
        changes = meaningful_changes(recorded, current)
        listed = "\n".join(f"  {key}: {old!r} -> {new!r}" for key, old, new in changes)
        if changes and not config.allow_config_change:
            raise ConfigChangeError(
                f"{workdir} was started with another config ({path}); these keys change "
                f"what the run trains:\n{listed}\nUse a new --workdir, or pass "
                "--config.allow_config_change=True to resume with the new values.")
        if changes:
            logging.warning("resuming %s with changed keys (allow_config_change=True):\n%s",
                            workdir, listed)
    if jax.process_index() == 0:
        paths.makedirs(workdir)
        _write_whole(path, json.dumps(current, indent=2, sort_keys=True) + "\n")


def _write_whole(path: str, text: str) -> None:
    """Writes `text` so that readers never see half of it (an object appears whole; a
    local file is renamed into place)."""
    if paths.is_url(path):
        paths.write_text(path, text)
        return
    paths.write_text(path + ".tmp", text)
    os.replace(path + ".tmp", path)
