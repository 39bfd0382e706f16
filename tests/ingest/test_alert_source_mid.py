"""Alert rules on mid prices (``source=mid``, #17), on REAL recorded data: the committed
raw captures of USDT-M futures BTCUSDT and ETHUSDT (trades and ``@bookTicker``) go
through the Ingestor (``on_trade``/``on_book``) into the engine, and an AlertService
evaluates a ``zscore`` rule and a ``live_zscore`` rule with ``source=mid``.

Checked against an independent computation: the z-score of the pair definition
(:func:`analytics.pair.pair_series`) applied to the end-of-second mids computed with
pandas from the raw frames, and the crossing rule written out here.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from analytics.engine import MarketEngine
from analytics.pair import pair_series
from ingest.alert_service import AlertService
from ingest.models import BookTicker, Trade
from ingest.pipeline import Ingestor
from ingest.store.sqlite_trades import SqliteTradeStore
from tests.dashapp.test_source_mid import SYMS, _events, independent_mid_pair, load_raw

W = 20
K = 1.0


@pytest.fixture(scope="module")
def raw():
    return {s: load_raw(s) for s in SYMS}


def _item(kind: int, sym: str, r):
    if kind == 0:
        return Trade(sym, r.id, r.T, r.p, r.q, r.m, r.T, "futures")
    return BookTicker(sym, 0, r.bid, r.bid_qty, r.ask, r.ask_qty, r.T, r.T, "futures")


def test_zscore_and_live_zscore_rules_on_mids(tmp_path, raw):
    store = SqliteTradeStore(tmp_path / "a.db")
    engine = MarketEngine(list(SYMS))
    ing = Ingestor(list(SYMS), store, engine, ring_capacity=50_000, write=False)
    svc = AlertService(engine, ing, tmp_path / "a.db", rules_poll_s=1e9)
    base = {"a": "BTCUSDT", "b": "ETHUSDT", "timeframe": "1s", "window": W,
            "regression": "ols", "prices": "raw", "source": "mid"}
    bar = svc.create({**base, "metric": "zscore", "op": "crosses_above", "threshold": K})
    live = svc.create({**base, "metric": "live_zscore", "op": "gt", "threshold": 0.0})
    assert svc.rule_json(bar["id"])["source"] == "mid"
    assert "mid" in svc.rule_json(bar["id"])["description"]
    events, clock, live_checks = [], None, []
    for _, kind, sym, r in _events(raw):
        if kind == 0:
            ing.on_trade(_item(kind, sym, r))
        else:
            ing.on_book(_item(kind, sym, r))
        sec = r.T // 1000 * 1000 - 2000
        if clock is None or sec > clock:
            clock = sec
            engine.on_clock(clock)
            batch = svc.evaluate(clock)
            events += batch
            fired = [e for e in batch if e.rule_id == live["id"]]
            if fired:  # the value is z of the latest quotes' mids, not of the last trades
                qa, qb = ing.quote("BTCUSDT"), ing.quote("ETHUSDT")
                key = next(k for k in engine.tracked_pairs() if k.source == "mid")
                snap = engine.tracked_snapshot(key)
                ta, tb = ing.rings["BTCUSDT"].last(), ing.rings["ETHUSDT"].last()
                live_checks.append((fired[0].value,
                                    snap.live_zscore((qa.bid + qa.ask) / 2, (qb.bid + qb.ask) / 2),
                                    snap.live_zscore(ta.price, tb.price)))
    end = max(int(raw[s][1]["T"].max()) for s in SYMS) + 5_000
    engine.on_clock(end)
    events += svc.evaluate(end)

    # independent: z of the pair definition on the pandas mids, crossings above K
    ref = independent_mid_pair(raw)
    z = pair_series(ref["ts"].to_numpy(np.int64), ref["a"].to_numpy(), ref["b"].to_numpy(),
                    window=W, regression="ols", prices="raw", tf_ms=1_000).zscore
    ts = ref["ts"].to_numpy(np.int64)
    crossings = [int(ts[i]) for i in range(1, len(z))
                 if math.isfinite(z[i - 1]) and math.isfinite(z[i]) and z[i - 1] <= K < z[i]]
    got = [e.data_ts for e in events if e.rule_id == bar["id"]]
    assert crossings, "the sample crosses the threshold"
    first_eval = svc.rule_json(bar["id"])  # still enabled and known
    assert first_eval["status"] is not None
    # every crossing after the rule first saw the pair fires, at its bar, with its z
    assert got == [t for t in crossings if t >= got[0]] and len(got) >= 1
    for e in events:
        if e.rule_id == bar["id"]:
            i = int(np.searchsorted(ts, e.data_ts))
            assert e.value == pytest.approx(z[i], rel=1e-9)
    # the live rule fires on the quotes' mids (z of the latest quotes, never the trades)
    assert len(live_checks) >= 3
    for value, on_mids, on_trades in live_checks:
        assert value == pytest.approx(on_mids, rel=1e-12)
        assert value != on_trades
    svc.stop()
    store.close()
