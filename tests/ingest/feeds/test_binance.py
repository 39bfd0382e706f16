"""Binance URL building and frame parsing, checked on real recorded frames."""

from __future__ import annotations

import csv
import gzip
import io
import math
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.feeds import feed_protocol
from ingest.feeds.binance import parse_event, parse_frame, stream_names
from ingest.feeds.binance_perp import BINANCE_PERP
from ingest.feeds.binance_spot import BINANCE_SPOT
from ingest.models import BadFrame, BookTicker, ControlReply, ServerShutdown, Trade
from ingest.replay.tapes import aggregate_trades, load_tape

SPOT_BTC = (
    "binance-spot-ws-trade_BTCUSDT_2024-08-08T235415Z_2024-08-09T000505Z.jsonl.gz"
)
SPOT_ETH = (
    "binance-spot-ws-trade_ETHUSDT_2024-08-08T235415Z_2024-08-09T000505Z.jsonl.gz"
)
SPOT_2023 = (
    "binance-spot-ws-trade_BTCUSDT_2023-04-04T235959Z_2023-04-05T000654Z.jsonl.gz"
)
UM_BTC = "binance-um-ws-trade_BTCUSDT_2024-08-08T235416Z_2024-08-08T235959Z.jsonl.gz"
UM_ETH = "binance-um-ws-trade_ETHUSDT_2024-08-08T235416Z_2024-08-09T000000Z.jsonl.gz"
ETH_CSV = "binance-spot-trades_ETHUSDT_2024-08-08T235415Z_2024-08-09T000505Z.csv.gz"
RAW = "hftbacktest-rawcapture_spot_ETHUSDT_20240809_first3000.gz"

# Protocol doc example (spot, combined stream), verbatim.
SPOT_FRAME = (
    b'{"stream":"btcusdt@trade","data":{"e":"trade","E":1723161255343,"s":"BTCUSDT",'
    b'"t":3735683259,"p":"61837.63000000","q":"0.02000000","T":1723161255342,'
    b'"m":true,"M":true}}'
)
# USD-M aggTrade with every key the protocol doc lists (e E s a p q nq f l T m st);
# the doc gives no literal frame, so the values come from the first recorded UM trade.
FUTURES_AGG_FRAME = (
    b'{"stream":"btcusdt@aggTrade","data":{"e":"aggTrade","E":1723161256323,'
    b'"a":2271383457,"s":"BTCUSDT","p":"61800.30","q":"0.006","nq":"0.006",'
    b'"f":5266583935,"l":5266583935,"T":1723161256322,"m":false,"st":1}}'
)


def frames(path: Path) -> list[bytes]:
    """The raw frame text of every line ``<recv> <frame>``."""
    with gzip.open(path, "rb") as fh:
        return [line.rstrip(b"\n").split(b" ", 1)[1] for line in fh]


def check_matches(trade: Trade, data: dict, id_key: str) -> None:
    assert trade.symbol == data["s"]
    assert trade.trade_id == data[id_key]
    assert trade.time_ms == data["T"]
    assert trade.event_ms == data["E"]
    assert trade.price == float(data["p"])
    assert trade.qty == float(data["q"])
    assert trade.buyer_is_maker is data["m"]


# --------------------------------------------------------------------------- URLs


def test_stream_names_lower_case_symbol_and_kind_spelling() -> None:
    assert stream_names(["BTCUSDT", "ethusdt"], "aggTrade") == [
        "btcusdt@aggTrade",
        "ethusdt@aggTrade",
    ]
    assert stream_names(["BTCUSDT", "BTCUSDT"], "trade") == ["btcusdt@trade"]


def test_stream_url_futures_market_prefix() -> None:
    """``--market futures`` (the CLI default) is the perp protocol, under /market."""
    url = feed_protocol("binance", "futures").stream_url(["BTCUSDT", "ETHUSDT"])
    assert url == (
        "wss://fstream.binance.com/market/stream?streams="
        "btcusdt@aggTrade/ethusdt@aggTrade"
    )
    assert BINANCE_PERP.ws_base.endswith("/market")


