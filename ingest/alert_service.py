"""Server-side alert evaluation: rules -> live engine data -> events in SQLite.

:class:`AlertService` is ``Runtime.alerts``. It is hooked into
``Ingestor.clock_listeners`` (called every 100 ms by the bar-clock thread with the
exchange time, after the bars that were due closed), which only wakes the service's
own ``alerts`` thread: evaluation and SQLite writes never delay the bar clock, and
alerts fire whether or not a browser is open. Nothing here runs in a Dash callback.

Each evaluation (at most every ``min_interval_s``, 100 ms by default):

* ``price``: every trade appended to the symbol's ring since the last evaluation
  (``TickRing.since(cursor)``), so a spike between two evaluations is not missed;
  ``data_ts`` is the trade time.
* ``live_zscore``: the pair snapshot's ``live_zscore`` on the latest trade of each leg
  (``data_ts`` = the later of the two trade times), once per new trade.
* ``trades_per_s``: trades of the last second of exchange time (``data_ts`` = now).
* bar metrics (``zscore``, ``spread``, ``corr``, ``beta`` of a tracked pair;
  ``volume``, ``change_pct`` of a symbol's bars): EVERY point closed since the rule's
  frontier, walked by bar start ``ts`` (the ``ts`` of ``/api/pair``), so a crossing is
  found once per bar even when several bars closed between two evaluations.
* ``basis_bps``: like the bar metrics, ``1e4 (A - B) / B`` of the tracked pair's
  aligned closes (a = the perp, b = its spot; :mod:`analytics.basis`).
* ``adf_pvalue``: on bar close, at most every ``max(tf, adf_interval_ms)`` of bar time,
  the ADF test of the day's spread runs in a one-thread worker (it takes 0.1-2 s);
  its result is evaluated at the next evaluation with the last bar's ``ts``.

The pure firing logic (thresholds, crossings, hysteresis, cooldown) is
:func:`analytics.alerts.evaluate_series`. States are saved with the events in one
transaction (at once when something fired, else at most every ``save_interval_s``),
so a restart resumes at the saved frontier and re-fires nothing (events are also
unique per ``(rule_id, data_ts)``).

A rule starts at its **creation** (or edit, or re-enabling) on the feed's data clock
``C`` (the later of the engine's bar clock and the last trade received): a bar rule
evaluates every point with ``ts > C - tf`` (every bar that closed after it was created),
however late its first evaluation runs (a replay landing at full speed before the
evaluator's first tick, a starved evaluator), with the point before as the "previous
value"; a price rule every trade after the ring's end at creation. With no data yet
(``C`` unknown) every bar counts. History before ``C`` is not alerted on. A rule
without a creation state (stored before, or created in another process and seen at the
first load) starts at its first evaluation, at the last closed point. A disabled rule
is not evaluated at all; disabling keeps its last value and last firing for display.

Session breaks (:meth:`analytics.engine.MarketEngine.breaks`): no crossing is taken
across one (the first point after a break has no previous value), ``change_pct`` is
undefined when its ``w`` bars span one, and ``live_zscore`` is undefined between a
break and the pair's first closed point after it.
"""

from __future__ import annotations

import logging
import math
import os
import re
import threading
import time
import weakref
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from analytics.alerts import (
    PAIR_METRICS,
    SYMBOL_METRICS,
    AlertRule,
    RuleError,
    RuleState,
    describe,
    evaluate_series,
    parse_rule,
    rule_to_json,
    step,
)
from analytics.errors import InsufficientData
from analytics.sessions import break_buckets, session_ids
from analytics.stationarity import adf_test
from ingest.delivery.channels import ChannelNotFound, channel_json, mask_url, parse_channel
from ingest.delivery.payload import dumps, sample_payload
from ingest.delivery.senders import send
from ingest.store import (
    AlertStore,
    NewEvent,
    StoredEvent,
    StoredRule,
    StoreError,
    open_alert_store,
)

log = logging.getLogger(__name__)

ADF_INTERVAL_MS = 30_000
_BEFORE_ANY = -1  # frontier of a bar rule initialised before its first bar
_PAIR_COLUMN = {"zscore": "zscore", "spread": "spread", "corr": "corr", "beta": "beta"}


class RuleNotFound(KeyError):
    def __init__(self, rule_id: int) -> None:
        super().__init__(rule_id)
        self.rule_id = rule_id

    def __str__(self) -> str:
        return f"no such alert rule: {self.rule_id}"


@dataclass(frozen=True, slots=True)
class _AdfJob:
    rule: AlertRule
    data_ts: int
    future: Future


