"""The config a workdir was started with, and a refusal to resume it with another meaning.

At the start of every run `check_and_record(config, workdir)` compares the
resolved config with `WORKDIR/config.json` (if a previous run wrote one and got
as far as its first checkpoint, in any stage folder: a run that failed before
that leaves nothing to resume, and a corrected rerun may start afresh there)
and then writes the current one there (process 0). Only the sections the run
reads are compared (`stage=finetune` ignores `pretrain.*`, see
`config_lib.STAGES`). A resume whose config differs in a key that changes what
is being trained (model shape, dataset, split, imbalance, batch, epochs, loss,
τ, seed, augmentation, optimizer, ...) is refused with a `ConfigChangeError`
naming every such key with its old and new value, unless
`--config.allow_config_change=True`. Keys declared `may_change` in
`config_lib.SCHEMA` (logging, evaluation batch, checkpoint cadence, data
workers and location, the device layout) may change freely: resuming on
another topology is supported.

Keys present on one side only are not compared: they come from a code version
that added or removed an option, not from the user.
"""

from __future__ import annotations

import json
from typing import Any

import jax
import ml_collections
from absl import logging

from livt_jax import checkpoint, config_checks, config_lib, paths

CONFIG_FILE = "config.json"


class ConfigChangeError(config_checks.ConfigError):
    """A resume's config changes keys that change the run's meaning (a usage error: exit 2)."""


def _as_json(config: ml_collections.ConfigDict) -> dict:
    return json.loads(json.dumps(config.to_dict(), default=str))


def may_change(key: str) -> bool:
    """Whether a resume may change `key` (a key the schema does not declare may not)."""
    return key in config_lib.KEYS and config_lib.KEYS[key].may_change


def meaningful_changes(old: dict, new: dict) -> list[tuple[str, Any, Any]]:
    """`(key, old value, new value)` for every compared key that differs, sorted by key.
    Sections that `new`'s stage does not read are not compared."""
    read = config_lib.sections_read(new["stage"])
    old, new = config_lib.flatten(old), config_lib.flatten(new)
    return [(key, old[key], new[key]) for key in sorted(old.keys() & new.keys())
            if old[key] != new[key] and not may_change(key) and key.partition(".")[0] in read]


def has_checkpoint(workdir: str) -> bool:
    """Whether a run in `workdir` saved a checkpoint (a finished step folder; orbax
    names unfinished ones `<step>.orbax-checkpoint-tmp-...`) in any stage folder."""
    for folder in [workdir] + [paths.join(workdir, s) for s in config_lib.TRAIN_STAGES]:
        checkpoints = paths.join(folder, checkpoint.CHECKPOINTS_DIR)
        if paths.is_dir(checkpoints) and any(n.isdigit() for n in paths.listdir(checkpoints)):
            return True
    return False


def check_and_record(config: ml_collections.ConfigDict, workdir: str) -> None:
    """Refuses a meaning-changing resume (see the module docstring), then records `config`."""
    path = paths.join(workdir, CONFIG_FILE)
    current = _as_json(config)
    if paths.exists(path) and has_checkpoint(workdir):
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
        paths.write_text_atomic(path, json.dumps(current, indent=2, sort_keys=True) + "\n")
