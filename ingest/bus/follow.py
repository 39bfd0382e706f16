"""Feed a dashboard worker's Ingestor from the bus (``--no-ingest --bus URL``).

:class:`BusFeed` is the bus twin of ``ingest.pipeline.DbFollower`` and uses the same
entry points, so the worker's rings and engine are built by the same code as the
ingest process's: live trades go to ``Ingestor.on_trade``, back-filled pages to
``Ingestor.on_backfill``, session breaks to ``Ingestor.mark_break`` (writes off).

**Bars close where the publisher's closed.** The worker's own bar clock is off
(``Ingestor.external_clock``): a 1 s bar closes when a trade of the next bucket
arrives (as on the ingest side) or when a :class:`~ingest.bus.interface.ClockAdvanced`
is applied, and one is applied only once the worker has seen every live trade the
publisher had accepted before it (its watermarks). So a bus outage or a slow worker
delays a bar, never changes it; the bars equal the publisher's (a trade the
publisher counted late, older than a bar it had closed, may land in that bar here:
both sides count late trades in health).

**Nothing skipped, nothing twice.** Per instrument the feed keeps the last live id
it applied and the ranges of ids it holds (restore included). A live batch whose
``prev_id`` is above the last applied id means the bus lost entries (``MAXLEN``
trim, a restarted server): those trades are read from the store (``fetch``, the
runtime's callback) before the batch, retried while the store's writer catches up;
an id already held (a publisher's retried send, a back-fill of ids it had) is dropped.
"""

from __future__ import annotations

import bisect
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace

from analytics.instruments import Instrument
from ingest.bus.interface import (
    BarClosed,
    BookBatch,
    BusError,
    BusEvent,
    BusFollower,
    ClockAdvanced,
    FeedHealth,
    FetchTrades,
    GapSeen,
    SessionBreak,
    TradeBatch,
)
from ingest.models import Trade

log = logging.getLogger(__name__)

#: A clock event still waiting for its watermarks after this long is applied anyway
#: (the trades it waits for are neither on the bus nor in the store).
CLOCK_FORCE_S = 5.0
#: How long a store read for ids the bus lost is retried (the writer commits every
#: <= 250 ms; a store that cannot write for longer leaves them counted as missed).
FILL_RETRY_S = 3.0


class IdRanges:
    """Disjoint, sorted ``[lo, hi]`` runs of trade ids: O(1) for the next id of a
    run, O(log n) otherwise. Live ids come in runs, so a day is a handful of runs."""

    __slots__ = ("his", "los")

    def __init__(self) -> None:
        self.los: list[int] = []
        self.his: list[int] = []

    def __contains__(self, i: int) -> bool:
        k = bisect.bisect_right(self.los, i) - 1
        return k >= 0 and i <= self.his[k]

    def add(self, i: int) -> None:
        his = self.his
        if his and i == his[-1] + 1:
            his[-1] = i
            return
        if not his or i > his[-1] + 1:
            self.los.append(i)
            his.append(i)
            return
        self.add_range(i, i)

    def add_range(self, lo: int, hi: int) -> None:
        los, his = self.los, self.his
        k = bisect.bisect_left(his, lo - 1)  # first run that may touch or follow
        j = k
        while j < len(los) and los[j] <= hi + 1:
            lo, hi = min(lo, los[j]), max(hi, his[j])
            j += 1
        los[k:j] = [lo]
        his[k:j] = [hi]


def store_fetcher(store, name_of: Callable[[Instrument], str]) -> FetchTrades:
    """The store's trades of an instrument with ``after_id < id <= upto_id`` as
    :class:`Trade` (a ``TradeStore`` and how it names an instrument)."""

    def fetch(inst: Instrument, after_id: int, upto_id: int) -> list[Trade]:
        name = name_of(inst)
        cols = store.read_trades_after_id(name, after_id, limit=upto_id - after_id)
        out = []
        for k in range(len(cols.trade_id)):
            tid = int(cols.trade_id[k])
            if tid > upto_id:
                break
            t_ms = int(cols.time_ms[k])
            out.append(Trade(name, tid, t_ms, float(cols.price[k]), float(cols.qty[k]),
                             bool(cols.buyer_is_maker[k]), t_ms, inst.market, inst.venue))
        return out

    return fetch


