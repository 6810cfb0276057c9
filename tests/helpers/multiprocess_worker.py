"""One process of a multi-process tiny run on localhost (started by test_multiprocess).

    python tests/helpers/multiprocess_worker.py ID NUM_PROCESSES PORT WORKDIR JOB [section.key=VALUE]...

JOB `validate` scores the params export in WORKDIR/export on the validation
set. JOB `train` trains `tests.helpers.common.tiny_config()` (BFT stage, the
overrides applied) with the other processes, writes the final (or preempted) parameters to
`WORKDIR/params_{PROCESS_ID}.npz` and the summary to
`WORKDIR/summary_{PROCESS_ID}.json`, and exits as `livt_jax.main` would.
With CHECK_RESTORE=1 it first writes the parameters of WORKDIR's latest
checkpoint, as `checkpoint.restore_latest` reads them here, to
`WORKDIR/restored_{PROCESS_ID}.npz`.
"""

import ast
import json
import os
import sys

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def restored_state(workdir: str):
    """`(state dict, step, next data index)` of `workdir`'s latest checkpoint, restored
    by `checkpoint.restore_latest` onto this process's first device."""
    import grain
    import orbax.checkpoint as ocp

    from livt_jax import checkpoint
    manager = checkpoint.make_manager(os.path.join(workdir, "checkpoints"), save_every_steps=1,
                                      keep=1, keep_best=False)
    step = manager.latest_step()
    stored = ocp.StandardCheckpointer().metadata(
        os.path.join(workdir, "checkpoints", str(step), "state")).item_metadata
    iterator = iter(grain.MapDataset.range(1000).to_iter_dataset())
    state, step = checkpoint.restore_latest(manager, checkpoint.on_one_device(stored), iterator)
    manager.close()
    return state, step, grain.experimental.get_next_index(iterator)


def validate(process_id: int, workdir: str) -> None:
    from livt_jax.experiments import validation
    from tests.helpers.common import tiny_config

    config = tiny_config()
    source = validation.validation_source(config)
    result = validation.score_export(config, os.path.join(workdir, "export"), source)
    with open(os.path.join(workdir, f"validation_{process_id}.json"), "w", encoding="utf-8") as f:
        json.dump(result, f)
    print(f"process {process_id}: {jax.process_count()} processes, "
          f"{jax.device_count()} devices, val top1 {result['top1']:.2f}")


def main(process_id: int, num_processes: int, port: int, workdir: str, job: str,
         overrides: list[str]):
    jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}",
                               num_processes=num_processes, process_id=process_id,
                               initialization_timeout=60)
    if job == "validate":
        return validate(process_id, workdir)
    from jax.experimental import multihost_utils

    from livt_jax import main as main_lib, train
    from tests.helpers.common import tiny_config

    config = tiny_config()
    config.stage = "finetune"
    for override in overrides:
        key, value = override.split("=", 1)
        section, name = key.split(".") if "." in key else (None, key)
        target = config[section] if section else config
        target[name] = ast.literal_eval(value)
    print(f"process {process_id}: {jax.process_count()} processes, "
          f"{jax.device_count()} devices", flush=True)
    if os.environ.get("CHECK_RESTORE") == "1":
        state, step, next_index = restored_state(workdir)
        leaves = [np.asarray(x) for x in jax.tree_util.tree_leaves(state["params"])]
        np.savez(os.path.join(workdir, f"restored_{process_id}.npz"), *leaves)
        print(f"process {process_id}: restored step {step}, next batch {next_index}", flush=True)
    summary = train.train_and_evaluate(config, workdir)
    params = multihost_utils.process_allgather(summary["state"].params, tiled=True)
    leaves = [np.asarray(x) for x in jax.tree_util.tree_leaves(params)]
    np.savez(os.path.join(workdir, f"params_{process_id}.npz"), *leaves)
    record = {k: summary[k] for k in ("stopped_at", "preempted", "final", "total_steps")
              if k in summary}
    with open(os.path.join(workdir, f"summary_{process_id}.json"), "w", encoding="utf-8") as f:
        json.dump(record, f, default=float)
    print(f"process {process_id}: {record}", flush=True)
    sys.exit(main_lib.exit_status(summary, workdir))


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5],
         sys.argv[6:])
