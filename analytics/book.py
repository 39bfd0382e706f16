"""Top of book -> 1 s book bars: batch :func:`book_bars`, live :class:`BookBarBuilder`.

A Binance ``@bookTicker`` update is the best bid and ask after one change of the book.
A pair trader pays the quoted spread, not the last print, so the bars carry the top of
the book next to the trades (issue #17).

Bucketing and order
-------------------
An update is bucketed by its time ``t`` (futures: the transaction time ``T``; spot:
our receive time, the frame has none; :class:`ingest.models.BookTicker`) into
``[floor(t / tf) * tf, + tf)``, epoch-aligned like the trade bars. Updates are taken
**in arrival order**; one stamped earlier than the update before it is taken at that
later time (``t_eff = max(t, t_eff of the previous update)``, counted in
:attr:`BookBarBuilder.reordered`): the book after an update is the book, whatever
its stamp says, and no published bar is ever amended. Live, an update stamped before
a bucket the bar clock has already closed is likewise taken at the clock's floor.

The stored 1 s book bar (:data:`BOOK_FIELDS`, :meth:`BookBar.as_row` order)
--------------------------------------------------------------------------------
For bucket ``[s, e)`` holding updates ``i = 1..n`` (times ``t_1 <= ... <= t_n``):

* ``bid, ask, bid_qty, ask_qty``: of the **last** update ``n`` (a bucket with no
  update has no bar; readers carry the last bar's quote forward);
* ``spread_bps_twa``: the time-weighted quoted spread over the bucket, each quote
  weighted by the time it stood inside it, the quote in force at ``s`` (the last one
  of an earlier bucket, index 0) included::

      spread_bps(q) = 1e4 * (ask - bid) / ((bid + ask) / 2)
      total = spread_0 * (t_1 - s)  +  sum_{i<n} spread_i * (t_{i+1} - t_i)  +  spread_n * (e - t_n)
      spread_bps_twa = total / cover,   cover = e - s

  A bucket holding the **first update ever** (no quote in force at ``s``) weighs only
  the part a quote covered: the first term is dropped and ``cover = e - t_1``
  (:attr:`BookBar.cover_ms`; not stored: the day's first bucket, see
  :func:`resample_book`);
* ``updates``: ``n``.

Served (derived) columns, of the last quote: ``mid = (bid + ask) / 2``,
``spread_bps = 1e4 * (ask - bid) / mid``, ``imbalance = bid_qty / (bid_qty + ask_qty)``
(:data:`analytics.registry.BOOK_COLUMNS`, after the trade columns in ``/api/bars``).

Coarser timeframes (:func:`resample_book`, live :class:`BookResampler`) are exact
functions of the 1 s bars: the last 1 s bar's quote, ``updates`` summed, and::

    spread_bps_twa = sum_j w_j / cover,  over the 1 s bars j of the coarse bucket and
                                         the seconds without one, in time order:
    w_j = spread_bps_twa_j * cover_j     (a 1 s bar)
    w   = spread_bps(carried quote) * g  (g ms without a 1 s bar: the quote in force)

Sums are sequential, in that order, starting from 0.0 (the batch uses
``np.bincount``, as :mod:`analytics.bars` does), so the live builders give bit-identical
bars to the batch functions on the same updates. Against a direct time-weighted mean
over the raw updates the coarse ``spread_bps_twa`` agrees to rounding.

Interface for the engine and the pair code (``analytics.engine.MarketEngine``)
------------------------------------------------------------------------------
* ``engine.on_book(name, time_ms, bid, ask, bid_qty, ask_qty) -> BookBar | None``: the
  closed 1 s book bar, for ``store.add_book_bar(name, bar.as_row())``;
  ``engine.on_clock(now_ms)`` closes book bars too: the 1 s ones it closed are in
  ``engine.clock_closed_book`` (a list of ``(name, BookBar)``, replaced on each call);
* ``engine.restore_book(name, frame)``: the stored 1 s book bars (``BOOK_FIELDS``);
* ``engine.book_bars(name, tf_ms) -> BookBars | None``: the closed book bars at
  ``tf_ms`` (any multiple of 1 s; only buckets whose book is final); ``.mid``,
  ``.spread_bps``, ``.imbalance`` arrays; ``.final_ms``: every bucket ending at or
  before it is final (None when the book has no data);
* :func:`book_columns` ``(ts, tf_ms, book) -> dict`` joins the served columns onto bar
  rows (the book as of the END of each bucket, carried; NaN before the first quote);
  :func:`mid_closes` gives the mid close per bar row (``source=mid``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from analytics.registry import BOOK_COLUMNS
from analytics.timeframes import validate_tf_ms

__all__ = [
    "BOOK_COLUMNS",
    "BOOK_DTYPES",
    "BOOK_FIELDS",
    "BookBar",
    "BookBarBuilder",
    "BookBars",
    "BookResampler",
    "book_bar_columns",
    "book_bars",
    "book_columns",
    "mid_closes",
    "quote_spread_bps",
    "resample_book",
]

#: The stored 1 s book-bar row, :meth:`BookBar.as_row` order (contract C3).
BOOK_FIELDS: tuple[str, ...] = (
    "ts", "bid", "ask", "bid_qty", "ask_qty", "spread_bps_twa", "updates",
)  # fmt: skip
BOOK_DTYPES: dict[str, type] = {
    "ts": np.int64, "bid": np.float64, "ask": np.float64, "bid_qty": np.float64,
    "ask_qty": np.float64, "spread_bps_twa": np.float64, "updates": np.int64,
}  # fmt: skip
_QUOTE = ("bid", "ask", "bid_qty", "ask_qty")


def quote_spread_bps(bid: Any, ask: Any) -> Any:
    """``1e4 * (ask - bid) / ((bid + ask) / 2)``: the quoted spread in basis points of
    the mid (scalars or arrays; one expression so every path rounds alike)."""
    return 1e4 * (ask - bid) / ((bid + ask) / 2)


@dataclass(frozen=True, slots=True)
class BookBar:
    """One closed book bar (module notes). ``cover_ms``: the ms of the bucket a quote
    covered, None for all of it (it is less only in the bucket of the first update
    ever seen); not stored."""

    ts: int
    bid: float
    ask: float
    bid_qty: float
    ask_qty: float
    spread_bps_twa: float
    updates: int
    cover_ms: int | None = None

    @property
    def mid(self) -> float:
        return (self.bid + self.ask) / 2

    @property
    def spread_bps(self) -> float:
        """Quoted spread of the last quote, bps of its mid."""
        return quote_spread_bps(self.bid, self.ask)

    @property
    def imbalance(self) -> float:
        total = self.bid_qty + self.ask_qty
        return self.bid_qty / total if total > 0 else math.nan

    def as_row(self) -> tuple:
        """The stored row, :data:`BOOK_FIELDS` order."""
        return (
            self.ts, self.bid, self.ask, self.bid_qty, self.ask_qty,
            self.spread_bps_twa, self.updates,
        )  # fmt: skip


@dataclass(frozen=True, slots=True, eq=False)
class BookBars:
    """Columnar book bars of one instrument and timeframe, ``ts`` strictly increasing,
    read-only arrays (an immutable snapshot readers may share).

    ``first_cover_ms``: ms of the first bucket a quote covered when that bucket holds
    the first update ever seen (None: the whole bucket). ``final_ms``: from the live
    engine, every bucket ending at or before it is final (its book cannot change)."""

    ts: np.ndarray
    bid: np.ndarray
    ask: np.ndarray
    bid_qty: np.ndarray
    ask_qty: np.ndarray
    spread_bps_twa: np.ndarray
    updates: np.ndarray
    tf_ms: int
    first_cover_ms: int | None = None
    final_ms: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "tf_ms", validate_tf_ms(self.tf_ms))
        n = None
        for name in BOOK_FIELDS:
            arr = np.asarray(getattr(self, name)).astype(BOOK_DTYPES[name], copy=False)
            if arr.ndim != 1:
                raise ValueError(f"BookBars.{name} must be 1-D, got shape {arr.shape}")
            if n is None:
                n = arr.shape[0]
            elif arr.shape[0] != n:
                raise ValueError(f"BookBars columns differ in length ({name})")
            view = arr.view()
            view.flags.writeable = False
            object.__setattr__(self, name, view)
        ts = self.ts
        if n and n > 1 and not bool(np.all(ts[1:] > ts[:-1])):
            raise ValueError("BookBars.ts must be strictly increasing")
        if n and bool(np.any(ts % self.tf_ms)):
            raise ValueError(f"BookBars.ts must be multiples of tf_ms={self.tf_ms}")

    @classmethod
    def empty(cls, tf_ms: int, final_ms: int | None = None) -> BookBars:
        return cls(**{f: np.empty(0, BOOK_DTYPES[f]) for f in BOOK_FIELDS}, tf_ms=tf_ms,
                   final_ms=final_ms)  # fmt: skip

    @classmethod
    def from_columns(
        cls, columns: Mapping[str, Any], tf_ms: int, *, first_cover_ms: int | None = None,
        final_ms: int | None = None,
    ) -> BookBars:
        """From a mapping holding :data:`BOOK_FIELDS` (a store frame, a buffer view)."""
        missing = [f for f in BOOK_FIELDS if f not in columns]
        if missing:
            raise ValueError(f"BookBars.from_columns: missing columns {missing}")
        cols = {f: np.asarray(columns[f]) for f in BOOK_FIELDS}
        return cls(**cols, tf_ms=tf_ms, first_cover_ms=first_cover_ms, final_ms=final_ms)

    @classmethod
    def from_rows(cls, rows, tf_ms: int) -> BookBars:
        """From :class:`BookBar` objects (oldest first); the first one's ``cover_ms``
        is kept."""
        rows = list(rows)
        if not rows:
            return cls.empty(tf_ms)
        cols = zip(*(r.as_row() for r in rows), strict=True)
        return cls(**{f: np.array(c, BOOK_DTYPES[f]) for f, c in zip(BOOK_FIELDS, cols)},
                   tf_ms=tf_ms, first_cover_ms=rows[0].cover_ms)  # fmt: skip

    def __len__(self) -> int:
        return int(self.ts.shape[0])

    @property
    def mid(self) -> np.ndarray:
        """``(bid + ask) / 2`` of each bar's last quote."""
        return (self.bid + self.ask) / 2

    @property
    def spread_bps(self) -> np.ndarray:
        """Quoted spread of each bar's last quote, bps of its mid."""
        return quote_spread_bps(self.bid, self.ask)

    @property
    def imbalance(self) -> np.ndarray:
        """``bid_qty / (bid_qty + ask_qty)`` of each bar's last quote."""
        total = self.bid_qty + self.ask_qty
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(total > 0, self.bid_qty / total, np.nan)

    def columns(self) -> dict[str, np.ndarray]:
        return {f: getattr(self, f) for f in BOOK_FIELDS}

    def to_frame(self) -> pd.DataFrame:
        """The stored columns (:data:`BOOK_FIELDS`), int ``ts``."""
        return pd.DataFrame({f: np.array(getattr(self, f)) for f in BOOK_FIELDS})

    def take(self, sl: slice) -> BookBars:
        start = sl.start or 0
        first = self.first_cover_ms if start == 0 else None
        return BookBars(**{f: getattr(self, f)[sl] for f in BOOK_FIELDS}, tf_ms=self.tf_ms,
                        first_cover_ms=first, final_ms=self.final_ms)  # fmt: skip


