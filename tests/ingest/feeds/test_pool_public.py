"""Perp top of book on Binance's ``/public`` path (docs/binance-protocol.md, section 1).

Since Binance's 2026 "Base URL split" USDⓈ-M futures serve ``@aggTrade``/``@trade``
under ``/market`` and ``@bookTicker`` only under ``/public``. The app's runtime plays the
REAL raw captures of perp BTCUSDT and ETHUSDT (``book_sample_files("perp")``: trades and
``@bookTicker`` frames as received) through the replay exchange, which routes like
Binance (a book stream on ``/market`` is never delivered). At two streams per
connection the perp pool opens one trade connection (both symbols) on ``/market`` and
one book-only connection on ``/public``; each is a bar-clock lane. Checked against the raw files (pandas, nothing
the app produced): every book update arrives over ``/public``, the live quote is the
tape's last ``@bookTicker``, the 1 s book bars are the ones tests/ingest/test_book_replay.py
computes from the frames' ``T`` (no update taken late, at the default close delay: the
book lanes hold the bar clock), and every trade is stored exactly once.
"""

from __future__ import annotations

import gzip
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import orjson
import pytest

from analytics.engine import MarketEngine
from analytics.instruments import Universe
from ingest.config import parse_config
from ingest.feeds.binance_perp import BINANCE_PERP
from ingest.feeds.binance_spot import BINANCE_SPOT
from ingest.models import BookTicker, Trade
from ingest.pipeline import Ingestor
from ingest.replay import ReplayServer
from ingest.replay.protocol import prefix_serves
from ingest.replay.tapes import book_sample_files, load_tape
from ingest.runtime import Runtime
from ingest.store import open_store
from tests.ingest.test_book_replay import (
    assert_bars_equal,
    independent_book_bars,
    raw_book_frames,
)
from tests.waiting import wait_for

FILES = {path.name.split("_")[2]: path for path in book_sample_files("perp")}


def raw_trade_ids(path) -> list[int]:
    """The ``@trade`` ids of a raw capture, in recorded order."""
    ids = []
    with gzip.open(path, "rb") as fh:
        for line in fh:
            frame = line.split(b" ", 1)[1]
            if b"@trade" in frame:
                ids.append(orjson.loads(frame)["data"]["t"])
    return ids


def test_book_streams_live_under_public_only() -> None:
    """The protocol: perp book-only connections on ``/public`` (default host, or the
    ``/market`` base swapped); spot and bare hosts keep one connection for both."""
    assert BINANCE_PERP.book_control_url() == "wss://fstream.binance.com/public/stream"
    assert BINANCE_PERP.control_url() == "wss://fstream.binance.com/market/stream"
    assert BINANCE_PERP.book_control_url("ws://h:9/market") == "ws://h:9/public/stream"
    assert BINANCE_PERP.book_control_url("ws://h:9") is None
    assert BINANCE_SPOT.book_control_url() is None
    assert orjson.loads(BINANCE_PERP.subscribe_message(
        ["BTCUSDT"], "aggTrade", 7, book=True, trades=False)) == {
        "method": "SUBSCRIBE", "params": ["btcusdt@bookTicker"], "id": 7}
    assert [prefix_serves(p, "btcusdt@bookTicker") for p in ("/market", "/public", "")] == [
        False, True, True]
    assert [prefix_serves(p, "btcusdt@aggTrade") for p in ("/market", "/public", "")] == [
        True, False, True]


class _Store:  # no writes; names as a store with the universe would give
    def name(self, inst):
        return inst.symbol


def test_a_lagging_book_connection_holds_the_bar_clock() -> None:
    """The book-only connection is a lane (``Ingestor.book_lane_sink``): while the
    trade connection (ETHUSDT) is at 9.8 s and the book one (BTCUSDT) at 0.6 s, bars
    close on the book's
    clock, so a book update at 0.95 s still lands in its own second (not reordered)
    and the 1 s book bar holds it. Without the lane the close clock would be 9.8 s."""
    universe = Universe.parse(["BTCUSDT", "ETHUSDT"], "perp")
    engine = MarketEngine(list(universe.names))
    ing = Ingestor(list(universe.names), _Store(), engine, write=False, universe=universe)
    trades, book = ing.lane_sink("perp#0"), ing.book_lane_sink("perp#1")
    ing.use_quiet_probes({"perp#0": lambda: False, "perp#1": lambda: True})
    t0 = 1_723_161_600_000

    def quote(u: int, t: int, bid: float) -> BookTicker:
        return BookTicker("BTCUSDT", u, bid, 1.0, bid + 0.1, 2.0, t, t, "perp")

    for k in range(50):
        trades(Trade("ETHUSDT", 100 + k, t0 + 200 * k, 60.0, 1.0, False, t0 + 200 * k,
                     "perp", "binance"))
    for k in range(4):
        book(quote(10 + k, t0 + 200 * k, 60.0 + k))
    assert ing.close_clock_ms() == t0 + 600 - ing.bar_close_delay_ms
    ing.clock_tick(0.1)
    book(quote(20, t0 + 950, 70.0))  # still second t0: not late
    book(quote(21, t0 + 1_400, 71.0))
    assert engine.book_reordered("BTCUSDT") == 0
    bars = engine.book_bars("BTCUSDT", 1_000)
    assert bars.ts.tolist()[:1] == [t0] and bars.updates.tolist()[:1] == [5]
    assert bars.bid.tolist()[:1] == [70.0]


