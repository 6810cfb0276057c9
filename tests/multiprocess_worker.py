"""One of two processes running the tiny demo config together (run by test_multiprocess):
`train` trains BFT; `validate` scores the params export in WORKDIR/export on the
validation set."""

import json
import os
import sys

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def train(process_id: int, workdir: str) -> None:
    from jax.experimental import multihost_utils

    from livt_jax import train as train_lib
    from tests.test_train import tiny_config

    config = tiny_config()
    config.stage = "finetune"
    config.finetune.epochs = 0.3
    summary = train_lib.train_and_evaluate(config, workdir)
    params = multihost_utils.process_allgather(summary["state"].params, tiled=True)
    leaves = [np.asarray(x) for x in jax.tree_util.tree_leaves(params)]
    np.savez(os.path.join(workdir, f"params_{process_id}.npz"), *leaves)
    print(f"process {process_id}: {jax.process_count()} processes, "
          f"{jax.device_count()} devices, top1 {summary['final']['top1']:.2f}")


def validate(process_id: int, workdir: str) -> None:
    from livt_jax.experiments import validation
    from tests.test_train import tiny_config

    config = tiny_config()
    source = validation.validation_source(config)
    result = validation.evaluate_export(config, os.path.join(workdir, "export"), source)
    with open(os.path.join(workdir, f"validation_{process_id}.json"), "w", encoding="utf-8") as f:
        json.dump(result, f)
    print(f"process {process_id}: {jax.process_count()} processes, "
          f"{jax.device_count()} devices, val top1 {result['top1']:.2f}")


def main(process_id: int, port: int, workdir: str, job: str) -> None:
    jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}", num_processes=2,
                               process_id=process_id, initialization_timeout=60)
    {"train": train, "validate": validate}[job](process_id, workdir)


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4])
