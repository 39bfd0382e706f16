"""Restart restore with deferred days (ingest/pipeline.py ``Ingestor.restore``,
analytics/engine.py ``MarketEngine.defer_history``) on the real spot tape:

* the series after a deferred restore equal an eager restore's, and a pandas resample
  of every stored trade, at every tracked timeframe, whoever loads the day first;
* trades fed between the restore and the day's load stay after the history, as if the
  day had been loaded first;
* a pair built on deferred legs equals one built on eagerly restored legs;
* concurrent readers load a day once; a reader holding the engine lock never deadlocks;
* the background loader finishes and the report then counts every day's bars;
* the top of book too: a deferred day of book bars equals the eager restore's, on the
  real futures captures (bookTicker + trades).
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pandas as pd
import pytest

from analytics.bars import BAR_FIELDS
from analytics.engine import MarketEngine
from ingest.feeds.binance import parse_event
from ingest.pipeline import Ingestor
from ingest.store.sqlite_trades import SqliteTradeStore

SYMBOLS = ["BTCUSDT", "ETHUSDT"]
TFS = (1_000, 60_000, 300_000)


@pytest.fixture(scope="module")
def trades(spot_tape):
    """The spot tape's trades (BTCUSDT + ETHUSDT, 10.8 min, 34,419), in tape order."""
    return [parse_event(ev.data) for ev in spot_tape.events if ev.kind == "trade"]


@pytest.fixture(scope="module")
def stored(tmp_path_factory, trades):
    """A store written by a live ingest of all but the last 2,000 trades (which the
    tests feed after a restore), every bar the clock closed stored."""
    db = tmp_path_factory.mktemp("restore") / "m.db"
    store = SqliteTradeStore(db).start()
    ing = Ingestor(SYMBOLS, store, MarketEngine(SYMBOLS))
    for t in trades[:-2_000]:
        ing.on_trade(t)
    store.flush(30)
    store.close()
    return db


def restored(db, *, defer: bool, background: bool = True):
    store = SqliteTradeStore(db, readonly=True)
    engine = MarketEngine(SYMBOLS)
    ing = Ingestor(SYMBOLS, store, engine, write=False)
    if not background:
        ing._load_histories = lambda *a: None  # readers load the days themselves
    report = ing.restore(defer_history=defer)
    return store, engine, ing, report


def columns(engine, sym, tf):
    cols = engine.bars(sym, tf).columns()
    return {f: np.asarray(cols[f]).copy() for f in BAR_FIELDS}


