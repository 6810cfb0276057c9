"""Several JAX processes (2 CPU devices each, gloo collectives) on localhost: training
together, a coordinated stop on SIGTERM to one of them, resume on another process count."""

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from livt_jax import checkpoint, preemption, train
from livt_jax.config_lib import stage_image_size
from livt_jax.experiments import validation
from livt_jax.models import factory
from tests.helpers import procs as procs_lib
from tests.helpers.multiprocess_worker import restored_state
from tests.helpers.common import tiny_config

pytestmark = [pytest.mark.multiprocess, pytest.mark.e2e]

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STOP_SECONDS = 60  # a SIGTERMed pair must have exited within this


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_workers(workdir, *overrides, num_processes=2, job="train", **env):
    """`num_processes` workers of one run (each under `timeout`), their output piped."""
    port = _free_port()
    env = {**os.environ, "JAX_PLATFORMS": "cpu",
           "XLA_FLAGS": "--xla_force_host_platform_device_count=2", **env}
    limit = str(round(procs_lib.scaled(240)))  # each worker's own limit, stretched under load
    return [procs_lib.popen(
        ["timeout", limit, sys.executable, "tests/helpers/multiprocess_worker.py", str(i),
         str(num_processes), str(port), str(workdir), job, *overrides], cwd=REPO, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for i in range(num_processes)]


def finish(procs, expected_status=0):
    outputs = [procs_lib.communicate(p, 300)[0] for p in procs]
    for p, out in zip(procs, outputs):
        assert p.returncode == expected_status, out[-3000:]
    return outputs


def load_params(workdir, process_id=0, name="params"):
    with np.load(os.path.join(workdir, f"{name}_{process_id}.npz")) as f:
        return [f[k] for k in sorted(f.files, key=lambda k: int(k.split("_")[1]))]


def load_summary(workdir, process_id=0):
    with open(os.path.join(workdir, f"summary_{process_id}.json"), encoding="utf-8") as f:
        return json.load(f)


def logged_steps(workdir) -> list[int]:
    try:
        with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
            return [json.loads(line)["step"] for line in f if '"loss"' in line]
    except (OSError, ValueError):
        return []


LONG = ("finetune.epochs=1", "checkpoint.save_every_steps=1000")  # 30 steps; only the stop saves
REBUILT = "the data position is rebuilt from the step number"


def long_config():
    """The workers' config, for a run in this (one) process."""
    config = tiny_config(**{"finetune.epochs": 1})
    config.stage = "finetune"
    config.checkpoint.save_every_steps = 1000
    return config


def assert_same_params(a, b):
    assert len(a) == len(b) > 10
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
        assert np.all(np.isfinite(x))


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """An uninterrupted two-process run."""
    workdir = tmp_path_factory.mktemp("straight")
    outputs = finish(start_workers(workdir, *LONG))
    assert all("2 processes, 4 devices" in out for out in outputs)
    return workdir


def test_two_processes_train_to_identical_parameters(straight):
    assert_same_params(load_params(straight, 0), load_params(straight, 1))


def test_sigterm_to_one_process_stops_both_at_one_step_and_resumes_exactly(
        straight, tmp_path, caplog):
    procs = start_workers(tmp_path, *LONG)
    deadline = time.time() + procs_lib.scaled(200)
    while max(logged_steps(tmp_path), default=0) < 3:  # mid-BFT
        assert time.time() < deadline and all(p.poll() is None for p in procs)
        time.sleep(0.05)
    signalled_at = time.time()
    procs[1].send_signal(signal.SIGTERM)  # `timeout` passes it on to the worker
    outputs = finish(procs, preemption.PREEMPTED_EXIT_CODE)
    stop_seconds = time.time() - signalled_at
    assert stop_seconds < procs_lib.scaled(STOP_SECONDS)
    stops = [load_summary(tmp_path, i) for i in range(2)]
    total = load_summary(straight)["total_steps"]
    assert stops[0]["preempted"] and stops[0]["stopped_at"] == stops[1]["stopped_at"] < total
    step = stops[0]["stopped_at"]
    assert sorted(os.listdir(tmp_path / "checkpoints")) == [str(step)]
    assert "preempted: checkpoint saved at step" in outputs[0]
    assert_same_params(load_params(tmp_path, 0), load_params(tmp_path, 1))
    print(f"SIGTERM at step >= 3 of {total}: both stopped at step {step}, "
          f"{stop_seconds:.1f} s after the signal")

    # Resume on one process (2 -> 1): the parameters as saved, the data from the step.
    single = tmp_path.parent / (tmp_path.name + "_on_one")
    shutil.copytree(tmp_path, single)
    state, restored_step, next_index = restored_state(str(single))
    assert restored_step == next_index == step
    assert_same_params([np.asarray(x) for x in jax.tree_util.tree_leaves(state["params"])],
                       load_params(tmp_path))
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        summary = train.train_and_evaluate(long_config(), str(single))
    assert summary["total_steps"] == total and np.isfinite(summary["final"]["top1"])
    assert sum(REBUILT in r.getMessage() for r in caplog.records) == 1

    finish(start_workers(tmp_path, *LONG))  # the same command again
    assert_same_params(load_params(tmp_path), load_params(straight))
    assert load_summary(tmp_path)["final"] == load_summary(straight)["final"]


def test_one_process_checkpoint_resumes_on_two(tmp_path):
    config = long_config()
    config.stop_after_steps = 4
    assert train.train_and_evaluate(config, str(tmp_path))["stopped_at"] == 4
    state, _, _ = restored_state(str(tmp_path))
    saved = [np.asarray(x) for x in jax.tree_util.tree_leaves(state["params"])]
    outputs = finish(start_workers(tmp_path, *LONG, CHECK_RESTORE="1"))
    for i, out in enumerate(outputs):
        assert "restored step 4, next batch 4" in out, out[-3000:]
        assert_same_params(load_params(tmp_path, i, "restored"), saved)
        assert out.count(REBUILT) == 2, out[-3000:]  # the check's restore and the run's
    assert load_summary(tmp_path)["total_steps"] == 30
    assert_same_params(load_params(tmp_path, 0), load_params(tmp_path, 1))


def test_two_processes_validate_like_one(tmp_path):
    """The validation study's scores on 2 processes (each reading its shard of the
    set, half the eval batch) equal those of 1 process over 8 devices."""
    pytest.importorskip("animal_mnist")
    config = tiny_config()
    model = factory.build_vit(config.model, config.data.in_chans, 10,
                              stage_image_size(config, "finetune"), drop_path=0.0)
    params = jax.device_get(model.init(jax.random.key(0), np.zeros((1, 28, 28, 1)),
                                       train=False)["params"])
    # A head of std 1 (not the init's 2e-5) gives logits with clear winners.
    params["head"]["kernel"] = np.random.default_rng(0).normal(
        size=params["head"]["kernel"].shape).astype(np.float32)
    checkpoint.save_params_export(str(tmp_path / "export"), params)
    source = validation.validation_source(config)
    one = validation.score_export(config, str(tmp_path / "export"), source)
    assert one["num_examples"] == len(source) > 0

    outputs = finish(start_workers(tmp_path, job="validate"))
    assert all("2 processes, 4 devices" in out for out in outputs)
    for i in range(2):
        with open(tmp_path / f"validation_{i}.json", encoding="utf-8") as f:
            two = json.load(f)
        assert two["num_examples"] == len(source)  # each image counted once
        assert two.keys() == one.keys()
        for key, value in one.items():
            assert two[key] == pytest.approx(value, abs=1e-6), key