def _shape(msg: str | None) -> str | None:
    """A rule's problem without its numbers: what decides whether it is logged again."""
    return None if msg is None else re.sub(r"\d+", "#", msg)


def _after_fork(ref: weakref.ref) -> None:
    svc = ref()
    if svc is not None:
        svc._reset_after_fork()


class AlertService:
    """Alert rules of the app: CRUD (API/pages), evaluation (own thread), events."""

    def __init__(
        self,
        engine,
        ingestor,
        store: AlertStore | str | Path,
        *,
        evaluate: bool = True,
        min_interval_s: float = 0.1,
        save_interval_s: float = 1.0,
        rules_poll_s: float = 1.0,
        adf_interval_ms: int = ADF_INTERVAL_MS,
    ) -> None:
        self.engine = engine
        self.ingestor = ingestor
        # the runtime passes the alert store of its database; a path opens one
        self.store = store if isinstance(store, AlertStore) else open_alert_store(store)
        self.evaluating = evaluate
        self.min_interval_s = min_interval_s
        self.save_interval_s = save_interval_s
        self.rules_poll_s = rules_poll_s
        self.adf_interval_ms = adf_interval_ms
        self._lock = threading.RLock()
        self._rules: dict[int, AlertRule] = {}
        self._meta: dict[int, StoredRule] = {}
        self._states: dict[int, RuleState] = self.store.states()
        self._errors: dict[int, str] = {}
        self._cursors: dict[int, int] = {}
        self._dirty: set[int] = set()
        self._adf: dict[int, _AdfJob] = {}
        self._notes: dict[int, str] = {}  # soft errors of the last evaluation
        #: Rules started at their creation and not evaluated yet: their first point
        #: takes the point before the frontier as its previous value.
        self._fresh: set[int] = set()
        self._unsaved: list[NewEvent] = []
        self._adf_pool: ThreadPoolExecutor | None = None
        self._version = None
        self._load_rules()
        self._last_eval = 0.0
        self._last_save = time.monotonic()
        self._last_poll = time.monotonic()
        self._now_ms: int | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.evaluations = 0
        self.last_error: str | None = None
        #: the outbox worker of the ingesting process (set by the runtime), woken when
        #: events (and so their deliveries) are stored
        self.delivery = None
        self._channel_cache: tuple[float, frozenset[int]] = (-1e9, frozenset())
        ref = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: _after_fork(ref))

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Hook into the bar clock and start the evaluation thread (if evaluating)."""
        if not self.evaluating or self._thread is not None:
            return
        self.ingestor.clock_listeners.append(self.on_clock)
        self._thread = threading.Thread(target=self._run, name="alerts", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self.on_clock in self.ingestor.clock_listeners:
            self.ingestor.clock_listeners.remove(self.on_clock)
        if self._thread is not None:
            self._thread.join(5)
        self.flush()
        if self._adf_pool is not None:
            self._adf_pool.shutdown(wait=False, cancel_futures=True)
        self.store.close()

    def flush(self) -> None:
        """Save the states not saved yet (orderly shutdown)."""
        with self._lock:
            dirty = {rid: self._states[rid] for rid in self._dirty if rid in self._states}
            if dirty and not self.store.readonly:
                self.store.save(dirty, [])
            self._dirty.clear()

    def _reset_after_fork(self) -> None:
        # A background job (forked) only reads rules/events: fresh lock and connection.
        self._lock = threading.RLock()
        self._thread = None
        self._adf_pool = None
        self.store.reset_after_fork()

    def on_clock(self, now_ms: int) -> None:
        """Bar-clock listener (clock thread): hand the exchange time to our thread."""
        self._now_ms = now_ms
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(1.0)
            self._wake.clear()
            if self._stop.is_set():
                break
            now = self._now_ms
            if now is None or time.monotonic() - self._last_eval < self.min_interval_s:
                continue
            try:
                self.evaluate(now)
                if not self._unsaved:
                    self.last_error = None
            except Exception as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("alerts: evaluation failed")

    # ------------------------------------------------------------------ rules (CRUD)
    def _load_rules(self) -> None:
        stored = self.store.rules()
        rules, meta = {}, {}
        for sr in stored:
            try:
                rule = parse_rule(sr.spec, rule_id=sr.id, timeframes_ms=None)
            except RuleError as exc:
                log.error("alerts: stored rule %d is invalid (%s), skipped", sr.id, exc)
                continue
            rules[sr.id], meta[sr.id] = replace(rule, enabled=sr.enabled), sr
        with self._lock:
            initial = self._version is None
            start: list[tuple[int, int | None]] = []
            for rid, rule in rules.items():
                old = self._meta.get(rid)
                if old is None:
                    if not initial and self.evaluating and rid not in self._states:
                        start.append((rid, None))  # created by another process
                elif old.updated_ms != meta[rid].updated_ms:  # edited by another process
                    prev = self._rules.get(rid)
                    same = prev is not None and replace(
                        prev, enabled=rule.enabled, channels=rule.channels) == rule
                    kept = self._states.get(rid)
                    if same and not rule.enabled:
                        self._fresh.discard(rid)
                        continue  # only disabled: the store kept its state
                    self._forget_state(rid)
                    if rule.enabled and self.evaluating:
                        start.append((rid, kept.last_fired_ts if same and kept else None))
            for rid in set(self._rules) - set(rules):
                self._forget_state(rid)
            self._rules, self._meta = rules, meta
            self._version = self.store.rules_version()
            for rid, last_fired in start:
                self._start_state(rules[rid], last_fired)

    def data_clock_ms(self) -> int | None:
        """The feed's data clock: the later of the engine's bar clock and the last
        trade of any ring (exchange ms), None before any data."""
        times = [getattr(self.engine, "_clock_ms", None)]
        for ring in list(self.ingestor.rings.values()):
            last = ring.last()
            if last is not None:
                times.append(int(last.time_ms))
        times = [int(t) for t in times if t is not None]
        return max(times) if times else None

    def _start_state(self, rule: AlertRule, last_fired: int | None = None) -> None:
        """Start ``rule`` at the data clock now (module notes); caller holds the lock."""
        clock = self.data_clock_ms()
        rid = rule.id
        self._forget_state(rid)
        if rule.metric == "price":
            ring = self.ingestor.rings.get(rule.symbol)
            last = None if ring is None else ring.last()
            if ring is not None:
                self._cursors[rid] = ring.seq
            st = RuleState(
                last_value=math.nan if last is None else float(last.price),
                frontier_ts=_BEFORE_ANY if last is None else int(last.time_ms),
                last_fired_ts=last_fired,
            )
            if ring is None:
                return
        elif rule.kind == "bar" and rule.metric != "adf_pvalue":
            st = RuleState(
                frontier_ts=_BEFORE_ANY if clock is None else clock - rule.tf_ms,
                last_fired_ts=last_fired,
            )
            self._fresh.add(rid)
        elif last_fired is not None:
            st = RuleState(last_fired_ts=last_fired)
        else:
            return
        self._states[rid] = st
        self._dirty.add(rid)

    def _forget_state(self, rule_id: int) -> None:
        self._fresh.discard(rule_id)
        self._states.pop(rule_id, None)
        self._cursors.pop(rule_id, None)
        self._errors.pop(rule_id, None)
        self._adf.pop(rule_id, None)
        self._notes.pop(rule_id, None)
        self._dirty.discard(rule_id)

    def _parse(self, data, rule_id: int | None = None) -> AlertRule:
        rule = parse_rule(
            data, symbols=set(self.ingestor.rings), timeframes_ms=self.engine.timeframes_ms,
            rule_id=rule_id,
        )
        if rule.channels:
            missing = [c for c in rule.channels if c not in self._channel_ids(fresh=True)]
            if missing:
                raise RuleError("channels", "no such channel: "
                                + ", ".join(str(c) for c in missing))
        return rule

    def create(self, data) -> dict:
        """Validate and store a new rule; returns its JSON (with ``id``).

        Raises :class:`~analytics.alerts.RuleError` naming every bad field."""
        rule = self._parse(data)
        with self._lock:
            sr = self.store.insert_rule(rule_to_json(rule), rule.enabled)
            self._rules[sr.id], self._meta[sr.id] = replace(rule, id=sr.id), sr
            self._version = self.store.rules_version()
            if self.evaluating and rule.enabled:
                self._start_state(self._rules[sr.id])
        log.info("alerts: rule %d created: %s", sr.id, describe(rule))
        return self.rule_json(sr.id)

    def update(self, rule_id: int, data, *, partial: bool = False) -> dict:
        """Replace (``partial=False``, PUT) or patch (PATCH) a rule; its state restarts,
        so an edited or re-enabled rule never fires on points from before the edit."""
        with self._lock:
            meta = self._meta.get(rule_id)
            if meta is None:
                raise RuleNotFound(rule_id)
            if partial:
                if not isinstance(data, dict):
                    raise RuleError("rule", "must be a JSON object")
                merged = {**meta.spec, "enabled": self._rules[rule_id].enabled}
                metric = data.get("metric", merged.get("metric"))
                # Switching between a symbol and a pair metric drops the old subject.
                if metric in PAIR_METRICS:
                    merged.pop("symbol", None)
                elif metric in SYMBOL_METRICS:
                    merged.pop("a", None)
                    merged.pop("b", None)
                    for key in ("regression", "prices", "source"):
                        merged.pop(key, None)
                data = {**merged, **data}
            rule = self._parse(data, rule_id)
            old = self._rules[rule_id]
            # enabling/disabling or re-routing (channels) keeps the evaluation state
            same = replace(old, enabled=rule.enabled, channels=rule.channels) == rule
            sr = self.store.update_rule(rule_id, rule_to_json(rule), rule.enabled,
                                        keep_state=same and (old.enabled or not rule.enabled))
            if sr is None:
                raise RuleNotFound(rule_id)
            kept = self._states.get(rule_id)
            self._rules[rule_id], self._meta[rule_id] = rule, sr
            self._version = self.store.rules_version()
            if same and not rule.enabled:
                # disabled: keep its last value and last firing (not evaluated)
                self._fresh.discard(rule_id)
                self._cursors.pop(rule_id, None)
            elif same and old.enabled and kept is not None:
                pass  # nothing changed
            elif not rule.enabled:
                self._forget_state(rule_id)
            elif self.evaluating:
                # edited or re-enabled: restart at the data clock now; a re-enabled rule
                # keeps its last firing (the cooldown still counts from it)
                self._start_state(
                    rule, kept.last_fired_ts if same and kept is not None else None
                )
            else:
                self._forget_state(rule_id)
        log.info("alerts: rule %d updated: %s%s", rule_id, describe(rule),
                 "" if rule.enabled else " (disabled)")
        return self.rule_json(rule_id)

    def delete(self, rule_id: int) -> dict:
        """Delete a rule (its events stay in the log); returns what :meth:`restore`
        needs to undo it: ``{"id", "spec", "enabled", "created_ms", "description",
        "state"}`` (JSON-safe)."""
        with self._lock:
            meta, rule = self._meta.get(rule_id), self._rules.get(rule_id)
            st = self._states.get(rule_id)
            if meta is None or not self.store.delete_rule(rule_id):
                raise RuleNotFound(rule_id)
            self._rules.pop(rule_id, None)
            self._meta.pop(rule_id, None)
            self._forget_state(rule_id)
            self._version = self.store.rules_version()
        log.info("alerts: rule %d deleted", rule_id)
        state = None if st is None else {
            "armed": st.armed,
            "last_value": st.last_value if math.isfinite(st.last_value) else None,
            "frontier_ts": st.frontier_ts, "last_fired_ts": st.last_fired_ts,
        }
        return {"id": rule_id, "spec": meta.spec, "enabled": rule.enabled,
                "created_ms": meta.created_ms, "description": describe(rule), "state": state}

    def restore(self, deleted: dict) -> dict:
        """Undo :meth:`delete`: the rule comes back under its id, with its creation
        time and evaluation state (so it goes on from where it was, and its events in
        the log are its own again). Raises RuleError if the snapshot is not valid."""
        if not isinstance(deleted, dict) or not isinstance(deleted.get("id"), int):
            raise RuleError("rule", "not a deleted rule")
        rid = deleted["id"]
        spec = deleted.get("spec")
        if isinstance(spec, dict) and isinstance(spec.get("channels"), list):
            known = self._channel_ids(fresh=True)  # a channel deleted since: dropped
            spec = {**spec, "channels": [c for c in spec["channels"] if c in known]}
        rule = replace(self._parse(spec, rid),
                       enabled=bool(deleted.get("enabled", True)))
        st = deleted.get("state")
        state = None
        if isinstance(st, dict):
            lv, ft, lf = st.get("last_value"), st.get("frontier_ts"), st.get("last_fired_ts")
            if not (all(v is None or type(v) is int for v in (ft, lf))
                    and (lv is None or isinstance(lv, int | float))):
                raise RuleError("state", "not a rule state")
            state = RuleState(bool(st.get("armed", True)),
                              math.nan if lv is None else float(lv), ft, lf)
        stored = StoredRule(rid, rule_to_json(rule), rule.enabled,
                            int(deleted.get("created_ms") or 0), 0)
        with self._lock:
            sr = self.store.restore_rule(stored, state)
            if sr is None:
                raise RuleError("rule", f"rule {rid} exists already")
            self._rules[rid], self._meta[rid] = rule, sr
            if state is not None:
                self._states[rid] = state
            self._version = self.store.rules_version()
        log.info("alerts: rule %d restored: %s", rid, describe(rule))
        return self.rule_json(rid)

    def rule(self, rule_id: int) -> AlertRule:
        with self._lock:
            if rule_id not in self._rules:
                raise RuleNotFound(rule_id)
            return self._rules[rule_id]

    def _sync(self) -> None:
        """A service that does not evaluate (``--no-ingest``) shows what the ingesting
        process evaluates: re-read rules when they changed, and the states."""
        if self.evaluating:
            return
        if self.store.rules_version() != self._version:
            self._load_rules()
        states = self.store.states()
        with self._lock:
            self._states = states

    def rules(self) -> list[AlertRule]:
        self._sync()
        with self._lock:
            return [self._rules[k] for k in sorted(self._rules)]

    def rule_json(self, rule_id: int) -> dict:
        """The JSON rule (see :func:`analytics.alerts.rule_to_json`) plus ``id``,
        ``created_at``/``updated_at`` (epoch ms here; the API formats them),
        ``description`` and ``status`` (armed, last value, frontier, error)."""
        with self._lock:
            if rule_id not in self._rules:
                raise RuleNotFound(rule_id)
            rule, meta = self._rules[rule_id], self._meta[rule_id]
            st = self._states.get(rule_id)
            err = self._errors.get(rule_id)
        status = {
            "armed": True if st is None else st.armed,
            "last_value": None if st is None or not math.isfinite(st.last_value)
            else st.last_value,
            "evaluated_to_ms": None if st is None or st.frontier_ts in (None, _BEFORE_ANY)
            else st.frontier_ts,
            "last_fired_ms": None if st is None else st.last_fired_ts,
            "error": err,
        }
        spec = rule_to_json(rule)
        if rule.channels:  # a deleted channel is no longer named
            known = self._channel_ids()
            spec["channels"] = [c for c in rule.channels if c in known]
        return {
            "id": rule_id, **spec, "created_ms": meta.created_ms,
            "updated_ms": meta.updated_ms, "description": describe(rule), "status": status,
        }

    def rules_json(self) -> list[dict]:
        return [self.rule_json(r.id) for r in self.rules()]

    def events(self, **kwargs) -> list[StoredEvent]:
        return self.store.events(**kwargs)

    def last_event_id(self) -> int:
        return self.store.last_event_id()

    def active_thresholds(
        self, a: str, b: str, tf_ms: int, window: int, regression: str, prices: str,
        source: str = "trade",
    ) -> list[tuple[str, float]]:
        """``(metric, threshold)`` of the enabled ``zscore``/``live_zscore`` rules on
        exactly this pair selection (the pair page draws them on its z chart)."""
        key = (a, b, int(tf_ms), int(window), regression, prices, source)
        return [
            (r.metric, r.threshold)
            for r in self.rules()
            if r.enabled and r.metric in ("zscore", "live_zscore") and r.pair_key == key
        ]

    # ------------------------------------------------------------------ delivery (#20)
    def _channel_ids(self, *, fresh: bool = False) -> frozenset[int]:
        """Ids of the stored channels (cached a second: rule_json runs per rule)."""
        t, ids = self._channel_cache
        if fresh or time.monotonic() - t > 1.0:
            ids = frozenset(c.id for c in self.store.channels())
            self._channel_cache = (time.monotonic(), ids)
        return ids

    def channels(self) -> list[dict]:
        return [channel_json(c) for c in self.store.channels()]

    @staticmethod
    def _channel_id(channel_id) -> int:
        """An id the store can look up (a 64-bit column): else no such channel."""
        if isinstance(channel_id, bool) or not isinstance(channel_id, int) \
                or not 0 < channel_id < 2**62:
            raise ChannelNotFound(channel_id)
        return channel_id

    def channel(self, channel_id: int) -> dict:
        c = self.store.channel(self._channel_id(channel_id))
        if c is None:
            raise ChannelNotFound(channel_id)
        return channel_json(c)

    def add_channel(self, data) -> dict:
        """Validate (:func:`ingest.delivery.channels.parse_channel`) and store."""
        spec = parse_channel(data)
        c = self.store.insert_channel(spec.kind, spec.name, spec.url, spec.secret)
        self._channel_cache = (-1e9, frozenset())
        log.info("alerts: channel %d created: %s %s", c.id, c.kind, mask_url(c.kind, c.url))
        return channel_json(c)

    def update_channel(self, channel_id: int, data) -> dict:
        old = self.store.channel(self._channel_id(channel_id))
        if old is None:
            raise ChannelNotFound(channel_id)
        spec = parse_channel(data, old=old)
        c = self.store.update_channel(channel_id, spec.kind, spec.name, spec.url, spec.secret)
        if c is None:
            raise ChannelNotFound(channel_id)
        log.info("alerts: channel %d updated: %s %s", c.id, c.kind, mask_url(c.kind, c.url))
        return channel_json(c)

    def delete_channel(self, channel_id: int) -> dict:
        if not self.store.delete_channel(self._channel_id(channel_id)):
            raise ChannelNotFound(channel_id)
        self._channel_cache = (-1e9, frozenset())
        log.info("alerts: channel %d deleted", channel_id)
        return {"id": channel_id, "deleted": True}

    def test_channel(self, channel_id: int, timeout_s: float = 5.0) -> dict:
        """Send a sample payload now, synchronously, with a short timeout (an API
        request, never the evaluation path): ``{"ok", "status", "error", "latency_ms"}``."""
        c = self.store.channel(self._channel_id(channel_id))
        if c is None:
            raise ChannelNotFound(channel_id)
        payload = sample_payload(int(time.time() * 1000))
        out = send(c.kind, c.url, c.secret, payload, dumps(payload), timeout_s)
        log.info("alerts: channel %d test: %s", c.id,
                 "ok" if out.ok else f"failed ({out.error})")
        return out.as_json()

    def deliveries(self, *, rule_id: int | None = None, channel_id: int | None = None,
                   status: str | None = None, limit: int = 200) -> list[dict]:
        return [d.as_json() for d in self.store.deliveries(
            rule_id=rule_id, channel_id=channel_id, status=status, limit=limit)]

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, now_ms: int) -> list[StoredEvent]:
        """One evaluation pass at exchange time ``now_ms``; returns the events stored.

        Called by the service's thread; tests call it directly with a controlled clock.
        """
        self._last_eval = time.monotonic()
        self.evaluations += 1
        if time.monotonic() - self._last_poll >= self.rules_poll_s:
            self._last_poll = time.monotonic()
            if self.store.rules_version() != self._version:
                self._load_rules()  # changed by another process (split ingest/dashboard)
        with self._lock:
            rules = [r for r in self._rules.values() if r.enabled]
            states = {r.id: self._states.get(r.id) for r in rules}
        snaps: dict = {}
        results: dict[int, RuleState] = {}
        events: list[NewEvent] = []
        errors: dict[int, str | None] = {}
        for rule in rules:
            try:
                st, fired = self._evaluate_rule(rule, states[rule.id], now_ms, snaps)
            except (KeyError, ValueError, InsufficientData) as exc:
                errors[rule.id] = self._explain(exc)
                continue
            errors[rule.id] = self._notes.get(rule.id)
            if st is not None and st != states[rule.id]:
                results[rule.id] = st
            events.extend(
                NewEvent(rule.id, f.data_ts, f.value, f.threshold, describe(rule)) for f in fired
            )
        return self._commit(rules, results, events, errors)

    @staticmethod
    def _explain(exc: Exception) -> str:
        if isinstance(exc, KeyError) and not isinstance(exc, RuleNotFound):
            return f"symbol {exc.args[0]} is not ingested"
        return str(exc)

    def _commit(self, rules, results, events, errors) -> list[StoredEvent]:
        stored: list[StoredEvent] = []
        with self._lock:
            current = {r.id for r in rules if self._rules.get(r.id) is r}
            for rid, msg in errors.items():
                if rid in current:
                    if msg is None:
                        self._errors.pop(rid, None)
                    elif self._errors.get(rid) != msg:
                        if _shape(self._errors.get(rid)) != _shape(msg):
                            # once per kind: "needs 60 bars, has 47 (13 more)" changes
                            # its counts every bar (the warm-up logged 60 lines a rule)
                            log.warning("alerts: rule %d: %s", rid, msg)
                        self._errors[rid] = msg
            for rid, st in results.items():
                if rid in current:
                    self._states[rid] = st
                    self._dirty.add(rid)
            # Events not stored yet (the DB was locked past busy_timeout) are retried
            # first; the unique (rule_id, data_ts) key makes a retry harmless.
            events = self._unsaved + [e for e in events if e.rule_id in current]
            due = time.monotonic() - self._last_save >= self.save_interval_s
            if (self._dirty or events) and (events or due) and not self.store.readonly:
                dirty = {rid: self._states[rid] for rid in self._dirty if rid in self._states}
                try:
                    stored = self.store.save(dirty, events)
                except StoreError as exc:
                    self._unsaved = events[-10_000:]
                    self.last_error = f"saving alert events: {exc}"
                    log.warning("alerts: %s (%d events kept, retried)", exc, len(events))
                    return []
                self._unsaved = []
                self._dirty.clear()
                self._last_save = time.monotonic()
        if stored and self.delivery is not None:
            self.delivery.wake()  # enqueued with the events; sent by its own thread
        for ev in stored:
            log.info("alerts: FIRED rule %d %s: value %.6g at %d", ev.rule_id,
                     ev.description, ev.value, ev.data_ts)
        return stored

    def _evaluate_rule(self, rule: AlertRule, st: RuleState | None, now_ms: int, snaps):
        m = rule.metric
        if m == "price":
            return self._eval_price(rule, st)
        if m == "trades_per_s":
            if st is not None and st.frontier_ts is not None and now_ms <= st.frontier_ts:
                return st, []
            ring = self.ingestor.rings[rule.symbol]
            batch = ring.window(now_ms - 999)
            n = int(np.count_nonzero(batch.time_ms <= now_ms))
            st, fired = step(rule, st or RuleState(), now_ms, float(n))
            return st, [fired] if fired else []
        if m in PAIR_METRICS:
            key = rule.pair_key
            snap = snaps.get(key)
            if snap is None:
                snap = snaps[key] = self.engine.pair(*key)
            if m == "live_zscore":
                if self._hold_ms((rule.a, rule.b)) is not None:
                    return st, []  # a leg's gap is unsettled: a break may be coming
                return self._eval_live_z(rule, st, snap)
            if m == "adf_pvalue":
                return self._eval_adf(rule, st, snap)
            if m == "basis_bps":  # 1e4 (perp - spot) / spot on the pair grid (analytics.basis)
                pa, pb = snap.series.price_a, snap.series.price_b
                ts = snap.series.ts
                brk = break_buckets(getattr(snap, "session_breaks_ms", None), rule.tf_ms)
                return self._eval_points(
                    rule, st, ts, lambda i0: 1e4 * (pa[i0:] - pb[i0:]) / pb[i0:], brk,
                    self._hold_ms((rule.a, rule.b)))
            ts, col = snap.series.ts, getattr(snap.series, _PAIR_COLUMN[m])
            brk = break_buckets(getattr(snap, "session_breaks_ms", None), rule.tf_ms)
            hold = self._hold_ms((rule.a, rule.b))
            return self._eval_points(rule, st, ts, lambda i0: col[i0:], brk, hold)
        bars = self.engine.bars(rule.symbol, rule.tf_ms)
        brk = break_buckets(self._breaks(rule.symbol), rule.tf_ms)
        hold = self._hold_ms((rule.symbol,))
        if m == "volume":
            return self._eval_points(rule, st, bars.ts, lambda i0: bars.volume[i0:], brk,
                                     hold)
        close, w = bars.close, rule.window
        sid = session_ids(bars.ts, brk)

        def change(i0: int) -> np.ndarray:
            idx = np.arange(i0, len(close))
            out = np.full(len(idx), np.nan)
            ok = idx >= w
            ok[ok] = sid[idx[ok]] == sid[idx[ok] - w]  # never across a session break
            out[ok] = 100.0 * (close[idx[ok]] / close[idx[ok] - w] - 1.0)
            return out

        return self._eval_points(rule, st, bars.ts, change, brk, hold)

    def _breaks(self, symbol: str) -> np.ndarray | None:
        fn = getattr(self.engine, "breaks", None)
        return None if fn is None else fn(symbol)

    def _hold_ms(self, symbols) -> int | None:
        """Earliest data time of an unsettled gap (being back-filled) of ``symbols``:
        until it is filled or marked a session break, points after it are not final
        for alerts (a seam found late would otherwise fire as a crossing)."""
        fn = getattr(self.ingestor, "unsettled_since_ms", None)
        if fn is None:
            return None
        holds = [h for h in (fn(s) for s in symbols) if h is not None]
        return min(holds) if holds else None

    def _eval_points(self, rule, st, ts, values_from, breaks=None, hold=None):
        """Walk every point with ``ts`` after the rule's frontier (and, with ``hold``,
        whose bucket ends at or before it).

        A rule started at its creation (:meth:`_start_state`) takes the value of the
        point at or before its frontier as the previous value of its first point."""
        if hold is not None:
            ts = ts[: int(np.searchsorted(ts, hold - rule.tf_ms, side="right"))]
        n = len(ts)
        if st is None or st.frontier_ts is None:
            if n == 0:
                return RuleState(frontier_ts=_BEFORE_ANY), []
            last = float(values_from(n - 1)[0])
            return RuleState(last_value=last, frontier_ts=int(ts[-1])), []
        i0 = int(np.searchsorted(ts, st.frontier_ts, side="right"))
        if i0 >= n:
            return st, []
        if rule.id in self._fresh:
            self._fresh.discard(rule.id)
            if i0 > 0:
                st = replace(st, last_value=float(values_from(i0 - 1)[0]),
                             frontier_ts=int(ts[i0 - 1]))
        return evaluate_series(rule, st, ts[i0:], values_from(i0)[: n - i0], breaks)

    def _eval_price(self, rule, st):
        ring = self.ingestor.rings[rule.symbol]
        cursor = self._cursors.get(rule.id)
        if cursor is None or st is None:
            last = ring.last()
            self._cursors[rule.id] = ring.seq
            if st is None:
                return RuleState(
                    last_value=math.nan if last is None else float(last.price),
                    frontier_ts=_BEFORE_ANY if last is None else int(last.time_ms),
                ), []
            return st, []
        batch = ring.since(cursor)
        times, prices = batch.time_ms, batch.price
        hold = self._hold_ms((rule.symbol,))
        if hold is not None and len(batch):
            k = int(np.argmax(times > hold)) if (times > hold).any() else len(times)
            times, prices = times[:k], prices[:k]
            self._cursors[rule.id] = batch.end_seq - (len(batch) - k)
        else:
            self._cursors[rule.id] = batch.end_seq
        if len(times) == 0:
            return st, []
        return evaluate_series(rule, st, times, prices, self._breaks(rule.symbol))

    def _live_prices(self, rule) -> tuple[float, float, int] | None:
        """The latest price of each leg and the later of their times: the last trades,
        or with ``source="mid"`` the latest quotes' mids ``(bid + ask) / 2``."""
        if rule.source == "mid":
            qa, qb = self.ingestor.quote(rule.a), self.ingestor.quote(rule.b)
            if qa is None or qb is None:
                return None
            return ((qa.bid + qa.ask) / 2, (qb.bid + qb.ask) / 2,
                    max(int(qa.time_ms), int(qb.time_ms)))
        la = self.ingestor.rings[rule.a].last()
        lb = self.ingestor.rings[rule.b].last()
        if la is None or lb is None:
            return None
        return float(la.price), float(lb.price), max(int(la.time_ms), int(lb.time_ms))

    def _eval_live_z(self, rule, st, snap):
        live = self._live_prices(rule)
        if live is None:
            return st, []
        pa, pb, ts = live
        if st is not None and st.frontier_ts is not None and ts <= st.frontier_ts:
            return st, []
        z = snap.live_zscore(pa, pb, at_ms=ts)
        st, fired = step(rule, st or RuleState(), ts, math.nan if z is None else z)
        return st, [fired] if fired else []

    def _eval_adf(self, rule, st, snap):
        job = self._adf.get(rule.id)
        st = st or RuleState(frontier_ts=_BEFORE_ANY)
        fired = []
        if job is not None and job.rule is rule and job.future.done():
            del self._adf[rule.id]
            pvalue, note = job.future.result()
            self._notes[rule.id] = note
            st, f = step(rule, st, job.data_ts, pvalue)
            fired = [f] if f else []
            job = None
        ts = snap.series.ts
        if job is None and len(ts):
            last = int(ts[-1])
            gap = max(rule.tf_ms, self.adf_interval_ms)
            if st.frontier_ts in (None, _BEFORE_ANY) or last - st.frontier_ts >= gap:
                spread = np.array(snap.series.spread, copy=True)
                if self._adf_pool is None:
                    self._adf_pool = ThreadPoolExecutor(1, thread_name_prefix="alerts-adf")
                fut = self._adf_pool.submit(_adf_pvalue, spread)
                self._adf[rule.id] = _AdfJob(rule, last, fut)
        return st, fired


def _adf_pvalue(spread: np.ndarray) -> tuple[float, str | None]:
    """ADF p-value of the finite part of a spread series (as ``GET /api/adf``), or NaN
    and the reason (too few points, a constant spread)."""
    try:
        return adf_test(spread[np.isfinite(spread)]).pvalue, None
    except (InsufficientData, ValueError) as exc:
        return math.nan, f"ADF: {exc}"
