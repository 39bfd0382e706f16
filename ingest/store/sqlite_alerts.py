"""Alert rules, their evaluation state and fired events in the app's SQLite file.

Lives in the app's DB file (``--db``) next to the tick tables, on its own connection
(WAL, ``busy_timeout``), parameterised SQL only; the tables (DDL in
:mod:`ingest.store.sqlite_schema`):

===============  ========================================================================
``alert_rules``  ``id`` (AUTOINCREMENT: a deleted rule's id is never reused), ``spec``
                 (the JSON rule), ``enabled``, ``created_ms``, ``updated_ms``
``alert_state``  per rule: ``armed``, ``last_value``, ``frontier_ts`` (data time of the
                 last point evaluated), ``last_fired_ts``: what a restart resumes from
``alert_events`` ``id``, ``rule_id``, ``data_ts``, ``fired_ms``, ``value``,
                 ``threshold``, ``description``; UNIQUE ``(rule_id, data_ts)``
===============  ========================================================================

An event and the state that follows it are written in ONE transaction, so after a
crash the frontier and the events agree; the unique key is a second guard: a point
evaluated twice (e.g. a frontier saved a moment before a crash) cannot store a
second event. Deleting a rule keeps its events (the log is history).

One connection serialised by a lock: writes are rare (rule edits, a state save per
second, events) and tiny, and reads are API/page requests.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from pathlib import Path

from analytics.alerts import RuleState
from ingest.store.alert_sql import MAX_EVENTS, SqlAlertStore, now_ms, real
from ingest.store.interface import AlertsReadOnly, NewEvent, StoredRule
from ingest.store.sqlite_schema import ALERT_TABLES, ensure_tables

__all__ = ["MAX_EVENTS", "SqliteAlertStore"]

log = logging.getLogger(__name__)


class SqliteAlertStore(SqlAlertStore):
    """Rules, states and events in the SQLite file at ``path`` (reads, the shape of a
    save: :class:`ingest.store.alert_sql.SqlAlertStore`)."""

    # locked past busy_timeout, I/O: save() says StoreError and the caller retries
    _UNAVAILABLE = (sqlite3.Error,)

    def __init__(self, path: str | Path, *, busy_timeout_ms: int = 5000) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self.readonly = False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._busy_timeout_ms = int(busy_timeout_ms)
        self._conn = self._connect()

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE), so the write
        # lock is taken up front under the busy timeout.
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout={self._busy_timeout_ms}")
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            ensure_tables(conn, ALERT_TABLES)
        except sqlite3.OperationalError as exc:
            if "readonly" not in str(exc).lower():
                raise
            log.warning("alerts: %s is read-only, alert rules cannot change", self.path)
            self.readonly = True
        return conn

    def reset_after_fork(self) -> None:
        """In a forked child: a fresh lock and connection (never one across a fork)."""
        self._lock = threading.Lock()
        self._conn = self._connect()

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def _write(self, fn):
        if self.readonly:
            raise AlertsReadOnly(f"{self.path} is read-only: alert rules cannot change")
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                out = fn(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return out

    # ------------------------------------------------------------------ rules
    def insert_rule(self, spec: dict, enabled: bool) -> StoredRule:
        now = now_ms()

        def run(conn):
            cur = conn.execute(
                "INSERT INTO alert_rules (spec, enabled, created_ms, updated_ms) "
                "VALUES (?, ?, ?, ?)",
                (json.dumps(spec), int(enabled), now, now),
            )
            return StoredRule(int(cur.lastrowid), spec, enabled, now, now)

        return self._write(run)

    def restore_rule(self, rule: StoredRule, state: RuleState | None) -> StoredRule | None:
        """Put a deleted rule back under its own id (undo of a delete), with the state
        it had; None if that id is taken (AUTOINCREMENT never reuses one, so only a
        second undo of the same rule)."""
        now = now_ms()

        def run(conn):
            try:
                conn.execute(
                    "INSERT INTO alert_rules (id, spec, enabled, created_ms, updated_ms) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (int(rule.id), json.dumps(rule.spec), int(rule.enabled),
                     int(rule.created_ms), now),
                )
            except sqlite3.IntegrityError:
                return None
            if state is not None:
                conn.execute(
                    "INSERT OR REPLACE INTO alert_state "
                    "(rule_id, armed, last_value, frontier_ts, last_fired_ts) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (int(rule.id), int(state.armed), real(state.last_value),
                     state.frontier_ts, state.last_fired_ts),
                )
            return StoredRule(int(rule.id), rule.spec, rule.enabled, int(rule.created_ms), now)

        return self._write(run)

    def update_rule(
        self, rule_id: int, spec: dict, enabled: bool, *, keep_state: bool = False
    ) -> StoredRule | None:
        """Replace a rule's spec; its state is dropped (an edited rule starts afresh)
        unless ``keep_state`` (a rule only disabled keeps its last value and firing)."""
        now = now_ms()

        def run(conn):
            cur = conn.execute(
                "UPDATE alert_rules SET spec = ?, enabled = ?, updated_ms = ? WHERE id = ?",
                (json.dumps(spec), int(enabled), now, rule_id),
            )
            if cur.rowcount == 0:
                return None
            if not keep_state:
                conn.execute("DELETE FROM alert_state WHERE rule_id = ?", (rule_id,))
            row = conn.execute(
                "SELECT created_ms FROM alert_rules WHERE id = ?", (rule_id,)
            ).fetchone()
            return StoredRule(rule_id, spec, enabled, int(row[0]), now)

        return self._write(run)

    # ------------------------------------------------------------------ shared parts
    def _read(self, sql: str, args=()) -> list[tuple]:
        with self._lock:
            return self._conn.execute(sql, args).fetchall()

    def _insert_event(self, conn, ev: NewEvent, now: int) -> int | None:
        cur = conn.execute(
            "INSERT OR IGNORE INTO alert_events "
            "(rule_id, data_ts, fired_ms, value, threshold, description) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (ev.rule_id, ev.data_ts, now, real(ev.value), ev.threshold, ev.description),
        )
        return int(cur.lastrowid) if cur.rowcount else None

    def _save_states(self, conn, rows: list[tuple]) -> None:
        conn.executemany(
            "INSERT OR REPLACE INTO alert_state "
            "(rule_id, armed, last_value, frontier_ts, last_fired_ts) VALUES (?, ?, ?, ?, ?)",
            [(rid, int(armed), *rest) for rid, armed, *rest in rows],
        )
