"""Read-only PostgreSQL sessions shared by the threads that read a store.

The web server runs every request in a thread of its own. SQLite opens a file per
reading thread for next to nothing; a PostgreSQL session costs a server process and an
authentication: ~6 ms to open here, against ~0.05 ms for a query on an open one. So a
read borrows an idle session for the duration of one method and gives it back; at most
``keep`` idle sessions stay open (a burst of concurrent reads opens more, closed when
given back). A session the server dropped is noticed when borrowed or given back and
replaced. Nothing here is ever closed from a forked child (see
:mod:`ingest.store.postgres_conn`): :meth:`reset_after_fork` parks the parent's sessions.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import psycopg

from ingest.store.postgres_conn import connect, orphan

__all__ = ["ReaderPool"]


class ReaderPool:
    """Idle read-only sessions of one database (``session()`` borrows one)."""

    def __init__(self, location: str, *, keep: int = 8) -> None:
        self._location = location
        self._keep = int(keep)
        self._idle: list = []
        self._lock = threading.Lock()
        self._closed = False
        self._pid = os.getpid()

    @contextmanager
    def session(self) -> Iterator:
        """A read-only session for one read (autocommit: each statement sees what is
        committed when it starts)."""
        conn = self._take()
        try:
            yield conn
        finally:
            self._give(conn)

    def run(self, read: Callable):
        """``read(conn)`` on a pooled session; once more on a new session when the
        pooled one turns out dead (the server restarted, an admin ended it: an idle
        session cannot know until it is used). Reads only: running one twice is safe."""
        conn = self._take(fresh=False)
        try:
            return read(conn)
        except psycopg.OperationalError:
            if not conn.broken:
                raise
        finally:
            self._give(conn)
        conn = self._take(fresh=True)
        try:
            return read(conn)
        finally:
            self._give(conn)

    def _take(self, *, fresh: bool = False):
        with self._lock:
            if self._closed:
                raise RuntimeError("the store is closed")
            while self._idle and not fresh:
                conn = self._idle.pop()
                if not (conn.closed or conn.broken):
                    return conn
        return connect(self._location, role="reader", readonly=True)

    def _give(self, conn) -> None:
        if not (conn.closed or conn.broken) and os.getpid() == self._pid:
            with self._lock:
                if not self._closed and len(self._idle) < self._keep:
                    self._idle.append(conn)
                    return
        if os.getpid() == self._pid:
            conn.close()

    @property
    def idle(self) -> int:
        return len(self._idle)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        if os.getpid() == self._pid:
            for conn in idle:
                conn.close()

    def reset_after_fork(self) -> None:
        """In a forked child: park the parent's sessions (never closed or used here)."""
        for conn in self._idle:
            orphan(conn)
        self._idle = []
        self._lock = threading.Lock()
        self._pid = os.getpid()
