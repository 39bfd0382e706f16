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
import math
import sqlite3
import threading
import time
from pathlib import Path

from analytics.alerts import RuleState
from ingest.store.interface import (
    AlertsReadOnly,
    AlertStore,
    NewEvent,
    StoredEvent,
    StoredRule,
    StoreError,
)
from ingest.store.sqlite_schema import ALERT_TABLES, ensure_tables

__all__ = ["MAX_EVENTS", "SqliteAlertStore"]

log = logging.getLogger(__name__)

MAX_EVENTS = 10_000


def _now_ms() -> int:
    return int(time.time() * 1000)


def _real(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


class SqliteAlertStore(AlertStore):
    """Rules, states and events in the SQLite file at ``path``."""

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
        now = _now_ms()

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
        now = _now_ms()

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
                    (int(rule.id), int(state.armed), _real(state.last_value),
                     state.frontier_ts, state.last_fired_ts),
                )
            return StoredRule(int(rule.id), rule.spec, rule.enabled, int(rule.created_ms), now)

        return self._write(run)

    def update_rule(
        self, rule_id: int, spec: dict, enabled: bool, *, keep_state: bool = False
    ) -> StoredRule | None:
        """Replace a rule's spec; its state is dropped (an edited rule starts afresh)
        unless ``keep_state`` (a rule only disabled keeps its last value and firing)."""
        now = _now_ms()

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

    def delete_rule(self, rule_id: int) -> bool:
        def run(conn):
            cur = conn.execute("DELETE FROM alert_rules WHERE id = ?", (rule_id,))
            conn.execute("DELETE FROM alert_state WHERE rule_id = ?", (rule_id,))
            return cur.rowcount > 0

        return self._write(run)

    def rules(self) -> list[StoredRule]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT id, spec, enabled, created_ms, updated_ms FROM alert_rules ORDER BY id"
            ).fetchall()
        out = []
        for rid, spec, enabled, created, updated in rows:
            try:
                parsed = json.loads(spec)
            except ValueError:
                log.error("alerts: rule %d has an unreadable spec, skipped", rid)
                continue
            out.append(StoredRule(int(rid), parsed, bool(enabled), int(created), int(updated)))
        return out

    def rules_version(self) -> tuple[int, int, int]:
        """Changes whenever a rule is added, edited or deleted (by any process)."""
        with self._lock:
            row = self._conn.execute(
                "SELECT count(*), coalesce(max(updated_ms), 0), coalesce(sum(id), 0) "
                "FROM alert_rules"
            ).fetchone()
        return int(row[0]), int(row[1]), int(row[2])

    # ------------------------------------------------------------------ state
    def states(self) -> dict[int, RuleState]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT rule_id, armed, last_value, frontier_ts, last_fired_ts FROM alert_state"
            ).fetchall()
        return {
            int(r[0]): RuleState(
                bool(r[1]), math.nan if r[2] is None else float(r[2]),
                None if r[3] is None else int(r[3]), None if r[4] is None else int(r[4]),
            )
            for r in rows
        }

    def save(
        self, states: dict[int, RuleState], events: list[NewEvent]
    ) -> list[StoredEvent]:
        """Store events and states in one transaction; returns the events inserted
        (an event already stored for the same ``(rule_id, data_ts)`` is skipped).
        States of rules deleted meanwhile are not written."""
        now = _now_ms()

        def run(conn):
            stored = []
            live = {r[0] for r in conn.execute("SELECT id FROM alert_rules")}
            for ev in events:
                if ev.rule_id not in live:
                    continue
                cur = conn.execute(
                    "INSERT OR IGNORE INTO alert_events "
                    "(rule_id, data_ts, fired_ms, value, threshold, description) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (ev.rule_id, ev.data_ts, now, _real(ev.value), ev.threshold,
                     ev.description),
                )
                if cur.rowcount:
                    stored.append(StoredEvent(
                        int(cur.lastrowid), ev.rule_id, ev.data_ts, now, ev.value,
                        ev.threshold, ev.description,
                    ))
            conn.executemany(
                "INSERT OR REPLACE INTO alert_state "
                "(rule_id, armed, last_value, frontier_ts, last_fired_ts) VALUES (?, ?, ?, ?, ?)",
                [
                    (rid, int(s.armed), _real(s.last_value), s.frontier_ts, s.last_fired_ts)
                    for rid, s in states.items() if rid in live
                ],
            )
            return stored

        try:
            return self._write(run)
        except sqlite3.Error as exc:  # locked past busy_timeout, I/O: the caller retries
            raise StoreError(str(exc)) from exc

    # ------------------------------------------------------------------ events
    def events(
        self,
        *,
        since_ms: int | None = None,
        after_id: int | None = None,
        rule_id: int | None = None,
        limit: int = 1000,
    ) -> list[StoredEvent]:
        """Events oldest first; ``since_ms`` keeps ``fired_ms > since_ms``, ``after_id``
        ``id > after_id``. With neither, the most recent ``limit`` events."""
        where, args = [], []
        if since_ms is not None:
            where.append("fired_ms > ?")
            args.append(int(since_ms))
        if after_id is not None:
            where.append("id > ?")
            args.append(int(after_id))
        if rule_id is not None:
            where.append("rule_id = ?")
            args.append(int(rule_id))
        sql = (
            "SELECT id, rule_id, data_ts, fired_ms, value, threshold, description "
            "FROM alert_events"
        )
        if where:
            sql += " WHERE " + " AND ".join(where)
        limit = max(1, min(int(limit), MAX_EVENTS))
        recent = since_ms is None and after_id is None
        sql += " ORDER BY id DESC LIMIT ?" if recent else " ORDER BY id LIMIT ?"
        args.append(limit)
        with self._lock:
            rows = self._conn.execute(sql, args).fetchall()
        if recent:
            rows.reverse()
        return [
            StoredEvent(int(r[0]), int(r[1]), int(r[2]), int(r[3]),
                        math.nan if r[4] is None else float(r[4]), float(r[5]), r[6] or "")
            for r in rows
        ]

    def last_event_id(self) -> int:
        with self._lock:
            row = self._conn.execute("SELECT coalesce(max(id), 0) FROM alert_events").fetchone()
        return int(row[0])
