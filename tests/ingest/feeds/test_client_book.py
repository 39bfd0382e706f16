"""The feed's top-of-book path: the real websocket-client feed against the real local
Binance-protocol server playing a REAL raw capture (trades + ``@bookTicker``), and the
frame handling rules (receive clock, T-vs-E plausibility, counters) on recorded frames.
"""

from __future__ import annotations

import gzip
import time

import orjson
import pytest

from ingest.feeds.binance_perp import BINANCE_PERP
from ingest.feeds.binance_spot import BINANCE_SPOT
from ingest.feeds.client import TradeFeed
from ingest.replay import ReplayServer
from ingest.replay.tapes import load_tape
from tests.analytics.conftest import SAMPLE_DIR
from tests.ingest.feeds.test_book_fuzz import PERP_FRAME, SPOT_FRAME
from tests.waiting import wait_for

PERP_ETH = SAMPLE_DIR / "hftbacktest-rawcapture-trade-book_um_ETHUSDT_20240808_2354-2356.gz"
SPOT_ETH = SAMPLE_DIR / "hftbacktest-rawcapture-trade-book_spot_ETHUSDT_20240808_2354-2356.gz"


def recorded(path, kind: bytes) -> list[dict]:
    out = []
    with gzip.open(path, "rb") as fh:
        for line in fh:
            frame = line.split(b" ", 1)[1]
            if kind in frame:
                out.append(orjson.loads(frame)["data"])
    return out



def _run(path, protocol, *, clock_ms=None):
    server = ReplayServer(load_tape([path]), speed=0, rate_limit=None).start()
    trades, books = [], []
    # the root path (the old layout) serves trades and book on one connection; perp
    # /market would not carry the book (it lives on /public: test_pool_public.py)
    url = protocol.stream_url(["ETHUSDT"], "trade", server.ws_base, book=True)
    assert url.endswith("ethusdt@trade/ethusdt@bookTicker")
    feed = TradeFeed(url, trades.append, protocol=protocol, on_book=books.append,
                     clock_ms=clock_ms, backoff_base_s=0.2)
    want_t, want_b = recorded(path, b"@trade"), recorded(path, b"@bookTicker")
    feed.start()
    try:
        wait_for(lambda: len(trades) >= len(want_t) and len(books) >= len(want_b), 60,
                 "every trade and book update")
        status = feed.status()
    finally:
        feed.stop()
        server.stop()
    return trades, books, want_t, want_b, status


@pytest.mark.slow
def test_perp_capture_delivers_every_book_update_in_order_timed_by_T():
    trades, books, want_t, want_b, status = _run(PERP_ETH, BINANCE_PERP)
    assert [t.trade_id for t in trades] == [d["t"] for d in want_t]
    assert [(b.update_id, b.time_ms, b.event_ms, b.bid, b.bid_qty, b.ask, b.ask_qty)
            for b in books] == [
        (d["u"], d["T"], d["E"], float(d["b"]), float(d["B"]), float(d["a"]),
         float(d["A"])) for d in want_b]
    assert {(b.market, b.time_source) for b in books} == {("perp", "T")}
    assert status.book_updates == len(want_b) > 10_000
    assert status.trades == len(want_t) and status.bad_frames == 0
    assert status.last_book_ms == want_b[-1]["T"]
    d = status.as_dict()
    assert d["book_updates"] == len(want_b) and d["book_rejected"] == 0


@pytest.mark.slow
def test_spot_capture_stamps_book_updates_with_the_feed_clock():
    ticks = iter(range(10**9))
    trades, books, _, want_b, status = _run(
        SPOT_ETH, BINANCE_SPOT, clock_ms=lambda: 1_000_000 + next(ticks))
    assert [b.update_id for b in books] == [d["u"] for d in want_b]
    # one clock read per book frame, at receive, in arrival order
    assert [b.time_ms for b in books] == list(range(1_000_000, 1_000_000 + len(books)))
    assert {(b.market, b.time_source) for b in books} == {("spot", "receive")}
    assert status.book_updates == len(want_b)


def test_without_on_book_book_frames_are_other_frames_as_before():
    got = []
    feed = TradeFeed("ws://127.0.0.1:9/x", got.append, protocol=BINANCE_SPOT)
    feed._handle(None, SPOT_FRAME, time.time())
    s = feed.status()
    assert (s.other_frames, s.book_updates, s.bad_frames, got) == (1, 0, 0, [])


def test_implausible_T_is_rejected_and_bad_quotes_counted_never_raised():
    books = []
    feed = TradeFeed("ws://127.0.0.1:9/x", books.append, protocol=BINANCE_PERP,
                     on_book=books.append)
    obj = orjson.loads(PERP_FRAME)
    feed._handle(None, PERP_FRAME, time.time())
    obj["data"]["T"] = obj["data"]["E"] + 3_600_000  # T an hour after its own push time
    feed._handle(None, orjson.dumps(obj), time.time())
    obj["data"].update(T=obj["data"]["E"], b="61800.40")  # crossed
    feed._handle(None, orjson.dumps(obj), time.time())
    s = feed.status()
    assert (len(books), s.book_updates, s.book_rejected, s.bad_frames) == (1, 1, 1, 1)
    assert s.last_book_ms == 1723161256313


def test_an_on_book_that_raises_does_not_kill_the_feed():
    def boom(_b):
        raise RuntimeError("consumer failed")

    trades = []
    feed = TradeFeed("ws://127.0.0.1:9/x", trades.append, protocol=BINANCE_SPOT,
                     on_book=boom, clock_ms=lambda: 5)
    feed._handle(None, SPOT_FRAME, time.time())
    feed._handle(None, SPOT_FRAME, time.time())
    assert feed.status().book_updates == 2
