"""Exclusive writer lock on a run directory: one process writes a run at a time.

The lock is `fcntl.flock` on DIR/.lock, which the kernel drops when its holder exits in any way
(kill -9 included), so a lock is never stale in the kernel's eyes. The file also records the
holder (pid, host, start time) for the refusal message; a record left behind by a holder that
died without releasing is reported (pid checked on this host) and replaced.
"""

from __future__ import annotations

import datetime
import fcntl
import json
import os
import socket
import warnings
from pathlib import Path
from typing import Any

__all__ = ["RunLock", "RunLockedError"]

LOCK_NAME = ".lock"


class RunLockedError(RuntimeError):
    """Another process holds the run directory's lock (a refused state, exit code 2)."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _describe(holder: dict[str, Any]) -> str:
    return (f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')}, "
            f"started {holder.get('started', '?')}")


class RunLock:
    """The lock of run directory `path` (created if missing). Use as a context manager or call
    `acquire` / `release`; acquiring never waits: a held lock raises `RunLockedError`."""

    def __init__(self, path: str | Path):
        self.dir = Path(path)
        self.file = self.dir / LOCK_NAME
        self._fd: int | None = None

    def _read_holder(self, fd: int) -> dict[str, Any]:
        os.lseek(fd, 0, os.SEEK_SET)
        text = os.read(fd, 4096).decode(errors="replace").strip()
        if not text:
            return {}
        try:
            holder = json.loads(text)
        except json.JSONDecodeError:
            return {"pid": "?", "host": "?", "started": f"(unreadable record {text[:40]!r})"}
        return holder if isinstance(holder, dict) else {}

    def acquire(self) -> None:
        """Take the lock or raise `RunLockedError` naming the holder; a record left by a holder
        that died is reported with a warning and replaced."""
        self.dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.file, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self._read_holder(fd)
            os.close(fd)
            raise RunLockedError(
                f"{self.dir} is being written by another process ({_describe(holder)}); "
                f"wait for it to finish or stop it, or use another output directory"
            ) from None
        stale = self._read_holder(fd)
        if stale:
            here = stale.get("host") == socket.gethostname()
            pid = stale.get("pid")
            alive = here and isinstance(pid, int) and pid != os.getpid() and _pid_alive(pid)
            state = ("still running but no longer holds it" if alive else
                     "not running" if here else "on another host")
            warnings.warn(f"{self.dir}: taking over the lock left by {_describe(stale)} "
                          f"({state}; it ended without releasing the lock)", stacklevel=2)
        record = {"pid": os.getpid(), "host": socket.gethostname(),
                  "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")}
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, (json.dumps(record) + "\n").encode())
        os.fsync(fd)
        self._fd = fd

    def release(self) -> None:
        """Clear the holder record and drop the lock (the file stays: deleting it would race
        with a process opening it)."""
        if self._fd is None:
            return
        os.ftruncate(self._fd, 0)
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
