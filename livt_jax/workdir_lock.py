"""One run per workdir: a lock naming its holder, with stale-lock detection, on a
local (or mounted) folder and in a ``gs://`` bucket alike.

`hold(workdir)` creates `workdir/LOCK_FILE` atomically holding
`{"host", "pid", "started"}` and removes it when the run ends: locally with
`O_CREAT | O_EXCL`; in a bucket with an upload conditioned on the object not
existing (GCS `ifGenerationMatch=0`), so of two hosts or jobs starting at once
exactly one gets it. A second run in the same workdir is refused with a
`WorkdirLockedError` naming the holder, before it writes anything.

A lock left by a run that died is not stuck forever: on the holder's own host
it is stale once that pid no longer exists; from another host once its
heartbeat (the file's modification time, or the object's update time, refreshed
every `HEARTBEAT_S` by the holder) is older than `STALE_AFTER_S`. A stale lock is
taken over with a warning; in a bucket the takeover is an upload conditioned on
the stale object's generation, so of two runs taking over at once one wins. A
holder whose heartbeat finds its object replaced logs an error (it lost the lock).
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

from livt_jax import paths

LOCK_FILE = "livt.lock"
HEARTBEAT_S = 60.0
STALE_AFTER_S = 600.0


class WorkdirLockedError(RuntimeError):
    """Another live run holds the workdir."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def _parse(data: bytes) -> dict:
    """The lock's content; `{}` if unreadable (being written)."""
    try:
        holder = json.loads(data)
    except ValueError:
        return {}
    return holder if isinstance(holder, dict) else {}


def stale_reason(holder: dict, heartbeat: Optional[float], now: float) -> Optional[str]:
    """Why a lock held by `holder`, last refreshed at `heartbeat` (seconds since the
    epoch; None: it was just removed), is stale, or None if it is live."""
    if holder.get("host") == socket.gethostname() and isinstance(holder.get("pid"), int):
        if not _pid_alive(holder["pid"]):
            return f"process {holder['pid']} on this host no longer exists"
        return None
    if heartbeat is None:
        return "it was just removed"
    age = now - heartbeat
    if age > STALE_AFTER_S:
        return f"its heartbeat is {age:.0f} s old (> {STALE_AFTER_S:.0f} s)"
    return None


class _FileLock:
    """The lock as a local file; `version` is unused (None)."""

    def __init__(self, workdir: str):
        os.makedirs(workdir, exist_ok=True)
        self.path = os.path.join(workdir, LOCK_FILE)

    def create(self, content: bytes) -> bool:
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as f:
            f.write(content)
        return True

    def read(self) -> tuple[Optional[dict], Optional[float], None]:
        """(holder or None if absent, heartbeat time, version)."""
        try:
            with open(self.path, "rb") as f:
                holder = _parse(f.read())
            return holder, os.path.getmtime(self.path), None
        except FileNotFoundError:
            return None, None, None
        except OSError:
            return {}, None, None

    def take_over(self, version: None, content: bytes) -> bool:
        aside = f"{self.path}.stale.{os.getpid()}"
        with contextlib.suppress(FileNotFoundError):
            os.replace(self.path, aside)
            os.remove(aside)
        return self.create(content)

    def heartbeat(self) -> None:
        with contextlib.suppress(OSError):
            os.utime(self.path)

    def release(self) -> None:
        holder, _, _ = self.read()
        if (holder or {}).get("pid") == os.getpid():  # not taken over meanwhile
            with contextlib.suppress(FileNotFoundError):
                os.remove(self.path)


