"""Orbax checkpoints: train state + grain iterator saved together, and params exports.

A checkpoint step directory holds two items: `state` (the sharded train state:
params, optimizer state, step, RNG) and `data` (each process's grain iterator
state), so a run killed at step k resumes with the same parameters and the
same next batch. Orbax writes to a temporary directory and renames it when
complete, so a crash never leaves a half-written step behind.

Both load on any topology: arrays are restored onto the shardings the reader
asks for (an export without a target onto this process's first device), and
when the checkpoint was written by another number of processes the data
position is rebuilt from the step (the samplers draw batch `step` from the
step number alone).
"""

from __future__ import annotations

import os
import re
from typing import Any, Optional

import grain
from absl import logging
import jax
import orbax.checkpoint as ocp
from etils import epath
from orbax.checkpoint.checkpoint_managers import preservation_policy as pp
from orbax.checkpoint.checkpoint_managers import save_decision_policy as sdp

from livt_jax import paths

CHECKPOINTS_DIR = "checkpoints"  # a stage's checkpoint steps: WORKDIR[/STAGE]/checkpoints
BEST_METRIC = "top1"
EXPORT_KEY = "params"  # an export is the orbax tree {EXPORT_KEY: params}


def make_manager(directory: str, *, save_every_steps: int, keep: int,
                 keep_best: bool, async_save: bool = True) -> ocp.CheckpointManager:
    """A manager that saves every `save_every_steps`, keeps the last `keep`
    checkpoints and, when `keep_best`, the one with the highest eval top-1."""
    policies = [pp.LatestN(keep)]
    if keep_best:
        policies.append(pp.BestN(get_metric_fn=lambda m: m[BEST_METRIC], n=1,
                                 keep_checkpoints_without_metrics=False))
    options = ocp.CheckpointManagerOptions(
        save_decision_policy=sdp.AnySavePolicy([sdp.FixedIntervalPolicy(save_every_steps),
                                                sdp.PreemptionCheckpointingPolicy()]),
        preservation_policy=pp.AnyPreservationPolicy(policies),
        enable_async_checkpointing=async_save,
        create=True,
    )
    return ocp.CheckpointManager(paths.resolve(directory), options=options,
                                 item_names=("state", "data"))


def save(manager: ocp.CheckpointManager, step: int, state: Any, data_iterator: Any,
         metrics: Optional[dict] = None, force: bool = False) -> bool:
    """Saves state and iterator at `step` (if the policy or `force` says so)."""
    metrics = {BEST_METRIC: metrics[BEST_METRIC]} if metrics and BEST_METRIC in metrics else None
    return manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state),
        data=grain.checkpoint.CheckpointSave(data_iterator)), metrics=metrics, force=force)


class NoIntactCheckpointError(RuntimeError):
    """Checkpoints exist but none of them restores."""


def restore_latest(manager: ocp.CheckpointManager, abstract_state: Any,
                   data_iterator: Any) -> tuple[Optional[Any], int]:
    """Restores the newest intact checkpoint onto `abstract_state`'s shardings.

    `abstract_state` is a pytree of `jax.ShapeDtypeStruct` with `sharding` set,
    which is what lets a checkpoint written on 8 devices load on 1 (or vice
    versa). The iterator is restored in place. A step that fails to restore
    (truncated arrays, a garbled iterator state) is logged with its error and
    moved aside (`corrupt_step_<N>`, so that the resumed run can save that step
    again), and the next older step is tried. Returns `(state, step)`, or
    `(None, 0)` when there is nothing to resume; raises NoIntactCheckpointError
    naming every step and why when checkpoints exist but none restores.
    """
    failures = []
    for step in sorted(manager.all_steps(), reverse=True):
        writers = saved_process_count(manager, step)
        items = dict(state=ocp.args.StandardRestore(abstract_state))
        if writers == jax.process_count():
            items["data"] = grain.checkpoint.CheckpointRestore(data_iterator)
        try:
            restored = manager.restore(step, args=ocp.args.Composite(**items))
        except Exception as e:  # pylint: disable=broad-except  # orbax/tensorstore raise many types
            reason = _first_line(e)
            logging.warning("checkpoint step %d in %s cannot be restored, skipping it: %s",
                            step, manager.directory, reason)
            failures.append((step, reason))
            continue
        if failures:
            _move_aside(manager, [s for s, _ in failures])
            logging.warning("resuming from step %d, the newest intact checkpoint (skipped %s)",
                            step, _describe(failures))
        if "data" not in items:
            grain.experimental.set_next_index(data_iterator, step)
            logging.warning("checkpoint step %d was written by %s processes and this run has "
                            "%d: the data position is rebuilt from the step number (batches "
                            "from step %d on are drawn as a %d-process run draws them)", step,
                            writers, jax.process_count(), step, jax.process_count())
        return restored["state"], step
    if failures:
        raise NoIntactCheckpointError(
            f"no intact checkpoint in {manager.directory}: {_describe(failures)} (corrupt, or "
            "written by another model or config; delete the folder to start over)")
    return None, 0


