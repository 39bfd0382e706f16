"""Hostile ``@bookTicker`` frames: a seeded mutation fuzzer over the REAL recorded book
frames of both markets (sample_data's raw captures), property-based tests, and the
quotes that must never pass (crossed, locked, zero, negative, non-finite).

The contract, as for trades (test_fuzz.py): the parser returns a value or raises
``BadFrame``, nothing else, and a ``BookTicker`` that comes out satisfies what the
engine and the ``book_bars`` table rely on: finite prices > 0 with bid < ask, finite
quantities > 0, 64-bit ids and times, the market of the connection.
"""

from __future__ import annotations

import gzip
import math
import random
import sqlite3

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.feeds.binance import MAX_INT64, parse_frame
from ingest.feeds.binance_perp import BINANCE_PERP
from ingest.feeds.binance_spot import BINANCE_SPOT
from ingest.models import BadFrame, BookTicker, ControlReply, ServerShutdown, Trade
from ingest.store.sqlite_schema import TABLES
from ingest.store.sqlite_trades import _UPSERT_BOOK
from tests.analytics.conftest import SAMPLE_DIR
from tests.ingest.feeds.test_fuzz import HOSTILE_STRINGS, HOSTILE_VALUES

FUZZ_FRAMES = 60_000
SEED = 20_261_206
RECV_MS = 1_723_161_300_000
CAPTURES = {
    "spot": SAMPLE_DIR / "hftbacktest-rawcapture-trade-book_spot_ETHUSDT_20240808_2354-2356.gz",
    "perp": SAMPLE_DIR / "hftbacktest-rawcapture-trade-book_um_ETHUSDT_20240808_2354-2356.gz",
}
SPOT_FRAME = (b'{"stream":"ethusdt@bookTicker","data":{"u":35346671867,"s":"ETHUSDT",'
              b'"b":"2682.50000000","B":"2.54580000","a":"2682.51000000","A":"50.97390000"}}')
PERP_FRAME = (b'{"stream":"btcusdt@bookTicker","data":{"e":"bookTicker","u":5123107839020,'
              b'"s":"BTCUSDT","b":"61800.20","B":"2.507","a":"61800.30","A":"2.510",'
              b'"T":1723161256313,"E":1723161256313}}')


def check_book(b: BookTicker) -> None:
    """The invariants of a book update the engine and the store take."""
    assert type(b.symbol) is str and b.symbol
    for name in ("update_id", "time_ms", "event_ms"):
        v = getattr(b, name)
        assert type(v) is int and 0 <= v <= MAX_INT64, (name, v)
    for name in ("bid", "ask", "bid_qty", "ask_qty"):
        v = getattr(b, name)
        assert type(v) is float and math.isfinite(v) and v > 0, (name, v)
    assert b.bid < b.ask
    assert b.time_source in ("T", "receive") and b.market in ("spot", "perp")


def book_frames(market: str, n: int = 300) -> list[bytes]:
    """The first ``n`` recorded bookTicker frames of a capture, wrapped and bare."""
    out = []
    with gzip.open(CAPTURES[market], "rb") as fh:
        for line in fh:
            frame = line.split(b" ", 1)[1].strip()
            if b"@bookTicker" in frame:
                out.append(frame)
                out.append(orjson.dumps(orjson.loads(frame)["data"]))
                if len(out) >= 2 * n:
                    break
    return out


