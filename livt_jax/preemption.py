"""Coordinated stop: every process of a run stops at the same step, after one checkpoint.

A scheduler asks a run to stop by sending SIGTERM (Slurm's `--signal`, a Cloud
TPU maintenance event or Spot preemption, `launch/tpu_pod.sh stop`, a plain
`kill`), often to one host first, or to each host at a different time. If each
process stopped on its own flag, they would stop at different steps and the
first to leave the collective would hang the others.

Under `jax.distributed` (several processes, or one started with
`--config.multihost=True`) JAX's preemption sync manager catches SIGTERM in
every process and tells the others through the coordination service; orbax's
`CheckpointManager.reached_preemption(step)` (which asks
`multihost_utils.reached_preemption_sync_point`) then returns True on every
process at the same step: one past the furthest step any process had reached.
The training loop calls `StopRequest.reached(step)` after every step and, when
it says so, saves a checkpoint there and returns; `main` then exits with
`PREEMPTED_EXIT_CODE`.

In a single process without `jax.distributed` there is no sync manager;
`StopRequest` then turns SIGTERM into a flag read at the next step.
"""

from __future__ import annotations

import signal
from typing import Optional

import jax
import orbax.checkpoint as ocp
from absl import logging

# 128 + SIGTERM, what a shell reports for a process killed by SIGTERM: "stopped
# before the end, checkpoint saved, rerun to resume". Neither 0 (finished) nor
# 1 (failed); the launchers requeue on it.
PREEMPTED_EXIT_CODE = 128 + signal.SIGTERM


def coordinated() -> bool:
    """True when JAX's preemption sync manager runs (`jax.distributed.initialize` starts
    it unless `jax_enable_preemption_service` is off)."""
    return jax.distributed.is_initialized() and jax.config.jax_enable_preemption_service


class StopRequest:
    """Says after each step whether the run must stop there; `close()` when done.

    `reached(step)` must be called by every process after every step, with the
    number of steps completed so far.
    """

    def __init__(self, manager: ocp.CheckpointManager):
        self._manager = manager
        self._requested = False
        self._previous: Optional[signal.Handlers] = None
        if coordinated():
            return  # JAX's sync manager owns SIGTERM; a Python handler would replace it
        if jax.distributed.is_initialized():
            logging.warning("jax.distributed runs without its preemption service "
                            "(jax_enable_preemption_service=False): SIGTERM is not "
                            "coordinated across processes and ends this one at once")
            return
        self._previous = signal.signal(signal.SIGTERM, self._handle)

    def close(self) -> None:
        """Puts back the SIGTERM handler that was there before."""
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None

    def _handle(self, signum, frame) -> None:
        logging.warning("SIGTERM received: saving a checkpoint after this step, then exiting")
        self._requested = True

    def reached(self, step: int) -> bool:
        """True when every process is to save at `step` and stop."""
        if coordinated():
            return self._manager.reached_preemption(step)
        return self._requested
