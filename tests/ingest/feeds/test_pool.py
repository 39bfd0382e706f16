"""FeedPool (ingest/feeds/pool.py): a market's streams over several connections, within
Binance's limits, against the real replay server (wide tapes derived from the recorded
BTCUSDT/ETHUSDT trades, ingest/replay/wide.py); no socket is mocked."""

from __future__ import annotations

import threading
import time
from collections import defaultdict

import pandas as pd
import pytest

from ingest.feeds import client as client_mod
from ingest.feeds.binance_perp import BINANCE_PERP
from ingest.feeds.binance_spot import BINANCE_SPOT
from ingest.feeds.client import TradeFeed
from ingest.feeds.pool import FeedPool
from ingest.replay import ReplayServer
from ingest.replay.protocol import MAX_STREAMS, PROFILES
from ingest.replay.wide import wide_tape
from tests.waiting import wait_for as _wait

pytestmark = pytest.mark.slow  # real sockets, whole wide tapes (~5-15 s each)



def _tape_trades(tape) -> pd.DataFrame:
    """The tape's trade events as a frame (the independent side of every check)."""
    return pd.DataFrame(
        [(ev.symbol, ev.trade_id) for ev in tape.events if ev.kind == "trade"],
        columns=["symbol", "trade_id"])


class Sink:
    """Collects what the pool hands on, with the connection it came on."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.rows: list[tuple[str, str, int]] = []

    def lane(self, lane: str):
        def take(t) -> None:
            with self.lock:
                self.rows.append((lane, t.symbol, t.trade_id))
        return take

    def frame(self) -> pd.DataFrame:
        with self.lock:
            return pd.DataFrame(self.rows, columns=["lane", "symbol", "trade_id"])


def _recording_control(server: ReplayServer) -> dict[int, list[float]]:
    """Arrival times of every control message per server-side connection."""
    seen: dict[int, list[float]] = defaultdict(list)
    control = server._control

    def recorded(client, message):
        seen[client.cid].append(time.monotonic())
        return control(client, message)

    server._control = recorded
    return seen


def _max_per_second(times: list[float]) -> int:
    """Most messages inside any closed 1 s window (the server's own rule)."""
    best, j = 0, 0
    for i, t in enumerate(times):
        while t - times[j] > 1.0:
            j += 1
        best = max(best, i - j + 1)
    return best


def test_streams_split_over_connections_every_trade_once() -> None:
    """25 instruments with their book streams at 10 streams per connection: 5
    instruments (10 streams) on each of 5 connections; each instrument's trade and
    book stream on the same one (the root path, which serves both; under ``/market``
    the book goes to ``/public``: test_pool_public.py); every trade of the tape
    delivered exactly once."""
    tape = wide_tape(25, market="perp")
    server = ReplayServer(tape, speed=0, profile="futures", loop=False).start()
    symbols = [s for _m, s in tape.instruments]
    sink = Sink()
    pool = FeedPool(BINANCE_PERP, symbols, sink.lane("-"), stream="trade",
                    base_url=server.ws_base, streams_per_connection=10,
                    on_book=lambda b: None, lane_sink=sink.lane)
    server.wait_streams = sum(server.servable("perp", f"{s.lower()}@trade") for s in symbols)
    want = _tape_trades(tape)
    try:
        assert len(pool.feeds) == 5 and [len(f.symbols) for f in pool.feeds] == [5] * 5
        pool.start()
        _wait(lambda: len(sink.rows) >= len(want), 90, f"{len(want)} trades")
        time.sleep(0.3)  # nothing more may come
        subs = {c.cid: set(c.subs) for c in server._clients.values()}
    finally:
        pool.stop()
        server.stop()
    got = sink.frame()
    # each server-side connection: <= 10 streams, an instrument's two streams together
    assert len(subs) == 5 and all(len(s) == 10 for s in subs.values())
    for names in subs.values():
        syms = {n.split("@")[0] for n in names}
        assert names == {f"{s}@trade" for s in syms} | {f"{s}@bookTicker" for s in syms}
    # every trade once (pandas on the tape vs what came), per symbol on ONE connection
    assert not got.duplicated(["symbol", "trade_id"]).any()
    assert got.groupby("symbol").size().sort_index().equals(
        want.groupby("symbol").size().sort_index())
    merged = want.merge(got, on=["symbol", "trade_id"], how="outer", indicator=True)
    assert (merged["_merge"] == "both").all()
    assert (got.groupby("symbol")["lane"].nunique() == 1).all()
    assert got["lane"].nunique() == 5
    status = pool.status()
    assert status.trades == len(want) and status.duplicates == 0 and status.gaps == 0
    assert pool.stats.trades == len(want) and pool.last_ids == {
        sym: int(ids.max()) for sym, ids in want.groupby("symbol")["trade_id"]}
    # the same streams on URLs of their own (tools listening beside the app)
    urls = pool.stream_urls()
    assert len(urls) == 5 and all(u.count("@") == 10 for u in urls)
    conns = pool.connections()
    assert [c["id"] for c in conns] == [0, 1, 2, 3, 4]
    assert sum(c["trades"] for c in conns) == len(want)
    assert all(c["streams"] == 10 and c["reconnects"] == 0 for c in conns)


def test_subscriptions_paced_under_the_spot_rate_limit(monkeypatch) -> None:
    """Small SUBSCRIBE batches (2 streams) make each spot connection send 10 control
    messages: at most 4 a second go out (80 % of Binance's 5), each after the previous
    reply, and the server, which closes a connection at 6/s, never does."""
    monkeypatch.setattr(client_mod, "SUBSCRIBE_BATCH_STREAMS", 2)
    tape = wide_tape(40, market="spot")
    server = ReplayServer(tape, speed=0, profile="spot", loop=True).start()
    assert server.rate_limits["spot"] == PROFILES["spot"]["rate_limit"] == 5.0
    seen = _recording_control(server)
    symbols = [s for _m, s in tape.instruments]
    pool = FeedPool(BINANCE_SPOT, symbols, lambda t: None, stream="trade",
                    base_url=server.ws_base, streams_per_connection=20,
                    on_book=lambda b: None)
    try:
        assert len(pool.feeds) == 4  # 40 instruments x 2 streams / 20
        t0 = time.monotonic()
        pool.start()
        _wait(lambda: pool.subscribed, 30, "every stream subscribed")
        took = time.monotonic() - t0
        status = pool.status()
    finally:
        pool.stop()
        server.stop()
    assert len(seen) == 4 and all(len(times) == 10 for times in seen.values())
    assert max(_max_per_second(sorted(t)) for t in seen.values()) <= 4 + 1
    # 10 messages at 4/s: at least 9 intervals of 0.25 s on every connection
    assert took >= 9 * 0.25 * 0.95
    assert status.reconnects == 0 and status.control_sent == 40
    assert status.control_errors == 0 and status.subscribed == status.streams == 80


def test_more_than_1024_streams_are_refused_and_the_pool_never_asks() -> None:
    """The server refuses a SUBSCRIBE that takes a connection past 1,024 streams (the
    feed counts the refusal, keeps what was granted); a pool cannot be built to ask."""
    tape = wide_tape(4, market="perp")
    server = ReplayServer(tape, speed=0, profile="futures", loop=True).start()
    symbols = [f"S{i}USDT" for i in range(MAX_STREAMS // 2 + 1)]  # 1,026 streams
    feed = TradeFeed(server.ws_base + "/market/stream", lambda t: None,
                     protocol=BINANCE_PERP, on_book=lambda b: None,
                     subscribe_symbols=symbols, stream="trade", backoff_base_s=0.05)
    try:
        feed.start()
        _wait(lambda: feed.stats.control_errors >= 1, 30, "the refusal")
        subs = [len(c.subs) for c in server._clients.values()]
        status = feed.status()
    finally:
        feed.stop()
        server.stop()
    assert subs == [1000]  # 5 batches of 200 granted, the 6th (26 more) refused
    assert status.subscribed == 1000 and status.streams == 1026
    assert "1024" in status.error and status.reconnects == 0
    with pytest.raises(ValueError, match="streams_per_connection"):
        FeedPool(BINANCE_PERP, ["BTCUSDT"], lambda t: None, streams_per_connection=1025)
    with pytest.raises(ValueError, match="cannot hold one"):  # spot: book + trades
        FeedPool(BINANCE_SPOT, ["BTCUSDT"], lambda t: None, streams_per_connection=1,
                 on_book=lambda b: None)


def test_add_fills_the_last_connection_then_opens_one() -> None:
    """Late instruments join a running pool: first on the connection with room (a
    SUBSCRIBE on the open socket, no reconnect), the rest on a new connection; their
    trades then flow, each id once and in order."""
    tape = wide_tape(20, market="perp")
    server = ReplayServer(tape, speed=0, profile="futures", loop=True).start()
    symbols = [s for _m, s in tape.instruments]
    sink = Sink()
    opened = []
    pool = FeedPool(BINANCE_PERP, symbols[:9], sink.lane("-"), stream="trade",
                    base_url=server.ws_base + "/market", streams_per_connection=8,
                    lane_sink=sink.lane)  # trades only: 8 instruments a connection
    pool.on_connection = opened.append
    try:
        assert [len(f.symbols) for f in pool.feeds] == [8, 1]
        pool.start()
        _wait(lambda: pool.subscribed, 20, "the first streams")
        added = pool.add(symbols[9:20] + symbols[:2])  # 11 new, 2 already there
        assert added == symbols[9:20]
        assert [len(f.symbols) for f in pool.feeds] == [8, 8, 4]
        assert len(opened) == 1 and opened[0] is pool.feeds[2]
        _wait(lambda: pool.subscribed, 20, "the added streams")
        _wait(lambda: set(sink.frame()["symbol"]) >= set(symbols), 30,
              "trades of every added instrument")
        subs = sorted(len(c.subs) for c in server._clients.values())
        status = pool.status()
    finally:
        pool.stop()
        server.stop()
    assert subs == [4, 8, 8]
    assert status.reconnects == 0 and status.duplicates == 0
    got = sink.frame()
    for sym, ids in got.groupby("symbol")["trade_id"]:
        assert ids.is_monotonic_increasing and ids.is_unique, sym
    assert set(got[got["symbol"].isin(symbols[17:20])]["lane"]) == {"perp#2"}
    assert pool.quiet_probes().keys() == {"perp#0", "perp#1", "perp#2"}
