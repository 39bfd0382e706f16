"""Wiring of the ingest path: feed -> ring + store + market engine, and restart restore.

::

    TradeFeed thread --Trade--> Ingestor.on_trade
                                  +--> TickRing[symbol].append        (recent ticks, memory)
                                  +--> TickStore.add_trade            (writer thread, batched)
                                  +--> MarketEngine.on_trade --1 s bar closed--> TickStore.add_bar
    clock thread (every 100 ms) --> MarketEngine.on_clock(exchange time) --> closed bars -> store

The engine is mutated by two threads (the feed and the clock), so those two calls are
serialised by one lock; readers (Dash callbacks, API) only see the engine's immutable
snapshots and the rings' copies.

The clock closes bars when no trade comes. It runs on *exchange* time, estimated as the
trade time of the last trade plus the monotonic time since it arrived, because the
feed may be a replay of a recording from another day (wall clock would close every bar
at once) and the local clock may be off from Binance's.

``DbFollower`` is the read-only twin used by ``python app.py --no-ingest``: it polls the
SQLite file that another process is writing and pushes new trades through the same
``on_trade`` path, minus the writes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from analytics.bars import BAR_FIELDS, Bars
from analytics.engine import MarketEngine
from ingest.models import Trade
from ingest.ring import TickRing
from ingest.store import TickStore

log = logging.getLogger(__name__)

RING_REFILL_MS = 15 * 60_000  # recent ticks put back into the rings after a restart
DAY_MS = 86_400_000


@dataclass(frozen=True, slots=True)
class RestoreReport:
    symbols: int
    bars: int
    trades_replayed: int
    ring_ticks: int
    seconds: float


class Ingestor:
    """Owns the rings, the engine hooks and the store writes for a set of symbols."""

    def __init__(
        self,
        symbols: list[str],
        store: TickStore,
        engine: MarketEngine,
        *,
        ring_capacity: int = 2**21,
        write: bool = True,
        bar_close_delay_ms: int = 250,
    ) -> None:
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
        #: Called in the clock thread every tick (100 ms) with the exchange time, after
        #: the bars that were due closed and outside the engine lock: the place for
        #: server-side work that must run whether or not a browser is open (alerts).
        self.clock_listeners: list[Callable[[int], None]] = []
        self.restored: RestoreReport | None = None
        # Distinct trades per symbol: what the store held at restore plus every trade
        # accepted since (the feed drops duplicates before they get here).
        self._counts: dict[str, int] = dict.fromkeys(self.symbols, 0)
        # Recovered by back-fill; its own dict because another thread writes it.
        self._backfilled: dict[str, int] = {}
        self._rates: dict[str, float] = dict.fromkeys(self.symbols, 0.0)
        self._rate_prev: dict[str, int] = {}
        self._rate_mono = time.monotonic()

    # ------------------------------------------------------------------ hot path
    def on_trade(self, t: Trade) -> None:
        """Called in the feed thread for every new trade."""
        ring = self.rings.get(t.symbol)
        if ring is None:
            ring = self._add_symbol(t.symbol)
        ring.append(t.time_ms, t.trade_id, t.price, t.qty, t.buyer_is_maker)
        self._counts[t.symbol] = self._counts.get(t.symbol, 0) + 1
        if self.write:
            self.store.add_trade(t)
        with self._lock:
            closed = self.engine.on_trade(
                t.symbol, t.time_ms, t.trade_id, t.price, t.qty, t.buyer_is_maker
            )
            self._last_trade_ms = t.time_ms
            self._last_trade_mono = time.monotonic()
        if closed is not None and self.write:
            self.store.add_bar(t.symbol, closed.as_row())

    def on_gap(self, symbol: str, first_id: int, last_id: int) -> None:
        if self.write:
            self.store.add_gap(symbol, first_id, last_id, int(time.time() * 1000))

    def on_backfill(self, symbol: str, trades: list[Trade]) -> None:
        """Called in the back-fill thread with a page of recovered trades (ids ascending,
        all older than the live trade that revealed the gap).

        * store: every trade, exactly as live ones;
        * engine: fed under the lock. A trade in the still-open bucket is added to it
          (a bar builder takes any order inside its open bucket); a trade for a bucket
          already closed is only counted as late: published bars are never amended.
        * stored 1 s bars of those closed buckets are recomputed from the stored trades
          (``TickStore.rebuild_bars``), so history and a restart see complete bars;
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
        self._backfilled[symbol] = self._backfilled.get(symbol, 0) + len(trades)
        if not self.write:
            return
        # Buckets before the open one are closed (or were skipped) for good.
        limit = open_bar.ts if open_bar is not None else None
        late = [t.time_ms for t in trades if limit is None or t.time_ms < limit]
        if late:
            start = min(late) - min(late) % 1_000
            end = max(late) - max(late) % 1_000 + 1_000
            self.store.rebuild_bars(symbol, start, end)

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

    def _run_clock(self) -> None:
        while not self._stop.wait(0.1):
            self._update_rates()
            now = self.exchange_now_ms()
            if now is None:
                continue
            try:
                with self._lock:
                    closed = self.engine.on_clock(now - self.bar_close_delay_ms)
                if self.write:
                    for symbol, bar in closed:
                        self.store.add_bar(symbol, bar.as_row())
            except Exception:
                log.exception("bar clock failed")
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
    def restore(self) -> RestoreReport:
        """Put a day of stored 1 s bars back into the engine and refill the rings.

        For each symbol: load the stored 1 s bars of the last day, then re-run the stored
        trades of the still-open coarse bars (at most the largest timeframe, 5 min) through
        the engine so the open bars are exact, then refill the ring with the last
        ``RING_REFILL_MS`` of ticks. Returns what was restored.
        """
        started = time.perf_counter()
        n_bars = n_replayed = n_ring = 0
        last_ids = self.store.last_trade_ids()
        for symbol in sorted(set(self.symbols) | set(last_ids)):
            if symbol not in self.rings:
                self.rings[symbol] = TickRing(self._ring_capacity)
                self.symbols.append(symbol)
                self.engine.add_symbol(symbol)
            self._counts[symbol] = self.store.count_trades(symbol)
            cols = self.store.read_recent_trades(symbol, 1)
            if len(cols.time_ms) == 0:
                continue
            last_ms = int(cols.time_ms[-1])
            replay_from = self.engine.replay_start_ms(last_ms)
            stored = self.store.read_bars(symbol, start_ms=last_ms - DAY_MS, end_ms=replay_from)
            bars = Bars.from_columns({f: getattr(stored, f) for f in BAR_FIELDS}, tf_ms=1000)
            self.engine.load_bars(symbol, bars)
            n_bars += len(bars)
            ticks = self.store.read_trades(symbol, start_ms=replay_from)
            for i in range(len(ticks.time_ms)):
                closed = self.engine.on_trade(
                    symbol,
                    int(ticks.time_ms[i]),
                    int(ticks.trade_id[i]),
                    float(ticks.price[i]),
                    float(ticks.qty[i]),
                    bool(ticks.buyer_is_maker[i]),
                )
                if closed is not None and self.write:
                    self.store.add_bar(symbol, closed.as_row())
            n_replayed += len(ticks.time_ms)
            recent = self.store.read_trades(symbol, start_ms=last_ms - RING_REFILL_MS)
            self.rings[symbol].extend(
                recent.time_ms, recent.trade_id, recent.price, recent.qty, recent.buyer_is_maker
            )
            n_ring += len(recent.time_ms)
            if self._last_trade_ms is None or last_ms > self._last_trade_ms:
                self._last_trade_ms, self._last_trade_mono = last_ms, time.monotonic()
        report = RestoreReport(
            len(self.symbols), n_bars, n_replayed, n_ring, time.perf_counter() - started
        )
        self.restored = report
        log.info(
            "restore: %d symbols, %d 1s bars, %d trades replayed, %d ring ticks in %.2fs",
            report.symbols, report.bars, report.trades_replayed, report.ring_ticks, report.seconds,
        )
        return report


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
        self.last_ids = store.last_trade_ids()
        while not self._stop_event.wait(self.interval_s):
            try:
                for symbol, last in store.last_trade_ids().items():
                    seen = self.last_ids.get(symbol, -1)
                    if last <= seen:
                        continue
                    cols = store.read_trades_after_id(symbol, seen)
                    for i in range(len(cols.trade_id)):
                        self.ingestor.on_trade(
                            Trade(
                                symbol,
                                int(cols.trade_id[i]),
                                int(cols.time_ms[i]),
                                float(cols.price[i]),
                                float(cols.qty[i]),
                                bool(cols.buyer_is_maker[i]),
                                int(cols.time_ms[i]),
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
