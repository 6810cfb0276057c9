"""Command line: `livt-train --config demo|configs/demo.py --workdir DIR [--config.k=v]`.

`python -m livt_jax.main` is the same command.

A thin shell around `train.train_and_evaluate`; the config file is Python
(`get_config(arg)`), locked, so a misspelt override is an error naming the key.
Errors end the run with one line on stderr: exit status 2 for a usage error
(a bad flag, a config file that cannot be loaded, an unknown key, a config value
that cannot work, a resume that would change what the workdir trains), 1 for a failure
while running (data, checkpoints, a locked workdir). `--traceback` shows the
full Python traceback instead. A run stopped by SIGTERM saves a checkpoint and
exits with status 143 (`preemption.PREEMPTED_EXIT_CODE`); the same command
resumes it. Finished runs (and `--config.stop_after_steps` stops) exit with 0.
"""

import os
import sys

import jax
from absl import app, flags, logging

from livt_jax import config_checks, config_lib, console, preemption, train

_CONFIG = config_lib.define_config_flag(
    None, "A shipped config (demo, cifar_lt, cifar10_lt, imagenet_lt, inat18, places_lt) or a "
    "config file, each with an optional :ARG.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and plots.")
_TRACEBACK = flags.DEFINE_bool("traceback", False,
                               "On an error, raise with the full traceback instead of one line.")
flags.mark_flags_as_required(["config", "workdir"])

def initialize_distributed(distributed) -> None:
    """`jax.distributed.initialize`, auto-detecting the cluster unless an address is set."""
    explicit = {}
    # One process per node driving all its GPUs (launch/slurm.sbatch sets this):
    # without it, jax's SLURM detection gives each process only GPU SLURM_LOCALID.
    if ids := os.environ.get("LIVT_LOCAL_DEVICE_IDS"):
        explicit["local_device_ids"] = [int(i) for i in ids.split(",")]
    if distributed.coordinator_address:
        explicit.update(coordinator_address=distributed.coordinator_address,
                        num_processes=distributed.num_processes,
                        process_id=distributed.process_id)
    jax.distributed.initialize(initialization_timeout=distributed.initialization_timeout,
                               **explicit)


def main(argv):
    if len(argv) > 1:
        print(f"error: unexpected arguments {argv[1:]}", file=sys.stderr)
        return console.USAGE_ERROR
    config = _CONFIG.value
    if not flags.FLAGS["verbosity"].present:  # orbax logs every save at INFO
        logging.set_verbosity(logging.WARNING)
    try:
        if config.multihost:
            initialize_distributed(config.distributed)
        summary = train.train_and_evaluate(config, _WORKDIR.value)
    except Exception as e:  # pylint: disable=broad-except
        if _TRACEBACK.value:
            raise
        return console.report_error(e, usage=isinstance(e, config_checks.ConfigError))
    return exit_status(summary, _WORKDIR.value)


def exit_status(summary: dict, workdir: str) -> int:
    """The process's exit status for a finished or stopped run's summary."""
    if not summary.get("preempted"):
        return 0
    logging.warning("preempted: checkpoint saved at step %d in %s; exiting with status %d "
                    "(rerun the same command to resume)", summary["stopped_at"], workdir,
                    preemption.PREEMPTED_EXIT_CODE)
    return preemption.PREEMPTED_EXIT_CODE


def run() -> None:
    """The `livt-train` console command."""
    console.run(main, __name__)


if __name__ == "__main__":
    app.run(main, flags_parser=console.parse_flags)
