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

import psycopg

from analytics.alerts import RuleState
from ingest.store.alert_sql import MAX_EVENTS, SqlAlertStore, now_ms, real
from ingest.store.interface import AlertsReadOnly, NewEvent, StoredRule
from ingest.store.postgres_conn import OwnSession, safe_url
from ingest.store.postgres_schema import ALERT_TABLES, ensure_tables

__all__ = ["MAX_EVENTS", "PostgresAlertStore"]

log = logging.getLogger(__name__)

_UPSERT_STATE = (
    "INSERT INTO alert_state (rule_id, armed, last_value, frontier_ts, last_fired_ts) "
    "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (rule_id) DO UPDATE SET armed = excluded.armed, "
    "last_value = excluded.last_value, frontier_ts = excluded.frontier_ts, "
    "last_fired_ts = excluded.last_fired_ts"
)


class PostgresAlertStore(OwnSession, SqlAlertStore):
    """Rules, states and events in the PostgreSQL database at ``location`` (reads, the
    shape of a save: :class:`ingest.store.alert_sql.SqlAlertStore`)."""

    _P = "%s"
    _role = "alerts"
    # the server or the network: save() says StoreError and the caller retries
    _UNAVAILABLE = (psycopg.OperationalError, psycopg.InterfaceError)

    def __init__(self, location: str) -> None:
        self._init_session(location)
        self.path = safe_url(location)
        self.readonly = False
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

    def close(self) -> None:
        with self._lock:
            self._close_session()

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
        now = now_ms()

        def run(conn):
            (rid,) = conn.execute(
                "INSERT INTO alert_rules (spec, enabled, created_ms, updated_ms) "
                "VALUES (%s, %s, %s, %s) RETURNING id",
                (json.dumps(spec), bool(enabled), now, now)).fetchone()
            return StoredRule(int(rid), spec, enabled, now, now)

        return self._write(run)

    def restore_rule(self, rule: StoredRule, state: RuleState | None) -> StoredRule | None:
        now = now_ms()

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
                                             real(state.last_value), state.frontier_ts,
                                             state.last_fired_ts))
            return StoredRule(int(rule.id), rule.spec, rule.enabled, int(rule.created_ms), now)

        return self._write(run)

    def update_rule(self, rule_id: int, spec: dict, enabled: bool, *,
                    keep_state: bool = False) -> StoredRule | None:
        now = now_ms()

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

    # ------------------------------------------------------------------ shared parts
    def _insert_event(self, conn, ev: NewEvent, now: int) -> int | None:
        row = conn.execute(
            "INSERT INTO alert_events (rule_id, data_ts, fired_ms, value, threshold, "
            "description) VALUES (%s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (rule_id, data_ts) DO NOTHING RETURNING id",
            (ev.rule_id, ev.data_ts, now, real(ev.value), ev.threshold,
             ev.description)).fetchone()
        return None if row is None else int(row[0])

    def _save_states(self, conn, rows: list[tuple]) -> None:
        if rows:
            with conn.cursor() as cur:
                cur.executemany(_UPSERT_STATE,
                                [(rid, bool(armed), *rest) for rid, armed, *rest in rows])
