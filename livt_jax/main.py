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

USAGE_ERROR, RUNTIME_ERROR = 2, 1


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


def _unknown_override(argv: list[str]) -> str | None:
    """The first `--config.KEY=...` of `argv` whose KEY is no leaf of the config."""
    for arg in argv:
        if arg.startswith("--config."):
            key = arg[len("--config."):].split("=", 1)[0]
            if key not in config_lib.KEYS:
                return key
    return None


def parse_flags(argv: list[str]) -> list[str]:
    """absl flag parsing whose errors are one line and exit status 2."""
    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        message = config_lib.config_file_error(e) or str(e)
    except (AttributeError, KeyError) as e:  # config_flags: an override naming no key
        key = _unknown_override(argv)
        message = (config_checks.unknown_key_message(key, list(config_lib.KEYS)) if key
                   else f"bad config override: {e}")
    print(f"error: {message} (see --helpfull)", file=sys.stderr)
    sys.exit(USAGE_ERROR)


def _one_line(error: BaseException) -> str:
    """The error as one line: its message (first lines joined), with its type when
    it is not one of ours."""
    text = " ".join(line.strip() for line in str(error).splitlines() if line.strip())
    text = text if len(text) <= 600 else text[:600] + " ..."
    if isinstance(error, (ValueError, OSError, RuntimeError, FloatingPointError)):
        return text or type(error).__name__
    return f"{type(error).__name__}: {text}"


def main(argv):
    if len(argv) > 1:
        print(f"error: unexpected arguments {argv[1:]}", file=sys.stderr)
        return USAGE_ERROR
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
        usage = isinstance(e, config_checks.ConfigError)
        hint = "" if usage else " (rerun with --traceback for the full traceback)"
        print(f"error: {_one_line(e)}{hint}", file=sys.stderr, flush=True)
        return USAGE_ERROR if usage else RUNTIME_ERROR
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
    console.run(main, __name__, flags_parser=parse_flags)


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
