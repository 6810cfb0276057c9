"""A `jax.profiler` trace of a window of train steps (`config.profile`).

`--config.profile.num_steps=N` (0 = off, the default) traces N train steps from
step `profile.start_step` (default 10, past compilation) into `WORKDIR/profile`
on process 0: `plugins/profile/<run>/<host>.xplane.pb` for TensorBoard's
profile plugin (`tensorboard --logdir WORKDIR/profile`) and
`perfetto_trace.json.gz` beside it for https://ui.perfetto.dev.
"""

from __future__ import annotations

from typing import Any

import jax
from absl import logging

from livt_jax import paths

PROFILE_DIR = "profile"


class StepWindowProfiler:
    """Traces train steps `[start_step, start_step + num_steps)` on process 0.

    Call `before_step(step, state)` before each step (`step` = steps done so
    far) and `stop()` when the loop ends. A run resumed inside the window
    traces the rest of it.
    """

    def __init__(self, workdir: str, start_step: int, num_steps: int):
        if start_step < 0 or num_steps < 0:
            raise ValueError(f"profile.start_step={start_step} and profile.num_steps={num_steps} "
                             "must be >= 0 (num_steps=0 turns profiling off)")
        self.log_dir = paths.join(workdir, PROFILE_DIR)  # a URL stays a URL (untested on a bucket)
        self.start, self.end = start_step, start_step + num_steps
        self.enabled = num_steps > 0 and jax.process_index() == 0
        self.active = False

    def before_step(self, step: int, state: Any) -> None:
        """Starts the trace at the window's first step, ends it after its last one."""
        if not self.enabled:
            return
        if not self.active and self.start <= step < self.end:
            jax.profiler.start_trace(self.log_dir, create_perfetto_trace=True)
            self.active = True
        elif self.active and step >= self.end:
            jax.block_until_ready(state)  # the window's device work lands in the trace
            self.stop()

    def stop(self) -> None:
        """Ends a running trace (a no-op otherwise) and says where it went."""
        if self.active:
            jax.profiler.stop_trace()
            self.active = False
            logging.warning("profile of steps %d-%d written to %s", self.start, self.end - 1,
                            self.log_dir)
