"""Command line: `python -m livt_jax.main --config configs/demo.py --workdir DIR [--config.k=v]`.

A thin shell around `train.train_and_evaluate`; the config file is Python
(`get_config(arg)`), locked, so a misspelt override is an error naming the key.
"""

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Config file (configs/<dataset>.py[:arg]).", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and plots.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    config = _CONFIG.value
    import jax
    if config.multihost:
        jax.distributed.initialize()
    from livt_jax import train
    logging.info("JAX %s, %d processes, %d devices (%s)", jax.__version__, jax.process_count(),
                 jax.device_count(), jax.devices()[0].device_kind)
    train.train_and_evaluate(config, _WORKDIR.value)


if __name__ == "__main__":
    app.run(main)
