"""Subprocesses for end-to-end tests: timeouts that hold on a loaded machine, and a timeout
that kills the whole process group (a launcher script's python, a worker's children).

`scaled(seconds)` stretches a timeout chosen for an idle machine by the load per core
(`os.getloadavg()[0] / os.cpu_count()`, at least 1; a suite on 2 cores under load 9 gets
4.5×) and by `LIVT_TEST_TIMEOUT_SCALE` (default 1) for slower machines still.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from typing import Sequence


def load_factor() -> float:
    """Runnable processes per core over the last minute, at least 1."""
    return max(1.0, os.getloadavg()[0] / (os.cpu_count() or 1))


def scaled(seconds: float) -> float:
    """``seconds`` (enough on an idle machine) times the load factor and LIVT_TEST_TIMEOUT_SCALE."""
    return seconds * load_factor() * float(os.environ.get("LIVT_TEST_TIMEOUT_SCALE", "1"))


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL to ``proc``'s process group (started with ``start_new_session=True``), and to
    ``proc`` itself in case it leads no group."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    if proc.poll() is None:
        proc.kill()


def popen(args: Sequence[str], **kwargs) -> subprocess.Popen:
    """`subprocess.Popen` in a process group of its own (for `communicate`'s kill)."""
    return subprocess.Popen(args, start_new_session=True, **kwargs)


def communicate(proc: subprocess.Popen, timeout: float, data=None) -> tuple:
    """``proc.communicate(data)`` within ``scaled(timeout)`` s; past it the whole group is
    killed and TimeoutExpired raised."""
    try:
        return proc.communicate(data, timeout=scaled(timeout))
    except subprocess.TimeoutExpired:
        kill_group(proc)
        proc.communicate()
        raise


def run(args: Sequence[str], *, timeout: float, **kwargs) -> subprocess.CompletedProcess:
    """`subprocess.run` with ``scaled(timeout)``; a timeout kills the process group.
    Takes `subprocess.run`'s keywords (capture_output, text, check, cwd, env, input, ...)."""
    check = kwargs.pop("check", False)
    data = kwargs.pop("input", None)
    if kwargs.pop("capture_output", False):
        kwargs["stdout"] = kwargs["stderr"] = subprocess.PIPE
    if data is not None:
        kwargs["stdin"] = subprocess.PIPE
    with popen(args, **kwargs) as proc:
        out, err = communicate(proc, timeout, data)
    result = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    if check:
        result.check_returncode()
    return result


REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run_module(module: str, *args, timeout: float = 600) -> subprocess.CompletedProcess:
    """`python -m MODULE ARGS...` from the repository on the CPU, output captured as text."""
    return run([sys.executable, "-m", module, *map(str, args)], cwd=REPO, capture_output=True,
               text=True, timeout=timeout, env={**os.environ, "JAX_PLATFORMS": "cpu"})


def run_train(tmp_path, *overrides, config: str = "configs/demo.py", devices: int = 8
              ) -> subprocess.CompletedProcess:
    """`python -m livt_jax.main --config CONFIG --workdir TMP/run OVERRIDES...` on `devices`
    fake CPU devices, output captured as text."""
    return run([sys.executable, "-m", "livt_jax.main", "--config", config,
                "--workdir", str(tmp_path / "run"), *overrides],
               cwd=REPO, capture_output=True, text=True, timeout=600,
               env={**os.environ, "JAX_PLATFORMS": "cpu",
                    "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"})


def one_error_line(result: subprocess.CompletedProcess, status: int = 2) -> str:
    """The command's only stderr line, `error: ...`, after exit status `status`."""
    assert result.returncode == status, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]