def test_stream_url_spot_raw_and_override() -> None:
    assert (
        BINANCE_SPOT.stream_url(["BTCUSDT"], "trade", combined=False)
        == "wss://stream.binance.com:9443/ws/btcusdt@trade"
    )
    assert (
        BINANCE_PERP.stream_url(["BTCUSDT", "ETHUSDT"], "trade", "ws://h:8765/")
        == "ws://h:8765/stream?streams=btcusdt@trade/ethusdt@trade"
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"symbols": ["BTC-USDT"]}, "invalid symbol"),
        ({"symbols": ["A" * 21]}, "invalid symbol"),
        ({"symbols": [""]}, "invalid symbol"),
        ({"symbols": []}, "no symbols"),
        ({"symbols": ["BTCUSDT"], "stream": "depth"}, "invalid stream"),
        ({"symbols": ["BTCUSDT"], "base_url": "http://x"}, "invalid base_url"),
        ({"symbols": [f"S{i}" for i in range(1025)]}, "at most 1024"),
    ],
)
@pytest.mark.parametrize("protocol", [BINANCE_SPOT, BINANCE_PERP], ids=str)
def test_stream_url_rejects_bad_input(protocol, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        protocol.stream_url(**kwargs)


def test_unknown_market_is_refused_naming_the_known_feeds() -> None:
    with pytest.raises(ValueError, match="unknown market 'margin'.*binance:spot"):
        feed_protocol("binance", "margin")


# ------------------------------------------------------------------ real frames


def test_protocol_doc_spot_frame() -> None:
    trade = parse_frame(SPOT_FRAME)
    assert trade == Trade("BTCUSDT", 3735683259, 1723161255342, 61837.63, 0.02, True,
                          1723161255343)


@pytest.mark.parametrize("name", [SPOT_BTC, SPOT_ETH, UM_BTC, UM_ETH])
def test_every_recorded_trade_parses(sample_dir: Path, name: str) -> None:
    raw = frames(sample_dir / name)
    assert len(raw) > 10_000
    last_id = None
    for frame in raw:
        trade = parse_frame(frame)
        assert isinstance(trade, Trade)
        check_matches(trade, orjson.loads(frame)["data"], "t")
        if last_id is not None:
            assert trade.trade_id == last_id + 1  # contiguous tape
        last_id = trade.trade_id
    # bare event (what /ws/<stream> sends) parses identically
    bare = orjson.dumps(orjson.loads(raw[0])["data"])
    assert parse_frame(bare) == parse_frame(raw[0])


def test_2023_schema_uses_t_not_the_seller_order_id(sample_dir: Path) -> None:
    raw = frames(sample_dir / SPOT_2023)
    assert len(raw) == 3144
    for frame in raw:
        data = orjson.loads(frame)["data"]
        assert "a" in data and "b" in data and data["a"] != data["t"]
        trade = parse_frame(frame)
        assert isinstance(trade, Trade)
        assert trade.trade_id == data["t"]
        check_matches(trade, data, "t")


def test_futures_trade_frame_keeps_its_fields(sample_dir: Path) -> None:
    frame = frames(sample_dir / UM_ETH)[0]
    assert b'"X":"MARKET"' in frame and b'"M"' not in frame
    assert parse_frame(frame) == Trade(
        "ETHUSDT", 4308068523, 1723161256560, 2681.62, 1.0, True, 1723161256560
    )


def test_futures_aggtrade_frame_id_is_a() -> None:
    trade = parse_frame(FUTURES_AGG_FRAME)
    assert trade == Trade("BTCUSDT", 2271383457, 1723161256322, 61800.3, 0.006, False,
                          1723161256323)


def test_aggtrade_frames_built_from_real_trades(sample_dir: Path) -> None:
    tape = load_tape([sample_dir / SPOT_ETH, sample_dir / UM_BTC])
    aggs = aggregate_trades(tape.events)
    assert len(aggs) < len(tape)
    for agg in aggs:
        stream = f"{agg.symbol.lower()}@aggTrade"
        wrapped = orjson.dumps({"stream": stream, "data": agg.data})
        trade = parse_frame(wrapped)
        assert isinstance(trade, Trade)
        check_matches(trade, agg.data, "a")
        assert parse_frame(orjson.dumps(agg.data)) == trade


def test_raw_capture_frames_are_trades_book_updates_or_nothing(sample_dir: Path) -> None:
    """Every line of the real capture: @trade -> Trade, @bookTicker -> BookTicker equal
    to the JSON field by field (spot: stamped by the receive clock), depth -> None."""
    trades = books = others = 0
    with gzip.open(sample_dir / RAW, "rb") as fh:
        for line in fh:
            stamp, frame = line.split(b" ", 1)
            recv_ms = int(stamp) // 1_000_000
            result = parse_frame(frame, clock_ms=lambda recv_ms=recv_ms: recv_ms)
            if b"@trade" in frame:
                assert isinstance(result, Trade)
                trades += 1
            elif b"@bookTicker" in frame:
                data = orjson.loads(frame)["data"]
                assert result == BookTicker(
                    data["s"], data["u"], float(data["b"]), float(data["B"]),
                    float(data["a"]), float(data["A"]), recv_ms, recv_ms, "spot",
                    "binance", "receive")
                books += 1
            else:
                assert result is None, frame[:80]
                others += 1
    assert trades == 556 and trades + books + others == 3000 and books > 1000
    # the REST snapshot line found at the start of the "0808" captures
    assert parse_frame(b'{"lastUpdateId":35346513512,"bids":[],"asks":[]}') is None
    # futures bookTicker carries "e" and is timed by its T
    assert parse_frame(
        b'{"stream":"ethusdt@bookTicker","data":{"e":"bookTicker","u":5123107838717,'
        b'"s":"ETHUSDT","b":"2681.62","B":"1.165","a":"2681.63","A":"73.077",'
        b'"T":1723161256310,"E":1723161256311}}', market="perp"
    ) == BookTicker("ETHUSDT", 5123107838717, 2681.62, 1.165, 2681.63, 73.077,
                    1723161256310, 1723161256311, "perp", "binance", "T")


def test_parsed_trades_match_the_csv_field_by_field(sample_dir: Path) -> None:
    with gzip.open(sample_dir / ETH_CSV, "rt", newline="") as fh:
        rows = list(csv.DictReader(io.StringIO(fh.read())))
    raw = frames(sample_dir / SPOT_ETH)
    assert len(rows) == len(raw) == 14_515
    for row, frame in zip(rows, raw, strict=True):
        trade = parse_frame(frame)
        assert isinstance(trade, Trade)
        assert trade.symbol == row["symbol"]
        assert trade.trade_id == int(row["trade_id"])
        assert trade.price == float(row["price"])
        assert trade.qty == float(row["qty"])
        assert trade.time_ms == int(row["trade_time_ms"])
        assert trade.event_ms == int(row["event_time_ms"])
        assert trade.buyer_is_maker is (row["is_buyer_maker"] == "true")


def test_unknown_keys_are_ignored() -> None:
    data = orjson.loads(SPOT_FRAME)
    data["data"]["zz"] = {"new": [1, 2]}
    data["extra"] = 1
    assert parse_frame(orjson.dumps(data)) == parse_frame(SPOT_FRAME)


def test_time_unit_microsecond() -> None:
    data = orjson.loads(SPOT_FRAME)["data"]
    data["T"] *= 1000
    data["E"] *= 1000
    trade = parse_frame(orjson.dumps(data), time_unit_us=True)
    assert trade == parse_frame(SPOT_FRAME)


# ------------------------------------------------------- control and shutdown


def test_server_shutdown_bare_and_wrapped() -> None:
    assert parse_frame(b'{"e":"serverShutdown","E":1723161255343}') == ServerShutdown(
        1723161255343
    )
    wrapped = b'{"stream":"!serverShutdown","data":{"e":"serverShutdown","E":17}}'
    assert parse_frame(wrapped) == ServerShutdown(17)


def test_control_replies() -> None:
    assert parse_frame(b'{"result":null,"id":1}') == ControlReply(1, None)
    assert parse_frame(b'{"result":["btcusdt@aggTrade"],"id":3}') == ControlReply(
        3, ["btcusdt@aggTrade"]
    )
    assert parse_frame(b'{"result":true,"id":"abc"}') == ControlReply("abc", True)
    assert parse_frame(b'{"code":0,"msg":"Unknown property","id":5}') == ControlReply(
        5, None, error_code=0, error_msg="Unknown property"
    )
    assert parse_frame(b'{"code":3,"msg":"Invalid JSON: x"}') == ControlReply(
        None, None, error_code=3, error_msg="Invalid JSON: x"
    )


def test_other_market_events_return_none() -> None:
    for e in ("depthUpdate", "kline", "markPriceUpdate", "24hrTicker", "somethingNew"):
        assert parse_frame(orjson.dumps({"e": e, "E": 1, "s": "BTCUSDT"})) is None


# ---------------------------------------------------------------- bad frames


def _mutated(**changes: object) -> bytes:
    data = orjson.loads(SPOT_FRAME)
    for key, value in changes.items():
        if value is KeyError:
            del data["data"][key]
        else:
            data["data"][key] = value
    return orjson.dumps(data)


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (b"", "invalid JSON"),
        (b"{", "invalid JSON"),
        (SPOT_FRAME[:60], "invalid JSON"),
        (b"\xff\xfe", "invalid JSON"),
        (b"[1,2]", "JSON object"),
        (b'"trade"', "JSON object"),
        (b'{"stream":"btcusdt@trade","data":null}', "data"),
        (b'{"stream":"btcusdt@trade","data":[1]}', "data"),
        (b'{"hello":1}', "unrecognised"),
        (b'{"result":null,"id":[1]}', "id"),
        (b'{"code":"x","msg":"m"}', "code"),
        (_mutated(e=5), "e:"),
        (_mutated(p="abc"), "p:"),
        (_mutated(p="0"), "p:"),
        (_mutated(p="-1"), "p:"),
        (_mutated(p="NaN"), "p:"),
        (_mutated(p="inf"), "p:"),
        (_mutated(p="1e999"), "p:"),
        (_mutated(p=61837.63), "p:"),
        (_mutated(p=KeyError), "p:"),
        (_mutated(q="-0.5"), "q:"),
        (_mutated(q="nan"), "q:"),
        (_mutated(q=None), "q:"),
        (_mutated(t="3735683259"), "t:"),
        (_mutated(t=True), "t:"),
        (_mutated(t=1.0), "t:"),
        (_mutated(t=-1), "t:"),
        (_mutated(t=KeyError), "t:"),
        (_mutated(T=1723161255342.5), "T:"),
        (_mutated(E=KeyError), "E:"),
        (_mutated(s=""), "s:"),
        (_mutated(s=1), "s:"),
        (_mutated(m="true"), "m:"),
        (_mutated(m=1), "m:"),
        (b'{"e":"serverShutdown","E":"soon"}', "E:"),
    ],
)
def test_bad_frames_raise_badframe(frame: bytes, message: str) -> None:
    with pytest.raises(BadFrame, match=message):
        parse_frame(frame)


