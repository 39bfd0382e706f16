"""A market's streams split over several websocket connections, within Binance's limits.

Binance allows at most 1,024 streams per connection and, per connection, 5 (spot) / 10
(futures) client messages a second, subscriptions included (docs/binance-protocol.md,
section 2). The whole perp market with top of book is ~2 x 350 streams; the spot market
more. A :class:`FeedPool` is what the runtime keeps per market (``Runtime.feeds[market]``)
and what callers used of a single :class:`~ingest.feeds.client.TradeFeed` (``start``,
``stop``, ``status()``, ``last_ids``, ``has_pending``, ``stats``, ``url``), over
connections of at most ``streams_per_connection`` streams each:

* where the venue serves the book with the trades (spot), an instrument's trade and
  book streams share a connection (its trades and quotes keep one ordering and one
  reconnect), so a connection holds ``streams_per_connection // streams_per_symbol``
  symbols (1,024 -> 512 with the book);
* where it does not (Binance perp since the 2026 "Base URL split": ``@aggTrade`` only
  under ``/market``, ``@bookTicker`` only under ``/public``,
  ``protocol.book_control_url``), the trades ride *trade connections* on ``/market``
  and the book *book-only connections* on ``/public``, each of at most
  ``streams_per_connection`` streams, subscribed and paced alike;
* every connection is its own :class:`TradeFeed` thread in *subscribe mode*: it connects
  to ``protocol.control_url`` and subscribes its symbols by ``SUBSCRIBE`` messages of
  <= 200 streams, one answered before the next, at <= 80 % of the market's message rate
  (4/s spot, 8/s futures), again after every reconnect;
* each connection reconnects, de-duplicates and detects gaps on its own (its own
  ``last_ids`` for its own symbols); the gaps go to the market's one back-fill (REST
  weight is per IP, so one per market), through the shared ``on_gap``;
* :meth:`FeedPool.add` puts late instruments (a new listing, ``--universe-refresh``) on
  the last connection while it has room, by the same paced ``SUBSCRIBE``, else opens a
  new connection;
* trades of connection ``i`` go to ``lane_sink(f"{market}#{i}")`` when given: the
  ingestor's bar clock keeps one data clock per connection (each is in order only on
  its own) and closes bars at the slowest one (``ingest/pipeline.py``);
  :meth:`FeedPool.quiet_probes` are the matching per-connection socket probes. A
  book-only connection is a lane too: its updates go to ``book_lane_sink(lane)`` and
  advance that lane's clock by their ``T``, so no bar (trade or book) closes before
  the book connection delivered its bucket.

``status()`` of a one-connection pool is that connection's status unchanged; of several,
counters summed and times latest (``connected`` only when all are). ``connections()`` is
the per-connection view ``/api/health`` shows under ``feed.connections`` (``kind``
``"trade"`` or ``"book"``).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable, Iterable

from ingest.feeds.base import FeedProtocol
from ingest.feeds.client import MAX_GAP_RANGES_KEPT, FeedStats, FeedStatus, TradeFeed
from ingest.models import BookTicker, Trade

log = logging.getLogger(__name__)

#: Fields of :class:`FeedStatus` that add up over a market's connections.
_SUMMED = (
    "messages", "trades", "msgs_per_s", "bad_frames", "other_frames", "duplicates",
    "reconnects", "connects", "gaps", "rejected_times", "quarantined", "clean_closes",
    "book_updates", "book_per_s", "book_rejected", "streams", "subscribed",
    "control_sent", "control_errors",
)
_LATEST = ("last_message_ms", "last_trade_ms", "last_book_ms")


def streams_per_symbol(book: bool) -> int:
    """Streams one instrument takes: its trades, and its best bid/ask with the book."""
    return 2 if book else 1


class FeedPool:
    """One market's connections (module notes).

    Parameters are those of :class:`TradeFeed` (given to every connection), plus
    ``symbols`` (the market's bare symbols, in order), ``base_url`` (the market's
    websocket base: ``--feed-url``, the venue's default, or the replay's), ``stream``,
    ``streams_per_connection`` (<= the protocol's ``max_streams_per_connection``),
    ``lane_sink`` (connection lane -> trade callback; None: ``on_trade``),
    ``book_lane_sink`` (lane -> book callback of a book-only connection; None:
    ``on_book``) and ``feed_cls`` (the connection class, a TradeFeed or subclass).
    """

    def __init__(
        self,
        protocol: FeedProtocol,
        symbols: Iterable[str],
        on_trade: Callable[[Trade], None],
        *,
        stream: str = "aggTrade",
        base_url: str | None = None,
        streams_per_connection: int = 1024,
        on_gap: Callable[[str, int, int], None] | None = None,
        last_ids: dict[str, int] | None = None,
        on_book: Callable[[BookTicker], None] | None = None,
        lane_sink: Callable[[str], Callable[[Trade], None]] | None = None,
        book_lane_sink: Callable[[str], Callable[[BookTicker], None]] | None = None,
        feed_cls: type[TradeFeed] = TradeFeed,
        **feed_kwargs,
    ) -> None:
        cap = int(protocol.max_streams_per_connection)
        if not 1 <= streams_per_connection <= cap:
            raise ValueError(
                f"streams_per_connection must be in 1..{cap} ({protocol}), "
                f"got {streams_per_connection}")
        self.protocol = protocol
        self.market = protocol.market
        self.stream = stream
        self.book = on_book is not None
        #: the book-only connections' URL (perp ``/public``), or None: the book streams
        #: ride the trade connections
        self.book_url = protocol.book_control_url(base_url) if self.book else None
        per_symbol = 1 if self.book_url is not None else streams_per_symbol(self.book)
        if streams_per_connection < per_symbol:
            raise ValueError(
                f"streams_per_connection {streams_per_connection} cannot hold one "
                f"instrument's {per_symbol} streams (trades and book)")
        self.streams_per_connection = int(streams_per_connection)
        self.symbols_per_connection = self.streams_per_connection // per_symbol
        self.url = protocol.control_url(base_url)
        self._on_trade = on_trade
        self._on_gap = on_gap
        self._on_book = on_book
        self._lane_sink = lane_sink
        self._book_lane_sink = book_lane_sink
        self._feed_cls = feed_cls
        self._feed_kwargs = feed_kwargs
        self._last_ids = dict(last_ids or {})
        self._lock = threading.Lock()
        self._started = False
        self._stopped = False
        #: the connections, in the order they were opened (id = index)
        self.feeds: list[TradeFeed] = []
        #: called with each connection opened after start (the runtime's probes)
        self.on_connection: Callable[[TradeFeed], None] | None = None
        symbols = list(dict.fromkeys(symbols))
        if not symbols:
            raise ValueError(f"{protocol}: a feed pool needs at least one symbol")
        self._place(symbols, book_only=False)
        if self.book_url is not None:
            self._place(symbols, book_only=True)

    # ------------------------------------------------------------------ connections
    def lane(self, conn_id: int) -> str:
        """The bar clock's key of connection ``conn_id``: ``perp#0``, ``perp#1``."""
        return f"{self.market}#{conn_id}"

    def _open(self, symbols: list[str], book_only: bool = False) -> TradeFeed:
        conn_id = len(self.feeds)
        lane = self.lane(conn_id)
        sink = self._on_trade if self._lane_sink is None else self._lane_sink(lane)
        if book_only:  # a /public connection: the book alone, its own clock lane
            on_book = (self._on_book if self._book_lane_sink is None
                       else self._book_lane_sink(lane))
            extra = {"book_only": True}
            url, on_gap, last_ids = self.book_url, None, {}
        else:
            on_book = None if self.book_url is not None else self._on_book
            extra = {}
            url, on_gap = self.url, self._on_gap
            last_ids = {s: self._last_ids[s] for s in symbols if s in self._last_ids}
        kind = "book" if book_only else "feed"
        feed = self._feed_cls(
            url,
            sink,
            on_gap=on_gap,
            last_ids=last_ids,
            protocol=self.protocol,
            on_book=on_book,
            subscribe_symbols=symbols,
            stream=self.stream,
            conn_id=conn_id,
            name=f"{self.protocol.venue}-{self.market}-{kind}-{conn_id}",
            **extra,
            **self._feed_kwargs,
        )
        self.feeds = [*self.feeds, feed]  # replaced whole: readers iterate unlocked
        return feed

    def _place(self, symbols: list[str], book_only: bool) -> list[TradeFeed]:
        """Put ``symbols`` on the last connection of their kind while it has room, then
        on new ones; returns the connections opened."""
        rest = list(symbols)
        same = self.book_feeds if book_only else self.trade_feeds
        if same and rest:
            last = same[-1]
            room = self.symbols_per_connection - len(last.symbols)
            if room > 0:
                last.add_symbols(rest[:room], None if book_only else self._last_ids)
                rest = rest[room:]
        return [self._open(rest[i:i + self.symbols_per_connection], book_only)
                for i in range(0, len(rest), self.symbols_per_connection)]

    @property
    def trade_feeds(self) -> list[TradeFeed]:
        """The connections carrying trades (all of them unless the book is split)."""
        return [f for f in self.feeds if not getattr(f, "book_only", False)]

    @property
    def book_feeds(self) -> list[TradeFeed]:
        """The book-only connections (perp ``/public``; none when the book rides the
        trade connections)."""
        return [f for f in self.feeds if getattr(f, "book_only", False)]

    @property
    def symbols(self) -> list[str]:
        """Every symbol of the market, in subscription order."""
        return [s for feed in self.trade_feeds for s in feed.symbols]

    def add(self, symbols: Iterable[str], last_ids: dict[str, int] | None = None
            ) -> list[str]:
        """Subscribe instruments that joined (``symbols`` bare, of this market): on the
        last connection while it has room, then on new connections. ``last_ids`` seeds
        their gap check (ids the store already holds). Returns the symbols added."""
        with self._lock:
            have = set(self.symbols)
            new = [s for s in dict.fromkeys(symbols) if s not in have]
            if not new:
                return []
            self._last_ids.update(last_ids or {})
            opened = self._place(new, book_only=False)
            if self.book_url is not None:
                opened += self._place(new, book_only=True)
            if self._started and not self._stopped:
                for feed in opened:
                    feed.start()
                    if self.on_connection is not None:
                        self.on_connection(feed)
        log.info("%s: %d instruments added (%d connections)", self.protocol, len(new),
                 len(self.feeds))
        return new

    def stream_urls(self) -> list[str]:
        """Per connection, the URL that would carry its streams without subscribing
        (``protocol.stream_url``): for tools that listen beside the app (a benchmark's
        floor client), not what the pool connects to (:attr:`url`, module notes)."""
        base = self.url.removesuffix("/stream")
        book = {"book": True} if self.book and self.book_url is None else {}
        return [self.protocol.stream_url(f.symbols, self.stream, base, **book)
                for f in self.trade_feeds]

    def quiet_probes(self) -> dict[str, Callable[[], bool]]:
        """Per connection lane: is data waiting on its socket (the bar clock's probe)."""
        return {self.lane(f.conn_id): f.has_pending for f in self.feeds}

    # ------------------------------------------------------------------ control
    def start(self) -> None:
        with self._lock:
            self._started = True
            for feed in self.feeds:
                feed.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop every connection (idempotent)."""
        with self._lock:
            self._stopped = True
            feeds = list(self.feeds)
        for feed in feeds:
            feed._stop_event.set()  # all ask at once, then each is joined
        for feed in feeds:
            feed.stop(timeout)

    def is_alive(self) -> bool:
        return any(f.is_alive() for f in self.feeds)

    def join(self, timeout: float | None = None) -> None:
        for feed in self.feeds:
            feed.join(timeout)

    # ------------------------------------------------------------------ reading
    @property
    def last_ids(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for feed in self.feeds:
            out.update(feed.last_ids)
        return out

    def has_pending(self) -> bool:
        """Data waiting on any connection's socket (or a frame being handled)."""
        return any(f.has_pending() for f in self.feeds)

    @property
    def subscribed(self) -> bool:
        """Every connection is open with all its streams acknowledged."""
        return all(f.subscribed for f in self.feeds)

    @property
    def stats(self) -> FeedStats:
        """The connections' counters added up (a copy: for readers and benchmarks)."""
        feeds = self.feeds
        if len(feeds) == 1:
            return feeds[0].stats
        out = FeedStats()
        for f in feeds:
            s = f.stats
            for name in ("messages", "trades", "bad_frames", "other_frames", "duplicates",
                         "reconnects", "connects", "gaps", "rejected_times", "quarantined",
                         "clean_closes", "book_updates", "book_rejected", "control_sent",
                         "control_errors"):
                setattr(out, name, getattr(out, name) + getattr(s, name))
            out.msgs_per_s += s.msgs_per_s
            out.book_per_s += s.book_per_s
            out.gap_ranges.extend(s.gap_ranges)
        return out

    def status(self) -> FeedStatus:
        """What a single feed's ``status()`` said, for the whole market (module notes)."""
        statuses = [f.status() for f in self.feeds]
        if len(statuses) == 1:
            return statuses[0]
        first = statuses[0]
        summed = {k: sum(getattr(s, k) for s in statuses) for k in _SUMMED}
        latest = {}
        for k in _LATEST:
            values = [getattr(s, k) for s in statuses if getattr(s, k) is not None]
            latest[k] = max(values) if values else None
        lagging = [s for s in statuses if s.last_trade_ms is not None and s.lag_ms is not None]
        errors = [f"#{s.conn_id}: {s.error}" for s in statuses if s.error]
        backoffs = [s.last_backoff_s for s in statuses if s.last_backoff_s is not None]
        ranges = sorted((g for s in statuses for g in s.gap_ranges),
                        key=lambda g: (g.symbol, g.first_id))
        return dataclasses.replace(
            first,
            **summed, **latest,
            url=self.url,
            connected=all(s.connected for s in statuses),
            gap_ranges=tuple(ranges[-MAX_GAP_RANGES_KEPT:]),
            # the connection furthest behind: the market's lag is its slowest stream
            lag_ms=max((s.lag_ms for s in lagging), default=None),
            error="; ".join(errors) or None,
            started_ms=min(s.started_ms for s in statuses),
            quarantine=tuple(q for s in statuses for q in s.quarantine),
            last_backoff_s=max(backoffs) if backoffs else None,
            conn_id=None,
        )

    def connections(self) -> list[dict]:
        """One small dict per connection: ``/api/health`` ``feed.connections``."""
        out = []
        for feed in self.feeds:
            s = feed.status()
            out.append({
                "id": s.conn_id,
                "kind": "book" if getattr(feed, "book_only", False) else "trade",
                "url": feed.url,
                "symbols": len(feed.symbols),
                "streams": s.streams,
                "subscribed": s.subscribed,
                "connected": s.connected,
                "messages": s.messages,
                "trades": s.trades,
                "book_updates": s.book_updates,
                "msgs_per_s": round(s.msgs_per_s, 1),
                "reconnects": s.reconnects,
                "gaps": s.gaps,
                "duplicates": s.duplicates,
                "control_sent": s.control_sent,
                "control_errors": s.control_errors,
                "last_message_ms": s.last_message_ms,
                "last_trade_ms": s.last_trade_ms,
                "error": s.error,
            })
        return out

    def __repr__(self) -> str:
        return (f"FeedPool({self.protocol}, {len(self.symbols)} symbols, "
                f"{len(self.feeds)} connections)")