@pytest.mark.slow
def test_replay_never_delivers_a_book_stream_on_market() -> None:
    """A ``/market`` connection asking for trades and book gets the trades alone (the
    book subscription acknowledged, never served); ``/public`` the book alone."""
    import websocket

    path = FILES["ETHUSDT"]
    raw = raw_book_frames(path)
    trades = raw_trade_ids(path)
    with ReplayServer(load_tape([path]), speed=0, rate_limit=None, rest=False) as srv:
        srv.wait_streams = 2  # the tape starts once both connections subscribed
        streams = "/stream?streams=ethusdt@trade/ethusdt@bookTicker"
        market = websocket.create_connection(srv.ws_base + "/market" + streams, timeout=10)
        public = websocket.create_connection(srv.ws_base + "/public" + streams, timeout=10)
        # read both at once: at speed 0 the player waits for the slower reader
        with ThreadPoolExecutor(2) as pool:
            m = pool.submit(lambda: [orjson.loads(market.recv())["data"]
                                     for _ in range(len(trades))])
            p = pool.submit(lambda: [orjson.loads(public.recv())["data"]
                                     for _ in range(len(raw))])
            got_m, got_p = m.result(), p.result()
        market.close()
        public.close()
    assert [d["t"] for d in got_m] == trades and {d["e"] for d in got_m} == {"trade"}
    assert [d["u"] for d in got_p] == raw["u"].tolist()


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Both perp captures through the runtime at two streams per connection."""
    db = tmp_path_factory.mktemp("public") / "p.db"
    cfg = parse_config(["--replay", *map(str, FILES.values()), "--db", str(db),
                        "--market", "futures", "--stream", "trade",
                        "--replay-speed", "4", "--replay-once", "--replay-keep-times",
                        "--rest-url", "off", "--streams-per-connection", "2"])
    rt = Runtime(cfg)
    rt.start()
    try:
        wait_for(lambda: rt.replay.status()["ended"]
                 or rt.replay.status()["played"] >= rt.replay.status()["total"],
                 240, "the whole tape played")
        time.sleep(1.0)  # the last frames through the sockets
        names = {inst.symbol: rt.universe.name(inst) for inst in rt.universe}
        insts = {inst.symbol: inst for inst in rt.universe}
        quotes = {s: rt.ingestor.quote(n) for s, n in names.items()}
        reordered = {s: rt.engine.book_reordered(n) for s, n in names.items()}
        health = rt.health()
        lanes = set(rt.ingestor.quiet_probes)
    finally:
        rt.stop()
    stores = open_store(db, readonly=True)
    try:
        # by instrument: a bare name in another process means spot
        book = {s: stores.trades.read_book_bars(i) for s, i in insts.items()}
        ids = {s: stores.trades.read_trades(i).trade_id for s, i in insts.items()}
    finally:
        stores.close()
    return {"names": names, "quotes": quotes, "reordered": reordered, "health": health,
            "lanes": lanes, "book": book, "ids": ids}


@pytest.mark.slow
def test_perp_book_arrives_on_public_connections(run) -> None:
    conns = [c for c in run["health"]["feed"]["connections"] if c["market"] == "perp"]
    kinds = [(c["kind"], c["url"].split("/")[-2], c["streams"]) for c in conns]
    assert sorted(kinds) == [("book", "public", 2), ("trade", "market", 2)]
    want_books = sum(len(raw_book_frames(p)) for p in FILES.values())
    want_trades = sum(len(raw_trade_ids(p)) for p in FILES.values())
    assert sum(c["book_updates"] for c in conns if c["kind"] == "book") == want_books
    assert all(c["book_updates"] == 0 for c in conns if c["kind"] == "trade")
    assert sum(c["trades"] for c in conns if c["kind"] == "trade") == want_trades
    assert all(c["trades"] == 0 for c in conns if c["kind"] == "book")
    assert run["lanes"] == {"perp#0", "perp#1"}  # the book connection is a lane


@pytest.mark.slow
@pytest.mark.parametrize("symbol", ["BTCUSDT", "ETHUSDT"])
def test_quote_is_the_tapes_last_book_ticker(run, symbol) -> None:
    last = raw_book_frames(FILES[symbol]).iloc[-1]
    q = run["quotes"][symbol]
    assert (q.update_id, q.time_ms, q.bid, q.bid_qty, q.ask, q.ask_qty) == (
        last["u"], last["T"], last["bid"], last["bid_qty"], last["ask"], last["ask_qty"])


@pytest.mark.slow
@pytest.mark.parametrize("symbol", ["BTCUSDT", "ETHUSDT"])
def test_book_bars_equal_the_raw_frames_by_T(run, symbol) -> None:
    """The 1 s book bars stored equal pandas' from the raw frames' ``T`` (the same
    computation tests/ingest/test_book_replay.py checks for the one-connection
    layout); none taken late although the book has its own connections."""
    raw = raw_book_frames(FILES[symbol])
    want = independent_book_bars(raw["T"].astype(np.int64), raw)
    assert len(want) > 100
    assert run["reordered"][symbol] == 0
    assert_bars_equal(run["book"][symbol], want, f"stored perp {symbol}")


@pytest.mark.slow
@pytest.mark.parametrize("symbol", ["BTCUSDT", "ETHUSDT"])
def test_every_trade_stored_once(run, symbol) -> None:
    got = np.asarray(run["ids"][symbol])
    want = np.asarray(raw_trade_ids(FILES[symbol]))
    assert len(got) == len(np.unique(got))
    np.testing.assert_array_equal(np.sort(got), np.sort(want))
