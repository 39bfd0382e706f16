"""Stream names and the compact wire form of bus events (orjson), for any backend.

A stream per instrument and kind, ``pairs:v1:trades:spot:BTCUSDT`` (the instrument's
``key``), plus the global ``pairs:v1:clock`` and ``pairs:v1:health``. The ``v1`` is
the wire version: a change of encoding gets a new prefix, so an old worker reads
nothing rather than garbage. An entry holds one field, ``e``: one JSON value.

Trades go as columns (ids, times, prices, quantities, sides, push times), one entry
per batch: 58 bytes a trade on the bundled BTCUSDT tape, and one ``XADD`` moves up to
:data:`MAX_BATCH_TRADES` of them. Floats are written by orjson with the shortest text
that reads back to the same double, so a price crosses the bus exactly.
"""

from __future__ import annotations

import orjson

from analytics.instruments import Instrument, parse_instrument
from ingest.bus.interface import (
    BarClosed,
    BookBatch,
    BusEvent,
    ClockAdvanced,
    FeedHealth,
    GapSeen,
    SessionBreak,
    TradeBatch,
)
from ingest.models import BookTicker, Trade

PREFIX = "pairs:v1"
#: Per-instrument kinds (``book``: best bid/ask updates, docs/book.md).
KINDS = ("trades", "bars", "gaps", "breaks", "book")
#: Global streams.
CLOCK, HEALTH = "clock", "health"
#: The set every stream name is added to, so a follower finds new instruments.
INDEX = "streams"
#: Most trades in one entry (a bigger drain becomes several entries, in order).
MAX_BATCH_TRADES = 2_000
FIELD = b"e"


def stream_name(kind: str, instrument: Instrument | None = None, prefix: str = PREFIX) -> str:
    """``pairs:v1:trades:spot:BTCUSDT``; a global kind has no instrument."""
    if instrument is None:
        return f"{prefix}:{kind}"
    return f"{prefix}:{kind}:{instrument.key}"


def index_name(prefix: str = PREFIX) -> str:
    return f"{prefix}:{INDEX}"


def parse_stream(name: str, prefix: str = PREFIX) -> tuple[str, Instrument | None]:
    """``(kind, instrument)`` of a stream name (``ValueError`` if it is not ours)."""
    if not name.startswith(prefix + ":"):
        raise ValueError(f"not a {prefix} stream: {name!r}")
    rest = name[len(prefix) + 1:]
    kind, _, key = rest.partition(":")
    if kind in (CLOCK, HEALTH) and not key:
        return kind, None
    if kind not in KINDS or not key:
        raise ValueError(f"unknown stream {name!r}")
    return kind, parse_instrument(key)


# ------------------------------------------------------------------------ encode
def encode_trades(trades: list[Trade], prev_id: int | None, backfill: bool) -> bytes:
    return orjson.dumps({
        "v": prev_id,
        "f": 1 if backfill else 0,
        "i": [t.trade_id for t in trades],
        "t": [t.time_ms for t in trades],
        "p": [t.price for t in trades],
        "q": [t.qty for t in trades],
        "m": [1 if t.buyer_is_maker else 0 for t in trades],
        "e": [t.event_ms for t in trades],
    })


def encode_books(books: list[BookTicker]) -> bytes:
    """Book updates of one instrument as columns (u, time, bid, bid qty, ask, ask qty,
    push time, time source 1 = ``T`` / 0 = receive)."""
    return orjson.dumps({
        "u": [b.update_id for b in books],
        "t": [b.time_ms for b in books],
        "b": [b.bid for b in books],
        "B": [b.bid_qty for b in books],
        "a": [b.ask for b in books],
        "A": [b.ask_qty for b in books],
        "e": [b.event_ms for b in books],
        "s": [1 if b.time_source == "T" else 0 for b in books],
    })


def encode_bar(row: tuple) -> bytes:
    return orjson.dumps(list(row), option=orjson.OPT_SERIALIZE_NUMPY)


def encode_clock(close_ms: int, watermarks: dict[str, int]) -> bytes:
    return orjson.dumps({"c": int(close_ms), "w": watermarks})


def encode_gap(first_id: int, last_id: int, detected_ms: int) -> bytes:
    return orjson.dumps([int(first_id), int(last_id), int(detected_ms)])


def encode_break(ts_ms: int, reason: str) -> bytes:
    return orjson.dumps([int(ts_ms), str(reason)])


def encode_health(health: dict, sent_ms: int) -> bytes:
    return orjson.dumps(
        {"h": health, "s": int(sent_ms)},
        option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS,
        default=str,
    )


# ------------------------------------------------------------------------ decode
def decode(kind: str, instrument: Instrument | None, data: bytes) -> BusEvent:
    """One entry's event (``ValueError`` / ``orjson.JSONDecodeError`` if malformed)."""
    obj = orjson.loads(data)
    if kind == "trades":
        market, venue = instrument.market, instrument.venue
        sym = instrument.symbol
        trades = tuple(
            Trade(sym, i, t, p, q, bool(m), e, market, venue)
            for i, t, p, q, m, e in zip(
                obj["i"], obj["t"], obj["p"], obj["q"], obj["m"], obj["e"], strict=True
            )
        )
        return TradeBatch(instrument, trades, obj["v"], bool(obj["f"]))
    if kind == "book":
        market, venue, sym = instrument.market, instrument.venue, instrument.symbol
        books = tuple(
            BookTicker(sym, u, b, bq, a, aq, t, e, market, venue, "T" if s else "receive")
            for u, t, b, bq, a, aq, e, s in zip(
                obj["u"], obj["t"], obj["b"], obj["B"], obj["a"], obj["A"], obj["e"],
                obj["s"], strict=True)
        )
        return BookBatch(instrument, books)
    if kind == "bars":
        return BarClosed(instrument, tuple(obj))
    if kind == CLOCK:
        return ClockAdvanced(int(obj["c"]), {str(k): int(v) for k, v in obj["w"].items()})
    if kind == "gaps":
        return GapSeen(instrument, int(obj[0]), int(obj[1]), int(obj[2]))
    if kind == "breaks":
        return SessionBreak(instrument, int(obj[0]), str(obj[1]))
    if kind == HEALTH:
        return FeedHealth(obj["h"], int(obj["s"]))
    raise ValueError(f"no decoder for stream kind {kind!r}")
