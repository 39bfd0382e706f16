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
* ``adf_pvalue``: on bar close, at most every ``max(tf, adf_interval_ms)`` of bar time,
  the ADF test of the day's spread runs in a one-thread worker (it takes 0.1-2 s);
  its result is evaluated at the next evaluation with the last bar's ``ts``.

The pure firing logic (thresholds, crossings, hysteresis, cooldown) is
:func:`analytics.alerts.evaluate_series`. States are saved with the events in one
transaction (at once when something fired, else at most every ``save_interval_s``),
so a restart resumes at the saved frontier and re-fires nothing (events are also
unique per ``(rule_id, data_ts)``).

A rule is initialised on its first evaluation after it was created, edited or
re-enabled: bar rules start at the last closed point (history is not alerted on),
price rules at the ring's current end. A disabled rule is not evaluated at all.
"""

from __future__ import annotations

import logging
import math
import os
import sqlite3
import threading
import time
import weakref
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace

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
from analytics.stationarity import adf_test
from ingest.alert_store import AlertStore, NewEvent, StoredEvent, StoredRule

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
        db_path,
        *,
        evaluate: bool = True,
        min_interval_s: float = 0.1,
        save_interval_s: float = 1.0,
        rules_poll_s: float = 1.0,
        adf_interval_ms: int = ADF_INTERVAL_MS,
    ) -> None:
        self.engine = engine
        self.ingestor = ingestor
        self.store = AlertStore(db_path)
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
            for rid in rules:
                old = self._meta.get(rid)
                if old is not None and old.updated_ms != meta[rid].updated_ms:
                    self._forget_state(rid)  # edited by another process
            for rid in set(self._rules) - set(rules):
                self._forget_state(rid)
            self._rules, self._meta = rules, meta
            self._version = self.store.rules_version()

    def _forget_state(self, rule_id: int) -> None:
        self._states.pop(rule_id, None)
        self._cursors.pop(rule_id, None)
        self._errors.pop(rule_id, None)
        self._adf.pop(rule_id, None)
        self._notes.pop(rule_id, None)
        self._dirty.discard(rule_id)

    def _parse(self, data, rule_id: int | None = None) -> AlertRule:
        return parse_rule(
            data, symbols=set(self.ingestor.rings), timeframes_ms=self.engine.timeframes_ms,
            rule_id=rule_id,
        )

    def create(self, data) -> dict:
        """Validate and store a new rule; returns its JSON (with ``id``).

        Raises :class:`~analytics.alerts.RuleError` naming every bad field."""
        rule = self._parse(data)
        with self._lock:
            sr = self.store.insert_rule(rule_to_json(rule), rule.enabled)
            self._rules[sr.id], self._meta[sr.id] = replace(rule, id=sr.id), sr
            self._version = self.store.rules_version()
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
                    for key in ("regression", "prices"):
                        merged.pop(key, None)
                data = {**merged, **data}
            rule = self._parse(data, rule_id)
            sr = self.store.update_rule(rule_id, rule_to_json(rule), rule.enabled)
            if sr is None:
                raise RuleNotFound(rule_id)
            self._forget_state(rule_id)
            self._rules[rule_id], self._meta[rule_id] = rule, sr
            self._version = self.store.rules_version()
        log.info("alerts: rule %d updated: %s%s", rule_id, describe(rule),
                 "" if rule.enabled else " (disabled)")
        return self.rule_json(rule_id)

    def delete(self, rule_id: int) -> None:
        with self._lock:
            if rule_id not in self._meta or not self.store.delete_rule(rule_id):
                raise RuleNotFound(rule_id)
            self._rules.pop(rule_id, None)
            self._meta.pop(rule_id, None)
            self._forget_state(rule_id)
            self._version = self.store.rules_version()
        log.info("alerts: rule %d deleted", rule_id)

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
        return {
            "id": rule_id, **rule_to_json(rule), "created_ms": meta.created_ms,
            "updated_ms": meta.updated_ms, "description": describe(rule), "status": status,
        }

    def rules_json(self) -> list[dict]:
        return [self.rule_json(r.id) for r in self.rules()]

    def events(self, **kwargs) -> list[StoredEvent]:
        return self.store.events(**kwargs)

    def last_event_id(self) -> int:
        return self.store.last_event_id()

    def active_thresholds(
        self, a: str, b: str, tf_ms: int, window: int, regression: str, prices: str
    ) -> list[tuple[str, float]]:
        """``(metric, threshold)`` of the enabled ``zscore``/``live_zscore`` rules on
        exactly this pair selection (the pair page draws them on its z chart)."""
        key = (a, b, int(tf_ms), int(window), regression, prices)
        return [
            (r.metric, r.threshold)
            for r in self.rules()
            if r.enabled and r.metric in ("zscore", "live_zscore") and r.pair_key == key
        ]

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
                except sqlite3.Error as exc:
                    self._unsaved = events[-10_000:]
                    self.last_error = f"saving alert events: {exc}"
                    log.warning("alerts: %s (%d events kept, retried)", exc, len(events))
                    return []
                self._unsaved = []
                self._dirty.clear()
                self._last_save = time.monotonic()
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
                return self._eval_live_z(rule, st, snap)
            if m == "adf_pvalue":
                return self._eval_adf(rule, st, snap)
            ts, col = snap.series.ts, getattr(snap.series, _PAIR_COLUMN[m])
            return self._eval_points(rule, st, ts, lambda i0: col[i0:])
        bars = self.engine.bars(rule.symbol, rule.tf_ms)
        if m == "volume":
            return self._eval_points(rule, st, bars.ts, lambda i0: bars.volume[i0:])
        close, w = bars.close, rule.window

        def change(i0: int) -> np.ndarray:
            idx = np.arange(i0, len(close))
            out = np.full(len(idx), np.nan)
            ok = idx >= w
            out[ok] = 100.0 * (close[idx[ok]] / close[idx[ok] - w] - 1.0)
            return out

        return self._eval_points(rule, st, bars.ts, change)

    @staticmethod
    def _eval_points(rule, st, ts, values_from):
        """Walk every point with ``ts`` after the rule's frontier."""
        n = len(ts)
        if st is None or st.frontier_ts is None:
            if n == 0:
                return RuleState(frontier_ts=_BEFORE_ANY), []
            last = float(values_from(n - 1)[0])
            return RuleState(last_value=last, frontier_ts=int(ts[-1])), []
        i0 = int(np.searchsorted(ts, st.frontier_ts, side="right"))
        if i0 >= n:
            return st, []
        return evaluate_series(rule, st, ts[i0:], values_from(i0))

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
        self._cursors[rule.id] = batch.end_seq
        if len(batch) == 0:
            return st, []
        return evaluate_series(rule, st, batch.time_ms, batch.price)

    def _eval_live_z(self, rule, st, snap):
        la = self.ingestor.rings[rule.a].last()
        lb = self.ingestor.rings[rule.b].last()
        if la is None or lb is None:
            return st, []
        ts = max(int(la.time_ms), int(lb.time_ms))
        if st is not None and st.frontier_ts is not None and ts <= st.frontier_ts:
            return st, []
        z = snap.live_zscore(float(la.price), float(lb.price))
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
