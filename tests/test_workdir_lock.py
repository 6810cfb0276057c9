"""One run per workdir: a second run is refused naming the lock's holder, a lock of a dead
process (or one whose heartbeat is old) is taken over, and the lock goes when the run ends."""

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from livt_jax import workdir_lock
from livt_jax.workdir_lock import LOCK_FILE, WorkdirLockedError
from tests.helpers import procs

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def snapshot(folder):
    """{relative path: (size, mtime_ns)} of everything under `folder`."""
    return {os.path.relpath(os.path.join(root, name), folder): os.stat(os.path.join(root, name))[6:9:2]
            for root, _, names in os.walk(folder) for name in names}


def write_lock(workdir, host, pid):
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, LOCK_FILE), "w", encoding="utf-8") as f:
        json.dump({"host": host, "pid": pid, "started": "earlier"}, f)


def dead_pid():
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_second_run_is_refused_naming_the_holder_and_the_lock_goes_at_the_end(tmp_path):
    workdir = str(tmp_path / "run")
    with workdir_lock.hold(workdir):
        lock = json.loads((tmp_path / "run" / LOCK_FILE).read_text())
        assert lock["host"] == socket.gethostname() and lock["pid"] == os.getpid()
        with pytest.raises(WorkdirLockedError, match=rf"in use by another run \({socket.gethostname()} "
                                                      rf"pid {os.getpid()}"):
            workdir_lock.acquire(workdir)
    assert not (tmp_path / "run" / LOCK_FILE).exists()


def test_lock_of_a_dead_process_on_this_host_is_taken_over(tmp_path):
    workdir = str(tmp_path / "run")
    write_lock(workdir, socket.gethostname(), dead_pid())
    with workdir_lock.hold(workdir):
        assert json.loads((tmp_path / "run" / LOCK_FILE).read_text())["pid"] == os.getpid()
    assert os.listdir(workdir) == []  # no stray renamed lock


def test_lock_from_another_host_is_live_until_its_heartbeat_is_old(tmp_path):
    workdir = str(tmp_path / "run")
    write_lock(workdir, "other-host", 1)
    with pytest.raises(WorkdirLockedError, match="other-host pid 1"):
        workdir_lock.acquire(workdir)
    old = time.time() - workdir_lock.STALE_AFTER_S - 60
    os.utime(os.path.join(workdir, LOCK_FILE), (old, old))
    assert workdir_lock.acquire(workdir).endswith(LOCK_FILE)


def _main(args, **kwargs):
    return subprocess.Popen([sys.executable, "-m", "livt_jax.main", *args], cwd=REPO,
                            env={**os.environ, "JAX_PLATFORMS": "cpu"}, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)


@pytest.mark.e2e
def test_two_trainings_in_one_workdir_the_second_exits_1_and_changes_nothing(tmp_path):
    workdir = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from livt_jax import workdir_lock\n"
         f"with workdir_lock.hold({str(workdir)!r}):\n print('held', flush=True); "
         f"time.sleep({procs.scaled(600):.0f})"],
        cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        (workdir / "metrics.jsonl").write_text('{"step": 1}\n')
        before = snapshot(workdir)
        second = _main(["--config", "configs/demo.py", "--workdir", str(workdir),
                        "--config.stage=finetune"])
        _, err = procs.communicate(second, 120)
    finally:
        holder.kill()
        holder.wait()
    assert second.returncode == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and f"pid {holder.pid}" in lines[0] and "in use by another run" in lines[0]
    assert snapshot(workdir) == before
