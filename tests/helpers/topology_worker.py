"""The one-device side of test_topology: runs in a process with a single CPU device.

    python tests/helpers/topology_worker.py EIGHT_DEVICE_RUN OUT_DIR

Reads what an 8-device run wrote in EIGHT_DEVICE_RUN (`export/`, and the
train-state checkpoint in `stopped/`) through every user path, and writes
one-device artifacts for the 8-device side to read, all under OUT_DIR.
"""

import json
import os
import sys

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from livt_jax import checkpoint, train  # noqa: E402
from livt_jax.tools import convert  # noqa: E402
from tests.helpers.common import tiny_config  # noqa: E402


def flat_params(params) -> dict[str, np.ndarray]:
    """{'block/kernel': array}: a params tree as named numpy arrays."""
    flat = jax.tree_util.tree_flatten_with_path(jax.device_get(params))[0]
    return {"/".join(k.key for k in path): np.asarray(v) for path, v in flat}


def finetune_config(**changes):
    config = tiny_config(**{"finetune.epochs": 0.3})
    config.stage = "finetune"
    for key, value in changes.items():
        section, name = key.split(".") if "." in key else (None, key)
        (config[section] if section else config)[name] = value
    return config


def read_everything(export: str, out: str, tag: str) -> dict:
    """The export through load_params_export (no target), eval, init_from and to-torch."""
    np.savez(os.path.join(out, f"{tag}_loaded.npz"),
             **flat_params(checkpoint.load_params_export(export)))
    scored = train.train_and_evaluate(
        finetune_config(stage="eval", **{"eval.params_from": export}),
        os.path.join(out, f"{tag}_eval"))
    started = train.train_and_evaluate(
        finetune_config(stop_after_steps=1, **{"finetune.init_from": export,
                                               "finetune.init_kind": "vit"}),
        os.path.join(out, f"{tag}_init_from"))
    assert started["stopped_at"] == 1
    assert convert.main(["to-torch", export, os.path.join(out, f"{tag}.pth")]) == 0
    return scored["final"]


def main(eight: str, out: str) -> None:
    assert jax.device_count() == 1, jax.devices()
    results = {"eval_of_8": read_everything(os.path.join(eight, "export"), out, "from8")}
    # The 8-device checkpoint resumes here; stop again so that the 8-device side
    # resumes a checkpoint written on one device.
    stopped = train.train_and_evaluate(finetune_config(stop_after_steps=7),
                                       os.path.join(eight, "stopped"))
    results["resumed_8_stopped_at"] = stopped["stopped_at"]
    # A whole run on one device: its export is for the 8-device side.
    summary = train.train_and_evaluate(finetune_config(), os.path.join(out, "run1"))
    np.savez(os.path.join(out, "run1_params.npz"), **flat_params(summary["state"].params))
    results["run1_final"] = summary["final"]
    with open(os.path.join(out, "results.json"), "w", encoding="utf-8") as f:
        json.dump(results, f, default=float)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