def oracle_1s(trades, sym, end_ms) -> pd.DataFrame:
    """pandas: 1 s OHLCV of one symbol's trades before ``end_ms``."""
    t = pd.DataFrame([(x.trade_id, x.time_ms, x.price, x.qty, x.buyer_is_maker)
                      for x in trades if x.symbol == sym and x.time_ms < end_ms],
                     columns=["trade_id", "time_ms", "price", "qty", "maker"])
    t = t.sort_values("trade_id").assign(ts=lambda d: d["time_ms"] // 1000 * 1000)
    g = t.groupby("ts")
    return pd.DataFrame({"open": g["price"].first(), "high": g["price"].max(),
                         "low": g["price"].min(), "close": g["price"].last(),
                         "volume": g["qty"].sum(), "trades": g["price"].size()})


def test_deferred_restore_equals_eager_restore_and_a_pandas_resample(stored, trades):
    s1, eager, _, rep_eager = restored(stored, defer=False)
    s2, lazy, ing, rep_lazy = restored(stored, defer=True, background=False)
    try:
        assert rep_eager.deferred == 0 and rep_lazy.deferred == 2 and rep_lazy.bars == 0
        assert sorted(lazy.deferred_symbols()) == SYMBOLS
        for sym in SYMBOLS:
            for tf in TFS:
                want, got = columns(eager, sym, tf), columns(lazy, sym, tf)  # loads here
                for f in BAR_FIELDS:
                    np.testing.assert_array_equal(got[f], want[f], err_msg=f"{sym} {tf} {f}")
                assert lazy._series[sym][tf].appended == eager._series[sym][tf].appended
            got = columns(lazy, sym, 1_000)
            oracle = oracle_1s(trades[:-2_000], sym, int(got["ts"][-1]) + 1_000)
            assert got["ts"].tolist() == oracle.index.tolist()
            for f in ("open", "high", "low", "close", "trades"):
                np.testing.assert_array_equal(got[f], oracle[f].to_numpy(), err_msg=f)
            np.testing.assert_allclose(got["volume"], oracle["volume"], rtol=1e-12)
        assert lazy.deferred_symbols() == []
    finally:
        s1.close()
        s2.close()


def test_trades_fed_before_the_load_stay_after_the_history(stored, trades):
    s1, eager, _, _ = restored(stored, defer=False)
    s2, lazy, _, _ = restored(stored, defer=True, background=False)
    try:
        for t in trades[-2_000:]:  # live trades after the restart, the days not in yet
            for engine in (eager, lazy):
                engine.on_trade(t.symbol, t.time_ms, t.trade_id, t.price, t.qty,
                                t.buyer_is_maker)
        assert sorted(lazy.deferred_symbols()) == SYMBOLS
        for sym in SYMBOLS:
            for tf in TFS:
                want, got = columns(eager, sym, tf), columns(lazy, sym, tf)
                for f in BAR_FIELDS:
                    np.testing.assert_array_equal(got[f], want[f], err_msg=f"{sym} {tf} {f}")
    finally:
        s1.close()
        s2.close()


def test_a_pair_on_deferred_legs_equals_one_on_eager_legs(stored):
    s1, eager, _, _ = restored(stored, defer=False)
    s2, lazy, _, _ = restored(stored, defer=True, background=False)
    try:
        for args in ((1_000, 60, "ols", "log"), (60_000, 5, "ols", "raw")):
            want = eager.pair("BTCUSDT", "ETHUSDT", *args)
            got = lazy.pair("BTCUSDT", "ETHUSDT", *args)
            assert len(got.series) == len(want.series) > 5
            pd.testing.assert_frame_equal(got.frame(), want.frame())
            assert (got.alpha, got.beta) == (want.alpha, want.beta)
    finally:
        s1.close()
        s2.close()


def test_concurrent_readers_load_a_day_once_and_a_lock_holder_never_waits(stored):
    s, lazy, ing, _ = restored(stored, defer=True, background=False)
    calls = []
    real = lazy._deferred[("bars", "BTCUSDT")]

    def slow():
        calls.append(threading.get_ident())
        time.sleep(0.3)
        return real()

    lazy.defer_history("BTCUSDT", slow)
    try:
        out, errors = [], []

        def read():
            try:
                out.append(len(lazy.bars("BTCUSDT", 1_000)))
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=read) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert not errors and len(calls) == 1 and len(set(out)) == 1 and out[0] > 300
        # a reader holding the engine lock while another thread loads: no deadlock
        lazy.defer_history("ETHUSDT", slow)
        other = threading.Thread(target=lambda: lazy.bars("ETHUSDT", 1_000))
        other.start()
        time.sleep(0.05)
        with lazy.lock:
            n = len(lazy.bars("ETHUSDT", 1_000))
        other.join(10)
        assert not other.is_alive() and n > 300
    finally:
        s.close()


def test_background_loader_loads_every_day_and_completes_the_report(stored):
    s1, eager, _, rep_eager = restored(stored, defer=False)
    s2, lazy, ing, rep = restored(stored, defer=True)
    try:
        deadline = time.monotonic() + 20
        while ing.restored.history_seconds is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert lazy.deferred_symbols() == []
        assert rep.history_seconds is None and ing.restored.history_seconds >= rep.seconds
        assert ing.restored.bars == rep_eager.bars > 300
        for sym in SYMBOLS:
            np.testing.assert_array_equal(lazy._series[sym][1_000].view()["close"],
                                          eager._series[sym][1_000].view()["close"])
    finally:
        s1.close()
        s2.close()


