"""Display downsampling of long bar series (pure numpy, no Dash).

A day of 1 s bars is 86,400 points per trace: 1.4-2.9 MB of JSON and a sluggish
browser. Charts get at most ``max_points`` points:

* **lines** (:func:`minmax_indices`): the x range is cut into ``max_points // 2``
  equal-count buckets and each bucket keeps the indices of its minimum and its maximum
  (in time order), so every spike and every trough survives at any zoom level; first
  and last points are always kept. Cost is O(n) (one reshape and two argmin/argmax).
* **candles** (:func:`ohlc_buckets`): consecutive bars are merged into coarser candles
  (open of the first, max high, min low, close of the last, summed volume) -- exactly
  a resample to a coarser timeframe, so the candles stay honest.

Full resolution returns on zoom: :func:`visible_slice` cuts the visible x range (plus a
margin so a short pan shows data at once) before downsampling, so a zoom to a few
minutes shows every bar.
"""

from __future__ import annotations

import numpy as np

DEFAULT_MAX_POINTS = 2_000
#: Fraction of the visible span kept on each side of a zoomed view.
PAN_MARGIN = 0.5


def minmax_indices(y: np.ndarray, max_points: int = DEFAULT_MAX_POINTS) -> np.ndarray:
    """Indices (sorted) of a min-max downsample of ``y`` to at most ``max_points``.

    NaNs are ignored inside a bucket (a bucket of only NaN keeps its first index, so
    gaps stay gaps). Returns ``arange(n)`` when ``n <= max_points``.
    """
    y = np.asarray(y, dtype=float)
    n = len(y)
    if max_points < 4:
        raise ValueError(f"max_points must be >= 4, got {max_points}")
    if n <= max_points:
        return np.arange(n)
    buckets = (max_points - 2) // 2
    size = -(-(n - 2) // buckets)  # ceil: every interior point falls in one bucket
    buckets = -(-(n - 2) // size)  # so no bucket is padding only
    inner = y[1 : n - 1]
    pad = size * buckets - len(inner)
    grid = np.concatenate([inner, np.full(pad, np.nan)]).reshape(buckets, size)
    all_nan = np.isnan(grid).all(axis=1)
    safe_lo = np.where(np.isnan(grid), np.inf, grid)
    safe_hi = np.where(np.isnan(grid), -np.inf, grid)
    lo = np.argmin(safe_lo, axis=1)
    hi = np.argmax(safe_hi, axis=1)
    lo = np.where(all_nan, 0, lo)
    hi = np.where(all_nan, 0, hi)
    base = np.arange(buckets) * size + 1
    idx = np.concatenate([[0], base + lo, base + hi, [n - 1]])
    return np.unique(idx)


def minmax_multi(columns: list[np.ndarray], max_points: int = DEFAULT_MAX_POINTS) -> np.ndarray:
    """One index set serving several traces sharing x (union of their min-max picks,
    each with a share of the budget), so the traces stay aligned point for point."""
    if not columns:
        return np.arange(0)
    n = len(columns[0])
    if n <= max_points:
        return np.arange(n)
    share = max(4, max_points // len(columns))
    return np.unique(np.concatenate([minmax_indices(c, share) for c in columns]))


def visible_slice(
    ts: np.ndarray, x_range: tuple[int, int] | None, margin: float = PAN_MARGIN
) -> slice:
    """Slice of the (sorted, epoch-ms) ``ts`` inside ``x_range`` widened by ``margin``
    of its span on each side; the whole series when ``x_range`` is None."""
    if x_range is None:
        return slice(0, len(ts))
    lo, hi = sorted((int(x_range[0]), int(x_range[1])))
    pad = int((hi - lo) * margin)
    i = int(np.searchsorted(ts, lo - pad, side="left"))
    j = int(np.searchsorted(ts, hi + pad, side="right"))
    return slice(max(i - 1, 0), min(j + 1, len(ts)))


def ohlc_buckets(
    ts: np.ndarray,
    open_: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    volume: np.ndarray,
    max_candles: int,
) -> dict[str, np.ndarray]:
    """Merge consecutive bars into at most ``max_candles`` candles (bucket start ts)."""
    n = len(ts)
    if max_candles < 1:
        raise ValueError(f"max_candles must be >= 1, got {max_candles}")
    if n <= max_candles:
        return {"ts": ts, "open": open_, "high": high, "low": low, "close": close, "volume": volume}
    size = -(-n // max_candles)
    starts = np.arange(0, n, size)
    ends = np.minimum(starts + size, n) - 1
    return {
        "ts": ts[starts],
        "open": open_[starts],
        "high": np.maximum.reduceat(high, starts),
        "low": np.minimum.reduceat(low, starts),
        "close": close[ends],
        "volume": np.add.reduceat(volume, starts),
    }