def saved_process_count(manager: ocp.CheckpointManager, step: int) -> Optional[int]:
    """How many processes wrote checkpoint `step`'s iterator states (None: none saved)."""
    directory = epath.Path(manager.directory) / str(step) / "data"
    pattern = re.compile(r"process_\d+-of-(\d+)\.json")  # grain's file names
    counts = {int(m.group(1)) for p in directory.glob("*") if (m := pattern.fullmatch(p.name))}
    return counts.pop() if len(counts) == 1 else None


def _describe(failures: list[tuple[int, str]]) -> str:
    return "; ".join(f"step {step}: {reason}" for step, reason in failures)


def _first_line(error: BaseException) -> str:
    """`Type: first line of the message`, the innermost cause first if it says more."""
    while error.__cause__ is not None and str(error.__cause__):
        error = error.__cause__
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[0] if lines else ''}"[:300]


def _move_aside(manager: ocp.CheckpointManager, steps: list[int]) -> None:
    """Renames corrupt step folders to `corrupt_step_<N>` (kept for inspection)."""
    root = str(manager.directory)
    for step in steps:
        path = os.path.join(root, str(step))
        if os.path.isdir(path):
            os.replace(path, os.path.join(root, f"corrupt_step_{step}"))
    manager.reload()


def save_params_export(path: str, params: Any, *, force: bool = True) -> None:
    """Writes `{'params': params}` as a standalone orbax checkpoint (for inference,
    conversion to PyTorch, or initialising the next stage). On several hosts
    every process calls this. `force=False` refuses to replace an existing one."""
    with ocp.StandardCheckpointer() as checkpointer:
        checkpointer.save(paths.resolve(path), {EXPORT_KEY: params}, force=force)
        checkpointer.wait_until_finished()


def load_params_export(path: str, abstract_params: Optional[Any] = None) -> Any:
    """Reads the params of an export; onto `abstract_params`' shapes/shardings if given.

    Raises FileNotFoundError naming the path when there is no export there, and
    ValueError naming the first differing parameter when the export belongs to
    another model. Without `abstract_params` the arrays come back whole on this
    process's first device, whatever the devices that wrote them.
    """
    path = paths.resolve(path)
    if not paths.is_dir(path):
        raise FileNotFoundError(f"no params export at {path!r} (expected a directory "
                                "written by save_params_export)")
    if not paths.is_file(paths.join(path, "_CHECKPOINT_METADATA")):
        contents = paths.listdir(path)[:5]
        raise FileNotFoundError(
            f"{path!r} is not a params export: it {'holds ' + str(contents) if contents else 'is empty'}"
            " (expected a directory written by save_params_export, e.g. WORKDIR/export)")
    with ocp.StandardCheckpointer() as checkpointer:
        stored = checkpointer.metadata(path).item_metadata
        if EXPORT_KEY not in stored:
            raise ValueError(f"{path!r} is not a params export: top-level keys {sorted(stored)}")
        if abstract_params is None:
            abstract_params = on_one_device(stored[EXPORT_KEY])
        else:
            check_same_structure(stored[EXPORT_KEY], abstract_params, path)
        return checkpointer.restore(path, {EXPORT_KEY: abstract_params})[EXPORT_KEY]


def on_one_device(metadata: Any) -> Any:
    """A restore target (`jax.ShapeDtypeStruct`s) for orbax array metadata: each array
    whole on this process's first device."""
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    return jax.tree_util.tree_map(
        lambda m: jax.ShapeDtypeStruct(tuple(m.shape), m.dtype, sharding=device), metadata)


def check_same_structure(stored: Any, expected: Any, path: str) -> None:
    """Raises ValueError naming the first parameter whose name or shape differs."""
    flat_stored = {jax.tree_util.keystr(k): v.shape for k, v in
                   jax.tree_util.tree_flatten_with_path(stored)[0]}
    flat_expected = {jax.tree_util.keystr(k): v.shape for k, v in
                     jax.tree_util.tree_flatten_with_path(expected)[0]}
    missing = sorted(set(flat_expected) - set(flat_stored))
    unexpected = sorted(set(flat_stored) - set(flat_expected))
    if missing or unexpected:
        raise ValueError(f"export {path!r} is from another model: missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}")
    for key, shape in flat_expected.items():
        if tuple(flat_stored[key]) != tuple(shape):
            raise ValueError(f"export {path!r} is from another model: {key} has shape "
                             f"{tuple(flat_stored[key])}, expected {tuple(shape)}")
