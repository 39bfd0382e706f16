"""The feed registry and the FeedProtocol interface: both Binance markets registered,
complete, with their own URLs and REST endpoints, and parsing their own market's real
recorded frames into trades that say which market they came from."""

from __future__ import annotations

import gzip
from pathlib import Path

import orjson
import pytest

from analytics.instruments import Instrument
from ingest.feeds import FEEDS, feed_protocol
from ingest.feeds.base import REQUIRED_ATTRIBUTES, FeedProtocol, check_protocol
from ingest.feeds.binance_perp import BINANCE_PERP
from ingest.feeds.binance_spot import BINANCE_SPOT
from ingest.models import BadFrame, ControlReply, Trade

SPOT_FILES = (
    "binance-spot-ws-trade_BTCUSDT_2024-08-08T235415Z_2024-08-09T000505Z.jsonl.gz",
    "binance-spot-ws-trade_ETHUSDT_2024-08-08T235415Z_2024-08-09T000505Z.jsonl.gz",
)
PERP_FILES = (
    "binance-um-ws-trade_BTCUSDT_2024-08-08T235416Z_2024-08-08T235959Z.jsonl.gz",
    "binance-um-ws-trade_ETHUSDT_2024-08-08T235416Z_2024-08-09T000000Z.jsonl.gz",
)
# USD-M aggTrade with the keys docs/binance-protocol.md lists (e E s a p q nq f l T m st).
PERP_AGG_FRAME = (
    b'{"stream":"btcusdt@aggTrade","data":{"e":"aggTrade","E":1723161256323,'
    b'"a":2271383457,"s":"BTCUSDT","p":"61800.30","q":"0.006","nq":"0.006",'
    b'"f":5266583935,"l":5266583935,"T":1723161256322,"m":false,"st":1}}'
)


def _frames(path: Path, n: int = 2_000) -> list[bytes]:
    out = []
    with gzip.open(path, "rb") as fh:
        for line in fh:
            out.append(line.rstrip(b"\n").split(b" ", 1)[1])
            if len(out) == n:
                break
    return out


# ------------------------------------------------------------------ registry


def test_two_binance_markets_are_registered() -> None:
    assert FEEDS == {("binance", "spot"): BINANCE_SPOT, ("binance", "perp"): BINANCE_PERP}
    assert feed_protocol("binance", "spot") is BINANCE_SPOT
    assert feed_protocol("binance", "perp") is BINANCE_PERP
    # the CLI's --market futures, and any spelling case
    assert feed_protocol("binance", "futures") is BINANCE_PERP
    assert feed_protocol("Binance", " SPOT ") is BINANCE_SPOT


@pytest.mark.parametrize(
    ("venue", "market", "message"),
    [
        ("binance", "margin", "unknown market 'margin'"),
        ("kraken", "spot", "unknown venue 'kraken'"),
        ("binance", 7, "market must be text"),
    ],
)
def test_unknown_feeds_are_refused_listing_the_known_ones(venue, market, message) -> None:
    with pytest.raises(ValueError, match=message) as err:
        feed_protocol(venue, market)
    assert "known feeds: binance:spot, binance:perp" in str(err.value)


@pytest.mark.parametrize("protocol", list(FEEDS.values()), ids=str)
def test_every_registered_protocol_implements_the_whole_interface(protocol) -> None:
    assert isinstance(protocol, FeedProtocol)
    assert not type(protocol).__abstractmethods__
    assert check_protocol(protocol) is protocol
    for name in REQUIRED_ATTRIBUTES:
        assert getattr(protocol, name) is not None or name.endswith(("_timeout_s", "rest_base"))
    assert protocol.key == (protocol.venue, protocol.market)
    assert protocol.instrument("BTCUSDT") == Instrument(protocol.venue, protocol.market,
                                                        "BTCUSDT")
    assert protocol.instrument("BTCUSDT").ids_contiguous is protocol.ids_contiguous


def test_an_incomplete_protocol_cannot_be_built_or_registered() -> None:
    class NoParser(FeedProtocol):
        def stream_url(self, symbols, stream, base_url=None, *, combined=True):
            return "ws://x"

    with pytest.raises(TypeError, match="abstract"):
        NoParser()

    class NoAttributes(NoParser):
        venue, market = "acme", "spot"

        def subscribe_message(self, symbols, stream, request_id=1):
            return "{}"

        def parse_frame(self, raw):
            return ()

        def rest_trades_url(self, symbol, from_id, limit, stream, base_url=None):
            return "http://x"

        def parse_rest_trades(self, body, symbol, stream):
            return []

    with pytest.raises(TypeError, match="ids_contiguous missing.*ws_base missing"):
        check_protocol(NoAttributes())
    with pytest.raises(TypeError, match="not a FeedProtocol"):
        check_protocol(object())


# ------------------------------------------------------------------ URLs per market


