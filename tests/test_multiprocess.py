"""Two JAX processes (2 CPU devices each, gloo collectives) train together on localhost."""

import os
import socket
import subprocess
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_train_to_identical_parameters(tmp_path):
    port = _free_port()
    env = {**os.environ, "JAX_PLATFORMS": "cpu",
           "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    procs = [subprocess.Popen(
        ["timeout", "240", sys.executable, "tests/multiprocess_worker.py", str(i), str(port),
         str(tmp_path)], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True) for i in range(2)]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    for p, out in zip(procs, outputs):
        assert p.returncode == 0, out[-3000:]
    assert all("2 processes, 4 devices" in out for out in outputs)
    first, second = (np.load(tmp_path / f"params_{i}.npz") for i in range(2))
    assert len(first.files) == len(second.files) > 10
    for key in first.files:
        np.testing.assert_array_equal(first[key], second[key])
        assert np.all(np.isfinite(first[key]))
