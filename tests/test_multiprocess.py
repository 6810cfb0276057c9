"""Two JAX processes (2 CPU devices each, gloo collectives) train and evaluate together
on localhost."""

import json
import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from livt_jax import checkpoint
from livt_jax.config_lib import stage_image_size
from livt_jax.experiments import validation
from livt_jax.models import factory
from tests.test_train import tiny_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_two_processes(job: str, workdir) -> None:
    """Runs `tests/multiprocess_worker.py` as processes 0 and 1 of one JAX job."""
    port = _free_port()
    env = {**os.environ, "JAX_PLATFORMS": "cpu",
           "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    procs = [subprocess.Popen(
        ["timeout", "240", sys.executable, "tests/multiprocess_worker.py", str(i), str(port),
         str(workdir), job], cwd=REPO, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True) for i in range(2)]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    for p, out in zip(procs, outputs):
        assert p.returncode == 0, out[-3000:]
    assert all("2 processes, 4 devices" in out for out in outputs)


def test_two_processes_train_to_identical_parameters(tmp_path):
    _run_two_processes("train", tmp_path)
    first, second = (np.load(tmp_path / f"params_{i}.npz") for i in range(2))
    assert len(first.files) == len(second.files) > 10
    for key in first.files:
        np.testing.assert_array_equal(first[key], second[key])
        assert np.all(np.isfinite(first[key]))


def test_two_processes_validate_like_one(tmp_path):
    """The validation study's scores on 2 processes (each reading its shard of the
    set, half the eval batch) equal those of 1 process over 8 devices."""
    pytest.importorskip("animal_mnist")
    config = tiny_config()
    model = factory.build_vit(config, 10, stage_image_size(config, "finetune"), drop_path=0.0)
    params = jax.device_get(model.init(jax.random.key(0), np.zeros((1, 28, 28, 1)),
                                       train=False)["params"])
    # A head of std 1 (not the init's 2e-5) gives logits with clear winners.
    params["head"]["kernel"] = np.random.default_rng(0).normal(
        size=params["head"]["kernel"].shape).astype(np.float32)
    checkpoint.save_params_export(str(tmp_path / "export"), params)
    source = validation.validation_source(config)
    one = validation.evaluate_export(config, str(tmp_path / "export"), source)
    assert one["num_examples"] == len(source) > 0

    _run_two_processes("validate", tmp_path)
    for i in range(2):
        with open(tmp_path / f"validation_{i}.json", encoding="utf-8") as f:
            two = json.load(f)
        assert two["num_examples"] == len(source)  # each image counted once
        assert two.keys() == one.keys()
        for key, value in one.items():
            assert two[key] == pytest.approx(value, abs=1e-6), key
