"""Wiring of the ingest path: feed -> ring + store + market engine, and restart restore.

::

    TradeFeed thread --Trade--> Ingestor.on_trade
                                  +--> TickRing[symbol].append        (recent ticks, memory)
                                  +--> TradeStore.add_trade            (writer thread, batched)
                                  +--> MarketEngine.on_trade --1 s bar closed--> TradeStore.add_bar
    TradeFeed thread --BookTicker--> Ingestor.on_book  (top of book, docs/book.md)
                                  +--> quote(name)                    (latest, live widgets)
                                  +--> MarketEngine.on_book --1 s book bar--> TradeStore.add_book_bar
    clock thread (every 100 ms) --> MarketEngine.on_clock(exchange time) --> closed bars -> store
                                    (and the closed 1 s book bars: engine.clock_closed_book)

The engine is mutated by two threads (the feed and the clock), so those two calls are
serialised by one lock; readers (Dash callbacks, API) only see the engine's immutable
snapshots and the rings' copies.

**Bars close on the feed's data clock, never on the local clock.** Trades arrive in
order on a connection, so once it has delivered a trade with time ``T`` every bucket
ending before ``T - bar_close_delay_ms`` is complete (the delay absorbs the small
cross-symbol reordering of a combined stream). The clock thread closes buckets at::

    close_at = D - bar_close_delay_ms + Q

``D`` = the latest trade time delivered live, ``Q`` = how long the connection has been
*verifiably quiet*: each 100 ms tick adds its elapsed time (capped at 200 ms, so a
process that was stopped or starved adds at most one step) only if no trade came in
since the last tick and the socket has nothing pending (``quiet_probe``: a ``select``
with timeout 0 on it). A local stall (SIGSTOP, GC, CPU contention, a VM pause) leaves
``D`` where it was and finds the socket full on resume, so it delays a bar but never
changes it; a quiet market still closes its bars about a second late.

With several markets (spot and perp: one connection each, each in order only on its
own) every market keeps its own ``D_m`` and ``Q_m`` (its socket's own quiet probe, the
runtime's ``quiet_probes``) and bars close at ``min over markets of D_m - delay + Q_m``:
a busy perp connection never closes a spot bucket the spot connection is still
delivering (tests/ingest/test_two_markets.py). The same holds for the several
connections of one market (``ingest/feeds/pool.py``): each connection is a *lane*
(``perp#0``, ``perp#1``: its trades come through :meth:`Ingestor.lane_sink`) with its
own ``D`` and ``Q`` and probe (:meth:`Ingestor.use_quiet_probes`), and bars close at the
slowest lane. A book-only connection (Binance perp serves ``@bookTicker`` only under
``/public``, apart from the trades) is a lane as well (:meth:`Ingestor.book_lane_sink`):
its ``D`` is the latest book update's ``T`` (futures book times are exchange times), so
neither a trade bar nor a 1 s book bar closes before that connection delivered the
bucket, as when the book rode the trade connection in one order.

Instruments may join a running ingestor (:meth:`Ingestor.add_instruments`, a new
listing from ``--universe-refresh``): ring, engine series and name map, without a
restart; the names of instruments already in the run never change.

A trade older than a bucket already published (after a reconnect, or a back-fill) is
*late*: it is stored, counted per symbol (``late_trades``, shown in ``/api/health``
and the feed card) and the store's 1 s bars of its bucket are rebuilt from the stored
trades (``TradeStore.rebuild_bars``); the in-memory published bars are not amended.

``DbFollower`` is the read-only twin used by ``python app.py --no-ingest``: it polls the
SQLite file that another process is writing and pushes new trades through the same
``on_trade`` path, minus the writes. With ``--bus`` a worker follows the live bus
instead (``ingest/bus/follow.py``, same entry points, bars closed on the publisher's
clock: ``external_clock``, :meth:`Ingestor.close_bars_until`); an ingesting process's
``tap`` is told, under the lock, everything it publishes there.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from analytics.bars import BAR_FIELDS, Bars
from analytics.engine import MarketEngine
from analytics.timeframes import DAY_MS
from ingest.models import BookTicker, Trade
from ingest.ring import TickRing
from ingest.store import TradeStore

log = logging.getLogger(__name__)
#: Longest an unsettled gap holds alert evaluation (wall s): a back-fill normally
#: settles in well under a second; the built-in replay's seams in one round trip.
GAP_HOLD_MAX_S = 15.0

RING_REFILL_MS = 15 * 60_000  # recent ticks put back into the rings after a restart
#: How far before its open buckets :meth:`Ingestor.restore` looks for a symbol's last
#: stored bar before deciding to defer the read of its day (docstring there).
HISTORY_PROBE_MS = 15 * 60_000
CLOCK_TICK_S = 0.1
#: The most one clock tick may add to the quiet time: a stopped or starved process
#: must not count its own stall as the connection being quiet.
QUIET_STEP_MAX_S = 0.2


@dataclass(frozen=True, slots=True)
class RestoreReport:
    symbols: int
    bars: int
    trades_replayed: int
    ring_ticks: int
    seconds: float
    book_bars: int = 0  # stored 1 s top-of-book bars put back (docs/book.md)
    #: symbols whose day of 1 s bars loads after the restore returned (Ingestor.restore)
    deferred: int = 0
    #: restore + background load of the deferred days (s); None while that still runs
    history_seconds: float | None = 0.0


class Ingestor:
    """Owns the rings, the engine hooks and the store writes for a set of symbols.

    Rings, engine, gaps, holds and breaks are keyed by the run's NAME of an instrument
    (``Universe.name``: ``BTCUSDT`` while that symbol is on one market, else
    ``spot:BTCUSDT`` / ``perp:BTCUSDT``). Trades and book updates carry the bare
    symbol and their market; :meth:`name_of` maps ``(market, symbol)`` to the name
    with one dict lookup (the hot path). Without a ``universe`` the name is the bare
    symbol, as before instruments.
    """

    def __init__(
        self,
        symbols: list[str],
        store: TradeStore,
        engine: MarketEngine,
        *,
        ring_capacity: int = 2**21,
        write: bool = True,
        bar_close_delay_ms: int = 250,
        universe=None,
    ) -> None:
        self.universe = universe
        #: market -> {bare symbol -> run name}: two plain lookups on the hot path (no
        #: tuple built per trade); misses go through :meth:`_name_miss`.
        self._by_market: dict[str, dict[str, str]] = {}
        for inst in universe or ():
            if inst.venue == "binance":
                self._by_market.setdefault(inst.market, {})[inst.symbol] = universe.name(inst)
        self.symbols = list(symbols)
        self.store = store
        self.engine = engine
        self.write = write
        self.rings: dict[str, TickRing] = {s: TickRing(ring_capacity) for s in symbols}
        self._ring_capacity = ring_capacity
        self._lock = threading.Lock()
        self._last_trade_ms: int | None = None
        self._last_trade_mono = 0.0
        self._stop = threading.Event()
        self._clock = threading.Thread(target=self._run_clock, name="bar-clock", daemon=True)
        self.bar_close_delay_ms = bar_close_delay_ms
        self.unknown_symbol_trades = 0
        #: Returns True while the source has data not yet handed to on_trade (the
        #: feed's socket is readable or a frame is being handled); None = no probe.
        self.quiet_probe: Callable[[], bool] | None = None
        self._data_ms: int | None = None  # D: latest trade time delivered live
        self._quiet_ms = 0.0  # Q: verified quiet time since the last trade
        self._trades_seen = 0
        self._quiet_seen = -1
        # Several markets = several connections, each in order on its own: bars close
        # at the MIN over markets of each one's D - delay + Q (close_clock_ms), else a
        # fast connection would close buckets a slower one is still delivering.
        self._multi = universe is not None and len(universe.markets) > 1
        #: per market (several markets only): is data pending on that connection?
        self.quiet_probes: dict[str, Callable[[], bool]] = {}
        self._market_data_ms: dict[str, int] = {}
        self._market_seen: dict[str, int] = {}
        self._market_quiet: dict[str, list] = {}  # market -> [quiet ms, seen at last tick]
        #: Trades older than a published 1 s bar, per symbol (stored; bars rebuilt).
        self.late_trades: dict[str, int] = {}
        #: Session breaks per symbol: (count, last ts_ms, last reason), for health.
        self.breaks: dict[str, tuple[int, int, str]] = {}
        # symbol -> reason: mark a break at that symbol's next live trade
        self._break_pending: dict[str, str] = {}
        # symbol -> {(first_id, last_id): (data time before it, monotonic s)}: gaps
        # not settled yet (hold_gap)
        self._holds: dict[str, dict[tuple[int, int], tuple[int, float]]] = {}
        #: The live bus publisher (``ingest/bus``, ``--bus``) or None: told, under the
        #: lock, what this ingestor accepts, closes and marks, in the engine's order.
        self.tap = None
        #: True on a bus follower: bars close only on the publisher's clock
        #: (:meth:`close_bars_until`), never on this process's quiet time.
        self.external_clock = False
        self._tap_clock_ms: int | None = None
        #: Called in the clock thread every tick (100 ms) with the exchange time, after
        #: the bars that were due closed and outside the engine lock: the place for
        #: server-side work that must run whether or not a browser is open (alerts).
        self.clock_listeners: list[Callable[[int], None]] = []
        self.restored: RestoreReport | None = None
        #: deferred days' rows: symbol (1 s bars) or ("book", symbol) -> count
        self._history_bars: dict = {}
        #: The latest best bid/ask update per name (live widgets: :meth:`quote`).
        self._quotes: dict[str, BookTicker] = {}
        self.book_updates = 0  # best bid/ask updates taken (all names)
        # Distinct trades per symbol: what the store held at restore plus every trade
        # accepted since (the feed drops duplicates before they get here).
        self._counts: dict[str, int] = dict.fromkeys(self.symbols, 0)
        # Recovered by back-fill; its own dict because another thread writes it.
        self._backfilled: dict[str, int] = {}
        self._rates: dict[str, float] = dict.fromkeys(self.symbols, 0.0)
        self._rate_prev: dict[str, int] = {}
        self._rate_mono = time.monotonic()

    # ------------------------------------------------------------------ names
    def name_of(self, item) -> str:
        """The run's name of a trade's / book update's instrument (class notes)."""
        return self.market_name(item.market, item.symbol)

    def market_name(self, market: str, symbol: str) -> str:
        """The run's name of bare ``symbol`` on ``market`` (gaps, back-fill pages)."""
        names = self._by_market.get(market)
        name = None if names is None else names.get(symbol)
        return name if name is not None else self._name_miss(market, symbol)

    def _name_miss(self, market: str, symbol: str) -> str:
        """A (market, symbol) outside the universe: a follower's trade already named
        (``perp:BTCUSDT``), an instrument a replay file adds, or no universe."""
        if self.universe is None or ":" in symbol:
            return symbol
        from analytics.instruments import DEFAULT_VENUE, Instrument

        name = self.store.name(Instrument(DEFAULT_VENUE, market, symbol))
        by_market = {m: dict(names) for m, names in self._by_market.items()}
        by_market.setdefault(market, {})[symbol] = name
        self._by_market = by_market  # replaced whole: the feed threads read it unlocked
        return name

    # ------------------------------------------------------------------ hot path
    def lane_sink(self, lane: str) -> Callable[[Trade], None]:
        """The trade callback of one connection (``lane``, e.g. ``perp#1``): bars close
        at the slowest lane's data clock (module notes)."""
        return functools.partial(self.on_trade, lane=lane)

    def book_lane_sink(self, lane: str) -> Callable[[BookTicker], None]:
        """The book callback of a book-only connection (``lane``, e.g. ``perp#2``):
        :meth:`on_book`, then the update's time advances that lane's data clock (module
        notes); after, so the clock never runs ahead of what the engine holds."""
        def take(b: BookTicker) -> None:
            self.on_book(b)
            self._advance_lane(lane, b.time_ms)
        return take

    def _advance_lane(self, lane: str, time_ms: int) -> None:
        """A lane delivered data stamped ``time_ms``: its ``D`` and its seen count."""
        with self._lock:
            if self._multi:
                dm = self._market_data_ms.get(lane)
                if dm is None or time_ms > dm:
                    self._market_data_ms[lane] = time_ms
                self._market_seen[lane] = self._market_seen.get(lane, 0) + 1

    def use_quiet_probes(self, probes: dict[str, Callable[[], bool]]) -> None:
        """Per lane (connection): is data pending on it. Several lanes switch the bar
        clock to the min over lanes (one lane keeps the single-clock rule)."""
        self.quiet_probes = dict(probes)
        if len(self.quiet_probes) > 1:
            self._multi = True

    def add_instruments(self, universe, names: Iterable[str]) -> list[str]:
        """Instruments that joined the run (``universe`` = the run's extended
        universe, ``names`` = the new names): their name map entries, rings and engine
        series, before their feed subscribes them. Returns the names added."""
        added = []
        by_market = {m: dict(names_) for m, names_ in self._by_market.items()}
        for name in names:
            inst = universe.by_name(name)
            if inst.venue == "binance":
                by_market.setdefault(inst.market, {})[inst.symbol] = name
        self.universe = universe
        self._by_market = by_market  # replaced whole: the feed threads read it unlocked
        for name in names:
            if name in self.rings:
                continue
            self.rings = {**self.rings, name: TickRing(self._ring_capacity)}
            self.symbols = [*self.symbols, name]
            with self._lock:
                self.engine.add_symbol(name)
            added.append(name)
        return added

    def on_trade(self, t: Trade, lane: str | None = None) -> None:
        """Called in the feed thread for every new trade (``lane``: the connection it
        came on, :meth:`lane_sink`; None = its market)."""
        name = self.market_name(t.market, t.symbol)
        if self._break_pending and name in self._break_pending:
            self.mark_break(name, t.time_ms, self._break_pending.pop(name))
        ring = self.rings.get(name)
        if ring is None:
            ring = self._add_symbol(name)
        ring.append(t.time_ms, t.trade_id, t.price, t.qty, t.buyer_is_maker)
        self._counts[name] = self._counts.get(name, 0) + 1
        if self.write:
            self.store.add_trade(t)
        engine = self.engine
        with self._lock:
            late_before = engine.late_ticks(name)
            closed = engine.on_trade(
                name, t.time_ms, t.trade_id, t.price, t.qty, t.buyer_is_maker
            )
            late = engine.late_ticks(name) != late_before
            self._last_trade_ms = t.time_ms
            self._last_trade_mono = time.monotonic()
            if self._data_ms is None or t.time_ms > self._data_ms:
                self._data_ms = t.time_ms
            self._trades_seen += 1
            if self._multi:
                m = lane or t.market
                dm = self._market_data_ms.get(m)
                if dm is None or t.time_ms > dm:
                    self._market_data_ms[m] = t.time_ms
                self._market_seen[m] = self._market_seen.get(m, 0) + 1
            if self.tap is not None:
                self.tap.trade(t)
                if closed is not None:
                    self.tap.bar(name, closed.as_row())
        if closed is not None and self.write:
            self.store.add_bar(name, closed.as_row())
        if late:
            self._count_late(name, [t.time_ms])

    # ------------------------------------------------------------------ top of book
    def on_book(self, b: BookTicker) -> None:
        """Called in the feed thread for every best bid/ask update (docs/book.md): kept
        as the name's live quote, fed to the engine's 1 s book bar under the lock
        (serialised with the bar clock, like trades); a book bar it closed is stored.
        The engine buckets by ``b.time_ms`` (futures ``T``, spot receive time). A
        book-only connection's updates come through :meth:`book_lane_sink`."""
        name = self.market_name(b.market, b.symbol)
        self._quotes[name] = b
        self.book_updates += 1
        with self._lock:
            closed = self.engine.on_book(name, b.time_ms, b.bid, b.ask, b.bid_qty, b.ask_qty)
            if self.tap is not None:  # --bus: workers build the same book bars
                self.tap.book(b)
        if closed is not None and self.write:
            self.store.add_book_bar(name, closed.as_row())

    def quote(self, name: str) -> BookTicker | None:
        """The latest best bid/ask update of ``name`` (None before the first): what the
        live widgets show (bid, ask, quoted spread, imbalance)."""
        return self._quotes.get(name)

    def _store_clock_closed_book(self) -> None:
        """The 1 s book bars the last ``engine.on_clock`` closed, to the store (called
        under the lock, right after it: the engine replaces the list on each call)."""
        if self.write:
            for name, bar in self.engine.clock_closed_book:
                self.store.add_book_bar(name, bar.as_row())

    def _restore_book(self, name: str, start_ms: int | None, *,
                      probe_from: int | None = None) -> int:
        """Stored 1 s book bars of ``name`` from ``start_ms`` (None: the last day of
        them) back into the engine (its quote in force, the coarse book bars, the
        floor): the book columns served after a restart are the ones served before
        it. Returns the bars restored.

        ``probe_from``: read only the rows from then on now, the older ones later (the
        engine's ``restore_book_recent``, as the trade bars' days: :meth:`restore`);
        when those hold none before the largest timeframe's open bucket (a quiet
        book), all of them now."""
        if probe_from is not None and start_ms is not None:
            done = self._restore_book_recent(name, start_ms, probe_from)
            if done is not None:
                return done
        frame = self.store.read_book_bars(name, start_ms=start_ms)
        if start_ms is None and len(frame):
            frame = frame[frame["ts"] >= int(frame["ts"].iloc[-1]) - DAY_MS]
        if len(frame):
            self.engine.restore_book(name, frame)
        return len(frame)

    def _restore_book_recent(self, name: str, start_ms: int, probe_from: int) -> int | None:
        """The deferred half of :meth:`_restore_book`; None: not possible here."""
        tfs = self.engine.timeframes_ms
        if any(tfs[-1] % tf for tf in tfs):
            return None
        recent = self.store.read_book_bars(name, start_ms=max(start_ms, probe_from))
        if not len(recent):
            return None
        floor = int(recent["ts"].max()) + 1_000
        cut = floor - floor % tfs[-1]
        before = recent["ts"] < cut
        if not before.any():
            return None
        carrier = int(recent.loc[before, "ts"].max())
        recent = recent[recent["ts"] >= carrier]
        self.engine.restore_book_recent(
            name, recent, cut, functools.partial(self._stored_book, name, start_ms, cut))
        return int((recent["ts"] >= cut).sum())

    def _stored_book(self, name: str, start_ms: int, end_ms: int):
        """The stored 1 s book bars of a deferred book history (:meth:`restore`)."""
        frame = self.store.read_book_bars(name, start_ms=start_ms, end_ms=end_ms)
        self._history_bars[("book", name)] = len(frame)
        return frame

    def _count_late(self, symbol: str, times_ms: list[int]) -> None:
        """Trades older than a published 1 s bar: count them and rebuild the stored
        bars of their buckets from the stored trades (queued after the trades)."""
        self.late_trades[symbol] = self.late_trades.get(symbol, 0) + len(times_ms)
        log.warning(
            "%s: %d late trade(s) for published bars from %d; rebuilding stored bars",
            symbol, len(times_ms), min(times_ms),
        )
        if self.write:
            start = min(times_ms) - min(times_ms) % 1_000
            end = max(times_ms) - max(times_ms) % 1_000 + 1_000
            self.store.rebuild_bars(symbol, start, end)

    def on_gap(self, symbol: str, first_id: int, last_id: int) -> None:
        if self.write:
            self.store.add_gap(symbol, first_id, last_id, int(time.time() * 1000))
        if self.tap is not None:
            self.tap.gap(symbol, first_id, last_id, int(time.time() * 1000))

    # Gaps being back-filled: until one is settled (filled, or a break marked) the data
    # after it may still change session, so alerts hold the points after it.
    def hold_gap(self, symbol: str, first_id: int, last_id: int) -> None:
        """A gap of ``symbol`` went to the back-fill: hold its data from the last trade
        delivered before it (``unsettled_since_ms``) until :meth:`settle_gap`."""
        since = -(2**62) if self._data_ms is None else int(self._data_ms)
        self._holds.setdefault(symbol, {})[(int(first_id), int(last_id))] = (
            since, time.monotonic())

    def settle_gap(self, symbol: str, first_id: int, last_id: int | None = None) -> None:
        """The gap containing ``first_id`` (of ``symbol``) is filled or marked a break."""
        holds = self._holds.get(symbol)
        if not holds:
            return
        for lo, hi in list(holds):
            if lo <= first_id <= hi or (last_id is not None and first_id <= lo <= last_id):
                del holds[(lo, hi)]

    def unsettled_since_ms(self, symbol: str) -> int | None:
        """Data time from which ``symbol``'s data may still be split by a session break
        (an unsettled gap), or None: alerts evaluate only before it. A gap unsettled
        for ``GAP_HOLD_MAX_S`` (an exchange outage REST keeps retrying) stops holding:
        alerts must not stall behind it."""
        holds = self._holds.get(symbol)
        if not holds:
            return None
        now = time.monotonic()
        live = [since for since, t0 in list(holds.values()) if now - t0 < GAP_HOLD_MAX_S]
        return min(live) if live else None

    def break_at_next_trade(self, symbol: str, reason: str) -> None:
        """Mark a session break at ``symbol``'s next live trade (a gap nothing can
        fill, e.g. with back-fill off: the trade that revealed it starts a session)."""
        self._break_pending[symbol] = reason

    def mark_break(self, symbol: str, ts_ms: int, reason: str, *, store: bool = True) -> None:
        """A session break of ``symbol`` at ``ts_ms`` (its first trade after the break):
        into the engine (no pair window spans it), the store (a restart re-applies
        it) and the health counts."""
        with self._lock:
            self.engine.mark_break(symbol, int(ts_ms), reason)
            if store and self.tap is not None:
                self.tap.session_break(symbol, int(ts_ms), reason)
        n = self.breaks.get(symbol, (0, 0, ""))[0]
        self.breaks[symbol] = (n + 1, int(ts_ms), reason)
        if store and self.write:
            self.store.add_break(symbol, int(ts_ms), reason)
        log.warning("%s: session break at %d (%s)", symbol, ts_ms, reason)

    def on_backfill(self, symbol: str, trades: list[Trade]) -> None:
        """Called in the back-fill thread with a page of recovered trades (ids ascending,
        all older than the live trade that revealed the gap).

        * store: every trade, exactly as live ones;
        * engine: fed under the lock. A trade in the still-open bucket is added to it
          (a bar builder takes any order inside its open bucket); a trade for a bucket
          already closed is only counted as late: published bars are never amended.
        * stored 1 s bars of those closed buckets are recomputed from the stored trades
          (``TradeStore.rebuild_bars``), so history and a restart see complete bars;
        * not the ring: it holds live ticks in arrival order for readers' ``since``
          cursors, and an old trade appended there would break its time order.
        """
        if not trades:
            return
        if self.write:
            for t in trades:
                self.store.add_trade(t)
        with self._lock:
            for t in trades:
                self.engine.on_trade(
                    symbol, t.time_ms, t.trade_id, t.price, t.qty, t.buyer_is_maker
                )
            open_bar = self.engine.open_bar(symbol, 1_000)
            if self.tap is not None:
                self.tap.backfill(symbol, trades)
        self._backfilled[symbol] = self._backfilled.get(symbol, 0) + len(trades)
        # Buckets before the open one are closed (or were skipped) for good.
        limit = open_bar.ts if open_bar is not None else None
        late = [t.time_ms for t in trades if limit is None or t.time_ms < limit]
        if late:
            self._count_late(symbol, late)

    def _add_symbol(self, symbol: str) -> TickRing:
        # A stream we subscribed to can only carry our symbols; a replay file may carry
        # more. Accept them (the ring/engine grow) rather than drop real trades.
        self.unknown_symbol_trades += 1
        ring = TickRing(self._ring_capacity)
        self.rings = {**self.rings, symbol: ring}
        self.symbols = [*self.symbols, symbol]
        with self._lock:
            self.engine.add_symbol(symbol)
        return ring

    # ------------------------------------------------------------------ clock
    def exchange_now_ms(self) -> int | None:
        if self._last_trade_ms is None:
            return None
        return self._last_trade_ms + int((time.monotonic() - self._last_trade_mono) * 1000)

    def ticks_held(self, symbol: str) -> int:
        """Distinct trades stored (or, read-only, seen) for ``symbol``."""
        return self._counts.get(symbol, 0) + self._backfilled.get(symbol, 0)

    def total_ticks(self) -> int:
        return sum(self._counts.values()) + sum(self._backfilled.values())

    def rate(self, symbol: str) -> float:
        """Trades per second of ``symbol`` over the last second."""
        return round(self._rates.get(symbol, 0.0), 1)

    def _update_rates(self) -> None:
        now = time.monotonic()
        dt = now - self._rate_mono
        if dt < 1.0:
            return
        counts = dict(self._counts)
        self._rates = {
            s: (n - self._rate_prev.get(s, n)) / dt for s, n in counts.items()
        }
        self._rate_prev, self._rate_mono = counts, now

    def close_clock_ms(self) -> int | None:
        """``D - bar_close_delay_ms + Q`` (module notes): where bars may close now.
        With several markets (connections): ``min over markets of D_m - delay + Q_m``
        over the markets that delivered data live (a quiet market's ``Q_m`` grows, so it
        delays closes by about a second, never forever)."""
        if self._multi and self._market_data_ms:
            return min(
                d - self.bar_close_delay_ms + int(self._market_quiet.get(m, (0.0,))[0])
                for m, d in list(self._market_data_ms.items())
            )
        if self._data_ms is None:
            return None
        return self._data_ms - self.bar_close_delay_ms + int(self._quiet_ms)

    def _advance_market_quiet(self, elapsed_s: float) -> None:
        """Each market's own verified quiet time (several markets)."""
        for m in list(self._market_data_ms):
            probe = self.quiet_probes.get(m, self.quiet_probe)
            pending = False
            if probe is not None:
                try:
                    pending = probe()
                except Exception:
                    log.exception("quiet probe of %s failed", m)
                    pending = True
            state = self._market_quiet.setdefault(m, [0.0, -1])
            seen = self._market_seen.get(m, 0)
            if pending or seen != state[1]:
                state[0], state[1] = 0.0, seen
            else:
                state[0] += min(elapsed_s, QUIET_STEP_MAX_S) * 1000

    def _advance_quiet(self, elapsed_s: float) -> None:
        """Add ``elapsed_s`` (capped) to the quiet time if nothing came or is pending."""
        probe = self.quiet_probe
        pending = False
        if probe is not None:
            try:
                pending = probe()
            except Exception:
                log.exception("quiet probe failed")
                pending = True
        seen = self._trades_seen
        if pending or seen != self._quiet_seen:
            self._quiet_seen = seen
            self._quiet_ms = 0.0
        else:
            self._quiet_ms += min(elapsed_s, QUIET_STEP_MAX_S) * 1000
        if self._multi:
            self._advance_market_quiet(elapsed_s)

    def clock_tick(self, elapsed_s: float) -> list:
        """One tick of the bar clock: update the quiet time, close the bars that are
        due on the data clock (stored), return them as ``(symbol, Bar)``."""
        if self.external_clock:
            return []
        self._advance_quiet(elapsed_s)
        close_at = self.close_clock_ms()
        if close_at is None:
            return []
        with self._lock:
            closed = self.engine.on_clock(close_at)
            self._store_clock_closed_book()
            if self.tap is not None:
                for symbol, bar in closed:
                    self.tap.bar(symbol, bar.as_row())
                if close_at != self._tap_clock_ms:
                    self.tap.clock(close_at)
                    self._tap_clock_ms = close_at
        if self.write:
            for symbol, bar in closed:
                self.store.add_bar(symbol, bar.as_row())
        return closed

    def close_bars_until(self, close_ms: int) -> list:
        """Close every bar ending at or before ``close_ms`` (a bus follower applying
        the publisher's clock, ``ingest/bus/follow.py``); stored when writing."""
        with self._lock:
            closed = self.engine.on_clock(int(close_ms))
            self._store_clock_closed_book()
        if self.write:
            for symbol, bar in closed:
                self.store.add_bar(symbol, bar.as_row())
        return closed

    def flush_open_bars(self) -> int:
        """Store every open 1 s bar as it stands (shutdown). A restart re-runs the
        stored trades of the open buckets, so a later, fuller version replaces it."""
        if not self.write:
            return 0
        n = 0
        with self._lock:
            for symbol in list(self.rings):
                bar = self.engine.open_bar(symbol, 1_000)
                if bar is not None:
                    self.store.add_bar(symbol, bar.as_row())
                    n += 1
            # the open 1 s book bars too (its quote standing to the second's end); a
            # restart's first updates are taken from the end of that second on
            for name in list(self._quotes):
                book = self.engine.open_book_bar(name)
                if book is not None:
                    self.store.add_book_bar(name, book.as_row())
                    n += 1
        return n

    def _run_clock(self) -> None:
        prev = time.monotonic()
        while not self._stop.wait(CLOCK_TICK_S):
            self._update_rates()
            mono = time.monotonic()
            elapsed, prev = mono - prev, mono
            try:
                self.clock_tick(elapsed)
            except Exception:
                log.exception("bar clock failed")
            now = self.exchange_now_ms()
            if now is None:
                continue
            for listener in self.clock_listeners:
                try:
                    listener(now)
                except Exception:
                    log.exception("clock listener %r failed", listener)

    def reset_after_fork(self) -> None:
        """In a forked child (background job): fresh lock, no threads of the parent."""
        self._lock = threading.Lock()

    def start_clock(self) -> None:
        self._clock.start()

    def stop(self) -> None:
        self._stop.set()

    # ------------------------------------------------------------------ restore
    def restore(self, *, defer_history: bool = True) -> RestoreReport:
        """Put a day of stored 1 s bars back into the engine and refill the rings.

        For each symbol: load the stored 1 s bars of the last day, then re-run the stored
        trades of the still-open coarse bars (at most the largest timeframe, 5 min) through
        the engine so the open bars are exact, then refill the ring with the last
        ``RING_REFILL_MS`` of ticks. Returns what was restored.

        ``defer_history`` (default): the day of 1 s bars of a symbol, and the day of its
        1 s book bars before the largest timeframe's open bucket
        (:meth:`MarketEngine.restore_book_recent`), are not read here but handed to
        the engine as loaders (:meth:`MarketEngine.defer_history`): the
        first read of the symbol (a pair, its bars) loads it, and a background thread
        (``history-restore``, started at the end) loads the others in the run's order.
        Reading the days is most of a cold restart (10 liquid instruments: 2.3 s for
        their bars, 5 s for their book bars, of 9.4 s here), and the first pair needs
        two of them; what this method still does
        per symbol (the open buckets' re-run, the ring refill, the last bar before them)
        reads minutes, not a day. Exact all the same: the engine puts the history in
        before the bars closed since, as if loaded first (engine docstring). The
        report's ``bars`` counts the days loaded so far: ``history_seconds`` is None
        until the background load is done, then the report is replaced with the totals.
        A symbol whose last HISTORY_PROBE_MS before its open buckets hold no bar (a
        quiet one: little to read) is loaded here, as before.
        """
        started = time.perf_counter()
        n_bars = n_replayed = n_ring = n_book = 0
        last_ids = self.store.last_trade_ids()
        stored_breaks = self.store.read_breaks()
        symbols = sorted(set(self.symbols) | set(last_ids))
        counts = _Counts(self.store, symbols)  # beside the rest, on the other core
        for symbol in symbols:
            if symbol not in self.rings:
                self.rings[symbol] = TickRing(self._ring_capacity)
                self.symbols.append(symbol)
                self.engine.add_symbol(symbol)
            # Breaks first: the bars loaded next must be split into their sessions.
            for sym, ts_ms, reason, _created in stored_breaks:
                if sym == symbol:
                    self.mark_break(sym, ts_ms, reason, store=False)
            cols = self.store.read_recent_trades(symbol, 1)
            if len(cols.time_ms) == 0:
                n_book += self._restore_book(symbol, None)  # quotes but no trade yet
                continue
            last_ms = int(cols.time_ms[-1])
            day_from = last_ms - DAY_MS
            replay_from = self.engine.replay_start_ms(last_ms)
            # The last stored bar before the open buckets: from a short read when the
            # symbol traded lately, else from the day's read (small: a quiet symbol).
            stored = self.store.read_bars(
                symbol, start_ms=max(day_from, replay_from - HISTORY_PROBE_MS),
                end_ms=replay_from)
            if not len(stored.ts) or not defer_history:
                stored = self.store.read_bars(symbol, start_ms=day_from, end_ms=replay_from)
                loaded = True
            else:
                loaded = False
            # Bars close after their trades are stored (the bar clock's delay; with
            # several markets the slowest one's clock), so a restore while another
            # process writes may find trades before replay_from whose bars are not
            # stored yet: replay from the coarse bucket of the first such trade.
            tail = int(stored.ts[-1]) + 1_000 if len(stored.ts) else day_from
            if tail < replay_from:
                unbarred = self.store.read_trades(symbol, start_ms=tail, end_ms=replay_from,
                                                  limit=1)
                if len(unbarred.time_ms):
                    replay_from = self.engine.replay_start_ms(int(unbarred.time_ms[0]))
                    if loaded:
                        stored = self.store.read_bars(
                            symbol, start_ms=day_from, end_ms=replay_from)
            if loaded:
                bars = _as_bars(stored)
                self.engine.load_bars(symbol, bars)
                n_bars += len(bars)
            else:
                self.engine.defer_history(
                    symbol, functools.partial(self._stored_day, symbol, day_from, replay_from))
            probe = replay_from - HISTORY_PROBE_MS if defer_history else None
            n_book += self._restore_book(symbol, day_from, probe_from=probe)
            ticks = self.store.read_trades(symbol, start_ms=replay_from)
            on_trade, write = self.engine.on_trade, self.write
            for t, i, p, q, m in zip(ticks.time_ms.tolist(), ticks.trade_id.tolist(),
                                     ticks.price.tolist(), ticks.qty.tolist(),
                                     ticks.buyer_is_maker.tolist(), strict=True):
                closed = on_trade(symbol, t, i, p, q, bool(m))
                if closed is not None and write:
                    self.store.add_bar(symbol, closed.as_row())
            n_replayed += len(ticks.time_ms)
            recent = self.store.read_trades(symbol, start_ms=last_ms - RING_REFILL_MS)
            self.rings[symbol].extend(
                recent.time_ms, recent.trade_id, recent.price, recent.qty, recent.buyer_is_maker
            )
            n_ring += len(recent.time_ms)
            if self._last_trade_ms is None or last_ms > self._last_trade_ms:
                self._last_trade_ms, self._last_trade_mono = last_ms, time.monotonic()
            if self._data_ms is None or last_ms > self._data_ms:
                self._data_ms = last_ms
        self._counts.update(counts.result())
        later = set(self.engine.deferred_symbols())  # days of bars and/or book
        deferred = [s for s in self.symbols if s in later]
        report = RestoreReport(
            len(self.symbols), n_bars, n_replayed, n_ring, time.perf_counter() - started,
            book_bars=n_book, deferred=len(deferred),
            history_seconds=None if deferred else 0.0,
        )
        self.restored = report
        log.info(
            "restore: %d symbols, %d 1s bars, %d trades replayed, %d ring ticks in %.2fs"
            " (the days of %d loading in the background)",
            report.symbols, report.bars, report.trades_replayed, report.ring_ticks, report.seconds,
            len(deferred),
        )
        if deferred:
            threading.Thread(target=self._load_histories, args=(deferred, report),
                             name="history-restore", daemon=True).start()
        return report

    def _stored_day(self, symbol: str, start_ms: int, end_ms: int) -> Bars:
        """The stored 1 s bars of a deferred history (:meth:`restore`)."""
        bars = _as_bars(self.store.read_bars(symbol, start_ms=start_ms, end_ms=end_ms))
        self._history_bars[symbol] = len(bars)
        return bars

    def _load_histories(self, symbols: list[str], report: RestoreReport) -> None:
        """The background half of :meth:`restore`: every deferred day, in order (a
        reader may have loaded some already), then the report with the totals."""
        started = time.perf_counter()
        for symbol in symbols:
            # A reader loading a day (the first pair's legs) goes first: two loads at
            # once would share the CPU (the GIL) and both take twice as long.
            while self.engine.history_loads and not self._stop.wait(0.01):
                pass
            if self._stop.is_set():
                return
            try:
                self.engine.load_deferred(symbol)
            except Exception:  # a store error: the symbol's first reader tries again
                if not self._stop.is_set():  # (else: the store closed under us)
                    log.exception("restore: loading the stored bars of %s failed", symbol)
                return
        got = self._history_bars
        self.restored = dataclasses.replace(
            report, bars=report.bars + sum(got.get(s, 0) for s in symbols),
            book_bars=report.book_bars + sum(got.get(("book", s), 0) for s in symbols),
            history_seconds=report.seconds + time.perf_counter() - started)
        log.info("restore: the days of %d symbols loaded in %.2fs", len(symbols),
                 time.perf_counter() - started)


