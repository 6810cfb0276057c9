"""Command line: `python -m livt_jax.main --config configs/demo.py --workdir DIR [--config.k=v]`.

A thin shell around `train.train_and_evaluate`; the config file is Python
(`get_config(arg)`), locked, so a misspelt override is an error naming the key.
"""

import os

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from livt_jax import paths, train

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Config file (configs/<dataset>.py[:arg]).", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and plots.")
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
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    config = _CONFIG.value
    if not flags.FLAGS["verbosity"].present:  # orbax logs every save at INFO
        logging.set_verbosity(logging.WARNING)
    if config.multihost:
        initialize_distributed(config.distributed)
    logging.info("JAX %s, %d processes, %d devices (%s)", jax.__version__, jax.process_count(),
                 jax.device_count(), jax.devices()[0].device_kind)
    try:
        train.train_and_evaluate(config, _WORKDIR.value)
    except paths.StorageError as e:  # a missing bucket/object or no credentials: one line
        raise SystemExit(f"error: {e}") from None


if __name__ == "__main__":
    app.run(main)
