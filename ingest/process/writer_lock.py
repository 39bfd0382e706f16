"""One writer per database: an exclusive ``flock`` on ``<db>.writer.lock``.

Two ingesting processes on one SQLite file would both store trades and bars with no
warning (each believes its bars are the bars). The ingesting process (``app.py``,
``python -m ingest``) takes this lock before it opens the store for writing and keeps
it until it stops; a second one fails at start with a message naming the holder (pid,
host, start time, command line, written into the lock file). The kernel drops a
``flock`` when its holder dies, even by ``kill -9``, so a stale lock file never blocks
a restart. ``--no-ingest`` readers take no lock.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path


class WriterLockHeld(RuntimeError):
    """Another live process is the writer of this database."""

    def __init__(self, db: str, holder: dict) -> None:
        who = ", ".join(f"{k} {v}" for k, v in holder.items()) or "unknown process"
        super().__init__(
            f"database {db} is already being written by another process ({who}); "
            f"stop it, use another --db, or follow it read-only with --no-ingest"
        )
        self.holder = holder


def lock_path(db: str | Path) -> Path:
    return Path(f"{db}.writer.lock")


class WriterLock:
    """``acquire()`` or raise :class:`WriterLockHeld`; ``release()`` at stop."""

    def __init__(self, db: str | Path) -> None:
        self.db = str(db)
        self.path = lock_path(db)
        self._fd: int | None = None

    def acquire(self) -> WriterLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise WriterLockHeld(self.db, holder) from None
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "cmd": " ".join(sys.argv)[:200],
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            try:
                os.ftruncate(fd, 0)
            finally:
                os.close(fd)  # closing the descriptor drops the flock


def _read_holder(fd: int) -> dict:
    try:
        return json.loads(os.pread(fd, 4096, 0) or b"{}")
    except (OSError, ValueError):
        return {}


def forget_in_child(lock: WriterLock | None) -> None:
    """In a forked child: close the inherited descriptor (the parent keeps the lock)."""
    if lock is not None and lock._fd is not None:
        os.close(lock._fd)
        lock._fd = None
