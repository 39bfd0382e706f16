"""Alerts on the real tape, through the real pipeline, against an offline recomputation.

The recorded spot BTCUSDT + ETHUSDT trades (``sample_data/``) go through
``Ingestor.on_trade`` (ring, store, engine) with a controlled exchange clock (every
100 ms of trade time: the engine's bar clock, then ``AlertService.evaluate``, exactly
what the bar-clock thread and its listener do). The events of
"BTCUSDT/ETHUSDT 1s, w=60, OLS, z crosses above k" must be exactly the bars t with
``z(t-1) <= k < z(t)`` of ``pair_series(align_pair(bars_from_ticks(...)))``: same
bars, same count, no duplicates, also when evaluations are 5 s apart (several bars
close between two of them) and across a restart in the middle of the tape.
"""

from __future__ import annotations

import numpy as np
import pytest

from analytics.align import align_pair
from analytics.bars import bars_from_ticks
from analytics.engine import MarketEngine
from analytics.pair import pair_series
from ingest.alert_service import AlertService
from ingest.feeds.binance import parse_event
from ingest.pipeline import Ingestor
from ingest.replay.tapes import default_sample_files, load_tape
from ingest.store.sqlite_trades import SqliteTradeStore

A, B = "BTCUSDT", "ETHUSDT"
RULE = {
    "metric": "zscore", "a": A, "b": B, "timeframe": "1s", "window": 60,
    "regression": "ols", "prices": "raw", "op": "crosses_above", "threshold": 2.0,
    "hysteresis": 0, "cooldown_s": 0,
}


@pytest.fixture(scope="module")
def trades():
    return [parse_event(ev.data) for ev in load_tape(default_sample_files("spot"))]


def offline_crossings(trades, threshold: float, op: str = "crosses_above") -> np.ndarray:
    cols = {}
    for sym in (A, B):
        ts = [t for t in trades if t.symbol == sym]
        cols[sym] = bars_from_ticks(
            np.array([t.time_ms for t in ts]), np.array([t.trade_id for t in ts]),
            np.array([t.price for t in ts]), np.array([t.qty for t in ts]),
            np.array([t.buyer_is_maker for t in ts]), tf_ms=1000,
        )
    al = align_pair(cols[A], cols[B])
    z = pair_series(al.ts, al.a, al.b, window=60, regression="ols", prices="raw").zscore
    prev, cur = z[:-1], z[1:]
    with np.errstate(invalid="ignore"):
        hit = (prev <= threshold) & (cur > threshold) if op == "crosses_above" else (
            (prev >= threshold) & (cur < threshold))
    return al.ts[1:][hit]


class Pipeline:
    """Store + engine + ingestor + alert service on one DB, with a manual clock."""

    def __init__(self, db, *, eval_every_ms: int, save_interval_s: float = 1.0) -> None:
        self.store = SqliteTradeStore(db, flush_interval_s=0.05).start()
        self.engine = MarketEngine([A, B])
        self.ingestor = Ingestor([A, B], self.store, self.engine, ring_capacity=50_000)
        self.ingestor.restore()
        self.alerts = AlertService(
            self.engine, self.ingestor, db, save_interval_s=save_interval_s, rules_poll_s=1e9
        )
        self.eval_every_ms = eval_every_ms
        self.clock = None
        self.events = []

    def tick(self, now: int) -> None:
        self.engine.on_clock(now - self.ingestor.bar_close_delay_ms)
        if now % self.eval_every_ms == 0:
            self.events += self.alerts.evaluate(now)

    def feed(self, trades) -> None:
        for t in trades:
            if self.clock is None:
                self.clock = t.time_ms - t.time_ms % 100
            while self.clock + 100 <= t.time_ms:  # never ahead of trades still to come
                self.clock += 100
                self.tick(self.clock)
            self.ingestor.on_trade(t)

    def finish(self) -> None:
        end = self.clock + 10_000
        while self.clock < end:
            self.clock += 100
            self.tick(self.clock)

    def close(self) -> None:
        self.alerts.stop()
        self.store.close()


