"""The one interface a venue-market feed protocol implements.

Why an interface: the websocket thread (:mod:`ingest.feeds.client`), the REST gap
back-fill (:mod:`ingest.feeds.backfill`) and the runtime do the same work for every
venue (connect, reconnect with backoff, de-duplicate, detect gaps, page REST by id);
only the *wire* differs: which URL to open, how a frame reads, which REST endpoint
returns trades from an id on. A :class:`FeedProtocol` is that difference, and only
that: pure values and pure functions, no sockets, no threads, no clocks.

A protocol is one ``(venue, market)``: Binance spot and Binance USDⓈ-M perpetuals are
two protocols that share a wire format (``ingest/feeds/binance.py``) but not hosts,
REST endpoints or heartbeats. The registry (``ingest/feeds/__init__.py``) maps
``(venue, market)`` to the one protocol object; docs/feeds.md says how to add one.

Every trade a protocol parses carries the protocol's market (``Trade.market``), so
the same symbol on two markets never mixes. A protocol with a top-of-book stream
(``book_stream``, e.g. Binance's ``bookTicker``) also parses its frames into
:class:`~ingest.models.BookTicker` (docs/book.md).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence

from analytics.instruments import Instrument
from ingest.models import BookTicker, ControlReply, ServerShutdown, Trade

#: What one frame can carry: trades, best bid/ask updates, a control reply, a restart
#: notice; () for other market events (depth updates, klines, ...).
FrameItem = Trade | BookTicker | ControlReply | ServerShutdown

#: The data members every protocol declares, with their types (checked by
#: :func:`check_protocol` when a protocol is registered).
REQUIRED_ATTRIBUTES: dict[str, type | tuple[type, ...]] = {
    "venue": str,
    "market": str,
    "ids_contiguous": bool,
    "ws_base": str,
    "rest_base": (str, type(None)),
    "ws_path_prefix": str,
    "stream_kinds": tuple,
    "max_streams_per_connection": int,
    "client_ping_interval_s": (int, float),
    "client_ping_timeout_s": (int, float, type(None)),
    "server_ping_interval_s": (int, float),
    "rest_max_limit": int,
}


class FeedProtocol(ABC):
    """One venue-market's wire protocol: URLs, frames, heartbeat, REST back-fill.

    Data members (plain attributes; a frozen dataclass is the natural implementation):

    ``venue``, ``market``
        the instrument half this feed serves (``"binance"``, ``"spot"`` | ``"perp"``).
    ``ids_contiguous``
        trade ids grow by exactly one per trade and symbol, so a jump is a gap the
        client reports and REST can back-fill. False: ids only de-duplicate.
    ``ws_base``, ``rest_base``
        the venue's default WebSocket and REST bases (``--feed-url`` /
        ``--rest-url`` replace them; ``rest_base=None``: no REST back-fill).
    ``ws_path_prefix``
        the path the market's streams live under on a host (Binance perp:
        ``/market``), appended to a bare host such as the local replay server's.
    ``stream_kinds``, ``max_streams_per_connection``
        the trade streams it can open and how many one connection may carry.
    ``client_ping_interval_s``, ``client_ping_timeout_s``
        our own pings (0 = none: Binance pings us, and counts client frames against
        a message-rate limit). ``server_ping_interval_s`` is how often the server
        pings, for the watchdog's and the replay's reasoning.
    ``rest_max_limit``
        the most trades one REST page may return.
    ``book_stream``
        the best bid/ask stream's kind (Binance: ``"bookTicker"``), or None: the
        venue streams no top of book (optional; None when not declared).
    ``book_ws_base``, ``book_path_prefix``
        where book streams live when the venue serves them apart from the trades
        (Binance perp: ``/public``, while trades are under ``/market``); None (the
        default): the book rides the trade connections. See :meth:`book_control_url`.
    """

    venue: str
    market: str
    ids_contiguous: bool
    ws_base: str
    rest_base: str | None
    ws_path_prefix: str
    stream_kinds: tuple[str, ...]
    max_streams_per_connection: int
    client_ping_interval_s: float
    client_ping_timeout_s: float | None
    server_ping_interval_s: float
    rest_max_limit: int
    book_stream: str | None = None
    book_ws_base: str | None = None
    book_path_prefix: str | None = None

    # ------------------------------------------------------------------ streaming
    @abstractmethod
    def stream_url(
        self,
        symbols: Iterable[str],
        stream: str,
        base_url: str | None = None,
        *,
        combined: bool = True,
    ) -> str:
        """The URL that streams ``stream`` trades of ``symbols`` once connected.

        ``base_url`` replaces :attr:`ws_base` (a mirror, the local replay server).
        A protocol with a :attr:`book_stream` also takes ``book=True``: the URL then
        carries each symbol's top-of-book stream too.
        Raises ``ValueError`` naming the bad symbol, stream or base.
        """

    @abstractmethod
    def subscribe_message(
        self, symbols: Iterable[str], stream: str, request_id: int = 1
    ) -> str:
        """The control frame that adds ``symbols``' streams to an open connection."""

    #: Client messages per second and connection the venue allows (control messages
    #: that subscribe count); the feed pool paces its subscriptions under it.
    control_messages_per_s: float = 5.0

    def control_url(self, base_url: str | None = None) -> str:
        """A connection URL carrying no stream yet, for feeds that subscribe by
        control messages (:mod:`ingest.feeds.pool`); a protocol without one says so."""
        raise NotImplementedError(f"{self}: no connection URL to subscribe on")

    def book_control_url(self, base_url: str | None = None) -> str | None:
        """The connection URL of book-only connections (subscribe mode), or None:
        the book streams ride the trade connections (default)."""
        return None

    @abstractmethod
    def parse_frame(self, raw: bytes | str) -> Sequence[FrameItem]:
        """Everything one text frame carries, in order; ``()`` for non-trade events.

        A sequence, not one item, because some venues batch several trades into one
        frame. Raises :class:`~ingest.models.BadFrame` for a malformed frame (the
        client counts it and carries on). Trades carry this protocol's market.
        """

    def parse_frame_clocked(
        self, raw: bytes | str, clock_ms: Callable[[], int]
    ) -> Sequence[FrameItem]:
        """:meth:`parse_frame`, with the feed's receive clock for items that carry no
        time of their own (Binance spot book updates are stamped ``clock_ms()``).
        Default: the frame has no such items."""
        return self.parse_frame(raw)

    # ------------------------------------------------------------------ back-fill
    @abstractmethod
    def rest_trades_url(
        self,
        symbol: str,
        from_id: int,
        limit: int,
        stream: str,
        base_url: str | None = None,
    ) -> str:
        """REST URL for up to ``limit`` trades of ``symbol`` from id ``from_id`` on,
        in the id space of ``stream`` (back-fill must refill the ids it streams)."""

    @abstractmethod
    def parse_rest_trades(
        self, body: bytes | str, symbol: str, stream: str
    ) -> list[Trade]:
        """A REST page as trades (same validation as frames), whole or
        :class:`~ingest.models.BadFrame`: a half-read page never leaves a hole."""

    # ------------------------------------------------------------------ helpers
    @property
    def key(self) -> tuple[str, str]:
        """The registry key ``(venue, market)``."""
        return (self.venue, self.market)

    def instrument(self, symbol: str) -> Instrument:
        """The instrument a trade of ``symbol`` on this feed belongs to."""
        return Instrument(self.venue, self.market, symbol)

    def __str__(self) -> str:
        return f"{self.venue} {self.market}"


def check_protocol(protocol: object) -> FeedProtocol:
    """``protocol`` if it implements the whole interface, else ``TypeError`` saying
    what is missing (abstract methods are enforced by :class:`~abc.ABC` already)."""
    if not isinstance(protocol, FeedProtocol):
        raise TypeError(f"{protocol!r} is not a FeedProtocol")
    problems = []
    for name, kind in REQUIRED_ATTRIBUTES.items():
        if not hasattr(protocol, name):
            problems.append(f"{name} missing")
            continue
        value = getattr(protocol, name)
        # bool is an int: a flag where a number belongs is a mistake too
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            problems.append(f"{name} is {value!r}")
    if problems:
        raise TypeError(f"feed protocol {protocol}: " + "; ".join(problems))
    return protocol
