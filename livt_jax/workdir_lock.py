"""One run per workdir: a lock file naming its holder, with stale-lock detection.

`hold(workdir)` creates `workdir/LOCK_FILE` atomically (`O_CREAT | O_EXCL`)
holding `{"host", "pid", "started"}` and removes it when the run ends. A second
run in the same workdir is refused with a `WorkdirLockedError` naming the
holder, before it writes anything. A lock left by a run that died is not
stuck forever: on the holder's own host it is stale once that pid no longer
exists; from another host (a shared file system) once its heartbeat (the
file's modification time, refreshed every `HEARTBEAT_S` by the holder) is
older than `STALE_AFTER_S`. A stale lock is taken over with a warning.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from typing import Iterator, Optional

from absl import logging

LOCK_FILE = "livt.lock"
HEARTBEAT_S = 60.0
STALE_AFTER_S = 600.0


class WorkdirLockedError(RuntimeError):
    """Another live run holds the workdir."""


def _holder(path: str) -> Optional[dict]:
    """The lock's content, `{}` if unreadable (being written), None if absent."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def stale_reason(path: str, holder: dict, now: float) -> Optional[str]:
    """Why the lock at `path` held by `holder` is stale, or None if it is live."""
    if holder.get("host") == socket.gethostname() and isinstance(holder.get("pid"), int):
        if not _pid_alive(holder["pid"]):
            return f"process {holder['pid']} on this host no longer exists"
        return None
    try:
        age = now - os.path.getmtime(path)
    except FileNotFoundError:
        return "it was just removed"
    if age > STALE_AFTER_S:
        return f"its heartbeat is {age:.0f} s old (> {STALE_AFTER_S:.0f} s)"
    return None


def _create(path: str) -> bool:
    """Creates the lock file naming this process; False if it exists."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump({"host": socket.gethostname(), "pid": os.getpid(),
                   "started": time.strftime("%Y-%m-%d %H:%M:%S %Z")}, f)
    return True


def acquire(workdir: str) -> str:
    """Takes the workdir's lock (creating `workdir`); returns the lock path.

    Raises WorkdirLockedError naming the holder's host, pid and start time.
    """
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, LOCK_FILE)
    for _ in range(3):  # a takeover race with another starting run: try again
        if _create(path):
            return path
        holder = _holder(path)
        if holder is None:
            continue  # released meanwhile
        reason = stale_reason(path, holder, time.time()) if holder else None
        if reason is None:
            who = (f"{holder.get('host')} pid {holder.get('pid')}, started "
                   f"{holder.get('started')}") if holder else "a run that is starting"
            raise WorkdirLockedError(
                f"workdir {workdir!r} is in use by another run ({who}); wait for it to end, "
                f"use another --workdir, or delete {path} if that run is gone")
        logging.warning("taking over the stale lock %s (%s): %s", path, holder, reason)
        aside = f"{path}.stale.{os.getpid()}"
        with contextlib.suppress(FileNotFoundError):
            os.replace(path, aside)
            os.remove(aside)
    raise WorkdirLockedError(f"could not take the lock {path}: other runs keep taking it")


class _Heartbeat(threading.Thread):
    """Touches the lock file every `HEARTBEAT_S` so other hosts see it live."""

    def __init__(self, path: str):
        super().__init__(daemon=True, name="workdir-lock-heartbeat")
        self.path = path
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(HEARTBEAT_S):
            with contextlib.suppress(OSError):
                os.utime(self.path)


@contextlib.contextmanager
def hold(workdir: str, enabled: bool = True) -> Iterator[None]:
    """Holds the workdir's lock for the `with` body (`enabled=False`: no lock,
    e.g. on processes other than 0 of a multi-host run)."""
    if not enabled:
        yield
        return
    if "://" in workdir:
        logging.warning("no workdir lock on %s (only local and mounted paths are locked)",
                        workdir)
        yield
        return
    path = acquire(workdir)
    heartbeat = _Heartbeat(path)
    heartbeat.start()
    try:
        yield
    finally:
        heartbeat.stopped.set()
        if (_holder(path) or {}).get("pid") == os.getpid():  # not taken over meanwhile
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