class _ObjectLock:
    """The lock as a GCS object; `version` is its generation."""

    def __init__(self, workdir: str):
        from livt_jax import gcs  # pylint: disable=import-outside-toplevel
        self.gcs = gcs
        paths.makedirs(workdir)
        self.path = paths.join(workdir, LOCK_FILE)
        self.generation, self.content = None, b""

    def create(self, content: bytes) -> bool:
        return self.take_over(0, content)

    def read(self) -> tuple[Optional[dict], Optional[float], Optional[int]]:
        # Generation first: content of a newer generation only makes a takeover fail.
        with paths.storage_errors(self.path, "a workdir lock"):
            stat = self.gcs.stat(self.path)
            if stat is None:
                return None, None, None
            try:
                return _parse(paths.read_bytes(self.path)), stat.updated, stat.generation
            except paths.StorageError:
                if self.gcs.stat(self.path) is None:
                    return None, None, None
                raise

    def take_over(self, version: int, content: bytes) -> bool:
        with paths.storage_errors(self.path, "a workdir lock"):
            try:
                self.generation = self.gcs.write_if_generation(self.path, content, version)
            except FileExistsError:  # created or replaced by another run meanwhile
                return False
        self.content = content
        return True

    def heartbeat(self) -> None:
        try:
            self.generation = self.gcs.write_if_generation(self.path, self.content, self.generation)
        except FileExistsError:
            logging.error("the workdir lock %s was taken over by another run: this run no "
                          "longer holds its workdir", self.path)
        except Exception as e:  # pylint: disable=broad-except  (retried at the next beat)
            logging.warning("workdir lock heartbeat failed: %s", e)

    def release(self) -> None:
        stat = self.gcs.stat(self.path)
        if stat is None or stat.generation != self.generation:  # taken over meanwhile
            return
        with contextlib.suppress(FileExistsError, FileNotFoundError):  # ... just now
            self.gcs.delete_if_generation(self.path, self.generation)


def _lock(workdir: str):
    return _ObjectLock(workdir) if paths.is_url(workdir) else _FileLock(workdir)


def _content() -> bytes:
    return json.dumps({"host": socket.gethostname(), "pid": os.getpid(),
                       "started": time.strftime("%Y-%m-%d %H:%M:%S %Z")}).encode()


def _acquire(workdir: str):
    """Takes the workdir's lock; returns the lock object. Raises WorkdirLockedError
    naming the holder's host, pid and start time."""
    lock, content = _lock(workdir), _content()
    for _ in range(3):  # a takeover race with another starting run: try again
        if lock.create(content):
            return lock
        holder, heartbeat, version = lock.read()
        if holder is None:
            continue  # released meanwhile
        reason = stale_reason(holder, heartbeat, time.time()) if holder else None
        if reason is None:
            who = (f"{holder.get('host')} pid {holder.get('pid')}, started "
                   f"{holder.get('started')}") if holder else "a run that is starting"
            raise WorkdirLockedError(
                f"workdir {workdir!r} is in use by another run ({who}); wait for it to end, "
                f"use another --workdir, or delete {lock.path} if that run is gone")
        logging.warning("taking over the stale lock %s (%s): %s", lock.path, holder, reason)
        if lock.take_over(version, content):
            return lock
    raise WorkdirLockedError(f"could not take the lock {lock.path}: other runs keep taking it")


def acquire(workdir: str) -> str:
    """Takes the workdir's lock (creating a local `workdir`); returns the lock path."""
    return _acquire(workdir).path


class _Heartbeat(threading.Thread):
    """Refreshes the lock every `HEARTBEAT_S` so other hosts see it live."""

    def __init__(self, lock):
        super().__init__(daemon=True, name="workdir-lock-heartbeat")
        self.lock = lock
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(HEARTBEAT_S):
            self.lock.heartbeat()


@contextlib.contextmanager
def hold(workdir: str, enabled: bool = True) -> Iterator[None]:
    """Holds the workdir's lock for the `with` body (`enabled=False`: no lock,
    e.g. on processes other than 0 of a multi-host run)."""
    if not enabled:
        yield
        return
    lock = _acquire(workdir)
    heartbeat = _Heartbeat(lock)
    heartbeat.start()
    try:
        yield
    finally:
        heartbeat.stopped.set()
        heartbeat.join()
        lock.release()
