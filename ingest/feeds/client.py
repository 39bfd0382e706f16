"""The websocket-client thread that turns a venue's trade stream into ``Trade`` objects.

Generic over a :class:`~ingest.feeds.base.FeedProtocol`: the protocol parses frames and
says whether ids are contiguous and whether we ping; this thread owns the connection.

Why a hand-written outer loop: websocket-client's own ``reconnect=`` uses a fixed
delay and is off by default. A desk leaves this running all day, through Binance's
24 h socket lifetime, announced restarts (``serverShutdown``) and silent sockets, so
the feed owns its reconnection:

* jittered exponential backoff ("equal jitter": ``d = c/2 + U(0, c/2)`` with
  ``c = min(cap, base * 2**attempt)``), reset to the first step once a connection has
  stayed up for ``stable_after_s``;
* a watchdog that closes a socket which is connected but silent for
  ``watchdog_s`` seconds (a connected, silent feed is a dead feed);
* an immediate reconnect (no backoff) after ``serverShutdown``;
* pings from the server are answered by websocket-client itself; we send our own
  only if the protocol asks (``client_ping_interval_s``; Binance's say 0, because
  Binance counts client frames against a 5-10 msg/s limit).

Per symbol the feed keeps the last trade id it delivered. Ids only grow, so
``id <= last`` is a duplicate (dropped and counted). When the protocol's ids are
contiguous (``ids_contiguous``: Binance's grow by exactly one per event),
``id > last + 1`` is a gap whose exact missing range ``[last+1, id-1]`` is reported
to ``on_gap`` (the store records it); on other venues a jump is just the next trade.
``last_ids`` can be seeded from the store so a restart detects what was lost while
the app was down.

**Frames that must not move the high-water mark.** One valid-looking frame can poison a
symbol: an id ``10**9`` ahead would make every later genuine trade a "duplicate" (and,
stored, seed the duplicate check of the next run); a trade time years ahead would open
a bucket no later trade can reach. So, before a trade touches ``last_ids``:

* its time must be near the feed's clocks: ``T <= E + MAX_T_AHEAD_OF_E_MS`` and
  ``T >= E - MAX_T_BEHIND_E_MS`` (``E`` = the event's push time), and not more than
  ``MAX_T_AHEAD_MS`` ahead of both the latest accepted trade time and the wall clock
  (a recording keeps old times, so the wall clock alone cannot judge). Otherwise the
  frame is *rejected* (counted in ``rejected_times``); a genuine id it carried comes
  back through the gap back-fill, with REST's time;
* an id jump larger than ``max(SUSPECT_MIN_IDS, SUSPECT_RATE_FACTOR x the ids the
  last minute's rate allows in the elapsed time)`` is *suspect*: ``verify_trade`` (REST,
  ``Backfiller.verify``) must confirm that the exchange has this id with this time,
  price and quantity before it is accepted. Otherwise it is *quarantined* (counted,
  the latest kept in ``quarantine``) and the symbol carries on with the genuine ids.
  Only a run of ``QUARANTINE_ACCEPT_RUN`` consecutive ids past the jump (the stream
  itself has moved on, e.g. REST is down during a real restart of the id sequence)
  is accepted without REST, so no frame and no outage can wedge a symbol;
* the mirror case, a poisoned mark seeded from the store at restart (an older version
  stored the bad id): a run of ``QUARANTINE_ACCEPT_RUN`` consecutive ids far below the
  mark abandons it, and the run's first ids go to the back-fill as a gap.

**Top of book.** With ``on_book`` the feed also hands every best bid/ask update
(:class:`~ingest.models.BookTicker`, the protocol's ``book_stream``) to ``on_book``, in
arrival order. Futures updates are timed by their transaction time ``T`` (checked
against ``E`` like a trade's); spot updates carry no time and are stamped with
``clock_ms()`` when the frame is parsed, i.e. at receive (the wall clock; the replay
passes its tape clock, docs/book.md). Book updates have no ids to de-duplicate or
gap-check (``u`` only grows, with holes by design); a reconnect simply resumes the
stream. Counted in ``book_updates`` (and ``book_per_s``); malformed or crossed ones
in ``bad_frames``, implausibly timed ones in ``book_rejected``.

**Subscribing by control messages.** Given ``subscribe_symbols`` the feed connects to a
URL without streams (``protocol.control_url``) and, after every (re)connect, subscribes
them with ``SUBSCRIBE`` messages of at most ``SUBSCRIBE_BATCH_STREAMS`` streams each,
one at a time (the next only after the server's ``{"result":null,"id":n}``), at most
``control_rate`` messages per second: Binance drops a connection that sends more than
5 (spot) / 10 (futures) messages a second, and a URL of 1,024 streams is ~25 KB.
:meth:`TradeFeed.add_symbols` subscribes more on the open connection the same way. A
reply that does not come within ``SUBSCRIBE_REPLY_TIMEOUT_S`` closes the connection
(it reconnects and subscribes again); a refused request is counted and logged. The
pool of such connections per market is :mod:`ingest.feeds.pool`.

The feed thread is the only writer of :class:`FeedStats`; readers call
:meth:`TradeFeed.status`, which returns a frozen :class:`FeedStatus` copy.
"""