def mutate(rng: random.Random, frame: bytes) -> bytes:
    """One random mutation of a real frame: bytes, keys, values, quotes."""
    op = rng.randrange(9)
    if op == 0:
        b = bytearray(frame)
        for _ in range(rng.randint(1, 4)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        return bytes(b)
    if op == 1:
        return frame[: rng.randrange(len(frame))]
    obj = orjson.loads(frame)
    target = obj["data"] if "data" in obj else obj
    keys = list(target)
    key = rng.choice(keys)
    if op == 2:
        for k in rng.sample(keys, rng.randint(1, min(3, len(keys)))):
            del target[k]
    elif op == 3:
        target[key] = rng.choice(HOSTILE_VALUES)
    elif op == 4:
        target[key] = rng.choice(HOSTILE_STRINGS)
    elif op == 5:  # huge / negative ids and times
        target[rng.choice(["u", "T", "E"])] = rng.choice(
            [2**63, 2**64 - 1, -1, -(2**63), 10**19, 1e300])
    elif op == 6:  # the book crossed, locked, emptied or negated
        bid, ask = target.get("b"), target.get("a")
        target["b"], target["a"] = rng.choice([
            (ask, bid), (bid, bid), ("0", ask), (bid, "0"), ("-1", ask), (bid, "-0"),
            ("0.00000000", "0.00000000"), (bid, "1e309"), ("nan", ask),
        ])
        if rng.random() < 0.3:
            target[rng.choice(["B", "A"])] = rng.choice(["0", "-2.5", "inf", "0.00000000"])
    elif op == 7:  # event type and market shape swapped
        target["e"] = rng.choice(["bookTicker", "trade", "depthUpdate", 7, None, ""])
    else:
        target[rng.choice(HOSTILE_STRINGS) or "k"] = rng.choice(HOSTILE_VALUES)
    try:
        return orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS)
    except orjson.JSONEncodeError:
        return frame[:-1]


def test_real_book_frames_parse_as_recorded():
    """Every recorded book frame of both markets parses; fields equal the JSON's."""
    for market, protocol in (("spot", BINANCE_SPOT), ("perp", BINANCE_PERP)):
        frames = book_frames(market, 10_000)
        for raw in frames[::2]:
            (b,) = protocol.parse_frame_clocked(raw, lambda: RECV_MS)
            d = orjson.loads(raw)["data"]
            check_book(b)
            assert (b.symbol, b.update_id, b.bid, b.bid_qty, b.ask, b.ask_qty) == (
                d["s"], d["u"], float(d["b"]), float(d["B"]), float(d["a"]), float(d["A"]))
            assert b.market == market
            if market == "perp":
                assert (b.time_ms, b.event_ms, b.time_source) == (d["T"], d["E"], "T")
            else:
                assert (b.time_ms, b.event_ms, b.time_source) == (RECV_MS, RECV_MS, "receive")


@pytest.mark.slow
def test_mutation_fuzzer_real_book_frames():
    """60,000 mutated real book frames of both markets: only BadFrame, and every
    BookTicker is valid and goes into the real book_bars table."""
    rng = random.Random(SEED)
    frames = book_frames("spot") + book_frames("perp")
    con = sqlite3.connect(":memory:")
    for ddl in TABLES:
        con.execute(ddl)
    outcomes = {"bad": 0, "book": 0, "other": 0}
    rows = []
    for i in range(FUZZ_FRAMES):
        raw = mutate(rng, frames[i % len(frames)])
        try:
            result = parse_frame(raw, market="perp" if i % 2 else "spot",
                                 clock_ms=lambda: RECV_MS)
        except BadFrame:
            outcomes["bad"] += 1
            continue
        if isinstance(result, BookTicker):
            check_book(result)
            outcomes["book"] += 1
            rows.append((result.venue, result.market, result.symbol, i, result.bid,
                         result.ask, result.bid_qty, result.ask_qty, 1.0, 1))
        else:
            assert result is None or isinstance(result, Trade | ServerShutdown | ControlReply)
            outcomes["other"] += 1
    con.executemany(_UPSERT_BOOK, rows)
    assert con.execute("SELECT count(*) FROM book_bars").fetchone()[0] == len(rows)
    assert sum(outcomes.values()) == FUZZ_FRAMES
    assert outcomes["bad"] > FUZZ_FRAMES // 3 and outcomes["book"] > 5_000, outcomes


