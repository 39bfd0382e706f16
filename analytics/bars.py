"""Trade ticks -> OHLCV bars: batch :func:`bars_from_ticks`, live :class:`BarBuilder`.

Bucketing rule (the one rule every path here follows)
-----------------------------------------------------
A tick with trade time ``T`` (Binance ``T``, ms since the UTC epoch) belongs to the
bucket that starts at ``floor(T / tf_ms) * tf_ms``: buckets are aligned to the
epoch, so 1 m bars start on the minute. Inside a bucket ticks are ordered by
``(T, trade_id)``: ``open`` is the price of the first tick in that order, ``close``
the price of the last, ``first_id``/``last_id`` their trade ids. A bucket with no
tick produces no bar (no flat filler bars; see :mod:`analytics.align` for how a
pair is put on one grid).

Float sums are *sequential* sums in ``(T, trade_id)`` order, starting from 0.0:
``volume = ((0 + q0) + q1) + ...``. The batch path computes them with
``np.bincount(weights=...)`` (a sequential accumulation) rather than
``np.add.reduceat`` (pairwise), so that the live :class:`BarBuilder`, which adds one
tick at a time, produces **bit-identical** bars when ticks arrive in ``(T, id)``
order, which is how Binance delivers one symbol's trades. Against other
summation orders (pandas' compensated ``groupby.sum``, or
:func:`resample_bars` summing 1 s sums) the sums agree to rounding only
(relative error below ``n * 2**-53`` for ``n`` positive terms).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from analytics.registry import BAR_DTYPES, BAR_FIELDS
from analytics.timeframes import validate_tf_ms

__all__ = [
    "BAR_DTYPES",
    "BAR_FIELDS",
    "Bar",
    "BarBuilder",
    "Bars",
    "bars_from_ticks",
    "resample_bars",
]

log = logging.getLogger(__name__)

_INT_FIELDS = frozenset(f for f, t in BAR_DTYPES.items() if t is np.int64)
# to_frame() columns: open..buy_volume, then vwap (ids are bookkeeping, not data).
_FRAME_COLUMNS = BAR_FIELDS[1:9]


@dataclass(frozen=True, slots=True)
class Bar:
    """One closed (or, from :attr:`BarBuilder.current`, still open) OHLCV bar.

    Attributes
    ----------
    ts : int
        Bucket start, ms since the UTC epoch (a multiple of the timeframe).
    open, high, low, close : float
        Prices of the first / highest / lowest / last tick in ``(T, trade_id)`` order.
    volume : float
        ``sum(qty)``, base asset.
    quote_volume : float
        ``sum(price * qty)``, quote asset (USDT).
    trades : int
        Number of ticks.
    buy_volume : float
        ``sum(qty)`` over ticks with ``buyer_is_maker == False``, i.e. the taker
        bought (aggressive buy volume).
    first_id, last_id : int
        Trade ids of the open and close ticks.
    """

    ts: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    quote_volume: float
    trades: int
    buy_volume: float
    first_id: int
    last_id: int

    @property
    def vwap(self) -> float:
        """Volume-weighted average price ``quote_volume / volume`` (NaN if none)."""
        return self.quote_volume / self.volume if self.volume != 0 else math.nan

    def as_row(self) -> tuple[Any, ...]:
        """The fields as a tuple, :data:`BAR_FIELDS` order (what the store persists)."""
        return (
            self.ts,
            self.open,
            self.high,
            self.low,
            self.close,
            self.volume,
            self.quote_volume,
            self.trades,
            self.buy_volume,
            self.first_id,
            self.last_id,
        )


@dataclass(frozen=True, slots=True, eq=False)
class Bars:
    """Columnar bars of one symbol and one timeframe, ``ts`` strictly increasing.

    Columns are 1-D numpy arrays of equal length (int64: ``ts, trades, first_id,
    last_id``; float64: the rest), exposed as **read-only** views, so a ``Bars``
    can be shared between threads as an immutable snapshot. Build one with
    :func:`bars_from_ticks`, :func:`resample_bars`, :meth:`from_rows`,
    :meth:`from_columns` or :meth:`empty`.

    Raises
    ------
    ValueError
        If the columns differ in length, ``ts`` is not strictly increasing, or a
        ``ts`` is not a multiple of ``tf_ms``.
    """

    ts: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    quote_volume: np.ndarray
    trades: np.ndarray
    buy_volume: np.ndarray
    first_id: np.ndarray
    last_id: np.ndarray
    tf_ms: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "tf_ms", validate_tf_ms(self.tf_ms))
        n = None
        for name in BAR_FIELDS:
            raw = np.asarray(getattr(self, name))
            if name in _INT_FIELDS and raw.dtype.kind == "f":
                # e.g. a store returning float columns: fine if whole, never truncate
                if not np.all(np.isfinite(raw) & (raw == np.round(raw))):
                    raise ValueError(f"Bars.{name} must hold whole numbers")
            arr = raw.astype(BAR_DTYPES[name], copy=False)
            if arr.ndim != 1:
                raise ValueError(f"Bars.{name} must be 1-D, got shape {arr.shape}")
            if n is None:
                n = arr.shape[0]
            elif arr.shape[0] != n:
                raise ValueError(
                    f"Bars columns differ in length: ts has {n}, "
                    f"{name} has {arr.shape[0]}"
                )
            view = arr.view()
            view.flags.writeable = False
            object.__setattr__(self, name, view)
        ts = self.ts
        if n and n > 1 and not bool(np.all(ts[1:] > ts[:-1])):
            raise ValueError("Bars.ts must be strictly increasing")
        if n and bool(np.any(ts % self.tf_ms)):
            raise ValueError(f"Bars.ts must be multiples of tf_ms={self.tf_ms}")

    # -- constructors -------------------------------------------------------------
    @classmethod
    def empty(cls, tf_ms: int) -> Bars:
        """No bars, at timeframe ``tf_ms``."""
        return cls(**{f: np.empty(0, BAR_DTYPES[f]) for f in BAR_FIELDS}, tf_ms=tf_ms)

    @classmethod
    def from_columns(cls, columns: Mapping[str, Any], tf_ms: int) -> Bars:
        """Bars from a mapping of column name -> array-like (e.g. the store's read).

        All of :data:`BAR_FIELDS` are required; other keys (``vwap``, ``symbol``) are
        ignored. Arrays are converted to the column dtypes, not copied when they
        already have them.
        """
        missing = [f for f in BAR_FIELDS if f not in columns]
        if missing:
            raise ValueError(f"Bars.from_columns: missing columns {missing}")
        return cls(**{f: columns[f] for f in BAR_FIELDS}, tf_ms=tf_ms)

    @classmethod
    def from_rows(cls, rows: Iterable[tuple[Any, ...] | Bar], tf_ms: int) -> Bars:
        """Bars from :meth:`Bar.as_row` tuples or :class:`Bar` objects, oldest first."""
        materialised = [r.as_row() if isinstance(r, Bar) else tuple(r) for r in rows]
        if not materialised:
            return cls.empty(tf_ms)
        bad = next((r for r in materialised if len(r) != len(BAR_FIELDS)), None)
        if bad is not None:
            raise ValueError(
                f"Bars.from_rows: rows need {len(BAR_FIELDS)} fields {BAR_FIELDS}, "
                f"got {len(bad)}"
            )
        cols = zip(*materialised, strict=True)
        return cls(
            **{f: np.array(c, dtype=BAR_DTYPES[f]) for f, c in zip(BAR_FIELDS, cols)},
            tf_ms=tf_ms,
        )

    # -- access ---------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.ts.shape[0])

    @property
    def vwap(self) -> np.ndarray:
        """``quote_volume / volume`` per bar; NaN where ``volume == 0``."""
        with np.errstate(divide="ignore", invalid="ignore"):
            out = self.quote_volume / self.volume
        out[self.volume == 0] = np.nan
        return out

    def bar(self, i: int) -> Bar:
        """Row ``i`` (negative indexes count from the end) as a :class:`Bar`."""
        return Bar(*(_scalar(f, getattr(self, f)[i]) for f in BAR_FIELDS))

    def columns(self) -> dict[str, np.ndarray]:
        """The columns as a dict in :data:`BAR_FIELDS` order (read-only views)."""
        return {f: getattr(self, f) for f in BAR_FIELDS}

    def to_frame(self) -> pd.DataFrame:
        """DataFrame indexed by a UTC ``DatetimeIndex`` named ``ts``.

        Columns: ``open, high, low, close, volume, quote_volume, trades,
        buy_volume, vwap`` (copies; the frame is writable).
        """
        index = pd.DatetimeIndex(
            pd.to_datetime(self.ts, unit="ms", utc=True), name="ts"
        )
        data = {c: np.array(getattr(self, c)) for c in _FRAME_COLUMNS}
        data["vwap"] = self.vwap
        return pd.DataFrame(data, index=index)

    def take(self, sl: slice) -> Bars:
        """The bars of a slice of rows (e.g. ``slice(i, j)``), validated like any other."""
        return Bars(**{f: getattr(self, f)[sl] for f in BAR_FIELDS}, tf_ms=self.tf_ms)

    def tail(self, n: int) -> Bars:
        """The last ``n`` bars (all of them if there are fewer)."""
        if n < 0:
            raise ValueError(f"tail(n) needs n >= 0, got {n}")
        return self.take(slice(max(len(self) - n, 0), None))

    def since(self, ts_ms: int) -> Bars:
        """Bars whose bucket starts at or after ``ts_ms``."""
        first = int(np.searchsorted(self.ts, ts_ms, side="left"))
        return self.take(slice(first, None))

    def concat(self, other: Bars) -> Bars:
        """``self`` followed by ``other``; ``other`` must start strictly later.

        Raises
        ------
        ValueError
            On a timeframe mismatch or if the two overlap.
        """
        if other.tf_ms != self.tf_ms:
            raise ValueError(f"concat: tf_ms differ ({self.tf_ms} vs {other.tf_ms})")
        if not len(other):
            return self
        if not len(self):
            return other
        if other.ts[0] <= self.ts[-1]:
            raise ValueError(
                f"concat: other starts at {int(other.ts[0])}, "
                f"not after {int(self.ts[-1])}"
            )
        joined = {
            f: np.concatenate((getattr(self, f), getattr(other, f))) for f in BAR_FIELDS
        }
        return Bars(**joined, tf_ms=self.tf_ms)


def _scalar(field: str, value: Any) -> int | float:
    return int(value) if field in _INT_FIELDS else float(value)


# -- batch ----------------------------------------------------------------------------
def _as_1d(name: str, values: Any, dtype: Any, kinds: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.size and arr.dtype.kind not in kinds:
        raise ValueError(f"{name} must have dtype kind in {kinds!r}, got {arr.dtype}")
    return arr.astype(dtype, copy=False)


def _segments(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start index of each run of equal values in sorted ``keys``, and its end index."""
    n = keys.shape[0]
    starts = np.flatnonzero(keys[1:] != keys[:-1]) + 1
    starts = np.concatenate((np.zeros(1, np.intp), starts))
    ends = np.append(starts[1:], n) - 1
    return starts, ends


def _bins(
    offsets: np.ndarray, starts: np.ndarray, ends: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Bin of each row for :func:`_seq_sum`, and the bins that hold the buckets.

    Bucket offsets are used directly when dense (the usual case, no extra pass);
    sparse data (a few ticks years apart) gets run numbers instead, so the
    ``bincount`` output never grows with the time span.
    """
    if int(offsets[-1]) <= 2 * offsets.shape[0] + 4096:
        return offsets, offsets[starts]
    runs = np.arange(starts.shape[0], dtype=np.intp)
    return np.repeat(runs, ends - starts + 1), runs


def _seq_sum(bins: np.ndarray, weights: np.ndarray, present: np.ndarray) -> np.ndarray:
    """Sum ``weights`` per bin sequentially; return the sums of the bins ``present``.

    ``np.bincount`` adds ``weights[i]`` into ``out[bins[i]]`` for i = 0, 1, ...:
    the left-to-right sum :class:`BarBuilder` computes (``np.add.reduceat`` sums
    pairwise, which rounds differently).
    """
    size = int(bins[-1]) + 1
    return np.bincount(bins, weights=weights, minlength=size)[present]


def _is_sorted_by_time_id(t: np.ndarray, ids: np.ndarray) -> bool:
    if t.shape[0] < 2:
        return True
    if bool(np.any(t[1:] < t[:-1])):
        return False
    down = np.flatnonzero(ids[1:] < ids[:-1])  # usually empty: Binance ids grow with T
    return not bool(np.any(t[down + 1] == t[down]))


# Ticks per batch chunk. Chunks end on bucket boundaries and keep the temporaries
# (~0.5 MB each) in cache: on 3 M ticks this is ~1.5x faster than whole-array
# passes, whose fresh 24 MB temporaries mostly cost page faults.
_CHUNK = 1 << 16


def _bars_chunk(
    t: np.ndarray,
    ids: np.ndarray,
    px: np.ndarray,
    q: np.ndarray,
    maker: np.ndarray,
    tf: int,
) -> tuple[np.ndarray, ...]:
    """Columns (BAR_FIELDS order) of ``(T, id)``-sorted ticks holding whole buckets."""
    offsets = t // tf
    base = offsets[0]
    offsets -= base  # bucket index relative to the first: small, dense bincount bins
    starts, ends = _segments(offsets)
    bins, present = _bins(offsets, starts, ends)
    work = px * q
    quote = _seq_sum(bins, work, present)
    np.multiply(q, ~maker, out=work)
    return (
        (offsets[starts] + base) * tf,
        px[starts],
        np.maximum.reduceat(px, starts),
        np.minimum.reduceat(px, starts),
        px[ends],
        _seq_sum(bins, q, present),
        quote,
        (ends - starts + 1).astype(np.int64),
        _seq_sum(bins, work, present),
        ids[starts],
        ids[ends],
    )


def bars_from_ticks(
    time_ms: Any,
    trade_id: Any,
    price: Any,
    qty: Any,
    buyer_is_maker: Any,
    *,
    tf_ms: int,
) -> Bars:
    """Aggregate trade ticks into epoch-aligned OHLCV bars.

    Parameters
    ----------
    time_ms : array-like of int
        Trade time ``T``, ms since the UTC epoch.
    trade_id : array-like of int
        Trade id ``t``; breaks ties in ``time_ms``.
    price, qty : array-like of float
        Price and base quantity; must be finite.
    buyer_is_maker : array-like of bool
        Binance ``m``; ``False`` means the taker bought.
    tf_ms : int
        Bar length in ms, a positive multiple of 1000 (see
        :func:`analytics.timeframes.parse_timeframe`).

    Returns
    -------
    Bars
        One bar per non-empty bucket, in time order.

    Notes
    -----
    For bucket :math:`k` with ticks :math:`i \\in B_k`, :math:`B_k = \\{i :
    \\lfloor T_i / tf \\rfloor = k\\}`, ordered by :math:`(T_i, id_i)`:

    .. math::

        ts_k = k \\cdot tf,\\quad open_k = p_{first},\\quad close_k = p_{last},\\quad
        high_k = \\max p_i,\\quad low_k = \\min p_i,

        volume_k = \\sum q_i,\\quad quote_k = \\sum p_i q_i,\\quad
        buy_k = \\sum_{m_i = False} q_i,\\quad trades_k = |B_k|.

    Input already ordered by ``(T, id)`` (the normal case) is not re-sorted; other
    input is ``np.lexsort``-ed (stable, so exact duplicates keep input order). Sums
    are sequential in that order (see the module docstring). Duplicated trade ids
    are *not* removed: de-duplication is the ingest layer's job.

    Raises
    ------
    ValueError
        On mismatched lengths, non-integer times/ids, non-finite price/qty or an
        invalid ``tf_ms``.
    """
    tf = validate_tf_ms(tf_ms)
    t = _as_1d("time_ms", time_ms, np.int64, "iu")
    ids = _as_1d("trade_id", trade_id, np.int64, "iu")
    px = _as_1d("price", price, np.float64, "iuf")
    q = _as_1d("qty", qty, np.float64, "iuf")
    maker = _as_1d("buyer_is_maker", buyer_is_maker, np.bool_, "bui")
    n = t.shape[0]
    lengths = {len(a) for a in (ids, px, q, maker)}
    if lengths != {n}:
        raise ValueError(
            "tick columns differ in length: "
            f"time_ms={n}, trade_id={len(ids)}, price={len(px)}, qty={len(q)}, "
            f"buyer_is_maker={len(maker)}"
        )
    if n == 0:
        return Bars.empty(tf)

    if not _is_sorted_by_time_id(t, ids):
        order = np.lexsort((ids, t))
        t, ids, px, q, maker = t[order], ids[order], px[order], q[order], maker[order]

    parts = []
    i = 0
    with np.errstate(invalid="ignore", over="ignore"):  # non-finite: raised below
        while i < n:
            j = i + _CHUNK
            if j < n:  # extend to the end of the bucket holding tick j
                j = int(np.searchsorted(t, (t[j] // tf + 1) * tf, side="left"))
            else:
                j = n
            parts.append(_bars_chunk(t[i:j], ids[i:j], px[i:j], q[i:j], maker[i:j], tf))
            i = j
    cols = dict(
        zip(
            BAR_FIELDS,
            parts[0] if len(parts) == 1 else map(np.concatenate, zip(*parts)),
        )
    )
    # max/min propagate NaN and sums NaN/inf, so checking the (much shorter)
    # outputs catches any non-finite price or qty without another pass over n.
    if not (np.isfinite(cols["high"]).all() and np.isfinite(cols["low"]).all()):
        raise ValueError("price must be finite")
    if not np.isfinite(cols["volume"]).all():
        raise ValueError("qty must be finite")
    return Bars(**cols, tf_ms=tf)


def resample_bars(bars: Bars, *, tf_ms: int) -> Bars:
    """Aggregate bars into a coarser timeframe (e.g. 1 s -> 1 m).

    Parameters
    ----------
    bars : Bars
        Fine bars at ``bars.tf_ms``.
    tf_ms : int
        Target timeframe, a whole multiple of ``bars.tf_ms``.

    Returns
    -------
    Bars
        The same bars :func:`bars_from_ticks` gives at ``tf_ms`` on the ticks the
        fine bars came from: since both grids are epoch-aligned and ``tf_ms`` is a
        multiple, each fine bucket lies inside exactly one coarse bucket, so

        ``open = open[first]``, ``close = close[last]``, ``high = max(high)``,
        ``low = min(low)``, ``first_id = first_id[first]``,
        ``last_id = last_id[last]``, and ``volume, quote_volume, trades,
        buy_volume`` are sums. Prices, counts and ids are exactly equal; float
        sums equal to rounding (sums of sums).

    Raises
    ------
    ValueError
        If ``tf_ms`` is not a positive whole multiple of ``bars.tf_ms``.
    """
    tf = validate_tf_ms(tf_ms)
    if tf % bars.tf_ms:
        raise ValueError(
            f"resample_bars: tf_ms={tf} is not a whole multiple of "
            f"bars.tf_ms={bars.tf_ms}"
        )
    if tf == bars.tf_ms or not len(bars):
        return bars if tf == bars.tf_ms else Bars.empty(tf)
    offsets = bars.ts // tf
    base = offsets[0]
    offsets -= base
    starts, ends = _segments(offsets)
    bins, present = _bins(offsets, starts, ends)
    return Bars(
        ts=(offsets[starts] + base) * tf,
        open=bars.open[starts],
        high=np.maximum.reduceat(bars.high, starts),
        low=np.minimum.reduceat(bars.low, starts),
        close=bars.close[ends],
        volume=_seq_sum(bins, bars.volume, present),
        quote_volume=_seq_sum(bins, bars.quote_volume, present),
        trades=np.add.reduceat(bars.trades, starts),
        buy_volume=_seq_sum(bins, bars.buy_volume, present),
        first_id=bars.first_id[starts],
        last_id=bars.last_id[ends],
        tf_ms=tf,
    )


# -- incremental ----------------------------------------------------------------------
class BarBuilder:
    """Live bars for one symbol and one timeframe, one tick at a time.

    Parameters
    ----------
    tf_ms : int
        Bar length in ms (a positive multiple of 1000).
    close_delay_ms : int, default 0
        Grace period for :meth:`on_clock`: the open bar closes when the clock
        reaches ``bucket_start + tf_ms + close_delay_ms``, giving trades stamped
        just before the boundary time to arrive.

    Notes
    -----
    A bar closes at the first of

    * a tick in a later bucket (:meth:`on_tick` returns the closed bar), or
    * the clock passing ``bucket_start + tf_ms + close_delay_ms``
      (:meth:`on_clock` returns it), so a bar closes even if no trade follows.

    After a bucket is closed, or skipped because it had no tick and the builder
    moved past it, a tick that belongs to it is **late**: it is not added to any
    live bar, only counted in :attr:`late_ticks`. A closed bar has already been
    published (chart, store, pair engine) and bars must come out in time order,
    so it is not amended; the tick itself is still stored by ingest, and a batch
    rebuild (:func:`bars_from_ticks` over the stored ticks) includes it. Ticks
    inside the open bucket may arrive in any order: open/close follow
    ``(T, trade_id)`` exactly as in the batch path.

    With ticks in ``(T, id)`` order, and clock calls that never run ahead of the
    ticks still to come (``now <= T`` of every later tick), the closed bars are
    bit-identical to :func:`bars_from_ticks` over the same ticks, whatever the
    clock calls: they only close bars earlier. Out-of-order ticks within a
    bucket give the same prices, counts and ids, and float sums equal to
    rounding (different summation order).

    The per-tick path is plain scalar Python (~0.3-0.5 µs a tick here); nothing is
    validated there, callers pass finite floats and ints.
    """

    __slots__ = (
        "tf_ms",
        "close_delay_ms",
        "late_ticks",
        "last_closed",
        "_floor",
        "_start",
        "_end",
        "_o",
        "_h",
        "_l",
        "_c",
        "_v",
        "_qv",
        "_n",
        "_bv",
        "_first_t",
        "_first_id",
        "_last_t",
        "_last_id",
    )

    def __init__(self, tf_ms: int, *, close_delay_ms: int = 0) -> None:
        self.tf_ms = validate_tf_ms(tf_ms)
        if isinstance(close_delay_ms, bool) or int(close_delay_ms) != close_delay_ms:
            raise ValueError(
                f"close_delay_ms must be an integer, got {close_delay_ms!r}"
            )
        if close_delay_ms < 0:
            raise ValueError(f"close_delay_ms must be >= 0, got {close_delay_ms}")
        self.close_delay_ms = int(close_delay_ms)
        #: Ticks whose bucket was already closed or skipped (not in any live bar).
        self.late_ticks = 0
        #: The most recently closed bar, or None.
        self.last_closed: Bar | None = None
        # Ticks with T < _floor are late. While a bar is open, _floor == its start.
        self._floor: int | None = None
        self._start: int | None = None  # open bucket [_start, _end), None if none
        self._end = 0
        self._o = self._h = self._l = self._c = 0.0
        self._v = self._qv = self._bv = 0.0
        self._n = 0
        self._first_t = self._first_id = self._last_t = self._last_id = 0

    @property
    def floor(self) -> int | None:
        """Final-before mark: every bucket starting before it is closed or skipped.

        A tick with ``T < floor`` is late, so no bar with ``ts < floor`` will ever
        come out again. While a bar is open this is its start; after a close it is
        the closed bucket's end, raised by :meth:`on_clock` to the first bucket whose
        deadline is still ahead. None before the first tick or clock call.
        """
        return self._floor

    @property
    def current(self) -> Bar | None:
        """The open (partial) bar, or None if no bucket is open."""
        if self._start is None:
            return None
        return Bar(
            self._start,
            self._o,
            self._h,
            self._l,
            self._c,
            self._v,
            self._qv,
            self._n,
            self._bv,
            self._first_id,
            self._last_id,
        )

    def on_tick(
        self,
        time_ms: int,
        trade_id: int,
        price: float,
        qty: float,
        buyer_is_maker: bool,
    ) -> Bar | None:
        """Add one trade; return the bar this tick closes, else None.

        A tick in a later bucket closes the open bar and opens a new one; a late
        tick (see class notes) changes nothing but :attr:`late_ticks`.
        """
        start = self._start
        if start is not None and start <= time_ms < self._end:
            # Hot path: the tick is in the open bucket.
            if price > self._h:
                self._h = price
            elif price < self._l:
                self._l = price
            self._v += qty
            self._qv += price * qty
            self._n += 1
            if not buyer_is_maker:
                self._bv += qty
            lt = self._last_t
            if time_ms > lt or (time_ms == lt and trade_id >= self._last_id):
                self._c = price
                self._last_t = time_ms
                self._last_id = trade_id
            else:
                ft = self._first_t
                if time_ms < ft or (time_ms == ft and trade_id < self._first_id):
                    self._o = price
                    self._first_t = time_ms
                    self._first_id = trade_id
            return None
        floor = self._floor
        if floor is not None and time_ms < floor:
            self.late_ticks += 1
            log.debug(
                "late tick id=%s T=%s before %s (tf=%s); left to batch rebuild",
                trade_id,
                time_ms,
                floor,
                self.tf_ms,
            )
            return None
        closed = self._close() if start is not None else None
        self._open(time_ms, trade_id, price, qty, buyer_is_maker)
        return closed

    def on_clock(self, now_ms: int) -> Bar | None:
        """Advance the clock; close and return the open bar if its time is up.

        The open bar closes when ``now_ms >= start + tf_ms + close_delay_ms``.
        Afterwards every bucket whose deadline has passed counts as closed: a tick
        for it is late. A clock that goes backwards changes nothing.
        """
        tf = self.tf_ms
        # First bucket whose deadline start + tf + delay is still ahead of now_ms.
        open_from = ((now_ms - tf - self.close_delay_ms) // tf + 1) * tf
        closed = None
        if self._start is not None and self._start < open_from:
            closed = self._close()
        if self._start is None and (self._floor is None or open_from > self._floor):
            self._floor = open_from
        return closed

    def flush(self) -> Bar | None:
        """Close the open bar now regardless of the clock (e.g. at shutdown)."""
        return self._close() if self._start is not None else None

    def _open(self, t: int, i: int, p: float, q: float, m: bool) -> None:
        start = t - t % self.tf_ms
        self._start = self._floor = start
        self._end = start + self.tf_ms
        self._o = self._h = self._l = self._c = p
        self._v = 0.0 + q  # 0.0 + q, exactly as the batch's sum starting from 0
        self._qv = 0.0 + p * q
        self._bv = 0.0 if m else 0.0 + q
        self._n = 1
        self._first_t = self._last_t = t
        self._first_id = self._last_id = i

    def _close(self) -> Bar:
        bar = self.current
        assert bar is not None
        self.last_closed = bar
        self._floor = self._end
        self._start = None
        return bar