from __future__ import annotations

import collections
import functools
import itertools
import logging
import random
import select
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import websocket

from ingest.feeds.base import FeedProtocol
from ingest.feeds.binance import wall_clock_ms
from ingest.models import BadFrame, BookTicker, ControlReply, ServerShutdown, Trade

log = logging.getLogger(__name__)

MAX_GAP_RANGES_KEPT = 1_000  # the store keeps all of them; the status shows the latest
MAX_T_AHEAD_OF_E_MS = 60_000  # T after its own push time E: impossible, allow clock noise
MAX_T_BEHIND_E_MS = 600_000  # E - T: tens of ms normally, seconds under load
MAX_T_AHEAD_MS = 600_000  # ahead of both the data clock and the wall clock
SUSPECT_MIN_IDS = 10_000  # ten back-fill pages; smaller jumps are plain gaps
SUSPECT_RATE_FACTOR = 20
RATE_WINDOW_MS = 60_000
QUARANTINE_KEPT = 20
QUARANTINE_ACCEPT_RUN = 200
MAX_PLAUSIBLE_LAG_MS = 86_400_000  # beyond this the feed is a recording on its own clock
#: Streams per SUBSCRIBE message: 1,024 streams take 6 messages (~4 KB each).
SUBSCRIBE_BATCH_STREAMS = 200
#: A subscription the server has not answered in this long: the connection is dead.
SUBSCRIBE_REPLY_TIMEOUT_S = 10.0


def backoff_delay(
    attempt: int,
    *,
    base: float = 1.0,
    cap: float = 60.0,
    rng: Callable[[], float] = random.random,
) -> float:
    """Equal-jitter exponential backoff: ``c/2 + U(0, c/2)``, ``c = min(cap, base*2**attempt)``.

    Half the delay is guaranteed (no hammering), half is random (clients that lost
    the same server do not reconnect in lock-step).
    """
    ceiling = min(cap, base * 2 ** min(attempt, 30))
    return ceiling / 2 + rng() * ceiling / 2


def _abort(ws: websocket.WebSocketApp) -> None:
    """Make ``ws``'s ``run_forever`` (on the feed thread) return now, from any thread.

    We only *shut the socket down*: that wakes the feed thread's ``select()`` with
    EOF, and ``run_forever``'s teardown then closes the socket on the feed thread.
    Closing it here as well would race that wake-up: on Linux, ``close()`` drops the
    descriptor from the epoll set, and if the feed thread has not yet collected the
    EOF event (it waits for the GIL we hold), the event is lost and the thread sleeps
    until the next server ping (a 5 s ``stop()``). ``WebSocketApp.close()`` is used
    only when there is no socket yet (connecting): it stops ``run_forever`` early.
    """
    raw = getattr(getattr(ws, "sock", None), "sock", None)
    if raw is None:
        ws.close()
        return
    ws.keep_running = False
    try:
        raw.shutdown(socket.SHUT_RDWR)
    except OSError:
        ws.close()  # already shut down or never connected: nothing to wake


@dataclass(frozen=True, slots=True)
class GapRange:
    symbol: str
    first_id: int
    last_id: int

    @property
    def missing(self) -> int:
        return self.last_id - self.first_id + 1


@dataclass(frozen=True, slots=True)
class FeedStatus:
    """A consistent, immutable copy of the feed statistics for readers."""

    url: str
    connected: bool
    messages: int
    trades: int
    msgs_per_s: float
    bad_frames: int
    other_frames: int
    duplicates: int
    reconnects: int
    connects: int
    gaps: int  # number of missing trade ids detected so far
    gap_ranges: tuple[GapRange, ...]
    last_message_ms: int | None  # local wall clock at the last frame
    last_trade_ms: int | None  # T of the last trade
    lag_ms: int | None  # receive wall time - T, at the last trade
    error: str | None
    started_ms: int
    rejected_times: int = 0
    quarantined: int = 0
    quarantine: tuple[dict, ...] = ()
    clean_closes: int = 0
    last_backoff_s: float | None = None
    book_updates: int = 0
    book_per_s: float = 0.0
    book_rejected: int = 0
    last_book_ms: int | None = None  # time_ms of the last book update
    conn_id: int | None = None  # the connection's number in its market's pool
    streams: int = 0  # streams this connection carries (subscribe mode: asked for)
    subscribed: int = 0  # of them, acknowledged by the server on this connection
    control_sent: int = 0  # SUBSCRIBE messages sent (all connections of this feed)
    control_errors: int = 0  # SUBSCRIBE requests refused or unanswered

    def as_dict(self) -> dict:
        return {
            "url": self.url,
            "connected": self.connected,
            "messages": self.messages,
            "trades": self.trades,
            "msgs_per_s": round(self.msgs_per_s, 1),
            "bad_frames": self.bad_frames,
            "other_frames": self.other_frames,
            "duplicates": self.duplicates,
            "reconnects": self.reconnects,
            "gaps": self.gaps,
            "gap_ranges": [
                {"symbol": g.symbol, "first_id": g.first_id, "last_id": g.last_id}
                for g in self.gap_ranges
            ],
            "last_message_ms": self.last_message_ms,
            "last_trade_ms": self.last_trade_ms,
            "lag_ms": self.lag_ms,
            "error": self.error,
            "rejected_times": self.rejected_times,
            "quarantined": self.quarantined,
            "quarantine": [dict(q) for q in self.quarantine],
            "clean_closes": self.clean_closes,
            "last_backoff_s": self.last_backoff_s,
            "book_updates": self.book_updates,
            "book_per_s": round(self.book_per_s, 1),
            "book_rejected": self.book_rejected,
            "last_book_ms": self.last_book_ms,
        }


