"""``--symbols top:N`` / ``all`` in the runtime (C1): resolved at start from the REST's
``exchangeInfo`` and 24 h ticker (the replay server answers them from its tape), the
store's instruments when that REST does not answer, a clear exit when neither can say;
new listings join through the refresher without a restart."""

from __future__ import annotations

import time

import pandas as pd
import pytest

from analytics.instruments import Instrument
from ingest.config import parse_config
from ingest.models import Trade
from ingest.replay import ReplayServer
from ingest.replay.wide import wide_tape
from ingest.runtime import Runtime
from ingest.store import open_store
from tests.waiting import wait_for as _wait

pytestmark = pytest.mark.slow  # a runtime and a replay server each



def _top(tape, n: int) -> list[str]:
    """The n largest quote volumes (sum of price x qty over the tape), ties by symbol:
    pandas over the tape's trades, independent of the REST that answers it."""
    df = pd.DataFrame([(ev.symbol, float(ev.data["p"]) * float(ev.data["q"]))
                       for ev in tape.events if ev.kind == "trade"],
                      columns=["symbol", "quote"])
    vol = df.groupby("symbol")["quote"].sum().reset_index()
    vol = vol.sort_values(["quote", "symbol"], ascending=[False, True])
    return vol["symbol"].head(n).tolist()


def _argv(server_or_rest, db, symbols: str, *extra: str) -> list[str]:
    if isinstance(server_or_rest, ReplayServer):
        ws, rest = server_or_rest.ws_base, server_or_rest.rest_base
    else:
        ws, rest = "ws://127.0.0.1:1", server_or_rest
    return ["--symbols", symbols, "--market", "futures", "--stream", "trade",
            "--db", str(db), "--feed-url", f"perp={ws}/market", "--rest-url",
            f"perp={rest}", "--port", "8999", *extra]


def test_top_n_is_resolved_at_start_and_ingested(tmp_path) -> None:
    tape = wide_tape(30, market="perp")
    server = ReplayServer(tape, speed=0, profile="futures", loop=True).start()
    want = _top(tape, 5)
    rt = Runtime(parse_config(_argv(server, tmp_path / "t.db", "top:5,perp:AAVEUSDT",
                                    "--streams-per-connection", "6")))
    try:
        # explicit instruments first, then the selector's in rank order
        assert [i.symbol for i in rt.universe] == ["AAVEUSDT", *[
            s for s in want if s != "AAVEUSDT"]]
        assert all(i.market == "perp" for i in rt.universe)
        rt.start()
        pool = rt.feeds["perp"]
        assert len(pool.feeds) == 2  # 6 instruments x 2 streams / 6
        _wait(lambda: all(rt.ingestor.ticks_held(s) > 0 for s in rt.universe.names), 60,
              "trades of every resolved instrument")
        h = rt.health()
    finally:
        rt.stop()
        server.stop()
    assert h["universe"]["dynamic"] and h["universe"]["instruments"] == 6
    assert h["universe"]["refresher"] is not None


def test_unreachable_rest_falls_back_to_the_stored_instruments(tmp_path) -> None:
    dead = "http://127.0.0.1:9"  # nothing listens on the discard port here
    db = tmp_path / "s.db"
    with pytest.raises(SystemExit) as exc:
        Runtime(parse_config(_argv(dead, db, "top:3")))
    assert dead in str(exc.value) and "holds no instrument" in str(exc.value)
    # a store that holds two perp instruments: the run takes them, with a warning
    stores = open_store(str(db), market="perp")
    stores.trades.start()
    for sym in ("SOLUSDT", "XRPUSDT"):
        stores.trades.add_trade(Trade(sym, 1, 1_723_161_600_000, 1.0, 1.0, False,
                                      1_723_161_600_000, "perp", "binance"))
    assert stores.trades.flush(10.0)
    stores.close()
    rt = Runtime(parse_config(_argv(dead, db, "top:3")))
    try:
        assert set(rt.universe) == {Instrument("binance", "perp", "SOLUSDT"),
                                    Instrument("binance", "perp", "XRPUSDT")}
    finally:
        rt.stop()


