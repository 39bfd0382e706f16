"""The live market engine: bars per symbol and timeframe, pair statistics per selection.

Stateful but I/O-free. One writer (the ingest path, serialised by :attr:`lock`) calls
:meth:`MarketEngine.on_trade` for every trade and :meth:`MarketEngine.on_clock` on a
timer; readers (Dash callbacks, API) call :meth:`bars` and :meth:`pair`, which return
read-only views and frozen snapshots.

Per symbol and timeframe (1 s, 1 m, 5 m by default) a :class:`~analytics.bars.BarBuilder`
closes bars on the first tick past the bucket or on the clock, and closed bars go into a
:class:`~analytics.series.ColumnBuffer` bounded to one day.

Pairs are tracked on demand: the first request for ``(a, b, tf, window, regression,
prices)`` builds the day's series in one vectorised pass (:func:`analytics.pair.pair_series`
over :func:`analytics.align.align_pair`), warms an :class:`~analytics.live.IncrementalPair`
with the tail of that history, and from then on every closed bar updates the pair in
O(1) (plus, on the bars of the robust refit schedule, one window fit: O(w) Huber,
O(w^2) Theil-Sen). Nothing recomputes the day on a refresh.

**When an aligned point is final.** A pair point at bucket ``ts`` uses both legs' closes at
``ts`` (carried forward when a leg had no trade). It is emitted by a
:class:`~analytics.align.PairAligner` once each leg has closed a bar at or after ``ts``
or the clock has passed ``ts + tf``; builders get the clock first, so a tick of the
slower leg for bucket ``ts`` can never arrive after its point was published. This gives
exactly :func:`~analytics.align.align_pair` on the same closed bars.

**Pairs on mid prices** (``source="mid"``, a :class:`PairKey` field): the same tracker
fed the legs' mid bars instead of their trade bars (:mod:`analytics.midprice`): the
history from :meth:`MarketEngine.book_bars`, then each mid bar a
:class:`~analytics.midprice.MidCloser` closes from the 1 s book bars and the clock
(:meth:`MarketEngine.on_book_bar_closed`, before the pairs see the clock tick).

**Live (tick-level) z-score.** ``PairSnapshot.live_zscore(price_a, price_b)`` applies the
last closed bar's alpha, beta and spread-window mean/std to the latest traded prices:
O(1), computed at read time by the 500 ms callbacks.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from analytics.align import PairAligner, align_pair
from analytics.bars import BAR_DTYPES, BAR_FIELDS, Bar, BarBuilder, Bars, resample_bars
from analytics.book import (
    BOOK_DTYPES,
    BookBar,
    BookBarBuilder,
    BookBars,
    BookResampler,
    resample_book,
)
from analytics.errors import InsufficientData, NoQuotes
from analytics.live import IncrementalPair
from analytics.midprice import MidCloser
from analytics.midprice import mid_bars as mid_bars_from_book
from analytics.pair import PRICE_MODES, REGRESSIONS, SOURCES, pair_series
from analytics.registry import PAIR_COLUMNS, PAIR_DTYPES, pair_record, pair_table
from analytics.robust import refit_step
from analytics.series import ColumnBuffer
from analytics.sessions import EMPTY_BREAKS, break_buckets, last_segment, union_breaks
from analytics.timeframes import DAY_MS

log = logging.getLogger(__name__)

DEFAULT_TIMEFRAMES_MS = (1_000, 60_000, 300_000)
MAX_TRACKED_PAIRS = 48
#: Rows a symbol's bar series starts with per timeframe (it grows to a day: series.py).
SERIES_INITIAL_ROWS = 64
#: The row of a point whose hedge is not defined yet: its bar's prices, NaN elsewhere.
_WARMING = dict.fromkeys(PAIR_COLUMNS, np.nan)


@dataclass(frozen=True, slots=True)
class PairKey:
    a: str
    b: str
    tf_ms: int
    window: int
    regression: str
    prices: str
    #: ``"trade"`` (bars' closes) or ``"mid"`` (:mod:`analytics.midprice`).
    source: str = "trade"


def _columns_len(self) -> int:
    return len(self.ts)


#: Read-only column views of a pair's series (the last day), one per declared column.
PairColumns = pair_record(
    "PairColumns", __name__,
    "Read-only column views of a pair's series (the last day), one per column of "
    "analytics.registry.PAIR_COLUMNS.",
    np.ndarray, namespace={"__len__": _columns_len},
)


@dataclass(frozen=True, slots=True)
class PairSnapshot:
    """Immutable state of one tracked pair, swapped whole on every update.

    ``bar_seq`` counts aligned points processed: pages redraw bar charts when it changes.
    ``spread_mean``/``spread_std`` are the statistics of the spread window ending at the
    last point (NaN until defined): the live z-score uses them.
    """

    key: PairKey
    series: PairColumns
    bar_seq: int
    refit_step: int
    alpha: float
    beta: float
    spread_mean: float
    spread_std: float
    needs: dict = field(default_factory=dict)
    #: Session starts inside the pair's data, as bucket starts (``ts`` scale): a point
    #: with ``ts >= breaks[i]`` is in a later session than the points before it.
    breaks: np.ndarray = field(default_factory=lambda: EMPTY_BREAKS)
    #: Every break of the pair's legs (raw ms, first trade after each), for
    #: :meth:`live_zscore`.
    session_breaks_ms: np.ndarray = field(default_factory=lambda: EMPTY_BREAKS)

    def frame(self) -> pd.DataFrame:
        return pair_table(self.series)

    def live_zscore(
        self, price_a: float | None, price_b: float | None, at_ms: int | None = None
    ) -> float | None:
        """z of the latest traded prices against the last closed window (O(1)).

        ``at_ms`` (the later trade time of the two prices): None when a session break
        lies between the last closed point's bucket and it (``B >= ts_last + tf`` and
        ``B <= at_ms``): the window's statistics belong to the session before it.
        """
        if price_a is None or price_b is None:
            return None
        brk = self.session_breaks_ms
        if at_ms is not None and len(brk) and len(self.series.ts):
            first_new = int(self.series.ts[-1]) + self.key.tf_ms
            i = int(np.searchsorted(brk, first_new, side="left"))
            if i < len(brk) and int(brk[i]) <= at_ms:
                return None
        sd = self.spread_std
        if not np.isfinite(sd) or sd <= 0 or not np.isfinite(self.beta):
            return None
        if self.key.prices == "log":
            if price_a <= 0 or price_b <= 0:
                return None
            price_a, price_b = float(np.log(price_a)), float(np.log(price_b))
        spread = price_a - self.alpha - self.beta * price_b
        return (spread - self.spread_mean) / sd


class PairTracker:
    """One pair selection: a :class:`PairAligner` feeding an :class:`IncrementalPair`."""

    def __init__(self, key: PairKey, max_rows: int, breaks: object | None = None) -> None:
        self.key = key
        self._raw_breaks = union_breaks(breaks)
        self._breaks = break_buckets(self._raw_breaks, key.tf_ms)
        self.aligner = PairAligner(key.tf_ms)
        # robust refit schedule: a function of the selection and bar time only
        self.refit_step = refit_step(key.window, key.regression)
        self.inc = self._new_incremental()
        self.buffer = ColumnBuffer(PAIR_DTYPES, max_rows)
        self._seen_ts: dict[str, int] = {"a": -(2**62), "b": -(2**62)}
        self._last_ts: int | None = None  # last aligned point in the series
        self.last_used = time.monotonic()
        self.snapshot: PairSnapshot | None = None

    def _new_incremental(self) -> IncrementalPair:
        k = self.key
        return IncrementalPair(
            k.window, regression=k.regression, prices=k.prices, refit_step=self.refit_step,
            tf_ms=k.tf_ms,
        )  # fmt: skip

    def set_breaks(self, breaks: object | None) -> None:
        """The pair's breaks (raw ms, both legs) changed: points from the bucket of a
        new break on start a new session (only breaks after the last point: the engine
        rebuilds a tracker that already passed one)."""
        self._raw_breaks = union_breaks(breaks)
        self._breaks = break_buckets(self._raw_breaks, self.key.tf_ms)
        if self.snapshot is not None:
            self._publish()

    @property
    def last_point_ts(self) -> int | None:
        """Bucket of the last aligned point in the series (None before the first)."""
        return self._last_ts

    def _opens_session(self, ts: int) -> bool:
        """True when a break bucket lies in ``(last point, ts]``."""
        bb = self._breaks
        if self._last_ts is None or not len(bb):
            return False
        i = int(np.searchsorted(bb, self._last_ts, side="right"))
        return i < len(bb) and int(bb[i]) <= ts

    def seen_ts(self, leg: str) -> int:
        """Start of the last bar of ``leg`` this tracker has taken in."""
        return self._seen_ts[leg]

    # -- building from history ------------------------------------------------------
    def load_history(self, bars_a: Bars, bars_b: Bars, clock_ms: int | None) -> None:
        """Vectorised series up to the last bucket both legs have closed, then prime.

        Points up to ``L = min(last bar of a, last bar of b)`` are final whatever comes
        next, so they are computed in one batch pass; the aligner is then given each
        leg's last bar at or before ``L`` (the close it carries) and every later bar,
        and the points it emits after ``L`` continue the series incrementally.
        """
        k = self.key
        cut = None
        if len(bars_a) and len(bars_b):
            cut = int(min(bars_a.ts[-1], bars_b.ts[-1]))
            aligned = align_pair(
                _head(bars_a, cut + 1), _head(bars_b, cut + 1), max_bars=self.buffer.max_rows
            )
            n = len(aligned)
            if n:
                series = pair_series(
                    aligned.ts, aligned.a, aligned.b,
                    window=k.window, regression=k.regression, prices=k.prices,
                    refit_step=self.refit_step, breaks=self._breaks, tf_ms=k.tf_ms,
                )
                self.buffer.extend({f: getattr(series, f) for f in PAIR_COLUMNS})
                self._last_ts = int(aligned.ts[-1])
                # Warm the incremental twin on the bars that determine its state (the
                # last 2w+1 of the last session; the Kalman filter's whole session,
                # stepped fast).
                s0 = last_segment(aligned.ts, self._breaks)
                self.inc.warm(aligned.ts[s0:], aligned.a[s0:], aligned.b[s0:])
        for leg, bars in (("a", bars_a), ("b", bars_b)):
            first = 0
            if cut is not None:
                first = max(int(np.searchsorted(bars.ts, cut, side="right")) - 1, 0)
            for i in range(first, len(bars)):
                self.on_bar(leg, bars.bar(i), publish=False)
        if clock_ms is not None:
            self._consume(self.aligner.on_clock(clock_ms))
        self._publish()

    # -- live -----------------------------------------------------------------------
    def on_bar(self, leg: str, bar: Bar, *, publish: bool = True) -> None:
        if bar.ts <= self._seen_ts[leg]:
            return
        self._seen_ts[leg] = bar.ts
        if self._consume(self.aligner.on_bar(leg, bar)) and publish:
            self._publish()

    def on_clock(self, now_ms: int) -> None:
        if self._consume(self.aligner.on_clock(now_ms)):
            self._publish()

    def _consume(self, points) -> bool:
        emitted = False
        for ts, ca, cb in points:
            if self._last_ts is not None and ts <= self._last_ts:
                continue  # already in the batch-built history
            if self._opens_session(ts):
                self.inc = self._new_incremental()  # no window spans a break
            pt = self.inc.update(ts, ca, cb)
            if pt is None:
                vals = {**_WARMING, "ts": ts, "price_a": ca, "price_b": cb}
                self.buffer.append([vals[c] for c in PAIR_COLUMNS])
            else:
                self.buffer.append([getattr(pt, c) for c in PAIR_COLUMNS])
            self._last_ts = ts
            emitted = True
        return emitted

    def _publish(self) -> None:
        v = self.buffer.view()
        mean, std = self.inc.spread_stats()
        last = self.buffer.last()
        self.snapshot = PairSnapshot(
            key=self.key,
            series=PairColumns(**{f: v[f] for f in PAIR_COLUMNS}),
            bar_seq=self.buffer.appended,
            refit_step=self.refit_step,
            alpha=float(last["alpha"]) if last else np.nan,
            beta=float(last["beta"]) if last else np.nan,
            spread_mean=float(mean),
            spread_std=float(std),
            needs=self.inc.needs(),
            breaks=self._session_starts(v["ts"]),
            session_breaks_ms=self._raw_breaks,
        )

    def _session_starts(self, ts: np.ndarray) -> np.ndarray:
        """Break buckets inside the kept series (after its first point)."""
        bb = self._breaks
        if not len(bb) or not len(ts):
            return EMPTY_BREAKS
        return bb[(bb > ts[0]) & (bb <= ts[-1])]


class _BookState:
    """One instrument's top of book: the 1 s builder, a resampler per coarser
    timeframe, and the closed book bars per timeframe (a day at most, grown as bars
    come, not allocated up front)."""

    __slots__ = ("builder", "coarse", "buffers", "first_cover", "floor_seen")

    def __init__(self, timeframes_ms: tuple[int, ...]) -> None:
        self.builder = BookBarBuilder(1_000)
        self.coarse = {tf: BookResampler(tf) for tf in timeframes_ms if tf != 1_000}
        self.buffers = {
            tf: ColumnBuffer(BOOK_DTYPES, DAY_MS // tf, initial_rows=64) for tf in timeframes_ms
        }
        #: cover_ms of the first bar per timeframe (only the very first can be partial)
        self.first_cover: dict[int, int | None] = {}
        self.floor_seen: int | None = None

    def append(self, tf: int, bar: BookBar) -> None:
        buf = self.buffers[tf]
        if buf.appended == 0:
            self.first_cover[tf] = bar.cover_ms
        buf.append(bar.as_row())


def _resume_open_bucket(rs, fine: BookBars, floor: int, tf: int) -> None:
    """Put the seconds of the still-open ``tf`` bucket (from ``floor - floor % tf``)
    back into its resampler, after the second before it (the quote it opens with)."""
    open_from = int(np.searchsorted(fine.ts, floor - floor % tf, side="left"))
    if open_from > 0:
        rs.restore(_fine_bar(fine, open_from - 1), floor)
    for i in range(open_from, len(fine)):
        rs.on_bar(_fine_bar(fine, i))
    rs.on_floor(floor)


def _resume_quote(st, last, floor: int) -> None:
    """The quote in force at ``floor`` (the last stored row) into the 1 s builder."""
    st.builder.restore(float(last["bid"]), float(last["ask"]), float(last["bid_qty"]),
                       float(last["ask_qty"]), floor)  # fmt: skip
    st.floor_seen = floor


def _fine_bar(book: BookBars, i: int) -> BookBar:
    return BookBar(int(book.ts[i]), float(book.bid[i]), float(book.ask[i]),
                   float(book.bid_qty[i]), float(book.ask_qty[i]),
                   float(book.spread_bps_twa[i]), int(book.updates[i]),
                   book.first_cover_ms if i == 0 else None)  # fmt: skip


def _owns(lock) -> bool:
    """Does this thread hold ``lock`` (an RLock)? Unknown (no ``_is_owned``): True,
    the safe answer for :meth:`MarketEngine.load_deferred` (never wait)."""
    owned = getattr(lock, "_is_owned", None)
    return True if owned is None else bool(owned())


def _fine_book(frame: pd.DataFrame) -> BookBars:
    """Stored 1 s book rows (any order, a ts twice: the later row) as BookBars."""
    f = frame.sort_values("ts", kind="stable").drop_duplicates("ts", keep="last")
    return BookBars.from_columns({c: f[c].to_numpy() for c in BOOK_DTYPES}, 1_000)


def _prepended(buf: ColumnBuffer, older: dict, n_older: int) -> ColumnBuffer:
    """A new buffer like ``buf`` holding ``older`` rows, then ``buf``'s rows: a deferred
    history put before what was appended since (``appended`` counts both)."""
    fresh = ColumnBuffer(buf.dtypes, buf.max_rows, initial_rows=SERIES_INITIAL_ROWS)
    fresh.extend(older)
    fresh.extend(buf.view())
    fresh.appended = n_older + buf.appended
    return fresh


def _head(bars: Bars, frontier: int) -> Bars:
    """Bars with ``ts < frontier``."""
    n = int(np.searchsorted(bars.ts, frontier, side="left"))
    if n == len(bars):
        return bars
    cols = bars.columns()
    return Bars.from_columns({f: cols[f][:n] for f in BAR_FIELDS}, tf_ms=bars.tf_ms)


class MarketEngine:
    """Bars for every symbol and timeframe, and on-demand incremental pair tracking."""

    def __init__(
        self,
        symbols: list[str],
        *,
        timeframes_ms: tuple[int, ...] = DEFAULT_TIMEFRAMES_MS,
        max_pairs: int = MAX_TRACKED_PAIRS,
    ) -> None:
        if 1_000 not in timeframes_ms:
            raise ValueError("timeframes_ms must include 1000 (the stored 1 s bars)")
        self.timeframes_ms = tuple(sorted(timeframes_ms))
        self.max_pairs = max_pairs
        #: Serialises writers (feed thread, clock thread, pair registration).
        self.lock = threading.RLock()
        self._builders: dict[str, dict[int, BarBuilder]] = {}
        self._series: dict[str, dict[int, ColumnBuffer]] = {}
        self._pairs: dict[PairKey, PairTracker] = {}
        #: (symbol, tf, source) -> trackers with that leg
        self._by_leg: dict[tuple[str, int, str], list[PairTracker]] = {}
        #: Mid bars per symbol and timeframe, closed from the 1 s book bars
        #: (:mod:`analytics.midprice`): what ``source="mid"`` pairs are fed.
        self._mids: dict[str, dict[int, MidCloser]] = {}
        self.bar_closes = 0
        self._clock_ms: int | None = None
        #: Top of book per instrument (:class:`_BookState`), created on its first quote
        #: or restore: an instrument without book data costs nothing.
        self._book: dict[str, _BookState] = {}
        #: The 1 s book bars the last :meth:`on_clock` closed, ``(name, BookBar)``
        #: (replaced by each call; the ingest path stores them).
        self.clock_closed_book: list[tuple[str, BookBar]] = []
        #: Session breaks per symbol (sorted int64 ms, see :mod:`analytics.sessions`).
        self._breaks: dict[str, np.ndarray] = {}
        #: ("bars" | "book", symbol) -> loader of its stored history not put in yet
        #: (:meth:`defer_history`, :meth:`restore_book_recent`)
        self._deferred: dict[tuple[str, str], object] = {}
        #: loads running now (:attr:`history_loads`: a background loader yields to them)
        self._loads = 0
        self._loads_lock = threading.Lock()
        self._loading: dict[tuple, threading.Event] = {}  # key -> set when its load ends
        for s in symbols:
            self.add_symbol(s)

    # ------------------------------------------------------------------ symbols
    @property
    def symbols(self) -> list[str]:
        return list(self._builders)

    def add_symbol(self, symbol: str) -> None:
        with self.lock:
            if symbol in self._builders:
                return
            self._builders[symbol] = {tf: BarBuilder(tf) for tf in self.timeframes_ms}
            self._mids[symbol] = {tf: MidCloser(tf) for tf in self.timeframes_ms}
            # Grown as bars come (analytics/series.py): an idle instrument holds a few
            # rows per timeframe, a liquid one a day's worth after its first hours.
            self._series[symbol] = {
                tf: ColumnBuffer(BAR_DTYPES, DAY_MS // tf, initial_rows=SERIES_INITIAL_ROWS)
                for tf in self.timeframes_ms
            }

    def replay_start_ms(self, last_ms: int) -> int:
        """Start of the still-open bucket of the largest timeframe containing ``last_ms``."""
        tf = self.timeframes_ms[-1]
        return last_ms - last_ms % tf

    def load_bars(self, symbol: str, bars_1s: Bars) -> None:
        """Restore history from stored 1 s bars (all coarse buckets must be complete)."""
        self.add_symbol(symbol)
        with self.lock:
            for tf, buf in self._series[symbol].items():
                bars = bars_1s if tf == 1_000 else resample_bars(bars_1s, tf_ms=tf)
                buf.extend(bars.columns())

    def defer_history(self, symbol: str, load) -> None:
        """Restore ``symbol``'s stored 1 s bars LATER: ``load()`` returns them (as for
        :meth:`load_bars`: coarse buckets complete, every bar before any bar appended
        from now on). The first reader of the symbol (:meth:`bars`, :meth:`pair`) or
        :meth:`load_deferred` runs it; bars closed meanwhile (a restart's re-run of the
        open buckets, live trades) stay after them. The series are then exactly those
        of ``load_bars`` followed by the same appends: history first, then
        ``extend`` of the rows appended since, ``appended`` the sum of both.

        Why: reading a day of 1 s bars is most of a cold restart (0.25 s per liquid
        instrument here, mostly the driver building Python rows), and a pair needs
        only its two legs' days; the rest load in the background (ingest/pipeline.py)."""
        self.add_symbol(symbol)
        with self.lock:
            self._deferred[("bars", symbol)] = load

    def buffer_bytes(self) -> int:
        """Bytes of every bar and book series held (they grow with the data:
        analytics/series.py); what ``/api/health`` reports with the rings."""
        total = 0
        for series in list(self._series.values()):
            total += sum(buf.nbytes for buf in list(series.values()))
        for st in list(self._book.values()):
            total += sum(buf.nbytes for buf in list(st.buffers.values()))
        return total

    def reset_after_fork(self) -> None:
        """In a forked child (a background job): fresh locks, and no load in progress
        (a parent's load is not running here: its day stays deferred and the child's
        first reader loads it)."""
        self.lock = threading.RLock()
        self._loads_lock = threading.Lock()
        self._loading = {}
        self._loads = 0

    def deferred_symbols(self) -> list[str]:
        """Symbols whose stored history is not in yet (:meth:`defer_history`)."""
        return sorted({sym for _, sym in self._deferred})

    @property
    def history_loads(self) -> int:
        """Deferred histories being loaded right now (by readers or a background loader)."""
        return self._loads

    def load_deferred(self, symbol: str) -> bool:
        """Put ``symbol``'s deferred histories (bars, book) in now (no-op when there
        are none); True if this call put one in. The store read runs without
        :attr:`lock` (the feed keeps going), the swap under it. One load per history:
        a second reader waits for the load in progress, unless it holds :attr:`lock`
        (a reader of several symbols under it): the loader needs that lock for its
        swap, so such a reader loads a copy itself and the later one is discarded."""
        put = self._load_one(("bars", symbol), self._put_history)
        return self._load_one(("book", symbol), self._put_book_history) or put

    def _load_one(self, key: tuple[str, str], put) -> bool:
        while True:
            load = self._deferred.get(key)
            if load is None:
                return False
            with self._loads_lock:
                done = self._loading.get(key)
                mine = done is None
                if mine:
                    done = self._loading[key] = threading.Event()
                    self._loads += 1
            if not mine and not _owns(self.lock):
                done.wait()
                continue  # loaded (or the load failed: then try it here)
            try:
                return put(key, load)
            finally:
                if mine:  # after the swap: a waiter wakes to find the history in
                    with self._loads_lock:
                        self._loads -= 1
                        del self._loading[key]
                    done.set()

    def _put_history(self, key: tuple[str, str], load) -> bool:
        """Read a deferred day (no lock) and put it before the bars appended since."""
        symbol = key[1]
        hist = load()
        coarse = {tf: hist if tf == 1_000 else resample_bars(hist, tf_ms=tf)
                  for tf in self.timeframes_ms}
        with self.lock:
            if self._deferred.get(key) is not load:
                return False  # another thread put it in meanwhile
            series = self._series[symbol]
            for tf, buf in series.items():
                series[tf] = _prepended(buf, coarse[tf].columns(), len(coarse[tf]))
            del self._deferred[key]
        return True

    def _put_book_history(self, key: tuple[str, str], load) -> bool:
        """Read deferred book bars (no lock) and put them, and the coarse book bars of
        their complete buckets, before the book bars appended since
        (:meth:`restore_book_recent`)."""
        name = key[1]
        frame = load()
        fine = _fine_book(frame)
        coarse = {tf: resample_book(fine, tf) for tf in self.timeframes_ms if tf != 1_000}
        with self.lock:
            if self._deferred.get(key) is not load:
                return False
            st = self._book[name]
            for tf, buf in st.buffers.items():
                part = fine if tf == 1_000 else coarse[tf]
                st.buffers[tf] = _prepended(buf, part.columns(), len(part))
                if tf != 1_000 and len(part):
                    st.first_cover[tf] = part.first_cover_ms  # the whole day's first
            del self._deferred[key]
        return True

    # ------------------------------------------------------------------ breaks
    def mark_break(self, symbol: str, ts_ms: int, reason: str = "") -> None:
        """Record a session break of ``symbol``: ``ts_ms`` is its first trade after it.

        A bar bucket containing ``ts_ms`` or later belongs to the new session
        (:mod:`analytics.sessions`): no pair window spans the break. Call it before
        feeding that trade (live), or for every stored break before :meth:`load_bars`
        (restart). A tracked pair that already holds points of the new session (a
        break marked late) is dropped and rebuilt from its bars on the next request.
        """
        ts_ms = int(ts_ms)
        with self.lock:
            old = self._breaks.get(symbol, EMPTY_BREAKS)
            if ts_ms in old:
                return
            self._breaks[symbol] = union_breaks(old, [ts_ms])
            for key, tr in list(self._pairs.items()):
                if symbol not in (key.a, key.b):
                    continue
                bucket = ts_ms - ts_ms % key.tf_ms
                if tr.last_point_ts is not None and tr.last_point_ts >= bucket:
                    self._unregister(tr)
                else:
                    tr.set_breaks(self.pair_breaks(key.a, key.b))
        if reason:
            log.info("session break %s at %d: %s", symbol, ts_ms, reason)

    def breaks(self, symbol: str) -> np.ndarray:
        """Session breaks of ``symbol``: sorted int64 ms (first trade after each)."""
        return self._breaks.get(symbol, EMPTY_BREAKS)

    def pair_breaks(self, a: str, b: str) -> np.ndarray:
        """A pair's breaks: the union of its legs' breaks."""
        return union_breaks(self.breaks(a), self.breaks(b))

    # ------------------------------------------------------------------ writers
    def on_trade(
        self, symbol: str, time_ms: int, trade_id: int, price: float, qty: float, m: bool
    ) -> Bar | None:
        """Feed one trade; return the 1 s bar it closed (for the store), if any."""
        builders = self._builders.get(symbol)
        if builders is None:
            self.add_symbol(symbol)
            builders = self._builders[symbol]
        closed_1s = None
        with self.lock:
            for tf, builder in builders.items():
                closed = builder.on_tick(time_ms, trade_id, price, qty, m)
                if closed is not None:
                    self._closed(symbol, tf, closed)
                    if tf == 1_000:
                        closed_1s = closed
        return closed_1s

    def late_ticks(self, symbol: str) -> int:
        """Trades of ``symbol`` that came after their 1 s bucket was published."""
        builder = self._builders.get(symbol, {}).get(1_000)
        return 0 if builder is None else builder.late_ticks

    def final_ms(self, tf_ms: int) -> int | None:
        """Every ``tf_ms`` bucket ``[ts, ts + tf)`` with ``ts + tf <= final_ms`` is final
        for EVERY symbol: the lowest bar-builder floor at ``tf_ms`` (or at the finest
        timeframe dividing it). A symbol can still close an earlier bucket than another
        (its trade in a later bucket closes it, the clock closes the quiet ones), so a
        market-wide read pins its window below this (the market screen). None before
        the first trade or clock."""
        with self.lock:
            tfs = [t for t in self.timeframes_ms if tf_ms % t == 0]
            if not tfs:
                return None
            base = tf_ms if tf_ms in tfs else max(tfs)
            floors = [b[base].floor for b in self._builders.values()]
        floors = [f for f in floors if f is not None]
        return min(floors) if floors else None

    def on_clock(self, now_ms: int) -> list[tuple[str, Bar]]:
        """Close every bar whose time is up; return the closed 1 s bars."""
        out = []
        with self.lock:
            for symbol, builders in self._builders.items():
                for tf, builder in builders.items():
                    closed = builder.on_clock(now_ms)
                    if closed is not None:
                        self._closed(symbol, tf, closed)
                        if tf == 1_000:
                            out.append((symbol, closed))
            self._clock_ms = now_ms
            self.clock_closed_book = self._book_on_clock(now_ms)
            self._mids_on_clock(now_ms)
            for tr in self._pairs.values():
                tr.on_clock(now_ms)
        return out

    def _closed(self, symbol: str, tf: int, bar: Bar) -> None:
        self._series[symbol][tf].append(bar.as_row())
        self.bar_closes += 1
        for tr in self._by_leg.get((symbol, tf, "trade"), ()):
            tr.on_bar("a" if tr.key.a == symbol else "b", bar)

    # ------------------------------------------------------------------ mid prices
    def on_book_bar_closed(
        self, symbol: str, ts: int, bid: float, ask: float, updates: int
    ) -> None:
        """A 1 s book bar of ``symbol`` closed (called under :attr:`lock` wherever one
        closes: a quote in a later second, the clock, a flush): feed the mid bars and
        the ``source="mid"`` pairs (:mod:`analytics.midprice`)."""
        closers = self._mids.get(symbol)
        if closers is None:
            return
        for tf, closer in closers.items():
            for bar in closer.on_book_bar(ts, bid, ask, updates):
                self._mid_closed(symbol, tf, bar)

    def _mids_on_clock(self, now_ms: int) -> None:
        """Close the coarse mid bars whose time is up (after the 1 s book bars closed
        on this tick, before the pairs see the clock)."""
        for symbol, closers in self._mids.items():
            for tf, closer in closers.items():
                for bar in closer.on_clock(now_ms):
                    self._mid_closed(symbol, tf, bar)

    def _mid_closed(self, symbol: str, tf: int, bar: Bar) -> None:
        for tr in self._by_leg.get((symbol, tf, "mid"), ()):
            tr.on_bar("a" if tr.key.a == symbol else "b", bar)

    def mid_bars(self, symbol: str, tf_ms: int) -> Bars:
        """Closed mid bars of ``symbol`` at a tracked timeframe: the book bars'
        (:meth:`book_bars`) mids as :class:`~analytics.bars.Bars`
        (:func:`analytics.midprice.mid_bars`), final buckets only. A bucket the live
        :class:`~analytics.midprice.MidCloser` still holds open is left out, so this
        history plus the closer's later bars never repeat or skip a bucket."""
        if symbol not in self._series:
            raise KeyError(symbol)
        if self._deferred:  # before the lock (a store read)
            self.load_deferred(symbol)
        with self.lock:
            book = self.book_bars(symbol, tf_ms)
            closer = self._mids[symbol].get(tf_ms)
            open_ts = None if closer is None else closer.open_ts
        if book is None or not len(book):
            return Bars.empty(tf_ms)
        bars = mid_bars_from_book(book.ts, book.bid, book.ask, book.updates, tf_ms)
        if open_ts is not None and len(bars) and bars.ts[-1] >= open_ts:
            bars = _head(bars, open_ts)
        return bars

    def _leg_bars(self, symbol: str, tf_ms: int, source: str) -> Bars:
        return self.mid_bars(symbol, tf_ms) if source == "mid" else self.bars(symbol, tf_ms)

    # ------------------------------------------------------------------ top of book
    def on_book(
        self, name: str, time_ms: int, bid: float, ask: float, bid_qty: float, ask_qty: float
    ) -> BookBar | None:
        """Feed one best bid/ask update (:mod:`analytics.book`); return the 1 s book bar
        it closed (for the store), if any. O(1); the ingest thread, like :meth:`on_trade`.

        The first update of an instrument starts its book at the trade bars' floor:
        one stamped in a second whose trade bar is already published is taken at that
        floor, so a served row's book never changes after it was served."""
        st = self._book.get(name)
        with self.lock:
            if st is None:
                st = self._book_state(name)
            b = st.builder
            closed = b.on_quote(time_ms, bid, ask, bid_qty, ask_qty)
            if closed is not None or b.floor != st.floor_seen:
                self._book_advanced(name, st, closed)
        return closed

    def _book_state(self, name: str) -> _BookState:
        st = self._book.get(name)
        if st is None:
            st = self._book[name] = _BookState(self.timeframes_ms)
            trade = self._builders.get(name, {}).get(1_000)
            if trade is not None and trade.floor is not None:
                st.builder.floor = trade.floor
                st.floor_seen = trade.floor
        return st

    def _book_advanced(self, name: str, st: _BookState, closed: BookBar | None) -> None:
        """The 1 s book builder closed a bar and/or moved its floor: store the bar, feed
        the coarse book bars and the mid bars."""
        if closed is not None:
            st.append(1_000, closed)
            self.on_book_bar_closed(name, closed.ts, closed.bid, closed.ask, closed.updates)
        floor = st.builder.floor
        for tf, rs in st.coarse.items():
            if closed is not None:
                done = rs.on_bar(closed)
                if done is not None:
                    st.append(tf, done)
            done = rs.on_floor(floor)
            if done is not None:
                st.append(tf, done)
        st.floor_seen = floor

    def _book_on_clock(self, now_ms: int) -> list[tuple[str, BookBar]]:
        out = []
        for name, st in self._book.items():
            closed = st.builder.on_clock(now_ms)
            if closed is not None or st.builder.floor != st.floor_seen:
                self._book_advanced(name, st, closed)
            if closed is not None:
                out.append((name, closed))
        return out

    def book_reordered(self, name: str) -> int:
        """Book updates of ``name`` stamped before the one before them, or before a
        second the bar clock had closed, taken at that later time (:mod:`analytics.book`)."""
        st = self._book.get(name)
        return 0 if st is None else st.builder.reordered

    def open_book_bar(self, name: str) -> BookBar | None:
        """The open 1 s book bar, its last quote standing to the second's end (what a
        shutdown stores; a restart starts after that second)."""
        st = self._book.get(name)
        return None if st is None else st.builder.current

    def book_quote(self, name: str) -> tuple[float, float, float, float] | None:
        """The quote in force ``(bid, ask, bid_qty, ask_qty)``, None before the first."""
        st = self._book.get(name)
        return None if st is None else st.builder.quote

    def restore_book(self, name: str, frame: pd.DataFrame) -> None:
        """Put stored 1 s book bars back (:data:`analytics.book.BOOK_FIELDS` columns,
        ``store.read_book_bars``) before live updates come: the buffers, the complete
        coarse buckets, the still-open coarse bucket's seconds into its resampler, the
        quote in force (the last row's) and the floor (the end of the last row's
        second: an update stamped before it is taken at it)."""
        if frame is None or not len(frame):
            return
        f = frame.sort_values("ts", kind="stable").drop_duplicates("ts", keep="last")
        fine = BookBars.from_columns({c: f[c].to_numpy() for c in BOOK_DTYPES}, 1_000)
        floor = int(fine.ts[-1]) + 1_000
        with self.lock:
            st = self._book[name] = _BookState(self.timeframes_ms)
            st.buffers[1_000].extend(fine.columns())
            st.first_cover[1_000] = None  # a stored second was covered whole, or unknown
            for tf, rs in st.coarse.items():
                coarse = resample_book(fine, tf)
                done = int(np.searchsorted(coarse.ts, floor - tf, side="right"))
                st.buffers[tf].extend(coarse.take(slice(0, done)).columns())
                st.first_cover[tf] = coarse.first_cover_ms
                _resume_open_bucket(rs, fine, floor, tf)
            _resume_quote(st, f.iloc[-1], floor)

    def restore_book_recent(self, name: str, recent: pd.DataFrame, cut_ms: int,
                            load_older) -> None:
        """:meth:`restore_book` in two parts, the older one LATER (as
        :meth:`defer_history` for the trade bars: a day of stored book bars is as
        long to read as a day of bars). ``cut_ms``: a multiple of every timeframe, at
        or before the start of the largest one's open bucket; ``recent``: the stored
        rows from the last one before ``cut_ms`` (the *carrier*: its quote is the one
        in force when the bucket at ``cut_ms`` opens) to the end; ``load_older()``:
        the rows of the day before ``cut_ms`` (the carrier again included).

        Now: the rows from ``cut_ms`` on into the 1 s buffer, the coarse buckets from
        ``cut_ms`` that are complete (computed with the carrier first, so the time
        weights at ``cut_ms`` are those of the whole day's resample), the open buckets'
        seconds into the resamplers, the quote in force and the floor: all exactly as
        :meth:`restore_book` sets them. Later (first reader, or
        :meth:`load_deferred`): the older rows and their coarse buckets (complete: they
        end at or before ``cut_ms``) go before them."""
        f = recent.sort_values("ts", kind="stable").drop_duplicates("ts", keep="last")
        fine = BookBars.from_columns({c: f[c].to_numpy() for c in BOOK_DTYPES}, 1_000)
        k = int(np.searchsorted(fine.ts, cut_ms, side="left"))
        if k == 0 or any(cut_ms % tf for tf in self.timeframes_ms):
            raise ValueError("restore_book_recent: needs a carrier row before cut_ms and "
                             "a cut_ms every timeframe divides")
        floor = int(fine.ts[-1]) + 1_000
        with self.lock:
            st = self._book[name] = _BookState(self.timeframes_ms)
            st.buffers[1_000].extend(fine.take(slice(k, None)).columns())
            st.first_cover[1_000] = None
            carried = fine.take(slice(k - 1, None))
            for tf, rs in st.coarse.items():
                coarse = resample_book(carried, tf)
                lo = int(np.searchsorted(coarse.ts, cut_ms, side="left"))
                done = int(np.searchsorted(coarse.ts, floor - tf, side="right"))
                st.buffers[tf].extend(coarse.take(slice(lo, max(lo, done))).columns())
                st.first_cover[tf] = None  # set from the older rows when they come
                _resume_open_bucket(rs, fine, floor, tf)  # its first second >= k >= 1
            _resume_quote(st, f.iloc[-1], floor)
            self._deferred[("book", name)] = load_older

    def book_bars(self, name: str, tf_ms: int) -> BookBars | None:
        """Closed book bars of the last day at ``tf_ms`` (any multiple of 1 s; complete
        buckets only), None when ``name`` has no book data. ``final_ms``: every bucket
        ending at or before it is final, its book as served will not change (rows of
        trade bars ending after it must wait: :func:`analytics.book.book_columns`)."""
        if self._deferred:  # a restart's stored day not in yet (restore_book_recent)
            self.load_deferred(name)
        st = self._book.get(name)
        if st is None:
            return None
        with self.lock:
            final = st.builder.floor
            base = tf_ms if tf_ms in st.buffers else max(t for t in st.buffers if tf_ms % t == 0)
            buf = st.buffers[base]
            view, appended = buf.view(), buf.appended
            first_cover = st.first_cover.get(base) if appended == len(buf) else None
        held = BookBars.from_columns(view, base, first_cover_ms=first_cover, final_ms=final)
        if base == tf_ms:
            return held
        coarse = resample_book(held, tf_ms)
        lo, hi = 0, len(coarse)
        if hi and final is not None and coarse.ts[-1] + tf_ms > final:
            hi -= 1  # still open
        if hi > lo and appended > len(held) and coarse.ts[0] < held.ts[0]:
            lo += 1  # its first seconds were evicted: partial
        out = coarse.take(slice(lo, hi))
        return BookBars.from_columns(out.columns(), tf_ms, first_cover_ms=out.first_cover_ms,
                                     final_ms=final)  # fmt: skip

    # ------------------------------------------------------------------ readers
    def bars_tail(self, symbol: str, tf_ms: int, n: int) -> Bars:
        """``bars(symbol, tf_ms).tail(n)``, reading and checking only those ``n`` rows
        for a stored timeframe (a day of 1 s bars is 86,400: the markets board reads
        hundreds of instruments every 500 ms)."""
        if self._deferred:  # a restart's stored day not in yet (defer_history)
            self.load_deferred(symbol)
        series = self._series.get(symbol)
        if series is None:
            raise KeyError(symbol)
        if tf_ms not in series or n <= 0:
            return self.bars(symbol, tf_ms).tail(max(n, 0))
        cols = series[tf_ms].view()
        return Bars.from_columns({k: v[-n:] for k, v in cols.items()}, tf_ms=tf_ms)

    def bars(self, symbol: str, tf_ms: int) -> Bars:
        """Closed bars of the last day (read-only views; any multiple of 1 s)."""
        if self._deferred:
            self.load_deferred(symbol)
        series = self._series.get(symbol)
        if series is None:
            raise KeyError(symbol)
        if tf_ms in series:
            return Bars.from_columns(series[tf_ms].view(), tf_ms=tf_ms)
        base = max(t for t in series if tf_ms % t == 0)
        buf = series[base]
        with self.lock:  # one consistent read: a bar closes (floor moves) and is appended
            floor = self._builders[symbol][base].floor  # under the writers' lock
            appended = buf.appended
            fine = Bars.from_columns(buf.view(), tf_ms=base)
        coarse = resample_bars(fine, tf_ms=tf_ms)
        # Only complete coarse buckets, so a served bar is never amended:
        # - the last one while it may still grow: bucket [ts, ts + tf) is final once
        #   ts + tf <= floor (no fine bar before the base builder's floor can appear);
        # - the first one if the day window evicted fine bars and the bucket starts
        #   before the first fine bar held (its evicted seconds are gone: partial).
        floor = -(2**62) if floor is None else floor
        lo, hi = 0, len(coarse)
        if hi and coarse.ts[-1] + tf_ms > floor:
            hi -= 1
        if hi > lo and appended > len(fine) and coarse.ts[0] < fine.ts[0]:
            lo += 1
        if (lo, hi) == (0, len(coarse)):
            return coarse
        return coarse.take(slice(lo, hi)) if hi > lo else Bars.empty(tf_ms)

    def open_bar(self, symbol: str, tf_ms: int) -> Bar | None:
        builder = self._builders.get(symbol, {}).get(tf_ms)
        return None if builder is None else builder.current

    def pair(
        self, a: str, b: str, tf_ms: int, window: int, regression: str = "ols",
        prices: str = "raw", source: str = "trade",
    ) -> PairSnapshot:
        """Snapshot of a pair selection; the first call builds and starts tracking it.

        ``source="mid"``: the legs' mid bars (:mod:`analytics.midprice`) instead of
        their trade bars; :class:`InsufficientData` naming the leg while it has no
        quote yet (a run with ``--no-book``, or before the first book update)."""
        if source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
        if regression not in REGRESSIONS:
            raise ValueError(f"regression must be one of {REGRESSIONS}, got {regression!r}")
        if prices not in PRICE_MODES:
            raise ValueError(f"prices must be one of {PRICE_MODES}, got {prices!r}")
        for s in (a, b):
            if s not in self._series:
                raise KeyError(s)
        if a == b:
            raise ValueError("a pair needs two different symbols")
        if self._deferred:  # the legs' stored days, before the lock (store reads)
            self.load_deferred(a)
            self.load_deferred(b)
        key = PairKey(a, b, int(tf_ms), int(window), regression, prices, source)
        tracker = self._pairs.get(key)
        if tracker is not None:
            tracker.last_used = time.monotonic()
            return tracker.snapshot
        if tf_ms not in self.timeframes_ms:
            raise InsufficientData(
                f"live pair tracking at {tf_ms} ms (tracked timeframes: "
                f"{', '.join(str(t) for t in self.timeframes_ms)} ms)", 1, 0
            )
        # The day's batch build runs outside the lock (the feed must not wait for it);
        # bars that close meanwhile are caught up under the lock before registering.
        with self.lock:
            bars_a, bars_b = self._leg_bars(a, tf_ms, source), self._leg_bars(b, tf_ms, source)
            breaks = self.pair_breaks(a, b)
        if source == "mid":
            for sym, legs in ((a, bars_a), (b, bars_b)):
                if not len(legs):
                    raise NoQuotes(sym, "source=mid")
        tracker = PairTracker(key, DAY_MS // tf_ms, breaks)
        tracker.load_history(bars_a, bars_b, None)
        with self.lock:
            existing = self._pairs.get(key)
            if existing is not None:
                return existing.snapshot
            if len(self.pair_breaks(a, b)) != len(breaks):
                # a break was marked during the build: start again with it
                return self.pair(a, b, tf_ms, window, regression, prices, source)
            for leg, sym in (("a", a), ("b", b)):
                fresh = self._leg_bars(sym, tf_ms, source).since(tracker.seen_ts(leg) + 1)
                for i in range(len(fresh)):
                    tracker.on_bar(leg, fresh.bar(i))
            if self._clock_ms is not None:
                tracker.on_clock(self._clock_ms)
            self._register(tracker)
        return tracker.snapshot

    def _unregister(self, tracker: PairTracker) -> None:
        self._pairs.pop(tracker.key, None)
        for sym in (tracker.key.a, tracker.key.b):
            legs = self._by_leg.get((sym, tracker.key.tf_ms, tracker.key.source), [])
            if tracker in legs:
                legs.remove(tracker)

    def _register(self, tracker: PairTracker) -> None:
        key = tracker.key
        self._pairs[key] = tracker
        for sym in (key.a, key.b):
            self._by_leg.setdefault((sym, key.tf_ms, key.source), []).append(tracker)
        while len(self._pairs) > self.max_pairs:
            oldest = min(self._pairs.values(), key=lambda t: t.last_used)
            self._unregister(oldest)

    def tracked_pairs(self) -> list[PairKey]:
        return list(self._pairs)

    def tracked_snapshot(self, key: PairKey) -> PairSnapshot | None:
        """The snapshot of a tracked pair, or None: never builds (the 500 ms path).

        One dict lookup, so a pair evicted between a membership check and a
        :meth:`pair` call can never start the day's batch build on a refresh."""
        tracker = self._pairs.get(key)
        if tracker is None:
            return None
        tracker.last_used = time.monotonic()
        return tracker.snapshot
