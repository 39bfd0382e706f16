"""Mid-price bars: the "bars" a pair aligns when computed on ``source="mid"`` (#17).

Definition
----------
From a leg's 1 s book bars (:data:`analytics.book.BOOK_FIELDS`: the bid and ask of the
last quote in each second, ``updates`` quotes in it), its **mid bar** at timeframe
``tf`` for bucket ``T`` exists when the book changed inside ``[T, T + tf)`` (a 1 s book
bar with ``updates > 0`` there), and::

    close_T = (bid + ask) / 2   of the last such 1 s book bar in the bucket
    open_T, high_T, low_T       = first, highest, lowest of those 1 s mids
    trades_T                    = sum of their ``updates``

A bucket without a quote has no mid bar, exactly as a bucket without a trade has no
trade bar: :func:`analytics.align.align_pair` then carries the previous mid forward,
which *is* the book as of that bucket's end (nothing changed). So at every point of a
``source="mid"`` pair both legs' values are their mids as of the end of the bucket,
with the same carry rule and the same alignment code as ``source="trade"``.

:func:`mid_bars` is the batch form (history, restore); :class:`MidCloser` the
incremental twin fed with each closed 1 s book bar and the bar clock. Fed the same 1 s
rows it emits exactly the rows of :func:`mid_bars` (tested), each once its bucket is
final: for 1 s at once; for a coarser ``tf`` on the first 1 s bar of a later bucket or
when the clock reaches ``T + tf`` (the trade bars' rule, :class:`analytics.bars.BarBuilder`).
"""

from __future__ import annotations

import numpy as np

from analytics.bars import Bar, Bars
from analytics.timeframes import validate_tf_ms

__all__ = ["MidCloser", "mid_bars"]


def mid_bars(
    ts: object, bid: object, ask: object, updates: object, tf_ms: int
) -> Bars:
    """Mid bars at ``tf_ms`` from 1 s book rows (module docstring).

    ``ts`` increasing 1 s bucket starts; rows with ``updates <= 0`` or a non-finite
    quote (carried or empty seconds) add nothing."""
    tf = validate_tf_ms(tf_ms)
    t = np.asarray(ts, dtype=np.int64)
    bi = np.asarray(bid, dtype=np.float64)
    ak = np.asarray(ask, dtype=np.float64)
    up = np.asarray(updates, dtype=np.int64)
    keep = (up > 0) & np.isfinite(bi) & np.isfinite(ak)
    t, mid, up = t[keep], (bi[keep] + ak[keep]) / 2.0, up[keep]
    if not len(t):
        return Bars.empty(tf)
    bucket = t - t % tf
    starts = np.flatnonzero(np.r_[True, bucket[1:] != bucket[:-1]])
    ends = np.r_[starts[1:], len(t)] - 1
    zeros = np.zeros(len(starts))
    ids = np.zeros(len(starts), dtype=np.int64)
    return Bars.from_columns(
        {
            "ts": bucket[starts], "open": mid[starts],
            "high": np.maximum.reduceat(mid, starts), "low": np.minimum.reduceat(mid, starts),
            "close": mid[ends], "volume": zeros, "quote_volume": zeros,
            "trades": np.add.reduceat(up, starts), "buy_volume": zeros,
            "first_id": ids, "last_id": ids,
        },
        tf_ms=tf,
    )


class MidCloser:
    """Incremental :func:`mid_bars` for one leg and one timeframe (O(1) a 1 s bar)."""

    __slots__ = ("tf_ms", "_ts", "_open", "_high", "_low", "_close", "_n")

    def __init__(self, tf_ms: int) -> None:
        self.tf_ms = validate_tf_ms(tf_ms)
        self._ts: int | None = None  # the open bucket
        self._open = self._high = self._low = self._close = 0.0
        self._n = 0

    @property
    def open_ts(self) -> int | None:
        """Start of the bucket still open (its bar not emitted yet), None if none."""
        return self._ts

    def on_book_bar(
        self, ts: int, bid: float, ask: float, updates: int
    ) -> list[Bar]:
        """Take one closed 1 s book bar; return the mid bars now final (0, 1 or 2)."""
        if updates <= 0 or not (np.isfinite(bid) and np.isfinite(ask)):
            return []
        mid = (bid + ask) / 2.0
        bucket = ts - ts % self.tf_ms
        out = []
        if self._ts is not None and bucket != self._ts:
            out.append(self._emit())
        if self._ts is None:
            self._ts, self._open, self._high, self._low, self._n = bucket, mid, mid, mid, 0
        self._high, self._low = max(self._high, mid), min(self._low, mid)
        self._close = mid
        self._n += int(updates)
        if self.tf_ms == 1_000:
            out.append(self._emit())
        return out

    def on_clock(self, now_ms: int) -> list[Bar]:
        """Emit the open bucket once the clock reaches its end."""
        if self._ts is not None and now_ms >= self._ts + self.tf_ms:
            return [self._emit()]
        return []

    def _emit(self) -> Bar:
        bar = Bar(self._ts, self._open, self._high, self._low, self._close, 0.0, 0.0,
                  self._n, 0.0, 0, 0)
        self._ts = None
        return bar