def test_non_text_input_is_a_badframe() -> None:
    with pytest.raises(BadFrame):
        parse_frame(12345)  # type: ignore[arg-type]


def test_parse_event_is_the_same_validation() -> None:
    data = orjson.loads(SPOT_FRAME)["data"]
    assert parse_event(data) == parse_frame(SPOT_FRAME)


# ----------------------------------------------------------------- hypothesis


def _assert_sane(result: object) -> None:
    if isinstance(result, Trade):
        assert math.isfinite(result.price) and result.price > 0
        assert math.isfinite(result.qty) and result.qty >= 0
        assert result.trade_id >= 0 and result.time_ms >= 0 and result.event_ms >= 0
        assert isinstance(result.buyer_is_maker, bool)
        assert isinstance(result.symbol, str) and result.symbol
    else:
        assert result is None or isinstance(result, ServerShutdown | ControlReply)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats()
    | st.text(max_size=12),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=4), children, max_size=4),
    max_leaves=12,
)
fuzz_field = (
    st.sampled_from(["1", "0", "-1", "1e999", "nan", "inf", "abc", "", " 2.5 ", "0.00"])
    | json_values
)
trade_keys = st.sampled_from(["e", "E", "s", "t", "a", "p", "q", "T", "m"])


@settings(max_examples=300, deadline=None, database=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_only_raise_badframe(raw: bytes) -> None:
    try:
        result = parse_frame(raw)
    except BadFrame:
        return
    _assert_sane(result)


@settings(max_examples=300, deadline=None, database=None)
@given(json_values, st.booleans())
def test_arbitrary_json_only_raises_badframe(value: object, wrap: bool) -> None:
    if wrap:
        value = {"stream": "btcusdt@trade", "data": value}
    try:
        result = parse_frame(orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS))
    except BadFrame:
        return
    except orjson.JSONEncodeError:
        return  # hypothesis made something JSON cannot express (e.g. huge ints)
    _assert_sane(result)


@settings(max_examples=500, deadline=None, database=None)
@given(
    st.sampled_from(["trade", "aggTrade"]),
    st.dictionaries(trade_keys, fuzz_field, max_size=4),
    st.lists(trade_keys, max_size=2),
)
def test_fuzzed_trade_events_are_trades_or_badframes(
    kind: str, changes: dict, removed: list[str]
) -> None:
    data = dict(orjson.loads(SPOT_FRAME)["data"], e=kind, a=12)
    data.update(changes)
    for key in removed:
        data.pop(key, None)
    try:
        raw = orjson.dumps(data)
    except orjson.JSONEncodeError:
        return
    try:
        result = parse_frame(raw)
    except BadFrame:
        return
    _assert_sane(result)