def test_a_new_listing_joins_through_the_refresher_names_stable(tmp_path) -> None:
    """``--symbols all`` at start lists the 10 instruments the replay's exchangeInfo
    has then; two more are listed mid-tape. One refresh (the refresher's step) adds
    them to the running app: names of the ten unchanged, the two subscribed and
    trading, each id once from the first one received."""
    tape = wide_tape(12, market="perp", late_listings=2)
    late = sorted((v["listed_ms"], sym) for (_m, sym), v in tape.listings.items()
                  if v.get("listed_ms"))
    assert len(late) == 2
    server = ReplayServer(tape, speed=30, profile="futures", loop=False)
    server.wait_streams = 10
    server.start()
    rt = Runtime(parse_config(_argv(server, tmp_path / "l.db", "all",
                                    "--universe-refresh", "600")))
    try:
        before = rt.universe.names
        assert len(before) == 10 and not {s for _t, s in late} & set(before)
        rt.start()
        assert rt.refresher is not None and rt.refresher.is_alive()
        _wait(lambda: server.tape_clock_ms() > late[-1][0], 60, "the late listings")
        added = rt.refresher.refresh_once()
        assert sorted(i.symbol for i in added) == sorted(s for _t, s in late)
        assert rt.universe.names[:10] == before
        assert set(rt.universe.names[10:]) == {s for _t, s in late}
        _wait(lambda: all(rt.ingestor.ticks_held(s) >= 3 for _t, s in late), 60,
              "trades of the new listings")
        h = rt.health()
        assert rt.store.flush(10.0)
        ids = {s: rt.store.read_trades(s).trade_id for _t, s in late}
    finally:
        rt.stop()
        server.stop()
    assert h["universe"]["instruments"] == 12 and h["universe"]["refresher"]["added"] == 2
    assert h["universe"]["spec"] == "perp:all"
    for sym, got in ids.items():
        assert (pd.Series(got).diff().dropna() == 1).all(), sym


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_after_a_fallback_start_the_rest_is_asked_again_soon(tmp_path, monkeypatch) -> None:
    """Started on the store's instruments (REST down), the run asks the REST again
    (30 s, doubling; 0.2 s here) and the spec's instruments join once it answers."""
    import ingest.runtime as runtime_mod

    monkeypatch.setattr(runtime_mod, "UNIVERSE_RETRY_S", 0.2)
    ws_port, rest_port = _free_port(), _free_port()
    db = tmp_path / "r.db"
    stores = open_store(str(db), market="perp")
    stores.trades.start()
    stores.trades.add_trade(Trade("ZECUSDT", 1, 1_723_161_600_000, 1.0, 1.0, False,
                                  1_723_161_600_000, "perp", "binance"))
    assert stores.trades.flush(10.0)
    stores.close()
    rt = Runtime(parse_config([
        "--symbols", "top:3", "--market", "futures", "--stream", "trade", "--db", str(db),
        "--feed-url", f"perp=ws://127.0.0.1:{ws_port}/market",
        "--rest-url", f"perp=http://127.0.0.1:{rest_port}", "--port", "8999"]))
    tape = wide_tape(12, market="perp")
    server = ReplayServer(tape, port=ws_port, rest_port=rest_port, speed=5,
                          profile="futures", loop=True)
    try:
        assert [i.symbol for i in rt.universe] == ["ZECUSDT"]
        assert str(rest_port) in rt.health()["universe"]["fallback"]
        rt.start()
        time.sleep(0.5)  # a retry or two against the dead REST
        server.start()
        _wait(lambda: rt.universe_fallback is None, 30, "the REST answering")
        assert [i.symbol for i in rt.universe][1:] == _top(tape, 3)
        _wait(lambda: all(rt.ingestor.ticks_held(s) > 0 for s in _top(tape, 3)), 60,
              "trades of the instruments that joined")
        h = rt.health()["universe"]
    finally:
        rt.stop()
        server.stop()
    assert h["fallback"] is None and h["refresher"]["added"] == 3
