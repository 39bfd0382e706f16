"""The runtime over feed pools (several connections per market) and instruments that
join a running app, against the real replay server playing a wide tape derived from
the recorded BTCUSDT/ETHUSDT trades (ingest/replay/wide.py)."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from analytics.instruments import Instrument
from ingest.config import parse_config
from ingest.feeds import client as client_mod
from ingest.replay import ReplayServer
from ingest.replay.wide import wide_tape
from ingest.runtime import Runtime
from tests.waiting import wait_for as _wait

pytestmark = pytest.mark.slow  # a runtime, a replay server and a whole tape each



def _tape_frame(tape) -> pd.DataFrame:
    rows = [(ev.symbol, ev.trade_id, ev.time_ms, float(ev.data["p"]), float(ev.data["q"]),
             bool(ev.data["m"])) for ev in tape.events if ev.kind == "trade"]
    return pd.DataFrame(rows, columns=["symbol", "trade_id", "time_ms", "price", "qty",
                                       "maker"])


def _resample_1s(t: pd.DataFrame) -> pd.DataFrame:
    """1 s OHLCV + count of trades (bucket = floor(T / 1000) * 1000), pandas only."""
    t = t.sort_values("trade_id").assign(ts=lambda d: d["time_ms"] // 1000 * 1000)
    g = t.groupby("ts")
    return pd.DataFrame({"open": g["price"].first(), "high": g["price"].max(),
                         "low": g["price"].min(), "close": g["price"].last(),
                         "volume": g["qty"].sum(), "trades": g["price"].size()})


def _runtime(server: ReplayServer, db, symbols, *extra: str) -> Runtime:
    # the tape starts once every trade stream is subscribed (several connections
    # subscribe one after the other; none may miss its instruments' first trades)
    server.wait_streams = len(symbols)
    return Runtime(parse_config([
        "--symbols", ",".join(symbols), "--market", "futures", "--stream", "trade",
        "--db", str(db), "--feed-url", f"perp={server.ws_base}/market",
        "--rest-url", f"perp={server.rest_base}", "--port", "8999", *extra]))


def test_a_killed_connection_reconnects_and_backfills_alone_bars_exact(tmp_path) -> None:
    """12 instruments at 4 streams per connection: 3 trade connections of 4 on
    ``/market`` (perp's book streams get 3 book-only ones on ``/public``, quiet: the
    wide tape has no book). Connection #1 is cut mid-tape: it reconnects on its
    own, its gap comes back from REST, the other two never reconnect and keep
    delivering meanwhile. Every trade of the tape is stored once and the stored 1 s
    bars equal a pandas resample of the tape, per instrument."""
    tape = wide_tape(12, market="perp")
    server = ReplayServer(tape, speed=30, profile="futures", loop=False).start()
    symbols = [s for _m, s in tape.instruments]
    rt = _runtime(server, tmp_path / "k.db", symbols, "--streams-per-connection", "4")
    want = _tape_frame(tape)
    try:
        rt.start()
        pool = rt.feeds["perp"]
        assert [len(f.symbols) for f in pool.feeds] == [4, 4, 4, 4, 4, 4]
        assert pool.trade_feeds == pool.feeds[:3]
        assert set(rt.ingestor.quiet_probes) == {f"perp#{i}" for i in range(6)}
        victim, others = pool.feeds[1], [pool.feeds[0], pool.feeds[2]]
        _wait(lambda: victim.stats.trades >= 50, 60, "trades on connection #1")
        client_mod._abort(victim._ws)  # the socket dies under it
        _wait(lambda: not victim.status().connected, 10, "connection #1 down")
        down = [f.stats.trades for f in others]
        _wait(lambda: victim.status().connects >= 2 and victim.subscribed, 30,
              "connection #1 back")
        back = [f.stats.trades for f in others]
        _wait(lambda: server.ended, 120, "the tape's end")
        _wait(lambda: rt.health()["store"]["rows"] >= len(want), 60, "every trade")
        time.sleep(0.5)
        h = rt.health()
        assert rt.store.flush(10.0)
    finally:
        rt.stop()
        server.stop()
    assert victim.status().reconnects >= 1 and victim.status().gaps > 0
    assert all(f.status().reconnects == 0 for f in others)
    assert all(b > d for b, d in zip(back, down, strict=True))  # flowing meanwhile
    assert h["feed"]["gaps"] == 0 and h["feed"]["gaps_filled"] == victim.status().gaps
    conns = h["feed"]["connections"]
    assert [(c["id"], c["market"], c["kind"], c["streams"]) for c in conns] == [
        (i, "perp", "trade" if i < 3 else "book", 4) for i in range(6)]
    assert [c["reconnects"] > 0 for c in conns] == [False, True, False, False, False,
                                                     False]
    from ingest.store import open_store

    stores = open_store(str(tmp_path / "k.db"), readonly=True, market="perp")
    try:
        for sym in symbols:
            cols = stores.trades.read_trades(sym)
            exp = want[want["symbol"] == sym].sort_values("trade_id")
            np.testing.assert_array_equal(cols.trade_id, exp["trade_id"].to_numpy(),
                                          err_msg=sym)
            bars = stores.trades.read_bars(sym)
            got = pd.DataFrame({f: getattr(bars, f) for f in (
                "ts", "open", "high", "low", "close", "volume", "trades")}).set_index("ts")
            got = got[got["trades"] > 0]
            ref = _resample_1s(exp)
            assert got.index.equals(ref.index), sym
            np.testing.assert_allclose(got.to_numpy(float), ref.to_numpy(float),
                                       rtol=1e-12, err_msg=sym)
    finally:
        stores.close()


def test_instruments_join_a_running_app_names_stable(tmp_path) -> None:
    """``Runtime.add_instruments``: 4 new listings join 6 running instruments without
    a restart: the names already served do not change, the new ones get rings, engine
    series, store rows and streams (the last connection's room, then a new
    connection with its own bar-clock lane), and their trades are stored from the
    first one received on, each id once (contiguous, as the tape has them)."""
    tape = wide_tape(10, market="perp")
    server = ReplayServer(tape, speed=5, profile="futures", loop=True).start()
    symbols = [s for _m, s in tape.instruments]
    rt = _runtime(server, tmp_path / "a.db", symbols[:6], "--streams-per-connection", "4")
    try:
        rt.start()
        pool = rt.feeds["perp"]
        # trades on /market, the book on /public connections of its own
        assert [len(f.symbols) for f in pool.trade_feeds] == [4, 2]
        assert [len(f.symbols) for f in pool.book_feeds] == [4, 2]
        names_before = rt.universe.names
        _wait(lambda: all(rt.ingestor.ticks_held(s) > 0 for s in symbols[:6]), 60,
              "trades of the first six")
        joined = [Instrument("binance", "perp", s) for s in symbols[6:]]
        assert rt.add_instruments(joined + [Instrument("binance", "perp", symbols[0])]) \
            == symbols[6:]
        assert rt.add_instruments(joined) == []  # known: nothing happens
        assert rt.universe.names == (*names_before, *symbols[6:])
        assert [len(f.symbols) for f in pool.trade_feeds] == [4, 4, 2]
        assert [len(f.symbols) for f in pool.book_feeds] == [4, 4, 2]
        assert set(rt.ingestor.quiet_probes) == {f"perp#{i}" for i in range(6)}
        _wait(lambda: all(rt.ingestor.ticks_held(s) >= 5 for s in symbols[6:]), 60,
              "trades of the new listings")
        h = rt.health()
        assert rt.store.flush(10.0)
        from dashapp.facade import LiveMarketData

        names = LiveMarketData(rt).names()
        stored = {s: rt.store.read_trades(s) for s in symbols[6:]}
    finally:
        rt.stop()
        server.stop()
    assert set(symbols) <= set(names)
    assert h["universe"]["instruments"] == 10 and not h["universe"]["dynamic"]
    assert len(h["feed"]["connections"]) == 6
    assert all(h["symbols"][s]["ticks"] >= 5 for s in symbols[6:])
    want = _tape_frame(tape)
    for sym, cols in stored.items():
        ids = cols.trade_id
        assert len(ids) >= 5 and (np.diff(ids) == 1).all(), sym
        assert np.isin(ids, want.loc[want["symbol"] == sym, "trade_id"]).all(), sym
