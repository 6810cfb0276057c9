"""Train and evaluate: `livt-train --config NAME|PATH[:ARG] --workdir DIR [--config.KEY=VALUE ...]`.

    livt-train --config demo --workdir /tmp/demo
    livt-train --config cifar_lt:cifar10,100 --workdir DIR --config.finetune.optim.blr=5e-4

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
Logging is at warning level (orbax's INFO line per save hidden) unless
`--verbosity N` (absl's scale: 0 info, 1 debug) asks for more.
"""

import os
import sys
from typing import Optional, Sequence

import jax
from absl import logging

from livt_jax import config_checks, config_lib, console, preemption, train


def build_parser() -> console.ArgumentParser:
    """The `livt-train` (= `python -m livt_jax.main`) argument parser."""
    parser = console.command_parser("livt-train", __doc__)
    console.add_config_options(parser, "A shipped config or a config file, with an optional "
                               ":ARG for its get_config.", required=True)
    parser.add_argument("--workdir", required=True,
                        help="directory for checkpoints, metrics and plots (local or gs://)")
    console.add_run_options(parser)
    return parser


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


def main(argv: Optional[Sequence[str]] = None) -> int:
    """The `livt-train` command; returns the exit status."""
    args = build_parser().parse_args(argv)
    console.init_logging(args.verbosity)
    try:
        if args.config.multihost:
            initialize_distributed(args.config.distributed)
        with config_lib.overrides_from_command_line(args.overridden):
            summary = train.train_and_evaluate(args.config, args.workdir)
    except Exception as e:  # pylint: disable=broad-except
        if args.traceback:
            raise
        return console.report_error(e, usage=isinstance(e, config_checks.ConfigError))
    return exit_status(summary, args.workdir)


def exit_status(summary: dict, workdir: str) -> int:
    """The process's exit status for a finished or stopped run's summary."""
    if not summary.get("preempted"):
        return 0
    logging.warning("preempted: checkpoint saved at step %d in %s; exiting with status %d "
                    "(rerun the same command to resume)", summary["stopped_at"], workdir,
                    preemption.PREEMPTED_EXIT_CODE)
    return preemption.PREEMPTED_EXIT_CODE


if __name__ == "__main__":
    sys.exit(main())
