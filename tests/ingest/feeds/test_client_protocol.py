"""TradeFeed is generic over its FeedProtocol: frames are parsed by the protocol (several
trades in one frame arrive in order), gaps are only gaps when the protocol's ids are
contiguous, and pings follow the protocol's heartbeat settings. The back-fill pages the
protocol's own REST endpoint."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass

import orjson
import pytest

from ingest.feeds.backfill import Backfiller
from ingest.feeds.base import FeedProtocol, check_protocol
from ingest.feeds.binance_perp import BINANCE_PERP
from ingest.feeds.binance_spot import BINANCE_SPOT
from ingest.feeds.client import TradeFeed
from ingest.models import BadFrame, Trade

NOW_S = 1_723_161_300.0


@dataclass(frozen=True)
class BatchFeed(FeedProtocol):
    """A made-up venue: a frame is a JSON array of [symbol, id, time, price, qty]; ids
    increase but are not contiguous; it wants a ping every 15 s."""

    venue: str = "acme"
    market: str = "spot"
    ids_contiguous: bool = False
    ws_base: str = "wss://acme.example"
    rest_base: str | None = None
    ws_path_prefix: str = ""
    stream_kinds: tuple[str, ...] = ("trades",)
    max_streams_per_connection: int = 10
    client_ping_interval_s: float = 15.0
    client_ping_timeout_s: float | None = 5.0
    server_ping_interval_s: float = 0.0
    rest_max_limit: int = 100

    def stream_url(self, symbols: Iterable[str], stream: str, base_url=None, *,
                   combined=True) -> str:
        return f"{base_url or self.ws_base}/{','.join(symbols)}"

    def subscribe_message(self, symbols, stream, request_id=1) -> str:
        return "{}"

    def parse_frame(self, raw):
        try:
            rows = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise BadFrame(str(exc)) from None
        return tuple(
            Trade(s, i, t, p, q, False, t, self.market, self.venue) for s, i, t, p, q in rows
        )

    def rest_trades_url(self, symbol, from_id, limit, stream, base_url=None) -> str:
        raise ValueError("acme has no REST")

    def parse_rest_trades(self, body, symbol, stream):
        return []


T0 = int(NOW_S * 1000)


def _feed(protocol, got, gaps, **kwargs) -> TradeFeed:
    return TradeFeed(protocol.stream_url(["BTCUSD"], protocol.stream_kinds[0]), got.append,
                     on_gap=lambda *g: gaps.append(g), protocol=protocol, **kwargs)


def test_a_frame_with_several_trades_delivers_them_all_in_order() -> None:
    proto = check_protocol(BatchFeed())
    got, gaps = [], []
    feed = _feed(proto, got, gaps)
    assert feed.name == "acme-spot-feed"
    frame = orjson.dumps([["BTCUSD", 10, T0, 1.0, 1.0], ["BTCUSD", 25, T0, 1.5, 2.0],
                          ["ETHUSD", 3, T0 + 1, 2.0, 1.0]])
    feed._handle(None, frame, NOW_S)
    assert [(t.symbol, t.trade_id, t.venue) for t in got] == [
        ("BTCUSD", 10, "acme"), ("BTCUSD", 25, "acme"), ("ETHUSD", 3, "acme")]
    # ids 11..24 are not a gap on a venue whose ids are not contiguous
    assert gaps == [] and feed.status().gaps == 0
    # but an id at or below the last one is still a duplicate
    feed._handle(None, orjson.dumps([["BTCUSD", 25, T0, 1.5, 2.0]]), NOW_S)
    assert len(got) == 3 and feed.status().duplicates == 1
    feed._handle(None, b"[]", NOW_S)  # nothing in it: counted, as a book update is
    feed._handle(None, b"not json", NOW_S)
    st = feed.status()
    assert st.other_frames == 1 and st.bad_frames == 1 and st.trades == 3


def test_binance_ids_are_contiguous_so_a_jump_is_a_gap() -> None:
    got, gaps = [], []
    feed = _feed(BINANCE_SPOT, got, gaps)
    assert feed.name == "binance-spot-feed"
    for tid in (100, 105):
        feed._handle(None, orjson.dumps({"e": "trade", "E": T0, "s": "BTCUSDT", "t": tid,
                                         "p": "1.0", "q": "1.0", "T": T0, "m": True}),
                     NOW_S)
    assert [t.market for t in got] == ["spot", "spot"]
    assert gaps == [("BTCUSDT", 101, 104)] and feed.status().gaps == 4


class _FakeSocket:
    """Stands in for websocket.WebSocketApp: records how it was run, then the feed stops."""

    calls: list[dict] = []

    def __init__(self, url, **callbacks):
        self.url = url

    def run_forever(self, **kwargs):
        _FakeSocket.calls.append(kwargs)
        self.stopper.set()

    def close(self):
        pass


def test_pings_follow_the_protocols_heartbeat() -> None:
    for proto, interval, timeout in ((BatchFeed(), 15.0, 5.0), (BINANCE_SPOT, 0.0, None)):
        _FakeSocket.calls = []
        stopped = threading.Event()
        _FakeSocket.stopper = stopped
        feed = _feed(proto, [], [], ws_factory=_FakeSocket, backoff_base_s=0.01)
        feed.start()
        assert stopped.wait(5)
        feed.stop()
        assert _FakeSocket.calls[0]["ping_interval"] == interval
        assert _FakeSocket.calls[0]["ping_timeout"] == timeout
        assert _FakeSocket.calls[0]["skip_utf8_validation"] is True


def test_backfill_pages_the_protocols_rest_endpoint_and_keeps_its_market() -> None:
    urls: list[str] = []

    def fetch(url, timeout_s):
        urls.append(url)
        return orjson.dumps([{"a": i, "p": "2.5", "q": "1", "f": i, "l": i, "T": 1000 + i,
                              "m": False} for i in range(7, 10)])

    got: list[Trade] = []
    bf = Backfiller(protocol=BINANCE_PERP, stream="aggTrade", base_url=None,
                    deliver=lambda s, ts: got.extend(ts), fetch=fetch)
    assert bf.name == "binance-perp-backfill" and bf.page_limit == 1000
    bf.start()
    try:
        bf.submit("BTCUSDT", 7, 9)
        for _ in range(200):
            if bf.idle and got:
                break
            threading.Event().wait(0.02)
        assert urls == ["https://fapi.binance.com/fapi/v1/aggTrades?symbol=BTCUSDT"
                        "&fromId=7&limit=3"]
        assert [(t.trade_id, t.market) for t in got] == [(7, "perp"), (8, "perp"),
                                                         (9, "perp")]
        assert bf.status().url == "https://fapi.binance.com/fapi/v1/aggTrades"
    finally:
        bf.stop()


def test_backfill_refuses_a_protocol_without_rest_at_once() -> None:
    with pytest.raises(ValueError, match="acme has no REST"):
        Backfiller(protocol=BatchFeed(), stream="trades", base_url=None,
                   deliver=lambda s, ts: None)