# ------------------------------------------------------------------------- batch
def _seq_sums(keys: np.ndarray, weights: np.ndarray, n_keys: int) -> np.ndarray:
    """``weights`` summed per key 0..n_keys-1, sequentially in array order from 0.0."""
    return np.bincount(keys, weights=weights, minlength=n_keys)


def book_bar_columns(
    times: Any, bids: Any, asks: Any, bid_qtys: Any, ask_qtys: Any, tf_ms: int
) -> BookBars:
    """The batch twin of :class:`BookBarBuilder`: updates in arrival order -> book bars.

    Exactly the bars the builder closes on the same updates (module notes: the
    effective time is the running maximum of the stamps; sums sequential).
    """
    tf = validate_tf_ms(tf_ms)
    t = np.maximum.accumulate(np.asarray(times, dtype=np.int64)) if len(times) else (
        np.empty(0, np.int64))  # fmt: skip
    b = np.asarray(bids, dtype=np.float64)
    a = np.asarray(asks, dtype=np.float64)
    bq = np.asarray(bid_qtys, dtype=np.float64)
    aq = np.asarray(ask_qtys, dtype=np.float64)
    n = t.shape[0]
    if {len(b), len(a), len(bq), len(aq)} != {n}:
        raise ValueError("book update columns differ in length")
    if n == 0:
        return BookBars.empty(tf)
    starts_t = t - t % tf
    brk = np.flatnonzero(starts_t[1:] != starts_t[:-1]) + 1
    first = np.concatenate(([0], brk))
    last = np.append(brk, n) - 1
    bucket = np.repeat(np.arange(first.shape[0]), np.diff(np.append(first, n)))
    ts = starts_t[first]
    spread = quote_spread_bps(b, a)
    # each update's segment: until the next update, or the bucket end for the last
    nxt = np.empty(n, np.int64)
    nxt[:-1] = t[1:]
    nxt[last] = ts + tf
    seg = _seq_sums(bucket, spread * (nxt - t), first.shape[0])
    carried = np.zeros(first.shape[0])
    carried[1:] = spread[last[:-1]] * (t[first[1:]] - ts[1:])
    cover = np.full(first.shape[0], tf, np.int64)
    cover[0] = ts[0] + tf - t[0]
    twa = (carried + seg) / cover
    twa[0] = seg[0] / cover[0]
    return BookBars(
        ts=ts, bid=b[last], ask=a[last], bid_qty=bq[last], ask_qty=aq[last],
        spread_bps_twa=twa, updates=(last - first + 1).astype(np.int64), tf_ms=tf,
        first_cover_ms=None if cover[0] == tf else int(cover[0]),
    )  # fmt: skip


