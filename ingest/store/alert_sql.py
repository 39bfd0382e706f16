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

Delivery (#20): ``alert_channels`` (kind, name, url, secret) and the outbox
``alert_deliveries``, one row per ``(event_id, channel_id)``, inserted by :meth:`save`
in the SAME transaction as the event (so an event stored is an event that will be
delivered, crash or not), with its payload (:func:`ingest.delivery.payload.
event_payload`). Statuses: ``pending`` (never tried), ``retrying`` (tried, due again at
``next_attempt_ms``), ``delivered``, ``failed`` (given up: max age, a permanent refusal,
its channel deleted). The worker (:mod:`ingest.delivery.worker`) reads the open rows
(:meth:`open_deliveries`) and writes each attempt's outcome (:meth:`record_attempt`).
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass

from analytics.alerts import RuleState
from ingest.delivery.payload import event_payload
from ingest.store.interface import AlertStore, NewEvent, StoredEvent, StoredRule, StoreError

__all__ = ["DELIVERY_STATUSES", "MAX_EVENTS", "OPEN_STATUSES", "SqlAlertStore",
           "StoredChannel", "StoredDelivery", "now_ms", "real"]

log = logging.getLogger(__name__)

MAX_EVENTS = 10_000
DELIVERY_STATUSES = ("pending", "retrying", "delivered", "failed")
OPEN_STATUSES = ("pending", "retrying")
_DELIVERY_COLUMNS = (
    "d.id, d.event_id, d.rule_id, d.channel_id, d.status, d.attempts, d.last_error, "
    "d.last_status, d.created_ms, d.next_attempt_ms, d.delivered_ms, d.latency_ms")


@dataclass(frozen=True, slots=True)
class StoredChannel:
    """A delivery channel as stored (``secret`` never leaves the ingest side: the API
    shows :func:`ingest.delivery.channels.channel_json`)."""

    id: int
    kind: str
    name: str
    url: str
    secret: str | None
    created_ms: int
    updated_ms: int


@dataclass(frozen=True, slots=True)
class StoredDelivery:
    """One outbox row (``payload``: the JSON text sent; empty in log reads)."""

    id: int
    event_id: int
    rule_id: int
    channel_id: int
    status: str
    attempts: int
    last_error: str | None
    last_status: int | None
    created_ms: int
    next_attempt_ms: int
    delivered_ms: int | None
    latency_ms: float | None
    payload: str = ""
    channel_name: str | None = None

    def as_json(self) -> dict:
        """The row of ``GET /api/alerts/deliveries``."""
        return {
            "id": self.id, "event_id": self.event_id, "rule_id": self.rule_id,
            "channel_id": self.channel_id, "channel_name": self.channel_name,
            "status": self.status, "attempts": self.attempts, "last_error": self.last_error,
            "last_status": self.last_status, "created_ms": self.created_ms,
            "delivered_ms": self.delivered_ms, "latency_ms": self.latency_ms,
            "next_attempt_ms": self.next_attempt_ms if self.status in OPEN_STATUSES
            else None,
        }


def _delivery(r, payload: str = "", channel_name: str | None = None) -> StoredDelivery:
    return StoredDelivery(
        int(r[0]), int(r[1]), int(r[2]), int(r[3]), r[4], int(r[5]), r[6],
        None if r[7] is None else int(r[7]), int(r[8]), int(r[9]),
        None if r[10] is None else int(r[10]), None if r[11] is None else float(r[11]),
        payload, channel_name)


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
            if stored:
                self._enqueue(conn, stored, now)
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

    # ------------------------------------------------------------------ delivery (#20)
    def _enqueue(self, conn, stored: list[StoredEvent], now: int) -> None:
        """One outbox row per (event, channel of its rule that exists), in the caller's
        transaction, with the payload as it will be sent."""
        rule_ids = sorted({e.rule_id for e in stored})
        specs: dict[int, dict] = {}
        for rid in rule_ids:
            row = conn.execute(self._sql("SELECT spec FROM alert_rules WHERE id = ?"),
                               (rid,)).fetchone()
            try:
                specs[rid] = json.loads(row[0]) if row else {}
            except ValueError:
                specs[rid] = {}
        if not any(specs[r].get("channels") for r in rule_ids):
            return
        existing = {int(r[0]) for r in conn.execute("SELECT id FROM alert_channels")}
        rows = []
        for ev in stored:
            spec = specs[ev.rule_id]
            channels = [c for c in spec.get("channels") or () if c in existing]
            if not channels:
                continue
            body = json.dumps(event_payload(
                ev.id, ev.rule_id, spec, description=ev.description, value=ev.value,
                threshold=ev.threshold, data_ts=ev.data_ts, fired_ms=ev.fired_ms),
                separators=(",", ":"))
            rows += [(ev.id, ev.rule_id, int(c), "pending", 0, now, now, body)
                     for c in channels]
        if rows:  # a cursor's executemany: sqlite3 and psycopg connections alike
            conn.cursor().executemany(self._sql(
                "INSERT INTO alert_deliveries (event_id, rule_id, channel_id, status, "
                "attempts, created_ms, next_attempt_ms, payload) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"), rows)

    @staticmethod
    def _channel(r) -> StoredChannel:
        return StoredChannel(int(r[0]), r[1], r[2], r[3], r[4], int(r[5]), int(r[6]))

    def channels(self) -> list[StoredChannel]:
        rows = self._read("SELECT id, kind, name, url, secret, created_ms, updated_ms "
                          "FROM alert_channels ORDER BY id")
        return [self._channel(r) for r in rows]

    def channel(self, channel_id: int) -> StoredChannel | None:
        rows = self._read(self._sql(
            "SELECT id, kind, name, url, secret, created_ms, updated_ms "
            "FROM alert_channels WHERE id = ?"), (int(channel_id),))
        return self._channel(rows[0]) if rows else None

    def insert_channel(self, kind: str, name: str, url: str,
                       secret: str | None) -> StoredChannel:
        now = now_ms()

        def run(conn):
            (cid,) = conn.execute(self._sql(
                "INSERT INTO alert_channels (kind, name, url, secret, created_ms, updated_ms) "
                "VALUES (?, ?, ?, ?, ?, ?) RETURNING id"),
                (kind, name, url, secret, now, now)).fetchone()
            return StoredChannel(int(cid), kind, name, url, secret, now, now)

        return self._write(run)

    def update_channel(self, channel_id: int, kind: str, name: str, url: str,
                       secret: str | None) -> StoredChannel | None:
        now = now_ms()

        def run(conn):
            n = conn.execute(self._sql(
                "UPDATE alert_channels SET kind = ?, name = ?, url = ?, secret = ?, "
                "updated_ms = ? WHERE id = ?"),
                (kind, name, url, secret, now, int(channel_id))).rowcount
            if not n:
                return None
            (created,) = conn.execute(self._sql(
                "SELECT created_ms FROM alert_channels WHERE id = ?"),
                (int(channel_id),)).fetchone()
            return StoredChannel(int(channel_id), kind, name, url, secret, int(created), now)

        return self._write(run)

    def delete_channel(self, channel_id: int) -> bool:
        """Delete a channel; its open deliveries fail ("channel deleted"), its log
        stays."""
        now = now_ms()

        def run(conn):
            n = conn.execute(self._sql("DELETE FROM alert_channels WHERE id = ?"),
                             (int(channel_id),)).rowcount
            conn.execute(self._sql(
                "UPDATE alert_deliveries SET status = 'failed', last_error = ?, "
                "next_attempt_ms = ? WHERE channel_id = ? AND status IN "
                "('pending', 'retrying')"), ("channel deleted", now, int(channel_id)))
            return n > 0

        return self._write(run)

    def open_deliveries(self, limit: int = 5000, per_lane: int = 200) -> list[StoredDelivery]:
        """Rows not delivered nor given up, oldest first (with their payload): at most
        ``per_lane`` of each (rule, channel), so one long backlog cannot hide the
        other lanes from the worker."""
        rows = self._read(self._sql(
            f"SELECT {_DELIVERY_COLUMNS}, d.payload FROM (SELECT *, row_number() OVER "
            "(PARTITION BY rule_id, channel_id ORDER BY id) AS k FROM alert_deliveries "
            "WHERE status IN ('pending', 'retrying')) d WHERE d.k <= ? ORDER BY d.id LIMIT ?"),
            (int(per_lane), int(limit)))
        return [_delivery(r, r[12]) for r in rows]

    def record_attempt(self, delivery_id: int, *, status: str, attempts: int,
                       last_error: str | None, last_status: int | None,
                       next_attempt_ms: int, delivered_ms: int | None = None,
                       latency_ms: float | None = None) -> None:
        """The outcome of one attempt (the worker's only write)."""
        if status not in DELIVERY_STATUSES:
            raise ValueError(f"unknown delivery status {status!r}")

        def run(conn):
            conn.execute(self._sql(
                "UPDATE alert_deliveries SET status = ?, attempts = ?, last_error = ?, "
                "last_status = ?, next_attempt_ms = ?, delivered_ms = ?, latency_ms = ? "
                "WHERE id = ?"),
                (status, int(attempts), last_error, last_status, int(next_attempt_ms),
                 delivered_ms, real(latency_ms), int(delivery_id)))

        self._write(run)

    def deliveries(self, *, rule_id: int | None = None, channel_id: int | None = None,
                   status: str | None = None, event_id: int | None = None,
                   limit: int = 200) -> list[StoredDelivery]:
        """The delivery log, newest first, with each channel's name (None once the
        channel is deleted)."""
        where, args = [], []
        for col, v in (("d.rule_id", rule_id), ("d.channel_id", channel_id),
                       ("d.event_id", event_id)):
            if v is not None:
                where.append(f"{col} = ?")
                args.append(int(v))
        if status is not None:
            where.append("d.status = ?")
            args.append(str(status))
        sql = (f"SELECT {_DELIVERY_COLUMNS}, c.name FROM alert_deliveries d "
               "LEFT JOIN alert_channels c ON c.id = d.channel_id")
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY d.id DESC LIMIT ?"
        args.append(max(1, min(int(limit), MAX_EVENTS)))
        return [_delivery(r, "", r[12]) for r in self._read(self._sql(sql), args)]
