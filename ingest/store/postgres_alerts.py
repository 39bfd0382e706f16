"""Alert rules, their evaluation state and fired events in PostgreSQL.

The tables and guarantees of :mod:`ingest.store.sqlite_alerts`: an event and the state
after it are saved in ONE transaction; ``UNIQUE (rule_id, data_ts)`` stores a point
evaluated twice once (``ON CONFLICT DO NOTHING``), whichever process evaluates it;
deleting a rule keeps its events; rule ids come from an identity sequence and are never
reused. One connection serialised by a lock (writes are rare and tiny); a connection
the server dropped is replaced on the next call. A database this role cannot write
(a read-only user, a standby) gives a readonly store.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import time

import psycopg

from analytics.alerts import RuleState
from ingest.store.interface import (
    AlertsReadOnly,
    AlertStore,
    NewEvent,
    StoredEvent,
    StoredRule,
    StoreError,
)
from ingest.store.postgres_conn import close_in, connect, live, orphan, safe_url
from ingest.store.postgres_schema import ALERT_TABLES, ensure_tables

__all__ = ["MAX_EVENTS", "PostgresAlertStore"]

log = logging.getLogger(__name__)

MAX_EVENTS = 10_000
_UPSERT_STATE = (
    "INSERT INTO alert_state (rule_id, armed, last_value, frontier_ts, last_fired_ts) "
    "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (rule_id) DO UPDATE SET armed = excluded.armed, "
    "last_value = excluded.last_value, frontier_ts = excluded.frontier_ts, "
    "last_fired_ts = excluded.last_fired_ts"
)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _real(x) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


class PostgresAlertStore(AlertStore):
    """Rules, states and events in the PostgreSQL database at ``location``."""

    def __init__(self, location: str) -> None:
        self._location = location
        self.path = safe_url(location)
        self._lock = threading.Lock()
        self.readonly = False
        self._conn = None
        self._pid = os.getpid()
        with self._lock:
            conn = self._connection()
            if conn.execute("SHOW transaction_read_only").fetchone()[0] == "on":
                self.readonly = True
            else:
                try:
                    ensure_tables(conn, ALERT_TABLES)
                except psycopg.errors.InsufficientPrivilege:
                    self.readonly = True
            if self.readonly:
                log.warning("alerts: %s cannot be written, alert rules cannot change",
                            self.path)

    def _connection(self):
        self._conn = conn = live(self._conn) or connect(self._location, role="alerts")
        return conn

    def reset_after_fork(self) -> None:
        orphan(self._conn)
        self._conn = None
        self._lock = threading.Lock()
        self._pid = os.getpid()

    def close(self) -> None:
        with self._lock:
            close_in(self._conn, self._pid)
            self._conn = None

    def _write(self, fn):
        if self.readonly:
            raise AlertsReadOnly(f"{self.path} is read-only: alert rules cannot change")
        with self._lock:
            conn = self._connection()
            with conn.transaction():
                return fn(conn)

    def _read(self, sql: str, args=()) -> list[tuple]:
        with self._lock:
            return self._connection().execute(sql, args).fetchall()

    # ------------------------------------------------------------------ rules
    def insert_rule(self, spec: dict, enabled: bool) -> StoredRule:
        now = _now_ms()

        def run(conn):
            (rid,) = conn.execute(
                "INSERT INTO alert_rules (spec, enabled, created_ms, updated_ms) "
                "VALUES (%s, %s, %s, %s) RETURNING id",
                (json.dumps(spec), bool(enabled), now, now)).fetchone()
            return StoredRule(int(rid), spec, enabled, now, now)

        return self._write(run)

    def restore_rule(self, rule: StoredRule, state: RuleState | None) -> StoredRule | None:
        now = _now_ms()

        def run(conn):
            row = conn.execute(
                "INSERT INTO alert_rules (id, spec, enabled, created_ms, updated_ms) "
                "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (id) DO NOTHING RETURNING id",
                (int(rule.id), json.dumps(rule.spec), bool(rule.enabled),
                 int(rule.created_ms), now)).fetchone()
            if row is None:
                return None
            if state is not None:
                conn.execute(_UPSERT_STATE, (int(rule.id), bool(state.armed),
                                             _real(state.last_value), state.frontier_ts,
                                             state.last_fired_ts))
            return StoredRule(int(rule.id), rule.spec, rule.enabled, int(rule.created_ms), now)

        return self._write(run)

    def update_rule(self, rule_id: int, spec: dict, enabled: bool, *,
                    keep_state: bool = False) -> StoredRule | None:
        now = _now_ms()

        def run(conn):
            row = conn.execute(
                "UPDATE alert_rules SET spec = %s, enabled = %s, updated_ms = %s "
                "WHERE id = %s RETURNING created_ms",
                (json.dumps(spec), bool(enabled), now, int(rule_id))).fetchone()
            if row is None:
                return None
            if not keep_state:
                conn.execute("DELETE FROM alert_state WHERE rule_id = %s", (int(rule_id),))
            return StoredRule(int(rule_id), spec, enabled, int(row[0]), now)

        return self._write(run)

    def delete_rule(self, rule_id: int) -> bool:
        def run(conn):
            n = conn.execute("DELETE FROM alert_rules WHERE id = %s", (int(rule_id),)).rowcount
            conn.execute("DELETE FROM alert_state WHERE rule_id = %s", (int(rule_id),))
            return n > 0

        return self._write(run)

    def rules(self) -> list[StoredRule]:
        rows = self._read(
            "SELECT id, spec, enabled, created_ms, updated_ms FROM alert_rules ORDER BY id")
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
        (row,) = self._read(
            "SELECT count(*), coalesce(max(updated_ms), 0), coalesce(sum(id), 0) "
            "FROM alert_rules")
        return int(row[0]), int(row[1]), int(row[2])

    # ------------------------------------------------------------------ state
    def states(self) -> dict[int, RuleState]:
        rows = self._read(
            "SELECT rule_id, armed, last_value, frontier_ts, last_fired_ts FROM alert_state")
        return {
            int(r[0]): RuleState(
                bool(r[1]), math.nan if r[2] is None else float(r[2]),
                None if r[3] is None else int(r[3]), None if r[4] is None else int(r[4]))
            for r in rows
        }

    def save(self, states: dict[int, RuleState], events: list[NewEvent]) -> list[StoredEvent]:
        now = _now_ms()

        def run(conn):
            stored = []
            live = {r[0] for r in conn.execute("SELECT id FROM alert_rules")}
            for ev in events:
                if ev.rule_id not in live:
                    continue
                row = conn.execute(
                    "INSERT INTO alert_events (rule_id, data_ts, fired_ms, value, threshold, "
                    "description) VALUES (%s, %s, %s, %s, %s, %s) "
                    "ON CONFLICT (rule_id, data_ts) DO NOTHING RETURNING id",
                    (ev.rule_id, ev.data_ts, now, _real(ev.value), ev.threshold,
                     ev.description)).fetchone()
                if row is not None:
                    stored.append(StoredEvent(int(row[0]), ev.rule_id, ev.data_ts, now,
                                              ev.value, ev.threshold, ev.description))
            params = [(rid, bool(s.armed), _real(s.last_value), s.frontier_ts,
                       s.last_fired_ts) for rid, s in states.items() if rid in live]
            if params:
                with conn.cursor() as cur:
                    cur.executemany(_UPSERT_STATE, params)
            return stored

        try:
            return self._write(run)
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            raise StoreError(str(exc)) from exc

    # ------------------------------------------------------------------ events
    def events(self, *, since_ms: int | None = None, after_id: int | None = None,
               rule_id: int | None = None, limit: int = 1000) -> list[StoredEvent]:
        where, args = [], []
        if since_ms is not None:
            where.append("fired_ms > %s")
            args.append(int(since_ms))
        if after_id is not None:
            where.append("id > %s")
            args.append(int(after_id))
        if rule_id is not None:
            where.append("rule_id = %s")
            args.append(int(rule_id))
        sql = ("SELECT id, rule_id, data_ts, fired_ms, value, threshold, description "
               "FROM alert_events")
        if where:
            sql += " WHERE " + " AND ".join(where)
        limit = max(1, min(int(limit), MAX_EVENTS))
        recent = since_ms is None and after_id is None
        sql += " ORDER BY id DESC LIMIT %s" if recent else " ORDER BY id LIMIT %s"
        args.append(limit)
        rows = self._read(sql, args)
        if recent:
            rows.reverse()
        return [StoredEvent(int(r[0]), int(r[1]), int(r[2]), int(r[3]),
                            math.nan if r[4] is None else float(r[4]), float(r[5]), r[6] or "")
                for r in rows]

    def last_event_id(self) -> int:
        (row,) = self._read("SELECT coalesce(max(id), 0) FROM alert_events")
        return int(row[0])