class BusFeed(threading.Thread):
    """Follows the bus into an ``Ingestor`` (module notes); reconnects on its own."""

    def __init__(
        self,
        ingestor,
        follower: BusFollower,
        fetch: FetchTrades,
        *,
        name_of: Callable[[Instrument], str],
        resolve: Callable[[str], Instrument],
        block_ms: int = 200,
    ) -> None:
        super().__init__(name="bus-follower", daemon=True)
        self.ingestor = ingestor
        self.follower = follower
        self.fetch = fetch
        self.name_of = name_of
        self.block_ms = block_ms
        self._stop_event = threading.Event()
        self.last_live: dict[str, int] = {}  # instrument key -> last live id applied
        self.held: dict[str, IdRanges] = {}
        # What the restore put in the rings is held already (every stored id up to it).
        for name, ring in list(ingestor.rings.items()):
            last = ring.last()
            if last is not None:
                key = resolve(name).key
                self.last_live[key] = int(last.trade_id)
                self.held.setdefault(key, IdRanges()).add_range(0, int(last.trade_id))
        self._clocks: list[tuple[ClockAdvanced, float]] = []
        self.connected = False
        self.error: str | None = None
        self.consumed = 0  # trades applied from the bus
        self.filled_from_store = 0
        self.missed = 0  # live trades neither the bus nor the store had in time
        self.duplicates = 0
        self.clocks_applied = 0
        self.clocks_forced = 0
        self.bars_seen = 0
        self.books_seen = 0  # best bid/ask updates applied (Ingestor.on_book)
        self.gaps_seen = 0
        self.publisher_feed: dict | None = None
        self.publisher_health_ms: int | None = None
        self.last_event_mono: float | None = None

    # ------------------------------------------------------------------ thread
    def run(self) -> None:
        backoff = 0.1
        while not self._stop_event.is_set():
            try:
                events = self.follower.read(self.block_ms)
            except BusError as exc:
                if self.connected or self.error is None:
                    log.warning("bus follower: %s; retrying", exc)
                self.connected, self.error = False, f"{exc}"
                self._stop_event.wait(backoff)
                backoff = min(2.0, backoff * 2)
                continue
            if not self.connected:
                log.info("bus follower: connected to %s", self.follower.url)
            self.connected, self.error, backoff = True, None, 0.1
            try:
                self.apply(events)
            except Exception:
                log.exception("bus follower: applying events failed")

    def stop(self) -> None:
        self._stop_event.set()

    # ------------------------------------------------------------------ events
    def apply(self, events: list[BusEvent]) -> None:
        """Apply one read's events (also called directly by tests)."""
        if events:
            self.last_event_mono = time.monotonic()
        for ev in events:
            if isinstance(ev, TradeBatch):
                self._trades(ev)
            elif isinstance(ev, BookBatch):  # top of book: the same engine path
                on_book = self.ingestor.on_book
                for book in ev.books:
                    on_book(book)
                self.books_seen += len(ev.books)
            elif isinstance(ev, ClockAdvanced):
                self._clocks.append((ev, time.monotonic()))
            elif isinstance(ev, SessionBreak):
                name = self.name_of(ev.instrument)
                if ev.ts_ms not in self.ingestor.engine.breaks(name):
                    self.ingestor.mark_break(name, ev.ts_ms, ev.reason, store=False)
            elif isinstance(ev, BarClosed):
                self.bars_seen += 1
            elif isinstance(ev, GapSeen):
                self.gaps_seen += 1
            elif isinstance(ev, FeedHealth):
                self.publisher_feed, self.publisher_health_ms = ev.health, ev.sent_ms
        self._apply_clocks()

    def _trades(self, ev: TradeBatch) -> None:
        key = ev.instrument.key
        held = self.held.get(key)
        if held is None:
            held = self.held[key] = IdRanges()
        # rings and engine are keyed by the store's name (``perp:BTCUSDT`` when the
        # worker's --market is another), as DbFollower's trades are
        name = self.name_of(ev.instrument)
        trades = ev.trades
        if trades and trades[0].symbol != name:
            trades = tuple(replace(t, symbol=name) for t in trades)
        if ev.backfill:
            fresh = [t for t in trades if t.trade_id not in held]
            self.duplicates += len(trades) - len(fresh)
            if fresh:
                for t in fresh:
                    held.add(t.trade_id)
                self.ingestor.on_backfill(name, fresh)
                self.consumed += len(fresh)
            return
        last = self.last_live.get(key, -1)
        if ev.prev_id is not None and ev.prev_id > last:
            self._fill(ev.instrument, last, ev.prev_id, held)
            last = self.last_live.get(key, -1)
        on_trade = self.ingestor.on_trade
        clocks = self._clocks
        for t in trades:
            tid = t.trade_id
            if tid <= last or tid in held:
                self.duplicates += 1
                continue
            on_trade(t)
            held.add(tid)
            last = tid
            self.last_live[key] = tid
            self.consumed += 1
            if clocks and clocks[0][0].watermarks.get(key) == tid:
                self._apply_clocks()

    def _fill(self, inst: Instrument, after: int, upto: int, held: IdRanges) -> None:
        """Live ids ``(after, upto]`` the bus no longer has: from the store."""
        deadline = time.monotonic() + FILL_RETRY_S
        while True:
            got = self.fetch(inst, after, upto)
            if (got and got[-1].trade_id == upto) or time.monotonic() > deadline \
                    or self._stop_event.is_set():
                break
            time.sleep(0.05)
        n = 0
        for t in got:
            if t.trade_id not in held:
                self.ingestor.on_trade(t)
                held.add(t.trade_id)
                n += 1
        self.filled_from_store += n
        if not got or got[-1].trade_id != upto:
            self.missed += 1
            log.warning("bus follower: %s ids %d..%d were trimmed from the bus and are "
                        "not (all) in the store", inst.key, after + 1, upto)
        else:
            log.info("bus follower: %s: %d trades the bus had dropped read from the store",
                     inst.key, n)
        self.last_live[inst.key] = max(upto, self.last_live.get(inst.key, -1))

    def _apply_clocks(self) -> None:
        clocks = self._clocks
        now = time.monotonic()
        while clocks:
            ev, since = clocks[0]
            ready = all(self.last_live.get(k, -1) >= w for k, w in ev.watermarks.items())
            if not ready:
                if now - since < CLOCK_FORCE_S:
                    if hasattr(self.follower, "refresh_soon"):
                        self.follower.refresh_soon()  # a stream not found yet?
                    return
                self.clocks_forced += 1
            self.ingestor.close_bars_until(ev.close_ms)
            self.clocks_applied += 1
            clocks.pop(0)

    # ------------------------------------------------------------------ health
    def status(self) -> dict:
        lag = self.follower.lag_ms()
        return {
            **self.follower.status(),
            "role": "follow",
            "connected": self.connected,
            "error": self.error,
            "consumed": self.consumed,
            "lag_ms": lag,
            "filled_from_store": self.filled_from_store,
            "missed": self.missed,
            "duplicates": self.duplicates,
            "clocks_pending": len(self._clocks),
            "clocks_forced": self.clocks_forced,
            "bars_seen": self.bars_seen,
            "books_seen": self.books_seen,
            "gaps_seen": self.gaps_seen,
            "publisher_health_ms": self.publisher_health_ms,
        }
