"""Binance's market-data wire format, shared by spot and USDⓈ-M perp (pure, no I/O).

What both Binance markets share lives here: stream names and URL layout, frame and
REST-row parsing, and :class:`BinanceFeed`, the :class:`~ingest.feeds.base.FeedProtocol`
both markets are instances of. What differs (hosts, the ``/market`` path, REST
endpoints and weights, ping intervals) is declared in ``binance_spot.py`` and
``binance_perp.py``.

Binance pushes one JSON text frame per event. On ``/ws/...`` connections the frame
is the bare event object; on ``/stream?streams=...`` connections it is wrapped as
``{"stream": "<name>", "data": {...event...}}``. Control replies (to SUBSCRIBE and
friends) and errors share the socket with market data, so :func:`parse_frame`
classifies every frame instead of assuming it is a trade.

Prices and quantities arrive as JSON *strings* (exact decimals); ids and times are
JSON integers; ``m`` is a JSON boolean. Anything else is a malformed frame and
raises :class:`~ingest.models.BadFrame`, which the feed counts and skips.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import orjson

from analytics.instruments import check_symbol
from ingest.feeds.base import FeedProtocol, FrameItem
from ingest.models import BadFrame, BookTicker, ControlReply, ServerShutdown, Trade

STREAM_KINDS = ("trade", "aggTrade")
#: The best bid/ask stream (every change of the top of the book, real time).
BOOK_STREAM = "bookTicker"
MAX_STREAMS_PER_CONNECTION = 1024

# Event types Binance pushes on market-data sockets that carry no trade. We ignore
# them (return None) instead of flagging them as bad: a client subscribed to more
# than trades must not count every book update as an error. ``bookTicker`` is not
# here: it is parsed into a :class:`~ingest.models.BookTicker`.
NON_TRADE_EVENTS = frozenset(
    {
        "depthUpdate",
        "kline",
        "continuous_kline",
        "markPriceUpdate",
        "24hrTicker",
        "24hrMiniTicker",
        "1hTicker",
        "4hTicker",
        "1dTicker",
        "forceOrder",
        "compositeIndex",
        "contractInfo",
        "assetIndexUpdate",
        "indexPriceUpdate",
        "avgPrice",
        "listenKeyExpired",
    }
)

_FLOAT_INF = math.inf
MAX_INT64 = 2**63 - 1


# ---------------------------------------------------------------------------
# URLs


def stream_names(
    symbols: Iterable[str], stream: str = "aggTrade", *, book: bool = False,
    trades: bool = True,
) -> list[str]:
    """Binance stream names for ``symbols``, e.g. ``["btcusdt@aggTrade", ...]``.

    Stream names use the lower-case symbol; the kind keeps Binance's camel case.
    Duplicates are dropped (order kept) because Binance would subscribe once anyway.
    ``book=True`` adds each symbol's ``<sym>@bookTicker`` after the trade streams
    (spot: one connection carries both, the trades and the quotes of a symbol share
    its ordering and its reconnects). ``trades=False`` leaves the trade streams out:
    a perp book-only connection on ``/public`` (:attr:`BinanceFeed.book_path_prefix`).
    """
    if stream not in STREAM_KINDS:
        raise ValueError(f"invalid stream {stream!r}: expected one of {STREAM_KINDS}")
    if isinstance(symbols, str):
        symbols = [symbols]
    names: list[str] = []
    seen: set[str] = set()
    symbols = [check_symbol(symbol).lower() for symbol in symbols]
    kinds = ((stream,) if trades else ()) + ((BOOK_STREAM,) if book else ())
    for kind in kinds:
        for symbol in symbols:
            name = f"{symbol}@{kind}"
            if name not in seen:
                seen.add(name)
                names.append(name)
    if not names:
        raise ValueError("no symbols given: need at least one")
    if len(names) > MAX_STREAMS_PER_CONNECTION:
        raise ValueError(
            f"{len(names)} streams requested; Binance allows at most "
            f"{MAX_STREAMS_PER_CONNECTION} per connection"
        )
    return names


def compose_stream_url(base: str, names: list[str], *, combined: bool = True) -> str:
    """``<base>/stream?streams=a/b`` (combined) or ``<base>/ws/a/b`` (bare events).

    Combined frames are wrapped in ``{"stream", "data"}``, which tells which stream a
    frame belongs to before parsing; bare frames are the event object alone.
    """
    joined = "/".join(names)
    if combined:
        return f"{base}/stream?streams={joined}"
    return f"{base}/ws/{joined}"


def _base(base_url: object, default: str, schemes: tuple[str, ...], what: str) -> str:
    if base_url is None:
        return default
    if not isinstance(base_url, str) or not base_url.startswith(schemes):
        raise ValueError(
            f"invalid {what} {base_url!r}: must start with {' or '.join(schemes)}"
        )
    return base_url.rstrip("/")


# ---------------------------------------------------------------------------
# Frames


def _bad(key: str, what: str, value: object) -> BadFrame:
    text = repr(value)
    if len(text) > 40:
        text = text[:37] + "..."
    return BadFrame(f"{key}: {what}, got {text}")


def _get_int(ev: dict, key: str) -> int:
    try:
        value = ev[key]
    except KeyError:
        raise BadFrame(f"{key}: missing") from None
    # type() is not isinstance(): bool is a subclass of int and must be rejected.
    if type(value) is not int:
        raise _bad(key, "expected an integer", value)
    # orjson accepts up to 2**64 - 1; SQLite INTEGER (and numpy int64) stop at
    # 2**63 - 1, and such an id reaching the store's writer would fail every retry.
    if not 0 <= value <= MAX_INT64:
        raise _bad(key, "expected an integer in 0..2**63-1", value)
    return value


def _get_decimal(ev: dict, key: str) -> float:
    try:
        value = ev[key]
    except KeyError:
        raise BadFrame(f"{key}: missing") from None
    if type(value) is not str:
        raise _bad(key, "expected a decimal string", value)
    # float() also reads "١٢" (Arabic-Indic digits), "１２" and "1_000": not Binance.
    if not value.isascii() or "_" in value:
        raise _bad(key, "not a plain ASCII decimal number", value)
    try:
        number = float(value)
    except ValueError:
        raise _bad(key, "not a decimal number", value) from None
    return number


def wall_clock_ms() -> int:
    """Receive time of a frame on the wall clock (ms since epoch): the default stamp
    of spot book updates, which carry no time of their own."""
    return time.time_ns() // 1_000_000


def parse_book_ticker(
    ev: dict,
    *,
    market: str = "spot",
    time_unit_us: bool = False,
    clock_ms: Callable[[], int] | None = None,
) -> BookTicker:
    """One decoded ``bookTicker`` event -> :class:`BookTicker` (``BadFrame`` if malformed).

    USD-M futures (``T`` = transaction time, the time it is bucketed by)::

        {"e":"bookTicker","u":5123107839020,"s":"BTCUSDT","b":"61800.20","B":"2.507",
         "a":"61800.30","A":"2.510","T":1723161256313,"E":1723161256313}

    Spot (no event type, no time at all)::

        {"u":35346671867,"s":"ETHUSDT","b":"2682.50000000","B":"2.54580000",
         "a":"2682.51000000","A":"50.97390000"}

    A frame with ``T`` is timed by ``T`` (``time_source "T"``); one without is timed
    by ``clock_ms()`` read now, at receive (``time_source "receive"``; default: the
    wall clock, in replay the replay's tape clock). Prices must be finite and > 0,
    quantities finite and > 0 (an empty level is no quote), and ``bid < ask``: a
    crossed or locked top of book cannot stand on a continuous book, so such a frame
    is corrupt and bad, never a quote.
    """
    # Fast path (the hot one: ~200 book updates/s per busy symbol): the same checks
    # as below in fewer steps; anything unusual falls through to the checked path,
    # which raises the precise BadFrame.
    try:
        symbol, update_id = ev["s"], ev["u"]
        b, bq, a, aq = ev["b"], ev["B"], ev["a"], ev["A"]
        if (type(symbol) is str and symbol and type(update_id) is int
                and 0 <= update_id <= MAX_INT64 and type(b) is str and type(bq) is str
                and type(a) is str and type(aq) is str):
            text = b + bq + a + aq
            if text.isascii() and "_" not in text:
                bid, bid_qty, ask, ask_qty = float(b), float(bq), float(a), float(aq)
                if (0.0 < bid < ask < _FLOAT_INF and 0.0 < bid_qty < _FLOAT_INF
                        and 0.0 < ask_qty < _FLOAT_INF):
                    t = ev.get("T")
                    if t is None:
                        if "T" not in ev:
                            recv_ms = wall_clock_ms() if clock_ms is None else int(clock_ms())
                            return BookTicker(symbol, update_id, bid, bid_qty, ask, ask_qty,
                                              recv_ms, recv_ms, market, "binance", "receive")
                    elif type(t) is int and 0 <= t <= MAX_INT64 and not time_unit_us:
                        e = ev.get("E", t)
                        if type(e) is int and 0 <= e <= MAX_INT64:
                            return BookTicker(symbol, update_id, bid, bid_qty, ask, ask_qty,
                                              t, e, market, "binance", "T")
    except (KeyError, ValueError):
        pass
    return _parse_book_checked(ev, market, time_unit_us, clock_ms)


def _parse_book_checked(
    ev: dict, market: str, time_unit_us: bool, clock_ms: Callable[[], int] | None
) -> BookTicker:
    """:func:`parse_book_ticker`, every field checked in turn: the precise BadFrame."""
    symbol = ev.get("s")
    if type(symbol) is not str or not symbol:
        raise _bad("s", "expected a non-empty symbol string", symbol)
    update_id = _get_int(ev, "u")
    bid = _get_decimal(ev, "b")
    bid_qty = _get_decimal(ev, "B")
    ask = _get_decimal(ev, "a")
    ask_qty = _get_decimal(ev, "A")
    # Chained comparisons are False for NaN, so these also reject non-finite values.
    if not 0.0 < bid < _FLOAT_INF:
        raise _bad("b", "expected a finite bid price > 0", ev["b"])
    if not 0.0 < ask < _FLOAT_INF:
        raise _bad("a", "expected a finite ask price > 0", ev["a"])
    if not 0.0 < bid_qty < _FLOAT_INF:
        raise _bad("B", "expected a finite bid quantity > 0", ev["B"])
    if not 0.0 < ask_qty < _FLOAT_INF:
        raise _bad("A", "expected a finite ask quantity > 0", ev["A"])
    if not bid < ask:
        raise BadFrame(f"crossed book: bid {ev['b']} >= ask {ev['a']}")
    if "T" in ev:
        time_ms = _get_int(ev, "T")
        event_ms = _get_int(ev, "E") if "E" in ev else time_ms
        if time_unit_us:
            time_ms //= 1000
            event_ms //= 1000
        return BookTicker(symbol, update_id, bid, bid_qty, ask, ask_qty, time_ms,
                          event_ms, market, "binance", "T")
    recv_ms = wall_clock_ms() if clock_ms is None else int(clock_ms())
    return BookTicker(symbol, update_id, bid, bid_qty, ask, ask_qty, recv_ms, recv_ms,
                      market, "binance", "receive")


def parse_event(
    ev: dict, *, time_unit_us: bool = False, market: str = "spot",
    clock_ms: Callable[[], int] | None = None,
) -> Trade | BookTicker | ServerShutdown | ControlReply | None:
    """Classify one *decoded* event object (bare, i.e. already unwrapped).

    Trades carry ``market`` (``"spot"`` | ``"perp"``): the frame itself does not say
    which market it came from, the connection does. Book updates (``bookTicker``)
    become :class:`BookTicker` (:func:`parse_book_ticker`; ``clock_ms`` stamps spot
    ones, which carry no time).

    Split out of :func:`parse_frame` so that loaders which decode whole files
    (``ingest.replay.tapes``) validate events with exactly the same rules.

    Spot ``trade`` (2024 schema)::

        {"e":"trade","E":1723161255343,"s":"BTCUSDT","t":3735683259,
         "p":"61837.63000000","q":"0.02000000","T":1723161255342,"m":true,"M":true}

    Spot ``trade`` before 2024-06-18 also carried order ids ``b`` (buyer) and ``a``
    (seller). That ``a`` is NOT an aggregate id, so the id of a ``trade`` is always
    ``t``::

        {"e":"trade","E":1680652800000,"s":"BTCUSDT","t":3071245454,
         "p":"28165.47000000","q":"0.00056000","b":20720542158,"a":20720542592,
         "T":1680652799999,"m":true,"M":true}

    USD-M futures ``trade`` (undocumented stream; no ``M``, order type ``X``)::

        {"e":"trade","E":1723161256560,"T":1723161256560,"s":"ETHUSDT",
         "t":4308068523,"p":"2681.62","q":"1.000","X":"MARKET","m":true}

    ``aggTrade`` (spot has ``M``; futures adds ``nq`` and ``st``); the id is ``a``.
    Keys as documented for USD-M; the values here are illustrative::

        {"e":"aggTrade","E":1723161256323,"a":2271383457,"s":"BTCUSDT",
         "p":"61800.30","q":"0.006","nq":"0.006","f":5266583935,"l":5266583935,
         "T":1723161256322,"m":false,"st":1}
    """
    e = ev.get("e")
    if e == "trade":
        id_key = "t"
    elif e == "aggTrade":
        id_key = "a"
    elif e == BOOK_STREAM:
        return parse_book_ticker(
            ev, market=market, time_unit_us=time_unit_us, clock_ms=clock_ms
        )
    elif e is None:
        return _parse_no_event_type(ev, market, clock_ms)
    elif type(e) is not str:
        raise _bad("e", "expected a string event type", e)
    elif e in NON_TRADE_EVENTS:
        return None
    elif e == "serverShutdown":
        when = _get_int(ev, "E")
        return ServerShutdown(when // 1000 if time_unit_us else when)
    else:
        # An event type Binance added after this was written: not a trade either.
        return None

    symbol = ev.get("s")
    if type(symbol) is not str or not symbol:
        raise _bad("s", "expected a non-empty symbol string", symbol)
    trade_id = _get_int(ev, id_key)
    time_ms = _get_int(ev, "T")
    event_ms = _get_int(ev, "E")
    price = _get_decimal(ev, "p")
    qty = _get_decimal(ev, "q")
    # Chained comparisons are False for NaN, so these also reject non-finite values.
    if not 0.0 < price < _FLOAT_INF:
        raise _bad("p", "expected a finite price > 0", ev["p"])
    if not 0.0 <= qty < _FLOAT_INF:
        raise _bad("q", "expected a finite quantity >= 0", ev["q"])
    maker = ev.get("m")
    if type(maker) is not bool:
        raise _bad("m", "expected a boolean", maker)
    if time_unit_us:
        time_ms //= 1000
        event_ms //= 1000
    return Trade(symbol, trade_id, time_ms, price, qty, maker, event_ms, market)


def _parse_no_event_type(
    ev: dict, market: str = "spot", clock_ms: Callable[[], int] | None = None
) -> ControlReply | BookTicker | None:
    """Frames without ``e``: control replies, errors, spot bookTicker, snapshots.

    {"result": null, "id": 1}          reply to SUBSCRIBE / UNSUBSCRIBE
    {"result": ["btcusdt@trade"], "id": 3}
    {"code": 2, "msg": "Invalid request: ...", "id": 4}
    {"u":35346671867,"s":"ETHUSDT","b":"2682.50","B":"2.54","a":"2682.51","A":"50.9"}
    """
    if "result" in ev:
        req_id = ev.get("id")
        if req_id is not None and type(req_id) not in (int, str):
            raise _bad("id", "expected an integer, string or null request id", req_id)
        return ControlReply(req_id, ev["result"])
    if "code" in ev:
        code = ev["code"]
        msg = ev.get("msg")
        if type(code) is not int:
            raise _bad("code", "expected an integer error code", code)
        if msg is not None and type(msg) is not str:
            raise _bad("msg", "expected an error message string", msg)
        req_id = ev.get("id")
        if req_id is not None and type(req_id) not in (int, str):
            req_id = None
        return ControlReply(req_id, None, error_code=code, error_msg=msg)
    if "u" in ev and "b" in ev and "a" in ev:  # spot bookTicker carries no "e"
        return parse_book_ticker(ev, market=market, clock_ms=clock_ms)
    if "lastUpdateId" in ev:
        return None  # REST depth snapshot (appears in raw captures)
    raise BadFrame(f"unrecognised object without 'e' (keys {sorted(ev)[:8]})")


def parse_frame(
    raw: bytes | str, time_unit_us: bool = False, market: str = "spot",
    clock_ms: Callable[[], int] | None = None,
) -> Trade | BookTicker | ServerShutdown | ControlReply | None:
    """Parse one WebSocket text frame from a Binance market-data connection.

    Returns a :class:`Trade` for ``trade``/``aggTrade`` events, a :class:`BookTicker`
    for ``bookTicker`` events (spot ones stamped with ``clock_ms()``, the receive
    clock), a :class:`ServerShutdown` for ``serverShutdown``, a :class:`ControlReply`
    for replies and errors, and ``None`` for other market events (depthUpdate,
    kline, ...). Raises :class:`BadFrame` for anything malformed.

    Combined stream (what the app subscribes to)::

        {"stream":"btcusdt@trade","data":{"e":"trade","E":1723161255343,
         "s":"BTCUSDT","t":3735683259,"p":"61837.63000000","q":"0.02000000",
         "T":1723161255342,"m":true,"M":true}}

    Restart notice (bare, or wrapped with ``"stream":"!serverShutdown"``)::

        {"e":"serverShutdown","E":1723161255343}

    ``time_unit_us=True`` is for connections opened with ``timeUnit=MICROSECOND``:
    ``T`` and ``E`` are then microseconds and are floored to milliseconds.
    ``market`` is stamped on trades (:func:`parse_event`).
    """
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadFrame(f"invalid JSON: {exc}") from None
    except TypeError:
        kind = type(raw).__name__
        raise BadFrame(f"frame must be str or bytes, got {kind}") from None
    if type(obj) is not dict:
        raise BadFrame(f"expected a JSON object, got {type(obj).__name__}")
    data = obj.get("data")
    if data is not None:
        if type(data) is not dict:
            raise _bad("data", "expected an event object", data)
        return parse_event(
            data, time_unit_us=time_unit_us, market=market, clock_ms=clock_ms
        )
    if "stream" in obj:
        raise BadFrame("data: missing in a combined-stream frame")
    return parse_event(obj, time_unit_us=time_unit_us, market=market, clock_ms=clock_ms)


# ---------------------------------------------------------------------------
# REST (gap back-fill, docs/binance-protocol.md section 4)

REST_MAX_LIMIT = 1000


def _rest_bool(row: dict, key: str) -> bool:
    value = row.get(key)
    if type(value) is not bool:
        raise _bad(key, "expected a boolean", value)
    return value


def parse_rest_trades(
    body: bytes | str, symbol: str, stream: str, market: str = "spot"
) -> list[Trade]:
    """Parse a REST trades page into :class:`Trade` objects (same rules as frames).

    ``historicalTrades`` rows (spot; id = ``id``)::

        [{"id":3735683259,"price":"61837.63000000","qty":"0.02000000",
          "quoteQty":"1236.75260000","time":1723161255342,"isBuyerMaker":true,
          "isBestMatch":true}]

    ``aggTrades`` rows (spot and futures; id = ``a``)::

        [{"a":2271383457,"p":"61800.30","q":"0.006","f":5266583935,
          "l":5266583935,"T":1723161256322,"m":false}]

    Raises :class:`BadFrame` if the body or any row is malformed: a page is taken
    whole or not at all, so a half-understood page never leaves a hole.
    """
    try:
        rows = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadFrame(f"invalid JSON: {exc}") from None
    except TypeError:
        raise BadFrame(f"body must be str or bytes, got {type(body).__name__}") from None
    if type(rows) is not list:
        raise BadFrame(f"expected a JSON array of trades, got {type(rows).__name__}")
    sym = check_symbol(symbol)
    out: list[Trade] = []
    for row in rows:
        if type(row) is not dict:
            raise BadFrame(f"expected trade objects, got {type(row).__name__}")
        if stream == "trade":
            tid, t = _get_int(row, "id"), _get_int(row, "time")
            price, qty = _get_decimal(row, "price"), _get_decimal(row, "qty")
            maker = _rest_bool(row, "isBuyerMaker")
        elif stream == "aggTrade":
            tid, t = _get_int(row, "a"), _get_int(row, "T")
            price, qty = _get_decimal(row, "p"), _get_decimal(row, "q")
            maker = _rest_bool(row, "m")
        else:
            raise ValueError(f"invalid stream {stream!r}: expected one of {STREAM_KINDS}")
        if not 0.0 < price < _FLOAT_INF:
            raise _bad("price", "expected a finite price > 0", price)
        if not 0.0 <= qty < _FLOAT_INF:
            raise _bad("qty", "expected a finite quantity >= 0", qty)
        out.append(Trade(sym, tid, t, price, qty, maker, t, market))
    return out


# ---------------------------------------------------------------------------
# The protocol object (one instance per market: binance_spot.py, binance_perp.py)


@dataclass(frozen=True, slots=True)
class RestEndpoint:
    """A REST trades endpoint paged by ``fromId``; ``weight`` counts against the IP's
    request-weight budget (docs/binance-protocol.md section 4)."""

    stream: str  # the id space it pages: "trade" (t / id) or "aggTrade" (a)
    path: str
    weight: int


@dataclass(frozen=True)
class BinanceFeed(FeedProtocol):
    """Binance's wire protocol for one market; the values are the market's own."""

    market: str
    ws_base: str
    rest_base: str | None
    ws_path_prefix: str
    rest_endpoints: tuple[RestEndpoint, ...]
    server_ping_interval_s: float
    venue: str = "binance"
    ids_contiguous: bool = True  # t / a grow by exactly one per event and symbol
    stream_kinds: tuple[str, ...] = STREAM_KINDS
    max_streams_per_connection: int = MAX_STREAMS_PER_CONNECTION
    # Binance pings us and answers nothing we need; client frames count against
    # its 5-10 msg/s limit, so we send no pings of our own.
    client_ping_interval_s: float = 0.0
    client_ping_timeout_s: float | None = None
    rest_max_limit: int = REST_MAX_LIMIT
    book_stream: str | None = BOOK_STREAM
    #: The default host + path of book-only connections (perp: Binance's ``/public``),
    #: None: the book streams ride the trade connections (spot).
    book_ws_base: str | None = None
    #: The path the book streams live under on a host (perp ``/public``), or None.
    book_path_prefix: str | None = None

    def stream_url(
        self,
        symbols: Iterable[str],
        stream: str = "aggTrade",
        base_url: str | None = None,
        *,
        combined: bool = True,
        book: bool = False,
    ) -> str:
        """WebSocket URL for the trade streams of ``symbols`` (``book=True``: and
        their ``@bookTicker`` streams).

        >>> from ingest.feeds.binance_spot import BINANCE_SPOT
        >>> BINANCE_SPOT.stream_url(["BTCUSDT", "ETHUSDT"], "trade")
        'wss://stream.binance.com:9443/stream?streams=btcusdt@trade/ethusdt@trade'
        >>> BINANCE_SPOT.stream_url(["BTCUSDT"], "trade", book=True)
        'wss://stream.binance.com:9443/stream?streams=btcusdt@trade/btcusdt@bookTicker'
        """
        names = stream_names(symbols, stream, book=book)
        base = _base(base_url, self.ws_base, ("ws://", "wss://"), "base_url")
        return compose_stream_url(base, names, combined=combined)

    @property
    def control_messages_per_s(self) -> float:
        """Binance's cap on client messages per second and connection (JSON control
        messages, pings and pongs all count): 5 on spot, 10 on futures
        (docs/binance-protocol.md, section 2); more closes the connection."""
        return 5.0 if self.market == "spot" else 10.0

    def control_url(self, base_url: str | None = None) -> str:
        """A combined-stream connection URL carrying no stream yet: the streams come
        by ``SUBSCRIBE`` messages (a URL of 1,024 streams is ~25 KB).

        >>> from ingest.feeds.binance_perp import BINANCE_PERP
        >>> BINANCE_PERP.control_url()
        'wss://fstream.binance.com/market/stream'
        """
        return _base(base_url, self.ws_base, ("ws://", "wss://"), "base_url") + "/stream"

    def book_control_url(self, base_url: str | None = None) -> str | None:
        """The connection URL of book-only connections, or None: the book streams
        ride the trade connections (:meth:`control_url`).

        Binance's 2026 "Base URL split" (docs/binance-protocol.md, section 1) serves
        futures ``@bookTicker`` only under ``/public`` and ``@aggTrade`` under
        ``/market``. A ``base_url`` ending in the trade prefix (``.../market``, also
        the replay's host + prefix) gets its prefix swapped; any other base (the old
        root layout, a mirror) serves both on one connection: None.

        >>> from ingest.feeds.binance_perp import BINANCE_PERP
        >>> BINANCE_PERP.book_control_url()
        'wss://fstream.binance.com/public/stream'
        >>> BINANCE_PERP.book_control_url("ws://127.0.0.1:9000/market")
        'ws://127.0.0.1:9000/public/stream'
        >>> BINANCE_PERP.book_control_url("ws://127.0.0.1:9000") is None
        True
        """
        if self.book_path_prefix is None:
            return None
        if base_url is None:
            if self.book_ws_base is None:
                return None
            return self.book_ws_base.rstrip("/") + "/stream"
        base = _base(base_url, self.ws_base, ("ws://", "wss://"), "base_url")
        prefix = self.ws_path_prefix
        if not prefix or not base.endswith(prefix):
            return None
        return base[: -len(prefix)] + self.book_path_prefix + "/stream"

    def subscribe_message(
        self, symbols: Iterable[str], stream: str = "aggTrade", request_id: int = 1,
        *, book: bool = False, trades: bool = True,
    ) -> str:
        """``{"method":"SUBSCRIBE","params":["btcusdt@aggTrade"],"id":1}``; Binance
        answers ``{"result":null,"id":1}`` (a :class:`ControlReply`). ``trades=False``
        with ``book=True``: the book streams alone (a ``/public`` connection)."""
        names = stream_names(symbols, stream, book=book, trades=trades)
        return orjson.dumps(
            {"method": "SUBSCRIBE", "params": names, "id": request_id}
        ).decode()

    def parse_frame(self, raw: bytes | str) -> tuple[FrameItem, ...]:
        item = parse_frame(raw, market=self.market)
        return () if item is None else (item,)

    def parse_frame_clocked(
        self, raw: bytes | str, clock_ms: Callable[[], int]
    ) -> tuple[FrameItem, ...]:
        item = parse_frame(raw, market=self.market, clock_ms=clock_ms)
        return () if item is None else (item,)

    def rest_endpoint(self, stream: str) -> RestEndpoint:
        for endpoint in self.rest_endpoints:
            if endpoint.stream == stream:
                return endpoint
        raise ValueError(f"no REST trades endpoint for binance {self.market} {stream}")

    def rest_trades_url(
        self,
        symbol: str,
        from_id: int,
        limit: int,
        stream: str = "aggTrade",
        base_url: str | None = None,
    ) -> str:
        """REST URL returning up to ``limit`` trades of ``symbol`` from id ``from_id`` on.

        >>> from ingest.feeds.binance_spot import BINANCE_SPOT
        >>> BINANCE_SPOT.rest_trades_url("BTCUSDT", 42, 10, "trade")
        'https://api.binance.com/api/v3/historicalTrades?symbol=BTCUSDT&fromId=42&limit=10'
        """
        path = self.rest_endpoint(stream).path
        if type(from_id) is not int or not 0 <= from_id <= MAX_INT64:
            raise ValueError(f"from_id must be an int in 0..2**63-1, got {from_id!r}")
        if type(limit) is not int or not 1 <= limit <= self.rest_max_limit:
            raise ValueError(
                f"limit must be an int in 1..{self.rest_max_limit}, got {limit!r}"
            )
        if self.rest_base is None and base_url is None:
            raise ValueError(f"binance {self.market} has no REST base: give one")
        base = _base(
            base_url, self.rest_base or "", ("http://", "https://"), "REST base_url"
        )
        sym = check_symbol(symbol)
        return f"{base}{path}?symbol={sym}&fromId={from_id}&limit={limit}"

    def parse_rest_trades(
        self, body: bytes | str, symbol: str, stream: str
    ) -> list[Trade]:
        return parse_rest_trades(body, symbol, stream, self.market)