@dataclass
class FeedStats:
    """Mutable counters, written only by the feed thread (and the rate by the watchdog)."""

    messages: int = 0
    trades: int = 0
    bad_frames: int = 0
    other_frames: int = 0
    duplicates: int = 0
    reconnects: int = 0
    connects: int = 0
    gaps: int = 0
    gap_ranges: list[GapRange] = field(default_factory=list)
    last_message_ms: int | None = None
    last_message_mono: float | None = None
    last_trade_ms: int | None = None
    lag_ms: int | None = None
    error: str | None = None
    msgs_per_s: float = 0.0
    rejected_times: int = 0
    quarantined: int = 0
    quarantine: list[dict] = field(default_factory=list)
    clean_closes: int = 0
    last_backoff_s: float | None = None
    book_updates: int = 0
    book_per_s: float = 0.0
    book_rejected: int = 0
    last_book_ms: int | None = None
    control_sent: int = 0
    control_errors: int = 0


class TradeFeed(threading.Thread):
    """Connect, parse, de-duplicate, detect gaps, hand trades to ``on_trade``; forever.

    Parameters
    ----------
    url : str
        Full stream URL, from ``protocol.stream_url(...)``.
    on_trade : callable(Trade)
        Called in the feed thread for every new (not duplicate) trade, in order.
        It must be fast (append to a ring, enqueue to a store).
    on_gap : callable(symbol, first_missing_id, last_missing_id), optional
    last_ids : dict, optional
        Last stored trade id per symbol, so the first trade after a restart is
        checked for a gap and replays are de-duplicated.
    watchdog_s : float
        Close a connected socket that has been silent this long.
    verify_trade : callable(Trade) -> bool | None, optional
        Asked about a suspect id jump (module notes): True = the exchange has this
        trade, False = it does not, None = cannot tell now. None of it = never verified.
    protocol : FeedProtocol
        The venue-market's wire protocol (``ingest.feeds.feed_protocol``): parses the
        frames, says whether ids are contiguous and whether we send pings.
    on_book : callable(BookTicker), optional
        Called in the feed thread for every best bid/ask update, in arrival order
        (the URL must carry the book streams: ``protocol.stream_url(..., book=True)``).
        None: book frames are counted as other frames, as before.
    clock_ms : callable() -> int, optional
        The receive clock that stamps updates without a time of their own (spot
        book updates): ms since epoch, default the wall clock; the replay passes
        its tape clock so the stamps land in the tape's time frame.
    subscribe_symbols : iterable of str, optional
        Subscribe mode (module notes): ``url`` carries no stream
        (``protocol.control_url``); these symbols' ``stream`` trades (and book
        streams with ``on_book``) are subscribed after every connect.
    stream : str
        The trade stream kind subscribed in subscribe mode.
    control_rate : float, optional
        Most control messages per second (default: 80 % of the protocol's
        ``control_messages_per_s``, leaving room for pongs).
    conn_id : int, optional
        The connection's number in its market's pool (status, thread names).
    book_only : bool
        Subscribe mode with ``on_book``: subscribe only the book streams (a perp
        ``/public`` connection, ``protocol.book_control_url``; trades come on others).
    """

    def __init__(
        self,
        url: str,
        on_trade: Callable[[Trade], None],
        *,
        on_gap: Callable[[str, int, int], None] | None = None,
        last_ids: dict[str, int] | None = None,
        watchdog_s: float = 30.0,
        backoff_base_s: float = 1.0,
        backoff_cap_s: float = 60.0,
        stable_after_s: float = 60.0,
        ws_factory: Callable[..., websocket.WebSocketApp] = websocket.WebSocketApp,
        name: str | None = None,
        verify_trade: Callable[[Trade], bool | None] | None = None,
        protocol: FeedProtocol,
        on_book: Callable[[BookTicker], None] | None = None,
        clock_ms: Callable[[], int] | None = None,
        subscribe_symbols=None,
        stream: str = "aggTrade",
        control_rate: float | None = None,
        conn_id: int | None = None,
        book_only: bool = False,
    ) -> None:
        name = name or f"{protocol.venue}-{protocol.market}-feed"
        super().__init__(name=name, daemon=True)
        self.url = url
        self.protocol = protocol
        self._on_book = on_book
        self.clock_ms = clock_ms or wall_clock_ms
        if on_book is None:
            self._parse_frame = protocol.parse_frame
        else:
            self._parse_frame = functools.partial(
                protocol.parse_frame_clocked, clock_ms=self.clock_ms
            )
        self._on_trade = on_trade
        self._on_gap = on_gap
        self._last_id: dict[str, int] = dict(last_ids or {})
        self.watchdog_s = watchdog_s
        self.backoff_base_s = backoff_base_s
        self.backoff_cap_s = backoff_cap_s
        self.stable_after_s = stable_after_s
        self._ws_factory = ws_factory
        self._stop_event = threading.Event()  # not _stop: Thread uses that name
        self._ws: websocket.WebSocketApp | None = None
        self._connected = False
        self._shutdown_announced = False
        self.stats = FeedStats()
        self._verify_trade = verify_trade
        self._data_ms: int | None = None  # latest accepted trade time
        # per symbol: (id, T) at the start of the rate window, and (id, T, mono) now
        self._rate_anchor: dict[str, tuple[int, int]] = {}
        self._last_seen: dict[str, tuple[int, int, float]] = {}
        self._quarantine_run: dict[str, tuple[int, int]] = {}  # symbol -> (last id, run)
        self._below_run: dict[str, tuple[int, int, int]] = {}  # symbol -> (first, last, n)
        self._clean_close = self._conn_failed = False
        self._handling = False
        self._started_ms = int(time.time() * 1000)
        self._watchdog = threading.Thread(
            target=self._watch, name=f"{name}-watchdog", daemon=True
        )
        self.conn_id = conn_id
        self.stream = stream
        #: subscribe mode: the symbols this connection carries, in subscription order
        self._symbols: list[str] | None = (
            None if subscribe_symbols is None else list(dict.fromkeys(subscribe_symbols)))
        #: a book-only connection (perp ``/public``, ingest/feeds/pool.py): subscribes
        #: its symbols' book streams alone
        self.book_only = bool(book_only) and on_book is not None
        self._streams_per_symbol = 2 if on_book is not None and not self.book_only else 1
        if self.book_only:
            self._sub_kwargs = {"book": True, "trades": False}
        else:
            self._sub_kwargs = {"book": True} if on_book is not None else {}
        rate = control_rate or 0.8 * float(getattr(protocol, "control_messages_per_s", 5.0))
        self.control_rate = float(rate)
        self._sub_lock = threading.Lock()
        self._sub_wake = threading.Event()
        self._gen = 0  # connection generation: subscriptions are per connection
        self._acked: set[str] = set()  # symbols the server confirmed on this connection
        self._refused: set[str] = set()  # symbols it refused on this connection
        self._reply: tuple[object, threading.Event, list] | None = None
        self._req_ids = itertools.count(1)
        self._subscriber = None if self._symbols is None else threading.Thread(
            target=self._subscribe_loop, name=f"{name}-subscribe", daemon=True)

    # ------------------------------------------------------------------ control
    def start(self) -> None:  # noqa: D102 - Thread.start
        super().start()
        self._watchdog.start()
        if self._subscriber is not None:
            self._subscriber.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Close the socket and end the thread (idempotent)."""
        self._stop_event.set()
        self._sub_wake.set()
        ws = self._ws
        if ws is not None:
            _abort(ws)
        if self.is_alive() and threading.current_thread() is not self:
            self.join(timeout)

    @property
    def last_ids(self) -> dict[str, int]:
        return dict(self._last_id)

    # ------------------------------------------------------------------ subscribe mode
    @property
    def symbols(self) -> list[str]:
        """The symbols this connection carries (subscribe mode), in order."""
        return list(self._symbols or ())

    @property
    def stream_count(self) -> int:
        """Streams this connection carries (subscribe mode; 0 otherwise)."""
        return len(self._symbols or ()) * self._streams_per_symbol

    @property
    def subscribed(self) -> bool:
        """Every symbol's streams are acknowledged on the open connection."""
        if self._symbols is None:
            return self._connected
        with self._sub_lock:
            return self._connected and all(s in self._acked for s in self._symbols)

    def add_symbols(self, symbols, last_ids: dict[str, int] | None = None) -> list[str]:
        """Subscribe more symbols (subscribe mode) on the open connection, paced like
        the first ones; they are re-subscribed after every reconnect. ``last_ids``
        seeds their duplicate and gap check. Returns the symbols that were new."""
        if self._symbols is None:
            raise RuntimeError("add_symbols needs a feed in subscribe mode")
        with self._sub_lock:
            new = [s for s in dict.fromkeys(symbols) if s not in self._symbols]
            for sym in new:
                if last_ids and sym in last_ids and sym not in self._last_id:
                    self._last_id[sym] = int(last_ids[sym])
            self._symbols = [*self._symbols, *new]
        self._sub_wake.set()
        return new

    def _subscribe_loop(self) -> None:
        """Subscribe what the open connection lacks: one request at a time, at most
        ``control_rate`` per second, each answered before the next (module notes)."""
        interval = 1.0 / self.control_rate
        last_sent = -1e9
        batch_symbols = max(1, SUBSCRIBE_BATCH_STREAMS // self._streams_per_symbol)
        stop = self._stop_event
        while not stop.is_set():
            self._sub_wake.wait(0.5)
            self._sub_wake.clear()
            while not stop.is_set() and self._connected:
                gen, ws = self._gen, self._ws
                with self._sub_lock:
                    todo = [s for s in self._symbols
                            if s not in self._acked and s not in self._refused]
                if not todo or ws is None:
                    break
                batch = todo[:batch_symbols]
                wait = last_sent + interval - time.monotonic()
                if wait > 0 and stop.wait(wait):
                    return
                if gen != self._gen or not self._connected:
                    break
                req_id = next(self._req_ids)
                done, answer = threading.Event(), []
                self._reply = (req_id, done, answer)
                try:
                    ws.send(self.protocol.subscribe_message(
                        batch, self.stream, req_id, **self._sub_kwargs))
                except Exception as exc:  # the socket went away: the next connect retries
                    log.info("feed: subscribe on %s failed: %s", self.url, exc)
                    break
                last_sent = time.monotonic()
                self.stats.control_sent += 1
                if not done.wait(SUBSCRIBE_REPLY_TIMEOUT_S):
                    if stop.is_set() or gen != self._gen:
                        break
                    self.stats.control_errors += 1
                    self._conn_failed = True
                    self.stats.error = (f"no reply to SUBSCRIBE id {req_id} within "
                                        f"{SUBSCRIBE_REPLY_TIMEOUT_S:.0f}s")
                    log.warning("feed: %s; closing the socket", self.stats.error)
                    _abort(ws)
                    break
                if gen != self._gen or not answer:  # the connection ended meanwhile
                    break
                reply = answer[0]
                with self._sub_lock:
                    if reply.error_code is None:
                        self._acked.update(batch)
                    else:
                        self._refused.update(batch)
                if reply.error_code is not None:
                    self.stats.control_errors += 1
                    self.stats.error = (f"SUBSCRIBE refused ({reply.error_code}): "
                                        f"{reply.error_msg}")
                    log.warning("feed: %s; %d symbols not subscribed on %s",
                                self.stats.error, len(batch), self.url)

    def _release_reply(self) -> None:
        """The connection ended: a subscriber waiting for a reply stops waiting."""
        waiting, self._reply = self._reply, None
        if waiting is not None:
            waiting[1].set()

    def _on_reply(self, reply: ControlReply) -> None:
        """A control reply (feed thread): wakes the subscriber waiting for its id."""
        waiting = self._reply
        if waiting is not None and reply.id == waiting[0]:
            waiting[2].append(reply)
            waiting[1].set()
            return
        if reply.error_code is not None:
            self.stats.control_errors += 1
            log.warning("feed: server error %s: %s", reply.error_code, reply.error_msg)

    def status(self) -> FeedStatus:
        s = self.stats
        return FeedStatus(
            url=self.url,
            connected=self._connected,
            messages=s.messages,
            trades=s.trades,
            msgs_per_s=s.msgs_per_s,
            bad_frames=s.bad_frames,
            other_frames=s.other_frames,
            duplicates=s.duplicates,
            reconnects=s.reconnects,
            connects=s.connects,
            gaps=s.gaps,
            gap_ranges=tuple(s.gap_ranges[-MAX_GAP_RANGES_KEPT:]),
            last_message_ms=s.last_message_ms,
            last_trade_ms=s.last_trade_ms,
            lag_ms=s.lag_ms,
            error=s.error,
            started_ms=self._started_ms,
            rejected_times=s.rejected_times,
            quarantined=s.quarantined,
            quarantine=tuple(s.quarantine),
            clean_closes=s.clean_closes,
            last_backoff_s=s.last_backoff_s,
            book_updates=s.book_updates,
            book_per_s=s.book_per_s,
            book_rejected=s.book_rejected,
            last_book_ms=s.last_book_ms,
            conn_id=self.conn_id,
            streams=self.stream_count,
            subscribed=len(self._acked) * self._streams_per_symbol
            if self._symbols is not None and self._connected else 0,
            control_sent=s.control_sent,
            control_errors=s.control_errors,
        )

    def has_pending(self) -> bool:
        """True if data is waiting in the socket or a frame is being handled.

        The bar clock asks this (``Ingestor.quiet_probe``) before it counts the
        connection as quiet: after a local stall the socket holds what arrived
        meanwhile, so a stall is never mistaken for a quiet market.
        """
        if self._handling:
            return True
        raw = getattr(getattr(self._ws, "sock", None), "sock", None)
        if raw is None:
            return False
        try:
            pending = getattr(raw, "pending", None)  # bytes decrypted but unread (TLS)
            if pending is not None and pending():
                return True
            readable, _, _ = select.select([raw], [], [], 0)
        except (OSError, ValueError):
            return False
        return bool(readable)

    # ------------------------------------------------------------------ loop
    def run(self) -> None:
        attempt = 0
        while not self._stop_event.is_set():
            self._shutdown_announced = False
            self._clean_close = self._conn_failed = False
            self._ws = self._ws_factory(
                self.url,
                on_open=self._handle_open,
                on_message=self._handle_message,
                on_error=self._handle_error,
                on_close=self._handle_close,
            )
            started = time.monotonic()
            try:
                # skip_utf8_validation: websocket-client checks UTF-8 byte by byte in
                # pure Python and caps at ~5k msgs/s; orjson validates anyway.
                # Server pings are answered by websocket-client; our own pings only
                # if the protocol asks (Binance counts them against a rate limit).
                self._ws.run_forever(
                    skip_utf8_validation=True,
                    ping_interval=self.protocol.client_ping_interval_s,
                    ping_timeout=self.protocol.client_ping_timeout_s,
                )
            except Exception as exc:  # run_forever itself failing must not kill the feed
                log.exception("feed: run_forever failed")
                self.stats.error = f"{type(exc).__name__}: {exc}"
            self._connected = False
            self._release_reply()
            if self._stop_event.is_set():
                break
            up_for = time.monotonic() - started
            if self._shutdown_announced:
                attempt, delay = 0, 0.0
            elif self._clean_close:
                # A clean close (1000, no error) is the server's choice, not a
                # failure: reconnect after the first backoff step, never climb.
                self.stats.clean_closes += 1
                attempt = 0
                delay = backoff_delay(0, base=self.backoff_base_s, cap=self.backoff_cap_s)
            else:
                attempt = 0 if up_for >= self.stable_after_s else attempt + 1
                delay = backoff_delay(
                    attempt - 1 if attempt else 0,
                    base=self.backoff_base_s,
                    cap=self.backoff_cap_s,
                )
            self.stats.reconnects += 1
            self.stats.last_backoff_s = round(delay, 3)
            log.warning(
                "feed: disconnected from %s after %.1fs (%s); retry in %.1fs (attempt %d)",
                self.url,
                up_for,
                self.stats.error or "closed",
                delay,
                attempt,
            )
            self._stop_event.wait(delay)
        log.info("feed: stopped")

    def _watch(self) -> None:
        """Watchdog + msgs/s meter, every 0.5 s."""
        # msgs/s over the last ~2 s (4 samples of 0.5 s): steady enough to read,
        # fresh enough to show a stall within a second.
        stats = self.stats
        samples = collections.deque(
            [(time.monotonic(), stats.messages, stats.book_updates)], maxlen=5
        )
        while not self._stop_event.wait(0.5):
            now = time.monotonic()
            samples.append((now, stats.messages, stats.book_updates))
            t0, n0, b0 = samples[0]
            stats.msgs_per_s = (samples[-1][1] - n0) / (now - t0)
            stats.book_per_s = (samples[-1][2] - b0) / (now - t0)
            last = self.stats.last_message_mono or self._connected_mono
            if self._connected and last is not None and now - last > self.watchdog_s:
                self._conn_failed = True
                self.stats.error = f"silent for {now - last:.0f}s (watchdog)"
                log.warning("feed: %s; closing the socket", self.stats.error)
                self._connected = False
                ws = self._ws
                if ws is not None:
                    _abort(ws)

    _connected_mono: float | None = None

    # ------------------------------------------------------------------ callbacks
    def _handle_open(self, _ws: websocket.WebSocketApp) -> None:
        if self._stop_event.is_set():
            # stop() ran while this connection was being opened, before run_forever
            # armed its loop flag: end it here or it would live until the next frame
            _abort(_ws)
            return
        if self._symbols is not None:  # a new connection subscribes everything again
            with self._sub_lock:
                self._gen += 1
                self._acked, self._refused = set(), set()
            self._release_reply()
        self._connected = True
        self._connected_mono = time.monotonic()
        self.stats.last_message_mono = None
        self.stats.connects += 1
        self.stats.error = None
        log.info("feed: connected to %s", self.url)
        self._sub_wake.set()

    def _handle_error(self, _ws: websocket.WebSocketApp, error: BaseException) -> None:
        if not isinstance(error, websocket.WebSocketConnectionClosedException):
            self._conn_failed = True  # websocket-client reports a close frame here too
        self.stats.error = f"{type(error).__name__}: {error}"
        log.warning("feed: %s", self.stats.error)

    def _handle_close(self, _ws, code, reason) -> None:
        self._connected = False
        self._release_reply()
        self._clean_close = code == 1000 and not self._conn_failed
        if code not in (None, 1000) or reason:
            detail = f"closed by server: code={code} reason={reason!r}"
            if self.stats.error is None:
                self.stats.error = detail
            log.info("feed: %s", detail)

    def _handle_message(self, _ws: websocket.WebSocketApp, raw: bytes | str) -> None:
        # Everything is caught here: websocket-client would otherwise swallow the
        # traceback and a single bad frame must never end the connection.
        now_s = time.time()
        self._handling = True
        try:
            self._handle(_ws, raw, now_s)
        finally:
            self._handling = False

    def _handle(self, _ws: websocket.WebSocketApp, raw: bytes | str, now_s: float) -> None:
        stats = self.stats
        stats.messages += 1
        stats.last_message_ms = int(now_s * 1000)
        stats.last_message_mono = time.monotonic()
        try:
            items = self._parse_frame(raw)
        except BadFrame as exc:
            stats.bad_frames += 1
            if stats.bad_frames <= 10 or stats.bad_frames % 1000 == 0:
                log.warning(
                    "feed: bad frame #%d (%s): %.120r", stats.bad_frames, exc, raw
                )
            return
        if not items:  # a market event that is not a trade (book, kline, ...)
            stats.other_frames += 1
            return
        try:
            for item in items:
                if type(item) is BookTicker:
                    if self._on_book is None:
                        stats.other_frames += 1
                    else:
                        self._accept_book(item)
                elif isinstance(item, Trade):
                    self._accept(item, now_s)
                elif isinstance(item, ServerShutdown):
                    log.warning("feed: serverShutdown announced; reconnecting now")
                    self._shutdown_announced = True
                    _abort(_ws)
                elif isinstance(item, ControlReply):
                    self._on_reply(item)
                else:
                    stats.other_frames += 1
        except Exception:
            log.exception("feed: failed to handle %.120r", raw)

    def _accept(self, trade: Trade, now_s: float) -> None:
        stats = self.stats
        symbol, tid = trade.symbol, trade.trade_id
        now_ms = int(now_s * 1000)
        why = self._implausible_time(trade, now_ms)
        if why is not None:
            stats.rejected_times += 1
            if stats.rejected_times <= 10 or stats.rejected_times % 1000 == 0:
                log.warning(
                    "feed: %s id %d rejected (#%d): %s", symbol, tid,
                    stats.rejected_times, why,
                )
            return
        last = self._last_id.get(symbol)
        if last is not None:
            if tid <= last:
                stats.duplicates += 1
                if (last - tid > SUSPECT_MIN_IDS and self.protocol.ids_contiguous
                        and self._poisoned_mark(symbol, tid, last)):
                    return self._accept(trade, now_s)
                return
            if tid > last + 1 and self.protocol.ids_contiguous:
                if self._suspect_jump(symbol, last, tid) and not self._confirmed(trade, last):
                    return
                gap = GapRange(symbol, last + 1, tid - 1)
                stats.gaps += gap.missing
                stats.gap_ranges.append(gap)
                if len(stats.gap_ranges) > 2 * MAX_GAP_RANGES_KEPT:
                    del stats.gap_ranges[:MAX_GAP_RANGES_KEPT]
                log.warning(
                    "feed: %s gap of %d ids [%d, %d]",
                    symbol,
                    gap.missing,
                    gap.first_id,
                    gap.last_id,
                )
                if self._on_gap is not None:
                    self._on_gap(symbol, gap.first_id, gap.last_id)
        self._last_id[symbol] = tid
        self._quarantine_run.pop(symbol, None)
        self._note_rate(symbol, tid, trade.time_ms)
        if self._data_ms is None or trade.time_ms > self._data_ms:
            self._data_ms = trade.time_ms
        stats.trades += 1
        stats.last_trade_ms = trade.time_ms
        lag = now_ms - trade.time_ms
        stats.lag_ms = lag if abs(lag) <= MAX_PLAUSIBLE_LAG_MS else None
        self._on_trade(trade)

    def _accept_book(self, book: BookTicker) -> None:
        """A best bid/ask update: a ``T``-timed one must sit near its ``E`` (as a
        trade's time must); then counted and handed to ``on_book``."""
        stats = self.stats
        if book.time_source == "T":
            t, e = book.time_ms, book.event_ms
            if t - e > MAX_T_AHEAD_OF_E_MS or e - t > MAX_T_BEHIND_E_MS:
                stats.book_rejected += 1
                if stats.book_rejected <= 10 or stats.book_rejected % 1000 == 0:
                    log.warning("feed: %s book update %d rejected (#%d): T=%d, E=%d",
                                book.symbol, book.update_id, stats.book_rejected, t, e)
                return
        stats.book_updates += 1
        stats.last_book_ms = book.time_ms
        self._on_book(book)

    def _poisoned_mark(self, symbol: str, tid: int, last: int) -> bool:
        """A run of consecutive ids far below the high-water mark: the mark is the
        poisoned one (e.g. seeded at restart from a bad id an older version stored).
        After ``QUARANTINE_ACCEPT_RUN`` of them the mark drops to just before the run,
        and the run's earlier ids come back through the gap back-fill."""
        prev = self._below_run.get(symbol)
        if prev is not None and tid == prev[1] + 1:
            first, n = prev[0], prev[2] + 1
        else:
            first, n = tid, 1
        self._below_run[symbol] = (first, tid, n)
        if n < QUARANTINE_ACCEPT_RUN:
            return False
        log.error(
            "feed: %s: %d consecutive ids from %d far below the last id %d: that id was "
            "poisoned; continuing from the stream's ids", symbol, n, first, last,
        )
        self.stats.quarantined += 1
        self.stats.quarantine.append({
            "symbol": symbol, "trade_id": last, "time_ms": None, "last_id": first - 1,
            "rest": "high-water mark abandoned",
        })
        del self.stats.quarantine[:-QUARANTINE_KEPT]
        self.stats.duplicates -= n  # they were not duplicates after all
        self._last_id[symbol] = first - 1
        self._below_run.pop(symbol, None)
        return True

    # ------------------------------------------------------------------ plausibility
    def _implausible_time(self, trade: Trade, now_ms: int) -> str | None:
        """Why ``trade``'s time cannot be right, or None (module notes)."""
        t, e = trade.time_ms, trade.event_ms
        if t - e > MAX_T_AHEAD_OF_E_MS:
            return f"T={t} is {t - e} ms after its event time E={e}"
        if e - t > MAX_T_BEHIND_E_MS:
            return f"T={t} is {e - t} ms before its event time E={e}"
        data = self._data_ms
        if t - now_ms > MAX_T_AHEAD_MS and (data is None or t - data > MAX_T_AHEAD_MS):
            return f"T={t} is {t - now_ms} ms ahead of the wall clock and the feed's data"
        return None

    def _note_rate(self, symbol: str, tid: int, t_ms: int) -> None:
        self._last_seen[symbol] = (tid, t_ms, time.monotonic())
        anchor = self._rate_anchor.get(symbol)
        if anchor is None or t_ms - anchor[1] > 2 * RATE_WINDOW_MS or tid < anchor[0]:
            self._rate_anchor[symbol] = (tid, t_ms)
        elif t_ms - anchor[1] > RATE_WINDOW_MS:
            # slide: keep roughly the last one to two minutes
            self._rate_anchor[symbol] = (
                (anchor[0] + tid) // 2, (anchor[1] + t_ms) // 2
            )

    def _suspect_jump(self, symbol: str, last: int, tid: int) -> bool:
        """An id jump far beyond what the back-fill pages or the recent rate allows."""
        missing = tid - last - 1
        if missing <= SUSPECT_MIN_IDS:
            return False
        anchor, seen = self._rate_anchor.get(symbol), self._last_seen.get(symbol)
        if anchor is None or seen is None:
            return True  # no rate known (first trade after a start): ask REST
        seen_id, seen_t, seen_mono = seen
        # ids per ms over the window, at least 1 id/s so quiet symbols are not all suspect
        window_ms = max(1, seen_t - anchor[1])
        per_ms = max((seen_id - anchor[0]) / window_ms, 0.001)
        elapsed_ms = max(1_000.0, (time.monotonic() - seen_mono) * 1000)
        return missing > SUSPECT_RATE_FACTOR * per_ms * elapsed_ms

    def _confirmed(self, trade: Trade, last: int) -> bool:
        """Verify a suspect trade with REST; quarantine it unless confirmed."""
        symbol, tid = trade.symbol, trade.trade_id
        verdict = None
        if self._verify_trade is not None:
            try:
                verdict = self._verify_trade(trade)
            except Exception as exc:  # a verifier failing must not kill the feed
                log.warning("feed: verifying %s id %d failed: %s", symbol, tid, exc)
        if verdict:
            log.warning("feed: %s id jump %d -> %d confirmed by REST", symbol, last, tid)
            return True
        prev = self._quarantine_run.get(symbol)
        run = prev[1] + 1 if prev is not None and tid == prev[0] + 1 else 1
        self._quarantine_run[symbol] = (tid, run)
        if run >= QUARANTINE_ACCEPT_RUN:
            log.error(
                "feed: %s: %d consecutive ids after the jump %d -> %d; accepting the "
                "stream's ids unverified", symbol, run, last, tid,
            )
            return True
        stats = self.stats
        stats.quarantined += 1
        stats.quarantine.append({
            "symbol": symbol, "trade_id": tid, "time_ms": trade.time_ms,
            "last_id": last, "rest": "unverifiable" if verdict is None else "disagrees",
        })
        del stats.quarantine[:-QUARANTINE_KEPT]
        log.warning(
            "feed: %s id %d quarantined (last id %d; REST %s)", symbol, tid, last,
            "unverifiable" if verdict is None else "disagrees",
        )
        return False
