"""Connections to the PostgreSQL store: URLs, connecting, fork safety, the writer lock.

Location: ``postgresql://USER@HOST:PORT/DB`` (``postgres://`` and SQLAlchemy's
``postgresql+psycopg://`` too); any libpq parameter may follow as a query string
(``?sslmode=require``). A password in the URL works, but shows nowhere: :func:`safe_url`
is what status and messages print (prefer ``~/.pgpass`` or ``PGPASSWORD``).

**One writer per database**: :mod:`ingest.store.postgres_lock`.

**Forks.** A forked child (Dash background jobs) shares the parent's sockets. Closing an
inherited connection there sends libpq's Terminate on the PARENT's session and ends it
(with the writer lock). :func:`orphan` keeps inherited connections referenced for the
child's life, never closed, never used; the child opens its own.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from urllib.parse import urlsplit, urlunsplit

import psycopg

from ingest.store.interface import StoreUnavailable
from ingest.store.postgres_lock import WRITER_LOCK, WriterHeld, take_writer_lock

__all__ = ["WRITER_LOCK", "OwnSession", "WriterHeld", "close_in", "connect", "live",
           "orphan", "safe_url", "take_writer_lock"]

_ORPHANS: list = []


def libpq_url(location: str) -> str:
    """The URL libpq reads: ``postgresql+psycopg://`` and ``postgres://`` become
    ``postgresql://``."""
    scheme, rest = location.split("://", 1)
    if scheme.lower().split("+", 1)[0] not in ("postgresql", "postgres"):
        raise StoreUnavailable(f"not a PostgreSQL location: {safe_url(location)}")
    return "postgresql://" + rest


def safe_url(location: str) -> str:
    """The location with any password replaced by ``***`` (for status and messages)."""
    try:
        parts = urlsplit(location)
    except ValueError:
        return "postgresql://<unparsable>"
    if parts.password is None:
        return location
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    netloc = f"{parts.username or ''}:***@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def app_name(role: str) -> str:
    """``application_name`` of our sessions: who holds what, seen from the server."""
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return f"pairs {role} pid {os.getpid()} host {socket.gethostname()} {started}"[:63]


def connect(location: str, *, role: str, readonly: bool = False,
            connect_timeout: int = 10) -> psycopg.Connection:
    """An autocommit connection (transactions are explicit: ``conn.transaction()``).
    ``readonly`` sessions refuse writes at the server. Connection failures become
    :class:`StoreUnavailable` naming the server (never its password)."""
    kwargs: dict = {"autocommit": True, "connect_timeout": connect_timeout,
                    "application_name": app_name(role)}
    if readonly:
        kwargs["options"] = "-c default_transaction_read_only=on"
    try:
        return psycopg.connect(libpq_url(location), **kwargs)
    except psycopg.Error as exc:  # unreachable, refused, bad credentials, a bad URL
        reason = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
        for text in (libpq_url(location), location):  # libpq may quote it, password too
            reason = reason.replace(text, safe_url(location))
        raise StoreUnavailable(
            f"cannot connect to PostgreSQL at {safe_url(location)}: {reason}") from None


def live(conn):
    """``conn`` if its session still answers (one round trip, ~0.05 ms here), else None
    (closed after a failure, so the caller connects anew). For the dataset and alert
    stores' single sessions: an idle session the server dropped (a restart, an admin)
    cannot know it until used, and their calls are rare enough to pay the check."""
    if conn is None or conn.closed or conn.broken:
        return None
    try:
        conn.execute("SELECT 1")
        return conn
    except psycopg.Error:
        conn.close()
        return None


def close_in(conn, pid: int) -> None:
    """Close ``conn`` if this is the process ``pid`` that opened it; in a forked child
    (no ``reset_after_fork`` called) park it instead (closing would end the parent's
    session)."""
    if conn is None:
        return
    if os.getpid() == pid:
        conn.close()
    else:
        orphan(conn)


def orphan(conn) -> None:
    """In a forked child: never close nor use ``conn`` (the parent's session)."""
    if conn is not None:
        _ORPHANS.append(conn)


class OwnSession:
    """Mixin of a store with ONE session of its own, guarded by ``_lock`` (the dataset
    and alert stores: their calls are rare and tiny). The session is checked before
    use and replaced when the server dropped it (:func:`live`); a forked child parks
    the parent's (:func:`orphan`) and connects anew; ``close`` never ends a parent's.
    """

    _role = "store"  # application_name of the session, seen from the server

    def _init_session(self, location: str, *, readonly: bool = False) -> None:
        self._location = location
        self._session_readonly = readonly
        self._lock = threading.Lock()
        self._conn = None
        self._pid = os.getpid()

    def _connection(self):
        """The live session (the caller holds ``_lock``)."""
        self._conn = conn = live(self._conn) or connect(
            self._location, role=self._role, readonly=self._session_readonly)
        return conn

    def reset_after_fork(self) -> None:
        orphan(self._conn)
        self._conn = None
        self._lock = threading.Lock()
        self._pid = os.getpid()

    def _close_session(self) -> None:
        """Close the session (the caller holds ``_lock``)."""
        close_in(self._conn, self._pid)
        self._conn = None