def test_after_a_fork_a_parent_load_in_progress_is_not_waited_for(stored):
    """A background job forks while the parent loads a day: the child has no such
    load running (its thread did not come along); its reader loads the day itself."""
    s, lazy, ing, _ = restored(stored, defer=True, background=False)
    try:
        lazy._loading["BTCUSDT"] = threading.Event()  # the parent's load, never ending
        lazy._loads = 1
        lazy.reset_after_fork()
        assert lazy.history_loads == 0
        got = []
        t = threading.Thread(target=lambda: got.append(len(lazy.bars("BTCUSDT", 1_000))))
        t.start()
        t.join(10)
        assert not t.is_alive() and got[0] > 300
    finally:
        s.close()


# ------------------------------------------------------------------ top of book
BOOK_TFS = (1_000, 10_000, 30_000)  # the 2-minute captures hold buckets on both sides


@pytest.fixture(scope="module")
def stored_book(tmp_path_factory):
    """A store written by a live ingest of the REAL futures captures (trades and
    bookTicker of BTCUSDT and ETHUSDT, 2 min), the open bars flushed at the end."""
    from tests.analytics.test_engine_book import FILES, events

    names = list(FILES)
    db = tmp_path_factory.mktemp("restore-book") / "b.db"
    store = SqliteTradeStore(db, market="perp").start()
    ing = Ingestor(names, store, MarketEngine(names, timeframes_ms=BOOK_TFS))
    for e in events():
        if e[1] == "book":
            _, _, name, t, b, a, bq, aq = e
            ev = {"e": "bookTicker", "u": 1, "s": name, "b": repr(b), "B": repr(bq),
                  "a": repr(a), "A": repr(aq), "T": t, "E": t}
            ing.on_book(parse_event(ev, market="perp"))
        else:
            _, _, name, t, tid, p, q, m = e
            ev = {"e": "trade", "E": t, "s": name, "t": tid, "p": repr(p), "q": repr(q),
                  "T": t, "m": m}
            ing.on_trade(parse_event(ev, market="perp"))
    ing.flush_open_bars()
    store.flush(30)
    store.close()
    return db, names


@pytest.mark.slow  # the captures' ingest: ~10 s here
def test_deferred_book_restore_equals_the_eager_one(stored_book):
    db, names = stored_book
    engines, reports = [], []
    stores = []
    for defer in (False, True):
        store = SqliteTradeStore(db, readonly=True, market="perp")
        stores.append(store)
        engine = MarketEngine(names, timeframes_ms=BOOK_TFS)
        ing = Ingestor(names, store, engine, write=False)
        ing._load_histories = lambda *a: None
        reports.append(ing.restore(defer_history=defer))
        engines.append(engine)
    eager, lazy = engines
    try:
        assert reports[1].deferred == 2 and reports[1].book_bars < reports[0].book_bars
        assert lazy.deferred_symbols() == sorted(names)
        for name in names:
            assert lazy.book_quote(name) == eager.book_quote(name)
            for tf in BOOK_TFS:
                x, y = eager.book_bars(name, tf), lazy.book_bars(name, tf)
                assert len(x) == len(y) > 0 and x.first_cover_ms == y.first_cover_ms
                for f in ("ts", "bid", "ask", "spread_bps_twa", "updates"):
                    np.testing.assert_array_equal(getattr(x, f), getattr(y, f),
                                                  err_msg=f"{name} {tf} {f}")
                np.testing.assert_array_equal(lazy.mid_bars(name, tf).close,
                                              eager.mid_bars(name, tf).close)
                np.testing.assert_array_equal(lazy.bars(name, tf).close,
                                              eager.bars(name, tf).close)
        assert lazy.deferred_symbols() == []
    finally:
        for s in stores:
            s.close()