def book_bars(
    times: Any, bids: Any, asks: Any, bid_qtys: Any, ask_qtys: Any, tf_ms: int
) -> pd.DataFrame:
    """Book updates (arrival order) -> a frame of book bars, :data:`BOOK_FIELDS`
    columns (see :func:`book_bar_columns`; the module notes give the formulas)."""
    return book_bar_columns(times, bids, asks, bid_qtys, ask_qtys, tf_ms).to_frame()


def resample_book(book: BookBars, tf_ms: int) -> BookBars:
    """Book bars at a whole multiple ``tf_ms`` of ``book.tf_ms``, exactly (module notes):
    the last fine bar's quote, ``updates`` summed, ``spread_bps_twa`` the
    duration-weighted mean of the fine ``spread_bps_twa`` with the carried quote's
    spread filling the fine buckets without a bar. The first fine bar weighs
    ``book.first_cover_ms`` when set (it holds the first update ever), else a whole
    fine bucket."""
    tf = validate_tf_ms(tf_ms)
    if tf % book.tf_ms:
        raise ValueError(f"resample_book: {tf} ms is not a multiple of {book.tf_ms} ms")
    n = len(book)
    if tf == book.tf_ms or n == 0:
        return book if tf == book.tf_ms else BookBars.empty(tf)
    fine = book.tf_ms
    ts_f = book.ts
    cts = ts_f - ts_f % tf
    brk = np.flatnonzero(cts[1:] != cts[:-1]) + 1
    first = np.concatenate(([0], brk))
    last = np.append(brk, n) - 1
    m = first.shape[0]
    coarse = cts[first]
    cover_f = np.full(n, fine, np.int64)
    if book.first_cover_ms is not None:
        cover_f[0] = book.first_cover_ms
    spread = quote_spread_bps(book.bid, book.ask)  # of each fine bar's last quote
    # Weights in time order: for each fine bar, the gap before it (carried quote), then
    # the bar itself; then, per coarse bucket, the gap after its last fine bar.
    prev_end = np.empty(n, np.int64)
    prev_end[1:] = ts_f[:-1] + fine
    prev_end[first] = coarse  # a coarse bucket's first fine bar: gap from its start
    gap = ts_f - prev_end
    prev_spread = np.empty(n)
    prev_spread[1:] = spread[:-1]
    has_prev = np.ones(n, bool)
    has_prev[0] = False
    gap_w = np.where(has_prev & (gap > 0), prev_spread * gap, 0.0)
    bar_w = book.spread_bps_twa * cover_f
    tail_w = spread[last] * (coarse + tf - (ts_f[last] + fine))
    idx = np.repeat(np.arange(m), np.diff(np.append(first, n)))
    keys = np.empty(2 * n + m, np.int64)
    w = np.empty(2 * n + m)
    pos = np.arange(n) * 2 + np.repeat(np.arange(m), np.diff(np.append(first, n)))
    keys[pos], w[pos] = idx, gap_w
    keys[pos + 1], w[pos + 1] = idx, bar_w
    tail_pos = last * 2 + np.arange(m) + 2
    keys[tail_pos], w[tail_pos] = np.arange(m), tail_w
    total = _seq_sums(keys, w, m)
    covered = np.bincount(idx, weights=cover_f, minlength=m) + np.bincount(
        idx, weights=np.where(has_prev, gap, 0), minlength=m
    ) + (coarse + tf - (ts_f[last] + fine))
    updates = np.add.reduceat(book.updates, first)
    first_cover = None
    if book.first_cover_ms is not None or ts_f[0] != coarse[0]:
        first_cover = int(covered[0]) if covered[0] != tf else None
    return BookBars(
        ts=coarse, bid=book.bid[last], ask=book.ask[last], bid_qty=book.bid_qty[last],
        ask_qty=book.ask_qty[last], spread_bps_twa=total / covered, updates=updates,
        tf_ms=tf, first_cover_ms=first_cover,
    )  # fmt: skip