@pytest.mark.parametrize("b, a, bq, aq, why", [
    ("100.0", "99.9", "1", "1", "crossed"),
    ("100.0", "100.0", "1", "1", "crossed"),  # locked: no continuous book stands so
    ("0", "100.0", "1", "1", "b: expected a finite bid"),
    ("0.00000000", "0.00000000", "1", "1", "b: expected"),
    ("-1", "100.0", "1", "1", "b: expected"),
    ("99", "-100.0", "1", "1", "a: expected"),
    ("99", "1e309", "1", "1", "a: expected"),
    ("nan", "100", "1", "1", "b: expected"),
    ("99", "100", "0", "1", "B: expected"),
    ("99", "100", "1", "-0.5", "A: expected"),
    ("99", "100", "inf", "1", "B: expected"),
    ("99", "100", "1", "0.00000000", "A: expected"),
    ("99", "100", 1, "1", "B: expected a decimal string"),
    ("١٢", "100", "1", "1", "b: not a plain ASCII"),
])
def test_bad_quotes_are_bad_frames(b, a, bq, aq, why):
    for frame in (SPOT_FRAME, PERP_FRAME):
        obj = orjson.loads(frame)
        obj["data"].update(b=b, a=a, B=bq, A=aq)
        with pytest.raises(BadFrame, match=why):
            parse_frame(orjson.dumps(obj), clock_ms=lambda: RECV_MS)


def test_ids_and_times_beyond_int64_are_bad_and_microseconds_are_floored():
    obj = orjson.loads(PERP_FRAME)["data"]
    for key in ("u", "T", "E"):
        with pytest.raises(BadFrame, match=key):
            parse_frame(orjson.dumps({**obj, key: 2**63}))
    assert parse_frame(orjson.dumps({**obj, "u": 2**63 - 1})).update_id == 2**63 - 1
    b = parse_frame(orjson.dumps({**obj, "T": 1723161256313123, "E": 1723161256313999}),
                    time_unit_us=True)
    assert (b.time_ms, b.event_ms) == (1723161256313, 1723161256313)


def test_spot_stamps_read_the_clock_once_per_frame_and_only_for_book_frames():
    calls = []

    def clock():
        calls.append(1)
        return RECV_MS + len(calls)

    b1 = parse_frame(SPOT_FRAME, clock_ms=clock)
    b2 = parse_frame(SPOT_FRAME, clock_ms=clock)
    assert (b1.time_ms, b2.time_ms) == (RECV_MS + 1, RECV_MS + 2) and len(calls) == 2
    parse_frame(PERP_FRAME, clock_ms=clock)  # timed by T: the clock is not read
    trade = (b'{"e":"trade","E":1723161255343,"s":"BTCUSDT","t":3735683259,'
             b'"p":"61837.63000000","q":"0.02000000","T":1723161255342,"m":true,"M":true}')
    parse_frame(trade, clock_ms=clock)
    assert len(calls) == 2


book_fields = st.fixed_dictionaries(
    {},
    optional={
        k: (st.none() | st.booleans() | st.integers(-(2**64), 2**64) | st.floats()
            | st.text(max_size=12) | st.sampled_from(HOSTILE_STRINGS) | st.just(v))
        for k, v in {"e": "bookTicker", "u": 5_123_107_839_020, "s": "BTCUSDT",
                     "b": "61800.20", "B": "2.507", "a": "61800.30", "A": "2.510",
                     "T": 1_723_161_256_313, "E": 1_723_161_256_313}.items()
    },
)


@pytest.mark.slow
@settings(max_examples=500, deadline=None, database=None)
@given(book_fields, st.booleans(), st.sampled_from(["spot", "perp"]))
def test_property_book_like_objects(fields: dict, wrap: bool, market: str) -> None:
    value = {"stream": "btcusdt@bookTicker", "data": fields} if wrap else fields
    try:
        raw = orjson.dumps(value)
    except (orjson.JSONEncodeError, TypeError):
        return
    try:
        result = parse_frame(raw, market=market, clock_ms=lambda: RECV_MS)
    except BadFrame:
        return
    if isinstance(result, BookTicker):
        check_book(result)
        assert result.market == market
    else:
        assert result is None or isinstance(result, Trade | ServerShutdown | ControlReply)
