"""Session breaks: where a series stops being one continuous market.

A *break* is the time ``ts_ms`` of the first trade after the feed lost continuity: a
replay tape looping back to its start (prices snap back to the tape's first trade), an
outage the feed could not fill. Across a break, price differences are not returns, and
no window of a trailing statistic may span it.

Rule on a bar grid of timeframe ``tf``: a bar (or aligned point) at bucket start ``t``
belongs to the session that contains its **close**. The bucket that contains the break
``B`` (``t <= B < t + tf``) closes after it, so it opens the new session::

    session(t) = #{ breaks B : floor(B / tf) * tf <= t }

A series is then computed *per segment* (maximal runs of equal ``session``): every
trailing window restarts at a segment start, values are NaN until the new segment has
enough bars, exactly as at the start of the data. A pair's breaks are the union of its
legs' breaks.

Pure functions, no I/O: the live engine records breaks (:meth:`analytics.engine.
MarketEngine.mark_break`), the batch analytics take them as an argument.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

__all__ = [
    "EMPTY_BREAKS",
    "as_breaks",
    "break_buckets",
    "last_segment",
    "last_session",
    "segment_bounds",
    "segment_starts",
    "session_ids",
    "union_breaks",
]

EMPTY_BREAKS = np.zeros(0, dtype=np.int64)
EMPTY_BREAKS.flags.writeable = False


def as_breaks(breaks: object | None) -> np.ndarray:
    """Validated break times: sorted unique int64 ms (empty for None)."""
    if breaks is None:
        return EMPTY_BREAKS
    arr = np.asarray(breaks)
    if arr.size == 0:
        return EMPTY_BREAKS
    if arr.ndim != 1 or arr.dtype.kind not in "iu":
        raise ValueError(f"breaks must be a 1-D array of integer ms, got {arr.dtype} {arr.shape}")
    return np.unique(arr.astype(np.int64))


def union_breaks(*breaks: object | None) -> np.ndarray:
    """Sorted unique union of several break arrays (a pair's: both legs')."""
    parts = [as_breaks(b) for b in breaks]
    parts = [p for p in parts if len(p)]
    if not parts:
        return EMPTY_BREAKS
    return np.unique(np.concatenate(parts))


def break_buckets(breaks: object | None, tf_ms: int | None) -> np.ndarray:
    """Bucket start of each break on a ``tf_ms`` grid (unique, sorted).

    ``tf_ms=None`` (or 0) keeps the raw times: use it for series whose timestamps are the
    bars' closes or trade times.
    """
    b = as_breaks(breaks)
    if not len(b) or not tf_ms:
        return b
    return np.unique(b - b % int(tf_ms))


def session_ids(ts: object, breaks: object | None, tf_ms: int | None = None) -> np.ndarray:
    """Session number of each timestamp: how many break buckets are at or before it.

    ``ts`` must be sorted. Session 0 is everything before the first break; numbers
    count breaks, so they may skip where a break fell in a gap with no bars.
    """
    t = np.asarray(ts, dtype=np.int64)
    bb = break_buckets(breaks, tf_ms)
    if not len(bb):
        return np.zeros(len(t), dtype=np.int64)
    return np.searchsorted(bb, t, side="right").astype(np.int64)


def segment_starts(ts: object, breaks: object | None, tf_ms: int | None = None) -> np.ndarray:
    """Indices ``i > 0`` where a new segment starts (``session[i] != session[i-1]``)."""
    sid = session_ids(ts, breaks, tf_ms)
    if len(sid) < 2:
        return np.zeros(0, dtype=np.intp)
    return (np.flatnonzero(sid[1:] != sid[:-1]) + 1).astype(np.intp)


def segment_bounds(
    ts: object, breaks: object | None, tf_ms: int | None = None
) -> Iterator[tuple[int, int]]:
    """``(start, stop)`` index slices of each segment, in order (one if no break)."""
    n = len(np.asarray(ts))
    cuts = [0, *segment_starts(ts, breaks, tf_ms).tolist(), n]
    for lo, hi in zip(cuts[:-1], cuts[1:], strict=True):
        if hi > lo:
            yield lo, hi


def last_segment(ts: object, breaks: object | None, tf_ms: int | None = None) -> int:
    """Index where the last segment starts (0 without a break inside ``ts``)."""
    starts = segment_starts(ts, breaks, tf_ms)
    return int(starts[-1]) if len(starts) else 0


def last_session(aligned, *breaks):
    """The points of an :class:`analytics.align.AlignedPair` after the last session
    break of either leg (``breaks``: each leg's raw break times): returns computed on
    them never span a break."""
    s0 = last_segment(aligned.ts, union_breaks(*breaks), aligned.tf_ms)
    return aligned if s0 == 0 else aligned.tail(len(aligned) - s0)