# ------------------------------------------------------------------------- serving
def book_columns(ts: Any, tf_ms: int, book: BookBars | None) -> dict[str, np.ndarray]:
    """The served book columns (:data:`BOOK_COLUMNS`) for bar rows starting at ``ts``
    (bucket length ``tf_ms``), from the book bars at the same timeframe.

    Each row gets the book as of the END of its bucket: the last book bar at or before
    it (carried forward), and ``spread_bps_twa`` of its own bucket: the book bar's when
    it has one, else the carried quote's spread (it stood the whole bucket). NaN where
    no quote came yet (and everywhere when ``book`` is None)."""
    ts = np.asarray(ts, dtype=np.int64)
    n = ts.shape[0]
    if book is None or not len(book):
        return {c: np.full(n, np.nan) for c in BOOK_COLUMNS}
    if book.tf_ms != tf_ms:
        raise ValueError(f"book_columns: book bars are {book.tf_ms} ms, rows {tf_ms} ms")
    i = np.searchsorted(book.ts, ts, side="right") - 1
    have = i >= 0
    j = np.where(have, i, 0)
    own = have & (book.ts[j] == ts)

    def pick(values: np.ndarray) -> np.ndarray:
        return np.where(have, values[j], np.nan)

    out = {
        "bid": pick(book.bid), "ask": pick(book.ask),
        "bid_qty": pick(book.bid_qty), "ask_qty": pick(book.ask_qty),
        "mid": pick(book.mid), "spread_bps": pick(book.spread_bps),
        "spread_bps_twa": np.where(own, book.spread_bps_twa[j], pick(book.spread_bps)),
        "imbalance": pick(book.imbalance),
    }  # fmt: skip
    return {c: out[c] for c in BOOK_COLUMNS}


