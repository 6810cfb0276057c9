"""One of two processes training the tiny demo config together (run by test_multiprocess)."""

import os
import sys

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(process_id: int, port: int, workdir: str) -> None:
    jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}", num_processes=2,
                               process_id=process_id, initialization_timeout=60)
    from jax.experimental import multihost_utils

    from livt_jax import train
    from tests.test_train import tiny_config

    config = tiny_config()
    config.stage = "finetune"
    config.finetune.epochs = 0.3
    summary = train.train_and_evaluate(config, workdir)
    params = multihost_utils.process_allgather(summary["state"].params, tiled=True)
    leaves = [np.asarray(x) for x in jax.tree_util.tree_leaves(params)]
    np.savez(os.path.join(workdir, f"params_{process_id}.npz"), *leaves)
    print(f"process {process_id}: {jax.process_count()} processes, "
          f"{jax.device_count()} devices, top1 {summary['final']['top1']:.2f}")


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3])
