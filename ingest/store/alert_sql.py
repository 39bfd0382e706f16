"""What every SQL backend of the alert store does the same way, once.

The tables are the same in every backend (``alert_rules``, ``alert_state``,
``alert_events``; see :mod:`ingest.store.sqlite_alerts`), and so are the reads, the
shape of their rows, and the order of a save: the events first, each stored at most
once per ``(rule_id, data_ts)``, then the states, both only for rules that still exist,
all in ONE transaction. A backend says how it connects and runs a write transaction
(``_write(fn)``) or a read (``_read(sql, args)``), how an event goes in and returns its
id or None when it was stored already (``_insert_event``), how states are upserted
(``_save_states``), which errors mean "the database is unavailable" (``_UNAVAILABLE``:
the alert service keeps the batch and retries), and its placeholder (``_P``). Writes
whose SQL differs by dialect (inserting a rule and getting its id, restoring one) stay
in the backend.
"""

from __future__ import annotations

import json
import logging
import math
import time

from analytics.alerts import RuleState
from ingest.store.interface import AlertStore, NewEvent, StoredEvent, StoredRule, StoreError

__all__ = ["MAX_EVENTS", "SqlAlertStore", "now_ms", "real"]

log = logging.getLogger(__name__)

MAX_EVENTS = 10_000


def now_ms() -> int:
    return int(time.time() * 1000)


def real(x) -> float | None:
    """A value a REAL/float8 column takes: NaN and infinities are stored as NULL."""
    return None if x is None or not math.isfinite(x) else float(x)


class SqlAlertStore(AlertStore):
    """Rules, states and events in a SQL database (see the module docstring)."""

    _P = "?"
    _UNAVAILABLE: tuple[type[BaseException], ...] = ()

    # -- backend hooks ------------------------------------------------------------------
    def _write(self, fn):
        raise NotImplementedError

    def _read(self, sql: str, args=()) -> list[tuple]:
        raise NotImplementedError

    def _insert_event(self, conn, ev: NewEvent, now: int) -> int | None:
        raise NotImplementedError

    def _save_states(self, conn, rows: list[tuple]) -> None:
        raise NotImplementedError

    def _sql(self, text: str) -> str:
        return text.replace("?", self._P)

    # ------------------------------------------------------------------ rules
    def delete_rule(self, rule_id: int) -> bool:
        """Delete a rule and its state; its events stay (the log is history)."""
        def run(conn):
            n = conn.execute(self._sql("DELETE FROM alert_rules WHERE id = ?"),
                             (int(rule_id),)).rowcount
            conn.execute(self._sql("DELETE FROM alert_state WHERE rule_id = ?"),
                         (int(rule_id),))
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
        """Changes whenever a rule is added, edited or deleted (by any process)."""
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
        """Store events and states in one transaction; returns the events inserted
        (an event already stored for the same ``(rule_id, data_ts)`` is skipped).
        States of rules deleted meanwhile are not written."""
        now = now_ms()

        def run(conn):
            stored = []
            live = {r[0] for r in conn.execute("SELECT id FROM alert_rules")}
            for ev in events:
                if ev.rule_id not in live:
                    continue
                event_id = self._insert_event(conn, ev, now)
                if event_id is not None:
                    stored.append(StoredEvent(event_id, ev.rule_id, ev.data_ts, now,
                                              ev.value, ev.threshold, ev.description))
            self._save_states(conn, [
                (rid, s.armed, real(s.last_value), s.frontier_ts, s.last_fired_ts)
                for rid, s in states.items() if rid in live])
            return stored

        try:
            return self._write(run)
        except self._UNAVAILABLE as exc:  # locked, I/O, server gone: the caller retries
            raise StoreError(str(exc)) from exc

    # ------------------------------------------------------------------ events
    def events(self, *, since_ms: int | None = None, after_id: int | None = None,
               rule_id: int | None = None, limit: int = 1000) -> list[StoredEvent]:
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
        sql = ("SELECT id, rule_id, data_ts, fired_ms, value, threshold, description "
               "FROM alert_events")
        if where:
            sql += " WHERE " + " AND ".join(where)
        limit = max(1, min(int(limit), MAX_EVENTS))
        recent = since_ms is None and after_id is None
        sql += " ORDER BY id DESC LIMIT ?" if recent else " ORDER BY id LIMIT ?"
        args.append(limit)
        rows = self._read(self._sql(sql), args)
        if recent:
            rows.reverse()
        return [StoredEvent(int(r[0]), int(r[1]), int(r[2]), int(r[3]),
                            math.nan if r[4] is None else float(r[4]), float(r[5]), r[6] or "")
                for r in rows]

    def last_event_id(self) -> int:
        (row,) = self._read("SELECT coalesce(max(id), 0) FROM alert_events")
        return int(row[0])
