"""The workdir lock in a bucket (fake-gcs-server on 127.0.0.1): two processes racing for
it, one wins; a stale lock is taken over by exactly one of two racers; heartbeat and
release keep to the holder's own generation."""

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
import uuid

import pytest

from livt_jax import gcs, paths, workdir_lock
from livt_jax.workdir_lock import LOCK_FILE, WorkdirLockedError

pytestmark = [pytest.mark.gcs, pytest.mark.slow]

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Each racer waits for a common start time, then tries to take the lock and holds it
# for 3 s (so the loser meets a live lock, not a released one).
RACER = textwrap.dedent("""
    import sys, time
    from livt_jax import workdir_lock
    workdir_lock.STALE_AFTER_S = float(sys.argv[3])
    time.sleep(max(float(sys.argv[2]) - time.time(), 0))
    try:
        with workdir_lock.hold(sys.argv[1]):
            print("held", flush=True)
            time.sleep(3)
    except workdir_lock.WorkdirLockedError as e:
        print("refused:", e, flush=True)
""")


@pytest.fixture
def workdir(gcs_bucket):
    return f"{gcs_bucket}/{uuid.uuid4().hex[:8]}/run"


def race(workdir: str, stale_after_s: float = 600.0) -> list[tuple[int, str]]:
    """Starts two racer processes at one instant; returns (pid, output) of each."""
    start = time.time() + 4.0  # both interpreters are up by then
    racers = [subprocess.Popen([sys.executable, "-c", RACER, workdir, str(start), str(stale_after_s)],
                               cwd=REPO, env={**os.environ, "PYTHONPATH": REPO}, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
              for _ in range(2)]
    results = []
    for racer in racers:
        out, err = racer.communicate(timeout=120)
        assert racer.returncode == 0, err[-2000:]
        results.append((racer.pid, out.strip()))
    return results


def check_one_winner(results, workdir):
    outputs = sorted(out for _, out in results)
    assert outputs[0] == "held", outputs
    assert outputs[1].startswith(f"refused: workdir {workdir!r} is in use by another run "
                                 f"({socket.gethostname()} pid "), outputs
    winner = next(pid for pid, out in results if out == "held")
    assert f" pid {winner}," in outputs[1]


def test_two_processes_racing_for_a_bucket_workdir_one_wins(workdir):
    check_one_winner(race(workdir), workdir)
    assert not paths.exists(f"{workdir}/{LOCK_FILE}")  # released at the end


def test_two_processes_racing_to_take_over_a_stale_lock_one_wins(workdir):
    paths.write_text(f"{workdir}/{LOCK_FILE}",
                     json.dumps({"host": "gone-host", "pid": 1, "started": "earlier"}))
    time.sleep(1.5)
    check_one_winner(race(workdir, stale_after_s=1.0), workdir)


def test_live_lock_from_another_host_is_refused_then_stale_is_taken_over(workdir, monkeypatch):
    lock = f"{workdir}/{LOCK_FILE}"
    paths.write_text(lock, json.dumps({"host": "other-host", "pid": 7, "started": "earlier"}))
    with pytest.raises(WorkdirLockedError, match="other-host pid 7, started earlier"):
        workdir_lock.acquire(workdir)
    monkeypatch.setattr(workdir_lock, "STALE_AFTER_S", 0.5)
    time.sleep(1.0)
    assert workdir_lock.acquire(workdir) == lock
    assert json.loads(paths.read_text(lock))["pid"] == os.getpid()


def test_heartbeat_refreshes_and_release_spares_a_lock_taken_over(workdir, monkeypatch):
    monkeypatch.setattr(workdir_lock, "HEARTBEAT_S", 0.3)
    lock = f"{workdir}/{LOCK_FILE}"
    with workdir_lock.hold(workdir):
        first = gcs.stat(lock)
        time.sleep(1.2)
        later = gcs.stat(lock)
        assert later.generation != first.generation and later.updated > first.updated
        # Another run takes the lock over (as after judging it stale): ours must survive it.
        gcs.write_if_generation(lock, b'{"host": "thief", "pid": 9}', gcs.stat(lock).generation)
        time.sleep(0.8)  # a heartbeat meets the other generation and leaves it alone
    assert json.loads(paths.read_text(lock))["host"] == "thief"


def test_conditional_writes_hold_on_the_server(workdir):
    """What the lock relies on, checked against the server: create-if-absent and
    replace-if-generation refuse a second writer."""
    url = f"{workdir}/object"
    generation = gcs.write_if_generation(url, b"one", 0)
    with pytest.raises(FileExistsError):
        gcs.write_if_generation(url, b"two", 0)
    with pytest.raises(FileExistsError):
        gcs.write_if_generation(url, b"two", generation + 1)
    assert gcs.write_if_generation(url, b"three", generation) != generation
    assert paths.read_bytes(url) == b"three"
