"""The runtime picks each feed's protocol from the registry by the configured market,
holds its feeds by market, and reports one feed exactly as before (several summed,
each under ``markets``)."""

from __future__ import annotations

from ingest.config import parse_config
from ingest.feeds.binance_perp import BINANCE_PERP
from ingest.feeds.binance_spot import BINANCE_SPOT
from ingest.feeds.client import FeedStatus
from ingest.runtime import Runtime, _combined_feed_health
from tests.waiting import wait_for as _wait

#: The keys of ``/api/health``'s ``feed`` for one replayed feed with back-fill.
ONE_FEED_KEYS = set(
    FeedStatus("", False, 0, 0, 0.0, 0, 0, 0, 0, 0, 0, (), None, None, None, None, 0)
    .as_dict()
) | {"gaps_detected", "gaps_filled", "backfill", "replay_speed", "late_trades", "store",
   "connections"}



def test_market_futures_runs_the_perp_protocol_under_market(tmp_path) -> None:
    cfg = parse_config(["--replay", "--replay-speed", "0", "--replay-once", "--market",
                        "futures", "--db", str(tmp_path / "m.db"), "--port", "8999"])
    rt = Runtime(cfg)
    assert rt.feed_protocols == {"perp": BINANCE_PERP}
    rt.start()
    try:
        assert list(rt.feeds) == ["perp"] and list(rt.backfills) == ["perp"]
        feed = rt.feeds["perp"]
        assert feed.protocol is BINANCE_PERP
        # streams come by SUBSCRIBE on a connection URL without any (ingest/feeds/pool.py)
        assert feed.url == rt.replay.ws_base + "/market/stream"
        assert rt.feed_url == feed.url
        assert rt.backfills["perp"].status().url.endswith("/fapi/v1/historicalTrades")
        _wait(lambda: feed.status().trades >= 1_000, 60, "1,000 trades")
        h = rt.health()["feed"]
        assert set(h) == ONE_FEED_KEYS and "markets" not in h
        assert h["connected"] and h["url"] == feed.url
    finally:
        rt.stop()


def test_spot_replay_keeps_the_bare_host(tmp_path) -> None:
    cfg = parse_config(["--replay", "--replay-speed", "0", "--replay-once", "--db",
                        str(tmp_path / "m.db"), "--port", "8999", "--rest-url", "off",
                        "--market", "spot"])  # C2: the bare --replay plays both markets
    rt = Runtime(cfg)
    assert rt.feed_protocols == {"spot": BINANCE_SPOT}
    rt.start()
    try:
        assert rt.feeds["spot"].url == rt.replay.ws_base + "/stream"
        assert rt.backfills == {}
        h = rt.feed_health()
        assert set(h) == ONE_FEED_KEYS - {"backfill"}
    finally:
        rt.stop()


def _one(url: str, **over) -> dict:
    status = FeedStatus(url, True, 10, 8, 2.5, 1, 1, 0, 1, 2, 3, (), 1_000, 900, 40,
                        None, 0).as_dict()
    status.update(gaps_detected=3, gaps_filled=1, **over)
    return status


def test_several_feeds_sum_into_the_one_feed_shape() -> None:
    spot = _one("ws://s", gap_ranges=[{"symbol": "BTCUSDT", "first_id": 1, "last_id": 2}])
    perp = _one("ws://p", connected=False, error="refused", lag_ms=70, last_trade_ms=950)
    out = _combined_feed_health({"spot": spot, "perp": perp})
    assert set(out) == set(spot) | {"markets"}
    assert out["markets"] == {"spot": spot, "perp": perp}
    assert out["url"] == "ws://s ws://p" and out["connected"] is False
    assert out["messages"] == 20 and out["trades"] == 16 and out["gaps"] == 6
    assert out["msgs_per_s"] == 5.0 and out["gaps_filled"] == 2
    assert out["gap_ranges"] == spot["gap_ranges"]
    assert out["lag_ms"] == 70 and out["last_trade_ms"] == 950
    assert out["error"] == "perp: refused"


def test_book_streams_ride_the_trade_connection_unless_no_book(tmp_path) -> None:
    """Default: each feed subscribes ``<sym>@bookTicker`` beside its trade streams and
    hands updates to the ingestor; ``--no-book``: trades only, as before."""
    for flags, book in (([], True), (["--no-book"], False)):
        cfg = parse_config(["--replay", "--replay-speed", "0", "--replay-once", "--market",
                            "futures", "--db", str(tmp_path / f"b{book}.db"), "--port",
                            "8999", "--rest-url", "off", *flags])
        assert cfg.book is book
        rt = Runtime(cfg)
        rt.start()
        try:
            feed = rt.feeds["perp"]
            _wait(lambda f=feed: f.subscribed, 20, "the streams subscribed")
            # what the server's connections carry (subscribed by SUBSCRIBE messages)
            names = [n for c in list(rt.replay._clients.values()) for n in c.subs]
            books = [n for n in names if n.endswith("@bookTicker")]
            trades = [n for n in names if not n.endswith("@bookTicker")]
            assert len(trades) == len(rt.market_symbols("perp")) > 0
            assert books == ([t.replace("@trade", "@bookTicker").replace(
                "@aggTrade", "@bookTicker") for t in trades] if book else [])
            assert (feed._on_book is not None) is book
        finally:
            rt.stop()
