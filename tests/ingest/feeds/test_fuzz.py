"""Hostile frames: a seeded mutation fuzzer over real recorded frames, and
property-based (hypothesis) tests of the frame and REST-page parsers.

The contract: a parser returns a value or raises ``BadFrame``, nothing else; and a
``Trade`` that comes out satisfies every invariant the store and analytics rely on
(so it can be bound to SQLite's INTEGER/REAL columns, and a price is a price).
"""

from __future__ import annotations

import math
import random
import sqlite3
import time

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.feeds.binance import MAX_INT64, parse_frame, parse_rest_trades
from ingest.models import BadFrame, BookTicker, ControlReply, ServerShutdown, Trade
from ingest.store.sqlite_schema import TABLES
from ingest.store.sqlite_trades import _INSERT_TRADE

FUZZ_FRAMES = 100_000
SEED = 20_260_101

HOSTILE_STRINGS = [
    "",
    " ",
    "NaN",
    "nan",
    "inf",
    "-inf",
    "1e309",
    "-1e309",
    "1e-400",
    "-0",
    "0",
    "0x10",
    "1_000",
    " 2.5 ",
    "1,5",
    "٣",
    "１２",
    "\u202e1",
    "1\x00",
    "'; DROP TABLE trades;--",
    "<script>",
    "💥",
    "\ud7ff",
    "9" * 400,
    "-" + "9" * 30,
    "1e18",
    "true",
    "null",
]
HOSTILE_VALUES = [
    None,
    True,
    False,
    0,
    -1,
    2**63 - 1,
    2**63,
    2**64 - 1,
    -(2**63),
    1.5,
    -0.0,
    1e308,
    [],
    {},
    [1, 2],
    {"a": 1},
    "x" * 5000,
]


def check_trade(t: Trade) -> None:
    """The invariants of a stored row."""
    assert type(t.symbol) is str and t.symbol
    for name in ("trade_id", "time_ms", "event_ms"):
        v = getattr(t, name)
        assert type(v) is int and 0 <= v <= MAX_INT64, (name, v)
    assert type(t.price) is float and math.isfinite(t.price) and t.price > 0
    assert type(t.qty) is float and math.isfinite(t.qty) and t.qty >= 0
    assert type(t.buyer_is_maker) is bool


def check_result(result: object) -> None:
    if isinstance(result, Trade):
        check_trade(result)
    elif isinstance(result, BookTicker):
        from tests.ingest.feeds.test_book_fuzz import check_book

        check_book(result)
    else:
        assert result is None or isinstance(result, ServerShutdown | ControlReply)


def real_frames(tape) -> list[bytes]:
    """Recorded events, wrapped and bare, trade and derived-aggTrade shapes."""
    out = []
    for ev in tape.events[:400]:
        bare = orjson.dumps(ev.data)
        out.append(bare)
        out.append(
            b'{"stream":"'
            + f"{ev.symbol.lower()}@trade".encode()
            + b'","data":'
            + bare
            + b"}"
        )
        agg = {k: v for k, v in ev.data.items() if k not in ("t", "M")}
        agg.update(e="aggTrade", a=ev.trade_id, f=ev.trade_id, l=ev.trade_id)
        out.append(orjson.dumps(agg))
    return out


def mutate(rng: random.Random, frame: bytes) -> bytes:
    """One random mutation of a real frame: bytes or structure."""
    op = rng.randrange(10)
    if op == 0:  # flip 1-4 bytes
        b = bytearray(frame)
        for _ in range(rng.randint(1, 4)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        return bytes(b)
    if op == 1:  # truncate
        return frame[: rng.randrange(len(frame))]
    if op == 2:  # splice a random chunk of another part of the frame in
        i, j = sorted(rng.sample(range(len(frame)), 2))
        k = rng.randrange(len(frame))
        return frame[:k] + frame[i:j] + frame[k:]
    obj = orjson.loads(frame)
    target = obj["data"] if "data" in obj else obj
    keys = list(target)
    key = rng.choice(keys)
    if op == 3:  # delete keys
        for k in rng.sample(keys, rng.randint(1, min(3, len(keys)))):
            del target[k]
    elif op == 4:  # swap a value's type
        target[key] = rng.choice(HOSTILE_VALUES)
    elif op == 5:  # hostile strings
        target[key] = rng.choice(HOSTILE_STRINGS)
    elif op == 6:  # huge / negative numbers
        target[key] = rng.choice(
            [2**63, 2**64 - 1, -1, -(2**63), 10**19, 1e300, -1e-300]
        )
    elif op == 7:  # unicode everywhere
        target[key] = "".join(chr(rng.randrange(0x20, 0x2FFFF)) for _ in range(8))
    elif op == 8:  # the wrapper itself broken
        return orjson.dumps(
            rng.choice(
                [
                    {"stream": "x", "data": rng.choice(HOSTILE_VALUES)},
                    {"data": target, "stream": None},
                    [target],
                ]
            )
        )
    else:  # duplicate / unknown keys and an event-type swap
        target["e"] = rng.choice(
            ["trade", "aggTrade", "serverShutdown", "kline", 7, None]
        )
        target[rng.choice(HOSTILE_STRINGS) or "k"] = rng.choice(HOSTILE_VALUES)
    try:
        return orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS)
    except orjson.JSONEncodeError:
        return frame[:-1]


