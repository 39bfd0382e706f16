"""Top of book over the live bus (``--bus``, docs/book.md): the publisher's ingestor
taps every best bid/ask update it takes; a worker's BusFeed hands them to its own
``Ingestor.on_book``, so its engine builds the same 1 s book bars, closed by the
publisher's clock. Real recorded updates (both markets' raw captures), a real
redis-server."""

from __future__ import annotations

import time

import numpy as np

from analytics.engine import MarketEngine
from analytics.instruments import Instrument
from ingest.bus import open_follower, open_publisher
from ingest.bus.follow import BusFeed
from ingest.bus.interface import BookBatch, BusError
from ingest.feeds.binance import parse_event
from ingest.pipeline import Ingestor
from tests.ingest.bus.helpers import FakeStore
from tests.ingest.test_book_replay import RAW, raw_book_frames


def real_updates(market: str, recv_shift_ms: int = 1_270) -> list:
    """The capture's book updates as the feed makes them (spot: stamped receive + ~offset)."""
    out = []
    for row in raw_book_frames(RAW[market]).itertuples(index=False):
        ev = {"u": int(row.u), "s": "BTCUSDT", "b": repr(row.bid), "B": repr(row.bid_qty),
              "a": repr(row.ask), "A": repr(row.ask_qty)}
        if market == "perp":
            ev.update(e="bookTicker", T=int(row.T), E=int(row.T))
            out.append(parse_event(ev, market="perp"))
        else:
            stamp = int(row.recv_ms) + recv_shift_ms
            out.append(parse_event(ev, market="spot", clock_ms=lambda s=stamp: s))
    return out


def resolve(name: str) -> Instrument:
    market, _, sym = name.partition(":")
    return Instrument("binance", market, sym)


def test_book_updates_round_trip_exactly_in_order_per_instrument(redis_server):
    sent = {"perp": real_updates("perp")[:6_000], "spot": real_updates("spot")[:3_000]}
    pub = open_publisher(redis_server.url(), resolve=resolve).start()
    fol = open_follower(redis_server.url(), start_back_ms=10**12)
    try:
        for k in range(6_000):  # interleaved, as two feeds deliver them
            pub.book(sent["perp"][k])
            if k < 3_000:
                pub.book(sent["spot"][k])
        assert pub.flush(10)
        got: dict[str, list] = {"perp": [], "spot": []}
        deadline = time.monotonic() + 15
        while len(got["perp"]) < 6_000 or len(got["spot"]) < 3_000:
            assert time.monotonic() < deadline, {m: len(v) for m, v in got.items()}
            for ev in fol.read(200):
                if isinstance(ev, BookBatch):
                    got[ev.instrument.market].extend(ev.books)
        assert got == sent  # every field exact (floats, stamps, time source), in order
    finally:
        pub.close()
        fol.close()


def test_a_worker_builds_the_publishers_book_bars(redis_server, tmp_path):
    from ingest.store.sqlite_trades import SqliteTradeStore

    updates = real_updates("perp")
    names = ["BTCUSDT"]  # no universe: the bare symbol (one market)
    store = SqliteTradeStore(tmp_path / "p.db", market="spot").start()
    ing = Ingestor(names, store, MarketEngine(names))
    ing.tap = pub = open_publisher(redis_server.url(), resolve=resolve).start()
    worker = Ingestor(names, store, MarketEngine(names), write=False)
    worker.external_clock = True
    feed = BusFeed(worker, open_follower(redis_server.url(), start_back_ms=10**12),
                   FakeStore().fetch, name_of=lambda i: i.key, resolve=resolve)
    try:
        for b in updates:
            ing.on_book(b)
        end = updates[-1].time_ms - updates[-1].time_ms % 1000 + 1000
        ing.close_bars_until(end)
        pub.clock(end)
        assert pub.flush(10)
        deadline = time.monotonic() + 15
        while feed.books_seen < len(updates) or worker.engine.book_bars(
                "BTCUSDT", 1_000) is None or len(worker.engine.book_bars(
                "BTCUSDT", 1_000)) < len(ing.engine.book_bars("BTCUSDT", 1_000)):
            assert time.monotonic() < deadline, (feed.books_seen, feed.clocks_applied)
            try:
                feed.apply(feed.follower.read(100))
            except BusError:
                time.sleep(0.05)
        mine = ing.engine.book_bars("BTCUSDT", 1_000).to_frame()
        theirs = worker.engine.book_bars("BTCUSDT", 1_000).to_frame()
        assert len(mine) > 100
        for col in mine.columns:
            np.testing.assert_array_equal(theirs[col].to_numpy(), mine[col].to_numpy(),
                                          err_msg=col)
        assert worker.quote("BTCUSDT") == updates[-1]
        assert feed.status()["books_seen"] == len(updates)
    finally:
        pub.close()
        feed.follower.close()
        store.close()