@pytest.mark.parametrize("eval_every_ms", [100, 5000])
def test_replay_fires_exactly_the_offline_crossings(tmp_path, trades, eval_every_ms):
    expected = offline_crossings(trades, 2.0)
    assert len(expected) >= 3, "the tape must hold several crossings for this test"
    p = Pipeline(tmp_path / "a.db", eval_every_ms=eval_every_ms)
    rule = p.alerts.create(RULE)
    p.feed(trades)
    p.finish()
    got = [e.data_ts for e in p.events]
    np.testing.assert_array_equal(got, expected)
    stored = p.alerts.events(rule_id=rule["id"])
    assert [e.data_ts for e in stored] == list(expected)
    assert len({e.data_ts for e in stored}) == len(stored)
    assert all(e.value > 2.0 and e.threshold == 2.0 for e in stored)
    p.close()


def test_restart_mid_tape_neither_refires_nor_misses(tmp_path, trades):
    """Stop at the middle of the tape, restart on the same DB (bars restored from
    SQLite), play the rest: the events equal the offline crossings of the whole tape.
    States are saved only with events (a stale frontier, as after a crash): the
    re-walked points must not store a second event."""
    rule = dict(RULE, threshold=1.5)
    expected = offline_crossings(trades, 1.5)
    half = len(trades) // 2
    p1 = Pipeline(tmp_path / "r.db", eval_every_ms=100, save_interval_s=1e9)
    rid = p1.alerts.create(rule)["id"]
    p1.feed(trades[:half])
    first = [e.data_ts for e in p1.events]
    assert first, "the first half must fire so the restart is tested"
    p1.alerts._dirty.clear()  # as if killed: only the state saved with the last event
    p1.alerts.store.close()
    p1.store.close()
    p2 = Pipeline(tmp_path / "r.db", eval_every_ms=100)
    assert [r.id for r in p2.alerts.rules()] == [rid]
    p2.clock = p1.clock
    p2.feed(trades[half:])
    p2.finish()
    stored = [e.data_ts for e in p2.alerts.events(rule_id=rid)]
    np.testing.assert_array_equal(stored, expected)
    assert first + [e.data_ts for e in p2.events] == list(expected)
    p2.close()


# ------------------------------------------------- the frontier starts at creation
def test_rule_created_before_the_tape_fires_every_crossing_however_late_evaluated(
    tmp_path, trades
):
    """The tape lands at full speed before the evaluator's first tick: the rule was
    created before any data, so every bar is after its creation and every crossing
    fires (the old frontier started at the last closed point of the first
    evaluation and dropped them as "history")."""
    expected = offline_crossings(trades, 2.0)
    p = Pipeline(tmp_path / "late.db", eval_every_ms=10**12)  # never during the feed
    rid = p.alerts.create(RULE)["id"]
    p.feed(trades)
    p.finish()
    p.events += p.alerts.evaluate(p.clock)  # the first evaluation, after it all
    assert [e.data_ts for e in p.events] == list(expected)
    assert [e.data_ts for e in p.alerts.events(rule_id=rid)] == list(expected)
    p.close()


def test_rule_created_mid_tape_evaluates_every_bar_after_its_creation(tmp_path, trades):
    """Created at data clock C in the middle of the tape, evaluated only at the end (a
    starved evaluator): it fires exactly the crossings at bars closing after C, with
    the bar before as the previous value of the first."""
    expected = offline_crossings(trades, 1.5)
    p = Pipeline(tmp_path / "mid.db", eval_every_ms=10**12)
    k = len(trades) // 3
    p.feed(trades[:k])
    clock = max(t.time_ms for t in trades[:k])  # the data clock: the last trade
    rid = p.alerts.create(dict(RULE, threshold=1.5))["id"]
    p.feed(trades[k:])
    p.finish()
    p.events += p.alerts.evaluate(p.clock)
    want = [int(t) for t in expected if t > clock - 1000]
    assert len(want) >= 2 and len(want) < len(expected)
    assert [e.data_ts for e in p.alerts.events(rule_id=rid)] == want
    p.close()