def test_mutation_fuzzer_100k_real_frames(spot_tape):
    """100,000 mutated real frames: only BadFrame, and every Trade is a valid row that
    SQLite accepts into the real schema."""
    rng = random.Random(SEED)
    frames = real_frames(spot_tape)
    con = sqlite3.connect(":memory:")
    for ddl in TABLES:
        con.execute(ddl)
    outcomes = {"bad": 0, "trade": 0, "other": 0}
    rows = []
    started = time.perf_counter()
    for i in range(FUZZ_FRAMES):
        raw = mutate(rng, frames[i % len(frames)])
        try:
            result = parse_frame(raw)
        except BadFrame:
            outcomes["bad"] += 1
            continue
        check_result(result)
        if isinstance(result, Trade):
            outcomes["trade"] += 1
            rows.append(
                (
                    result.venue,
                    result.market,
                    result.symbol,
                    i,
                    result.time_ms,
                    result.price,
                    result.qty,
                    result.buyer_is_maker,
                )
            )
        else:
            outcomes["other"] += 1
    seconds = time.perf_counter() - started
    con.executemany(_INSERT_TRADE, rows)  # would raise OverflowError on a 2**63 id
    assert con.execute("SELECT count(*) FROM trades").fetchone()[0] == len(rows)
    print(f"fuzz: {FUZZ_FRAMES:,} frames in {seconds:.2f}s: {outcomes}")
    assert sum(outcomes.values()) == FUZZ_FRAMES
    assert outcomes["bad"] > FUZZ_FRAMES // 3 and outcomes["trade"] > 1_000


def test_ids_beyond_int64_are_bad_frames():
    base = {
        "e": "trade",
        "E": 1,
        "s": "BTCUSDT",
        "t": 1,
        "p": "1",
        "q": "1",
        "T": 1,
        "m": True,
    }
    for key in ("t", "T", "E"):
        with pytest.raises(BadFrame, match=key):
            parse_frame(orjson.dumps({**base, key: 2**63}))
    assert parse_frame(orjson.dumps({**base, "t": 2**63 - 1})).trade_id == 2**63 - 1


def rest_pages(tape) -> list[tuple[str, bytes]]:
    trades = [
        {
            "id": ev.trade_id,
            "price": ev.data["p"],
            "qty": ev.data["q"],
            "quoteQty": "1",
            "time": ev.time_ms,
            "isBuyerMaker": ev.data["m"],
            "isBestMatch": True,
        }
        for ev in tape.events[:50]
    ]
    aggs = [
        {
            "a": ev.trade_id,
            "p": ev.data["p"],
            "q": ev.data["q"],
            "f": ev.trade_id,
            "l": ev.trade_id,
            "T": ev.time_ms,
            "m": ev.data["m"],
        }
        for ev in tape.events[:50]
    ]
    return [("trade", orjson.dumps(trades[i : i + 5])) for i in range(0, 50, 5)] + [
        ("aggTrade", orjson.dumps(aggs[i : i + 5])) for i in range(0, 50, 5)
    ]


def test_mutation_fuzzer_rest_pages(spot_tape):
    rng = random.Random(SEED + 1)
    pages = rest_pages(spot_tape)
    for i in range(20_000):
        kind, page = pages[i % len(pages)]
        rows = orjson.loads(page)
        op = rng.randrange(4)
        if op == 0:
            raw = page[: rng.randrange(len(page))]
        elif op == 1:
            b = bytearray(page)
            b[rng.randrange(len(b))] = rng.randrange(256)
            raw = bytes(b)
        else:
            row = rng.choice(rows)
            key = rng.choice(list(row))
            if op == 2:
                del row[key]
            else:
                row[key] = rng.choice(HOSTILE_VALUES + HOSTILE_STRINGS)
            raw = orjson.dumps(rows)
        try:
            trades = parse_rest_trades(raw, "BTCUSDT", kind)
        except BadFrame:
            continue
        for t in trades:
            check_trade(t)


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**64), max_value=2**64)
    | st.floats()
    | st.text(max_size=20)
    | st.sampled_from(HOSTILE_STRINGS)
)
json_values = st.recursive(
    json_scalars,
    lambda c: (
        st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=3), c, max_size=3)
    ),
    max_leaves=8,
)
trade_fields = st.fixed_dictionaries(
    {},
    optional={
        k: json_values | st.just(v)
        for k, v in {
            "e": "trade",
            "E": 1_723_161_255_343,
            "s": "BTCUSDT",
            "t": 3_735_683_259,
            "a": 12,
            "p": "61837.63",
            "q": "0.02",
            "T": 1_723_161_255_342,
            "m": True,
        }.items()
    },
)


@settings(max_examples=400, deadline=None, database=None)
@given(trade_fields, st.booleans())
def test_property_trade_like_objects(fields: dict, wrap: bool) -> None:
    value = {"stream": "btcusdt@trade", "data": fields} if wrap else fields
    try:
        raw = orjson.dumps(value)
    except (orjson.JSONEncodeError, TypeError):
        return
    try:
        check_result(parse_frame(raw))
    except BadFrame:
        pass


@settings(max_examples=300, deadline=None, database=None)
@given(
    st.lists(
        st.dictionaries(
            st.sampled_from(
                ["id", "price", "qty", "time", "isBuyerMaker", "a", "p", "q", "T", "m"]
            ),
            json_values,
            max_size=10,
        ),
        max_size=4,
    ),
    st.sampled_from(["trade", "aggTrade"]),
)
def test_property_rest_pages(rows: list, kind: str) -> None:
    try:
        raw = orjson.dumps(rows)
    except (orjson.JSONEncodeError, TypeError):
        return
    try:
        for t in parse_rest_trades(raw, "ETHUSDT", kind):
            check_trade(t)
    except BadFrame:
        pass