def test_websocket_urls_per_market() -> None:
    assert BINANCE_SPOT.stream_url(["BTCUSDT", "ETHUSDT"], "trade") == (
        "wss://stream.binance.com:9443/stream?streams=btcusdt@trade/ethusdt@trade"
    )
    assert BINANCE_PERP.stream_url(["BTCUSDT"], "aggTrade", combined=False) == (
        "wss://fstream.binance.com/market/ws/btcusdt@aggTrade"
    )
    # a bare host (the local replay server) gets the market's path prefix
    assert BINANCE_SPOT.ws_path_prefix == "" and BINANCE_PERP.ws_path_prefix == "/market"
    assert BINANCE_SPOT.server_ping_interval_s == 20 and BINANCE_PERP.server_ping_interval_s == 180
    for p in (BINANCE_SPOT, BINANCE_PERP):  # Binance counts client frames: no own pings
        assert p.client_ping_interval_s == 0 and p.client_ping_timeout_s is None


@pytest.mark.parametrize(
    ("protocol", "stream", "url"),
    [
        (BINANCE_SPOT, "trade",
         "https://api.binance.com/api/v3/historicalTrades?symbol=BTCUSDT&fromId=42&limit=10"),
        (BINANCE_SPOT, "aggTrade",
         "https://api.binance.com/api/v3/aggTrades?symbol=BTCUSDT&fromId=42&limit=10"),
        (BINANCE_PERP, "aggTrade",
         "https://fapi.binance.com/fapi/v1/aggTrades?symbol=BTCUSDT&fromId=42&limit=10"),
        (BINANCE_PERP, "trade",
         "https://fapi.binance.com/fapi/v1/historicalTrades?symbol=BTCUSDT&fromId=42&limit=10"),
    ],
)
def test_rest_trades_urls_per_market(protocol, stream, url) -> None:
    assert protocol.rest_trades_url("btcusdt", 42, 10, stream) == url
    assert protocol.rest_trades_url("BTCUSDT", 42, 10, stream, "http://127.0.0.1:9/") == (
        "http://127.0.0.1:9" + url.split(".com", 1)[1]
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("BTCUSDT", -1, 10, "trade"), "from_id"),
        (("BTCUSDT", 1, 1001, "trade"), "limit must be an int in 1..1000"),
        (("BTCUSDT", 1, 10, "depth"), "no REST trades endpoint for binance spot depth"),
        (("BTC-USDT", 1, 10, "trade"), "invalid symbol"),
        (("BTCUSDT", 1, 10, "trade", "ws://x"), "invalid REST base_url"),
    ],
)
def test_rest_url_rejects_bad_input(args, message) -> None:
    with pytest.raises(ValueError, match=message):
        BINANCE_SPOT.rest_trades_url(*args)


def test_subscribe_message_is_binances_control_frame() -> None:
    msg = BINANCE_PERP.subscribe_message(["BTCUSDT", "ethusdt"], "aggTrade", 7)
    assert orjson.loads(msg) == {
        "method": "SUBSCRIBE", "params": ["btcusdt@aggTrade", "ethusdt@aggTrade"], "id": 7,
    }
    # Binance's answer comes back through the same parser, as a ControlReply
    assert BINANCE_PERP.parse_frame(b'{"result":null,"id":7}') == (ControlReply(7, None),)


# ------------------------------------------------------------------ real frames per market


@pytest.mark.parametrize(
    ("protocol", "files"), [(BINANCE_SPOT, SPOT_FILES), (BINANCE_PERP, PERP_FILES)], ids=str
)
def test_each_market_parses_its_recorded_frames_and_stamps_its_market(
    sample_dir: Path, protocol, files
) -> None:
    for name in files:
        raw = _frames(sample_dir / name)
        assert len(raw) == 2_000
        for frame in raw:
            items = protocol.parse_frame(frame)
            assert len(items) == 1
            (trade,) = items
            data = orjson.loads(frame)["data"]
            assert isinstance(trade, Trade)
            assert (trade.symbol, trade.trade_id, trade.time_ms) == (data["s"], data["t"],
                                                                     data["T"])
            assert trade.market == protocol.market and trade.venue == "binance"
            assert trade.instrument == protocol.instrument(data["s"])


def test_perp_aggtrade_frame_is_a_perp_trade() -> None:
    (trade,) = BINANCE_PERP.parse_frame(PERP_AGG_FRAME)
    assert trade == Trade("BTCUSDT", 2271383457, 1723161256322, 61800.3, 0.006, False,
                          1723161256323, "perp")


@pytest.mark.parametrize("protocol", list(FEEDS.values()), ids=str)
def test_non_trade_events_are_empty_and_bad_frames_raise(protocol) -> None:
    assert protocol.parse_frame(b'{"e":"depthUpdate","E":1,"s":"BTCUSDT"}') == ()
    with pytest.raises(BadFrame):
        protocol.parse_frame(b'{"e":"trade"')


@pytest.mark.parametrize("protocol", list(FEEDS.values()), ids=str)
def test_rest_pages_parse_as_the_protocols_market(protocol) -> None:
    agg = orjson.dumps([{"a": 5, "p": "1.5", "q": "2", "f": 9, "l": 9, "T": 1000,
                         "m": True}])
    (trade,) = protocol.parse_rest_trades(agg, "BTCUSDT", "aggTrade")
    assert trade == Trade("BTCUSDT", 5, 1000, 1.5, 2.0, True, 1000, protocol.market)
