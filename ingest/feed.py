"""The websocket-client thread that turns a Binance trade stream into ``Trade`` objects.

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
* pings from the server are answered by websocket-client itself; we never send
  our own pings, because Binance counts client frames against a 5-10 msg/s limit.

Per symbol the feed keeps the last trade id it delivered. Binance ids grow by
exactly one per event, so ``id <= last`` is a duplicate (dropped and counted) and
``id > last + 1`` is a gap whose exact missing range ``[last+1, id-1]`` is reported
to ``on_gap`` (the store records it). ``last_ids`` can be seeded from the store so a
restart detects what was lost while the app was down.

The feed thread is the only writer of :class:`FeedStats`; readers call
:meth:`TradeFeed.status`, which returns a frozen :class:`FeedStatus` copy.
"""

from __future__ import annotations

import collections
import logging
import random
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import websocket

from ingest.binance import parse_frame
from ingest.models import BadFrame, ControlReply, ServerShutdown, Trade

log = logging.getLogger(__name__)

MAX_GAP_RANGES_KEPT = 1_000  # the store keeps all of them; the status shows the latest


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
    """Close ``ws`` from another thread so that its ``run_forever`` returns now.

    ``WebSocketApp.close()`` alone sends a close frame and reads the reply on the
    calling thread while the feed thread sits in ``select()`` on the same socket: the
    reply can be consumed by either, and a closed file descriptor does not wake a
    ``select()`` on Linux, so the feed thread could hang until the next server ping.
    Shutting the socket down first wakes it with EOF at once.
    """
    raw = getattr(getattr(ws, "sock", None), "sock", None)
    if raw is not None:
        try:
            raw.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # already closed or never connected
    ws.close()


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


class TradeFeed(threading.Thread):
    """Connect, parse, de-duplicate, detect gaps, hand trades to ``on_trade``; forever.

    Parameters
    ----------
    url : str
        Full stream URL, e.g. from :func:`ingest.binance.stream_url`.
    on_trade : callable(Trade)
        Called in the feed thread for every new (not duplicate) trade, in order.
        It must be fast (append to a ring, enqueue to a store).
    on_gap : callable(symbol, first_missing_id, last_missing_id), optional
    last_ids : dict, optional
        Last stored trade id per symbol, so the first trade after a restart is
        checked for a gap and replays are de-duplicated.
    watchdog_s : float
        Close a connected socket that has been silent this long.
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
        name: str = "binance-feed",
    ) -> None:
        super().__init__(name=name, daemon=True)
        self.url = url
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
        self._started_ms = int(time.time() * 1000)
        self._watchdog = threading.Thread(
            target=self._watch, name=f"{name}-watchdog", daemon=True
        )

    # ------------------------------------------------------------------ control
    def start(self) -> None:  # noqa: D102 - Thread.start
        super().start()
        self._watchdog.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Close the socket and end the thread (idempotent)."""
        self._stop_event.set()
        ws = self._ws
        if ws is not None:
            _abort(ws)
        if self.is_alive() and threading.current_thread() is not self:
            self.join(timeout)

    @property
    def last_ids(self) -> dict[str, int]:
        return dict(self._last_id)

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
        )

    # ------------------------------------------------------------------ loop
    def run(self) -> None:
        attempt = 0
        while not self._stop_event.is_set():
            self._shutdown_announced = False
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
                self._ws.run_forever(skip_utf8_validation=True, ping_interval=0)
            except Exception as exc:  # run_forever itself failing must not kill the feed
                log.exception("feed: run_forever failed")
                self.stats.error = f"{type(exc).__name__}: {exc}"
            self._connected = False
            if self._stop_event.is_set():
                break
            up_for = time.monotonic() - started
            if self._shutdown_announced:
                attempt, delay = 0, 0.0
            else:
                attempt = 0 if up_for >= self.stable_after_s else attempt + 1
                delay = backoff_delay(
                    attempt - 1 if attempt else 0,
                    base=self.backoff_base_s,
                    cap=self.backoff_cap_s,
                )
            self.stats.reconnects += 1
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
        samples = collections.deque([(time.monotonic(), self.stats.messages)], maxlen=5)
        while not self._stop_event.wait(0.5):
            now = time.monotonic()
            samples.append((now, self.stats.messages))
            t0, n0 = samples[0]
            self.stats.msgs_per_s = (samples[-1][1] - n0) / (now - t0)
            last = self.stats.last_message_mono or self._connected_mono
            if self._connected and last is not None and now - last > self.watchdog_s:
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
        self._connected = True
        self._connected_mono = time.monotonic()
        self.stats.last_message_mono = None
        self.stats.connects += 1
        self.stats.error = None
        log.info("feed: connected to %s", self.url)

    def _handle_error(self, _ws: websocket.WebSocketApp, error: BaseException) -> None:
        self.stats.error = f"{type(error).__name__}: {error}"
        log.warning("feed: %s", self.stats.error)

    def _handle_close(self, _ws, code, reason) -> None:
        self._connected = False
        if code not in (None, 1000) or reason:
            detail = f"closed by server: code={code} reason={reason!r}"
            if self.stats.error is None:
                self.stats.error = detail
            log.info("feed: %s", detail)

    def _handle_message(self, _ws: websocket.WebSocketApp, raw: bytes | str) -> None:
        # Everything is caught here: websocket-client would otherwise swallow the
        # traceback and a single bad frame must never end the connection.
        stats = self.stats
        now_s = time.time()
        stats.messages += 1
        stats.last_message_ms = int(now_s * 1000)
        stats.last_message_mono = time.monotonic()
        try:
            item = parse_frame(raw)
        except BadFrame as exc:
            stats.bad_frames += 1
            if stats.bad_frames <= 10 or stats.bad_frames % 1000 == 0:
                log.warning(
                    "feed: bad frame #%d (%s): %.120r", stats.bad_frames, exc, raw
                )
            return
        try:
            if isinstance(item, Trade):
                self._accept(item, now_s)
            elif isinstance(item, ServerShutdown):
                log.warning("feed: serverShutdown announced; reconnecting now")
                self._shutdown_announced = True
                _abort(_ws)
            elif isinstance(item, ControlReply):
                if item.error_code is not None:
                    log.warning(
                        "feed: server error %s: %s", item.error_code, item.error_msg
                    )
            else:
                stats.other_frames += 1
        except Exception:
            log.exception("feed: failed to handle %.120r", raw)

    def _accept(self, trade: Trade, now_s: float) -> None:
        stats = self.stats
        symbol, tid = trade.symbol, trade.trade_id
        last = self._last_id.get(symbol)
        if last is not None:
            if tid <= last:
                stats.duplicates += 1
                return
            if tid > last + 1:
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
        stats.trades += 1
        stats.last_trade_ms = trade.time_ms
        stats.lag_ms = int(now_s * 1000) - trade.time_ms
        self._on_trade(trade)
