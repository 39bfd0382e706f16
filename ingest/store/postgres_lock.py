"""One writer per PostgreSQL database: a session advisory lock of the writer connection.

The SQLite backend's lock file, for a server: the trade store's writer connection takes
``pg_try_advisory_lock`` before it creates or migrates the schema and holds it for its
session; a second ingesting process on the same database fails at start with
:class:`WriterHeld`, naming the holder from ``pg_stat_activity`` (its
``application_name`` carries pid, host and start time of the process). The server drops
the lock when the holder's session ends, however it ends (``kill -9`` of the process, a
lost network, ``pg_terminate_backend``), so a dead writer never blocks a restart; a
writer whose connection died takes the lock again on its new session before it writes
anything (and waits, reporting why, if another writer took it meanwhile).

No psycopg import here: ``ingest/runtime.py`` catches :class:`WriterHeld` on any build.
"""

from __future__ import annotations

__all__ = ["WRITER_LOCK", "WriterHeld", "lock_holder", "release_writer_lock",
           "take_writer_lock"]

#: pg_try_advisory_lock key of the one writer (ascii "pairswrt"; < 2^63).
WRITER_LOCK = 0x7061697273777274


class WriterHeld(RuntimeError):
    """Another live session is the writer of this database (see the module docstring)."""

    def __init__(self, db: str, holder: dict) -> None:
        who = ", ".join(f"{k} {v}" for k, v in holder.items()) or "unknown session"
        super().__init__(
            f"database {db} is already being written by another process ({who}); "
            f"stop it, use another --db, or follow it read-only with --no-ingest"
        )
        self.holder = holder


def take_writer_lock(conn, location: str) -> None:
    """Take the writer lock on ``conn``'s session or raise :class:`WriterHeld`."""
    got = conn.execute("SELECT pg_try_advisory_lock(%s)", (WRITER_LOCK,)).fetchone()[0]
    if got:
        return
    from ingest.store.postgres_conn import safe_url

    raise WriterHeld(safe_url(location), lock_holder(conn))


def release_writer_lock(conn) -> None:
    """Release the lock, then close the session. Closing alone releases it too, but
    only once the server's backend has noticed and exited: a restart right after a
    stop could still find it held."""
    try:
        if not (conn.closed or conn.broken):
            conn.execute("SELECT pg_advisory_unlock(%s)", (WRITER_LOCK,))
    except Exception:  # a dead session: the server has dropped the lock with it
        pass
    finally:
        conn.close()


def lock_holder(conn) -> dict:
    """The session holding the writer lock, as ``pg_stat_activity`` shows it."""
    row = conn.execute(
        "SELECT a.application_name, a.pid, host(a.client_addr), a.backend_start "
        "FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
        "WHERE l.locktype = 'advisory' AND l.granted AND l.database = "
        "(SELECT oid FROM pg_database WHERE datname = current_database()) "
        "AND l.classid = %s::oid AND l.objid = %s::oid AND l.objsubid = 1",
        (WRITER_LOCK >> 32, WRITER_LOCK & 0xFFFFFFFF),
    ).fetchone()
    if row is None:
        return {}
    name, pid, client, since = row
    holder = {"process": name or "?", "server pid": pid}
    if client:
        holder["client"] = client
    holder["session since"] = since.strftime("%Y-%m-%dT%H:%M:%SZ") if since else "?"
    return holder