def mid_closes(ts: Any, tf_ms: int, book: BookBars | None) -> np.ndarray:
    """The mid at the end of each bar bucket (carried forward as trade closes are;
    NaN before the first quote): the ``source=mid`` closes."""
    return book_columns(ts, tf_ms, book)["mid"]


# ------------------------------------------------------------------------- live
class BookBarBuilder:
    """Live book bars of one instrument at one timeframe, one update at a time.

    :meth:`on_quote` returns the bar an update closes (an update in a later bucket);
    :meth:`on_clock` closes the open bar once ``now_ms >= bucket end`` (the trade bars'
    clock: ``MarketEngine.on_clock``) and from then on an update stamped before the
    clock's floor is taken at the floor. Bars equal :func:`book_bar_columns` over the
    same updates whenever the clock never runs ahead of the updates still to come.
    O(1) scalar Python per update."""

    __slots__ = (
        "tf_ms", "reordered", "last_closed", "floor", "_start", "_end", "_t",
        "_bid", "_ask", "_bq", "_aq", "_spread", "_have", "_carried", "_acc", "_n",
        "_cover_from",
    )  # fmt: skip

    def __init__(self, tf_ms: int = 1_000) -> None:
        self.tf_ms = validate_tf_ms(tf_ms)
        #: Updates stamped before the one before them (or before the clock's floor).
        self.reordered = 0
        self.last_closed: BookBar | None = None
        #: Every bucket before it is closed (or skipped): its book is final. None
        #: before the first update or clock call.
        self.floor: int | None = None
        self._start: int | None = None
        self._end = 0
        self._t = -(2**62)  # effective time of the last update
        self._bid = self._ask = self._bq = self._aq = self._spread = math.nan
        self._have = False  # a quote is in force
        self._carried = 0.0
        self._acc = 0.0
        self._n = 0
        self._cover_from = 0

    @property
    def quote(self) -> tuple[float, float, float, float] | None:
        """The quote in force ``(bid, ask, bid_qty, ask_qty)``, None before the first."""
        return (self._bid, self._ask, self._bq, self._aq) if self._have else None

    def on_quote(
        self, time_ms: int, bid: float, ask: float, bid_qty: float, ask_qty: float
    ) -> BookBar | None:
        t = time_ms
        lo = self._t
        floor = self.floor  # above lo only when the clock closed the last bucket
        if floor is not None and floor > lo:
            lo = floor
        if t < lo:
            t = lo
            self.reordered += 1
        start = self._start
        if start is not None and t < self._end:  # hot path: the open bucket
            self._acc += self._spread * (t - self._t)
            self._n += 1
        else:
            closed = self._close() if start is not None else None
            s = t - t % self.tf_ms
            self._start = self.floor = s
            self._end = s + self.tf_ms
            if self._have:
                self._carried = self._spread * (t - s)
                self._cover_from = s
            else:
                self._carried = 0.0
                self._cover_from = t
            self._acc = 0.0
            self._n = 1
            self._set(t, bid, ask, bid_qty, ask_qty)
            return closed
        self._set(t, bid, ask, bid_qty, ask_qty)
        return None

    def _set(self, t: int, bid: float, ask: float, bq: float, aq: float) -> None:
        self._t = t
        self._bid, self._ask, self._bq, self._aq = bid, ask, bq, aq
        self._spread = 1e4 * (ask - bid) / ((bid + ask) / 2)
        self._have = True

    def on_clock(self, now_ms: int) -> BookBar | None:
        """Close the open bar if ``now_ms`` reached its end; raise the floor to the
        first bucket still open at ``now_ms``."""
        tf = self.tf_ms
        open_from = ((now_ms - tf) // tf + 1) * tf
        closed = None
        if self._start is not None and self._start < open_from:
            closed = self._close()
        if self._start is None and (self.floor is None or open_from > self.floor):
            self.floor = open_from
        return closed

    #: The bar clock's name for it (``Ingestor.close_bars_until`` -> ``engine.on_clock``).
    close_until = on_clock

    def flush(self) -> BookBar | None:
        """Close the open bar now (shutdown); later updates go to later buckets."""
        return self._close() if self._start is not None else None

    @property
    def current(self) -> BookBar | None:
        """The open bar as it would close if no other update came (the last quote
        standing to the bucket's end: what a shutdown stores), or None."""
        if self._start is None:
            return None
        return self._bar(self._end)

    def _bar(self, until: int) -> BookBar:
        """The open bucket's bar with its last quote standing until ``until``."""
        total = self._carried + (self._acc + self._spread * (until - self._t))
        cover = until - self._cover_from
        twa = total / cover if cover > 0 else self._spread
        partial = self._cover_from != self._start  # holds the first update ever
        return BookBar(self._start, self._bid, self._ask, self._bq, self._aq, twa, self._n,
                       self._end - self._cover_from if partial else None)  # fmt: skip

    def _close(self) -> BookBar:
        bar = self._bar(self._end)
        self.last_closed = bar
        self.floor = self._end
        self._start = None
        return bar

    def restore(self, bid: float, ask: float, bid_qty: float, ask_qty: float,
                floor_ms: int) -> None:
        """Resume after a restart: the quote in force and the floor (the end of the
        last stored bucket); updates stamped before it are taken at it."""
        self._set(int(floor_ms), bid, ask, bid_qty, ask_qty)
        self.floor = int(floor_ms)
        self._start = None


class BookResampler:
    """Live coarse book bars from the closed fine bars (the twin of
    :func:`resample_book`): :meth:`on_bar` takes each closed fine bar in order,
    :meth:`on_floor` the fine builder's floor; each returns the coarse bar closed."""

    __slots__ = ("tf_ms", "fine_ms", "_start", "_end", "_acc", "_cover", "_fine_end",
                 "_spread", "_last", "_n", "_floor", "_have")  # fmt: skip

    def __init__(self, tf_ms: int, fine_ms: int = 1_000) -> None:
        self.tf_ms = validate_tf_ms(tf_ms)
        self.fine_ms = validate_tf_ms(fine_ms)
        if self.tf_ms % self.fine_ms:
            raise ValueError(f"{tf_ms} ms is not a multiple of {fine_ms} ms")
        self._start: int | None = None
        self._end = 0
        self._acc = 0.0
        self._cover = 0
        self._fine_end = 0
        self._spread = math.nan
        self._last: BookBar | None = None
        self._n = 0
        self._floor: int | None = None
        self._have = False

    @property
    def floor(self) -> int | None:
        return self._floor

    def on_bar(self, bar: BookBar) -> BookBar | None:
        closed = None
        if self._start is not None and bar.ts >= self._end:
            closed = self._close()
        if self._start is None:
            s = bar.ts - bar.ts % self.tf_ms
            self._start, self._end = s, s + self.tf_ms
            self._acc, self._cover, self._n, self._fine_end = 0.0, 0, 0, s
            self._floor = s
        gap = bar.ts - self._fine_end
        if self._have and gap > 0:
            self._acc += self._spread * gap
            self._cover += gap
        cover = self.fine_ms if bar.cover_ms is None else bar.cover_ms
        self._acc += bar.spread_bps_twa * cover
        self._cover += cover
        self._n += bar.updates
        self._fine_end = bar.ts + self.fine_ms
        self._spread = bar.spread_bps
        self._have = True
        self._last = bar
        return closed

    def on_floor(self, floor_ms: int | None) -> BookBar | None:
        """The fine builder's floor moved: close the coarse bar it passed."""
        if floor_ms is None:
            return None
        closed = None
        if self._start is not None and floor_ms >= self._end:
            closed = self._close()
        if self._start is None:
            f = floor_ms - floor_ms % self.tf_ms
            if self._floor is None or f > self._floor:
                self._floor = f
        return closed

    def _close(self) -> BookBar:
        tail = self._end - self._fine_end
        acc = self._acc + self._spread * tail
        cover = self._cover + tail
        last = self._last
        assert last is not None
        bar = BookBar(self._start, last.bid, last.ask, last.bid_qty, last.ask_qty,
                      acc / cover, self._n,
                      None if cover == self.tf_ms else cover)  # fmt: skip
        self._floor = self._end
        self._start = None
        return bar

    def restore(self, last: BookBar, floor_ms: int) -> None:
        """Resume with ``last`` (the last fine bar) in force and the floor."""
        self._spread = last.spread_bps
        self._have = True
        self._last = last
        self._floor = floor_ms - floor_ms % self.tf_ms