class _Counts(threading.Thread):
    """Each symbol's stored trades (``COUNT(*)``, linear in the trades stored: ~1 s for
    a day of 10 liquid instruments) counted in a thread of its own while the restore
    goes on: SQLite counts inside one C call that releases the GIL, so on a second
    core it costs the restore nothing. :meth:`result` waits for it (before the restore
    returns, so before any live trade: the same figure as counted inline)."""

    def __init__(self, store, symbols: list[str]) -> None:
        super().__init__(name="restore-counts", daemon=True)
        self._store, self._symbols = store, symbols
        self._counts: dict[str, int] = {}
        self._error: BaseException | None = None
        self.start()

    def run(self) -> None:
        try:
            for symbol in self._symbols:
                self._counts[symbol] = self._store.count_trades(symbol)
        except BaseException as exc:  # re-raised in the restoring thread
            self._error = exc

    def result(self) -> dict[str, int]:
        self.join()
        if self._error is not None:
            raise self._error
        return self._counts


def _as_bars(stored) -> Bars:
    return Bars.from_columns({f: getattr(stored, f) for f in BAR_FIELDS}, tf_ms=1000)


class DbFollower(threading.Thread):
    """Follow a SQLite file written by another process (``--no-ingest``).

    Every ``interval_s`` it reads the trades with ids above the last one seen per
    symbol and passes them to ``Ingestor.on_trade`` (with writes off), so the
    dashboard is live beside a separate ``python -m ingest`` process.
    """

    def __init__(self, ingestor: Ingestor, *, interval_s: float = 0.5) -> None:
        super().__init__(name="db-follower", daemon=True)
        self.ingestor = ingestor
        self.interval_s = interval_s
        self._stop_event = threading.Event()
        self.last_ids: dict[str, int] = {}
        self.error: str | None = None
        self.polls = 0

    def run(self) -> None:
        store = self.ingestor.store
        # where the restore stopped (the rings' last trades), not the store's last ids
        # now: trades stored between the restore and this thread's start are read too
        self.last_ids = {
            name: int(last.trade_id) for name, ring in list(self.ingestor.rings.items())
            if (last := ring.last()) is not None
        }
        while not self._stop_event.wait(self.interval_s):
            try:
                for symbol, last in store.last_trade_ids().items():
                    seen = self.last_ids.get(symbol, -1)
                    if last <= seen:
                        continue
                    cols = store.read_trades_after_id(symbol, seen)
                    # the bare symbol and market (the ingestor names it), or without
                    # a universe the store's name as the symbol, as before instruments
                    inst = store.instrument(symbol)
                    bare = inst.symbol if self.ingestor.universe is not None else symbol
                    for i in range(len(cols.trade_id)):
                        self.ingestor.on_trade(
                            Trade(
                                bare,
                                int(cols.trade_id[i]),
                                int(cols.time_ms[i]),
                                float(cols.price[i]),
                                float(cols.qty[i]),
                                bool(cols.buyer_is_maker[i]),
                                int(cols.time_ms[i]),
                                inst.market,
                                inst.venue,
                            )
                        )
                    if len(cols.trade_id):
                        self.last_ids[symbol] = int(cols.trade_id[-1])
                self.polls += 1
                self.error = None
            except Exception as exc:  # a locked/busy DB is retried at the next poll
                self.error = f"{type(exc).__name__}: {exc}"
                log.warning("db follower: %s", self.error)

    def stop(self) -> None:
        self._stop_event.set()
