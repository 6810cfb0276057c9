"""tests/procs.py: load-scaled timeouts that kill a command's whole process group."""

import os
import subprocess
import time

import pytest

from tests.helpers import procs


def test_scaled_grows_with_load_and_the_environment(monkeypatch):
    monkeypatch.setattr(os, "getloadavg", lambda: (9.0, 9.0, 9.0))
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert procs.load_factor() == 4.5 and procs.scaled(240) == 1080
    monkeypatch.setenv("LIVT_TEST_TIMEOUT_SCALE", "2")
    assert procs.scaled(240) == 2160
    monkeypatch.setattr(os, "getloadavg", lambda: (0.5, 0.5, 0.5))
    monkeypatch.delenv("LIVT_TEST_TIMEOUT_SCALE")
    assert procs.scaled(240) == 240  # never below the idle-machine value


def test_timeout_kills_the_grandchildren_too(tmp_path, monkeypatch):
    monkeypatch.setattr(procs, "load_factor", lambda: 1.0)
    pid_file = tmp_path / "pid"
    # A launcher that leaves a long-running child behind (as a shell script's python would).
    script = f"sleep 300 & echo $! > {pid_file}; wait"
    start = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired):
        procs.run(["bash", "-c", script], timeout=2, capture_output=True, text=True)
    assert time.monotonic() - start < 60
    grandchild = int(pid_file.read_text())
    time.sleep(0.5)
    assert not alive(grandchild)


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie, killed but not yet reaped, is not alive)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_run_returns_like_subprocess_run():
    out = procs.run(["bash", "-c", "cat; echo err >&2; exit 3"], input="in", timeout=60,
                    capture_output=True, text=True)
    assert (out.returncode, out.stdout, out.stderr) == (3, "in", "err\n")
    with pytest.raises(subprocess.CalledProcessError):
        procs.run(["false"], timeout=60, check=True)
