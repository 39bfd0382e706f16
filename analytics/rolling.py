"""Trailing-window moments: one vectorised batch kernel and its O(1) incremental twins.

Everything in the pair analytics that is "over the last ``w`` bars" (rolling OLS, the
z-score's mean and standard deviation, rolling correlation) reduces to five centred
window moments of two series ``x`` and ``y`` over bars ``t-w+1 .. t``::

    mean_x = (1/w) sum x_i                 cxx = sum (x_i - mean_x)^2
    mean_y = (1/w) sum y_i                 cyy = sum (y_i - mean_y)^2
                                           cxy = sum (x_i - mean_x)(y_i - mean_y)

Precision
---------
The textbook shortcut ``cxx = sum x^2 - (sum x)^2 / w`` over cumulative sums of a day of
raw prices cancels catastrophically (BTC near 60,000 with a window standard deviation of
a few dollars leaves ~1e-6 relative error; see docs/performance.md). Both implementations
here keep every sum *local and centred*:

* :func:`window_moments` (batch) cuts the series into blocks of ``w`` bars. Every window
  ending in block ``k`` (but the last one, which is block ``k`` itself and is summed
  apart, centred on its first bar) contains the last bar of block ``k-1``; the values
  are centred on that bar, so deviations are bounded by the window's own range, and
  each window sum is a forward cumulative sum inside block ``k`` plus a suffix sum
  inside block ``k-1``: every partial sum holds only that window's terms (no difference
  of large running totals). The reference bar is at or before the window end, so nothing
  after ``t`` touches the value at ``t``, not even in the last bit. Relative error
  ~1e-14 on the tape; cost: ten cumsums over n numbers (a few ms for 86,400 bars, any
  ``w``).
* The incremental classes keep running sums of values centred on a reference, add the
  new bar and subtract the bar leaving the window (O(1)); every ``w`` updates they
  recompute the sums exactly from their ring buffer and move the reference to the
  window mean, which bounds the floating drift (amortised O(1)). They also track a
  bound of the rounding accumulated since the last recompute and recompute early when
  it exceeds ~1e-12 of the window's variance (a jump followed by a calm window; rare,
  O(w) each time).

Exactly constant windows (e.g. a forward-filled price that did not trade for ``w``
seconds) are detected with integer run counts and get ``cxx == 0`` exactly, as pandas
does, so a downstream division gives NaN rather than noise divided by noise.

A window that contains a NaN yields NaN (pandas ``min_periods=window`` semantics).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

# OLS with an intercept needs 3 points for one residual degree of freedom
MIN_WINDOW = 3

__all__ = [
    "MIN_WINDOW",
    "BetaAlpha",
    "MeanStd",
    "WindowMoments",
    "RollingCorr",
    "RollingMoments",
    "RollingOLS",
    "as_float_array",
    "check_window",
    "log_prices",
    "window_moments",
]


class BetaAlpha(NamedTuple):
    """Hedge ratio and intercept of ``A = alpha + beta * B``."""

    beta: float
    alpha: float


class MeanStd(NamedTuple):
    """Window mean and sample standard deviation (ddof=1)."""

    mean: float
    std: float


# --------------------------------------------------------------------------- validation


def as_float_array(x: object, name: str, *, allow_nan: bool = False) -> np.ndarray:
    """Return ``x`` as a 1-D float64 array (a copy-free view when possible).

    Raises ``ValueError`` naming ``name`` if it is not 1-D or has non-finite values
    (NaN tolerated when ``allow_nan``; +-inf never).
    """
    if isinstance(x, pd.Series | pd.Index):
        arr = x.to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        try:
            arr = np.asarray(x, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{name} must be numeric: {exc}") from exc
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    bad = ~np.isfinite(arr)
    if allow_nan:
        bad &= ~np.isnan(arr)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{name} must be finite; {name}[{i}] = {float(arr[i])!r}")
    return arr


def check_window(
    window: object, *, minimum: int = MIN_WINDOW, name: str = "window"
) -> int:
    """Validate a window length: an ``int`` (not bool) ``>= minimum``."""
    if isinstance(window, bool) or not isinstance(window, int | np.integer):
        raise ValueError(f"{name} must be an int, got {type(window).__name__}")
    if window < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {window}")
    return int(window)


def log_prices(x: object, name: str = "p") -> np.ndarray:
    """Natural log of positive prices, elementwise with ``math.log``.

    ``math.log`` rather than ``np.log``: the live engine logs one price at a time with
    ``math.log``, and numpy's vectorised log may differ in the last bit; using the same
    function keeps batch and incremental results bitwise comparable (robust refits on
    log prices are iterative and would amplify a 1-ulp difference).
    """
    xa = as_float_array(x, name)
    if (xa <= 0.0).any():
        raise ValueError(f"{name} must be positive to take logs")
    return np.fromiter(map(math.log, xa.tolist()), dtype=np.float64, count=len(xa))


# ------------------------------------------------------------------------- batch kernel


@dataclass(frozen=True, slots=True)
class WindowMoments:
    """Centred moments of the window ending at each bar (NaN before bar ``w-1``)."""

    mean_x: np.ndarray
    mean_y: np.ndarray
    cxx: np.ndarray
    cyy: np.ndarray
    cxy: np.ndarray
    window: int


def _constant_windows(x: np.ndarray, window: int) -> np.ndarray:
    """Boolean per bar: the ``window`` values ending here are all exactly equal."""
    changes = np.concatenate(([0], np.cumsum(x[1:] != x[:-1])))  # integer: exact
    out = np.zeros(len(x), dtype=bool)
    if len(x) >= window:
        out[window - 1 :] = changes[window - 1 :] == changes[: len(x) - window + 1]
    return out


def window_moments(x: object, y: object | None = None, *, window: int) -> WindowMoments:
    """Trailing-window means and centred (co)moment sums, vectorised and exact.

    Parameters
    ----------
    x, y : array_like
        Equal-length series (``y`` defaults to ``x``). NaN allowed: any window holding a
        NaN gives NaN.
    window : int
        Window length ``w >= 1``.

    Returns
    -------
    WindowMoments
        ``mean_x[t]``, ``mean_y[t]``, ``cxx[t] = sum (x_i - mean_x)^2``, ``cyy[t]``,
        ``cxy[t] = sum (x_i - mean_x)(y_i - mean_y)`` over ``i = t-w+1 .. t``.

    Notes
    -----
    Block-centred partial sums, see the module docstring: relative error ~1e-14 on a
    day of 1 s BTC prices, O(n) whatever ``w``.
    """
    w = check_window(window, minimum=1)
    xa = as_float_array(x, "x", allow_nan=True)
    ya = xa if y is None else as_float_array(y, "y", allow_nan=True)
    n = len(xa)
    if len(ya) != n:
        raise ValueError(f"x and y must have the same length, got {n} and {len(ya)}")
    nan = np.full(n, np.nan)
    if n < w:
        return WindowMoments(nan, nan.copy(), nan.copy(), nan.copy(), nan.copy(), w)

    invalid = ~(np.isfinite(xa) & np.isfinite(ya))
    nblocks = -(-n // w)
    total = (nblocks + 1) * w

    def centred(v: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        # padded[w + t] = v[t]; row k + 1 is block k, row 0 is padding
        padded = np.full(total, np.nan)
        padded[w : w + n] = np.where(invalid, np.nan, v)
        rows = padded.reshape(nblocks + 1, w)
        # Reference of block k: the last bar of block k-1. It lies inside every window
        # ending in block k (so deviations are bounded by the window's own range) and at
        # or before its end (so the value at t depends on bars <= t only, bit for bit).
        # Block 0 has one complete window, bars 0 .. w-1: its reference is bar 0.
        ref = rows[:-1, -1].copy()
        ref[0] = rows[1, 0]
        ref = np.where(np.isfinite(ref), ref, 0.0)
        # NaN and padding contribute 0; windows touching them are masked below
        prev = np.nan_to_num(rows[:-1] - ref[:, None], nan=0.0)
        cur = np.nan_to_num(rows[1:] - ref[:, None], nan=0.0)
        # The one window ending at the last bar of block k is block k itself and does
        # not contain that reference: it is summed apart, centred on its first bar.
        own_ref = np.nan_to_num(rows[1:, 0], nan=0.0)
        own = np.nan_to_num(rows[1:] - own_ref[:, None], nan=0.0)
        return prev, cur, ref, own, own_ref

    px, cx, rx, ox, orx = centred(xa)
    py, cy, ry, oy, ory = centred(ya)
    last = np.arange(w - 1, n, w)  # bars that end a block
    nlast = len(last)

    def wsum(prev: np.ndarray, cur: np.ndarray) -> np.ndarray:
        # window ending at bar j of block k = cur[k, :j+1] + prev[k, j+1:]: a forward
        # cumsum in block k plus a suffix sum in block k-1, so every partial sum holds
        # window terms only (no difference of large running totals)
        out = np.cumsum(cur, axis=1)
        out[:, :-1] += np.cumsum(prev[:, :0:-1], axis=1)[:, ::-1]
        return out.ravel()[:n]

    def sums(prev, cur, own) -> np.ndarray:  # type: ignore[no-untyped-def]
        out = wsum(prev, cur)
        out[last] = own.sum(axis=1)[:nlast]
        return out

    sx, sy = sums(px, cx, ox), sums(py, cy, oy)
    sxx = sums(px * px, cx * cx, ox * ox)
    syy = sums(py * py, cy * cy, oy * oy)
    sxy = sums(px * py, cx * cy, ox * oy)
    refx = np.repeat(rx, w)[:n]
    refy = np.repeat(ry, w)[:n]
    refx[last] = orx[:nlast]
    refy[last] = ory[:nlast]

    mean_x = refx + sx / w
    mean_y = refy + sy / w
    cxx = np.maximum(sxx - sx * sx / w, 0.0)
    cyy = np.maximum(syy - sy * sy / w, 0.0)
    cxy = sxy - sx * sy / w

    const_x = _constant_windows(xa, w)
    const_y = const_x if y is None else _constant_windows(ya, w)
    cxx[const_x] = 0.0
    cyy[const_y] = 0.0
    cxy[const_x | const_y] = 0.0
    mean_x[const_x] = xa[const_x]
    mean_y[const_y] = ya[const_y]

    bad_count = np.concatenate(([0], np.cumsum(invalid)))
    bad = np.ones(n, dtype=bool)
    bad[w - 1 :] = bad_count[w:] > bad_count[: n - w + 1]
    for arr in (mean_x, mean_y, cxx, cyy, cxy):
        arr[bad] = np.nan
    return WindowMoments(mean_x, mean_y, cxx, cyy, cxy, w)


# -------------------------------------------------------------------- incremental twins

# recompute when the accumulated rounding bound exceeds ~1e4 eps of the window variance
_MAX_ACC_RATIO = 1e4


class _PairSums:
    """Ring buffer of the last ``w`` (x, y) pairs plus centred running sums.

    Bounded state: two preallocated lists of length ``w`` and a few floats. Values are
    centred on references ``rx, ry`` (first observation, then the window mean at every
    exact recompute, done every ``w`` updates to bound add/remove drift).
    """

    __slots__ = (
        "_w", "_xs", "_ys", "_pos", "_n", "_since", "_rx", "_ry",
        "_sx", "_sy", "_sxx", "_syy", "_sxy", "_run_x", "_run_y", "_last_x", "_last_y",
        "_nan_x", "_nan_y", "_acc_x", "_acc_y",
    )  # fmt: skip

    def __init__(self, window: int) -> None:
        self._w = w = check_window(window, minimum=1)
        self._xs = [0.0] * w
        self._ys = [0.0] * w
        self._pos = 0  # next slot to write (= oldest value once full)
        self._n = 0  # values held, <= w
        self._since = 0  # updates since the last exact recompute
        self._rx = self._ry = 0.0
        self._sx = self._sy = self._sxx = self._syy = self._sxy = 0.0
        self._run_x = self._run_y = 0  # length of the current run of equal values
        self._last_x = self._last_y = math.nan
        self._nan_x = self._nan_y = 0  # NaNs currently inside the window
        # sum of |running sxx| (syy) over the add/remove operations since the last exact
        # recompute: a bound, in units of machine epsilon, of their rounding error
        self._acc_x = self._acc_y = 0.0

    @property
    def count(self) -> int:
        return self._n

    def push(self, x: float, y: float) -> None:
        w, pos = self._w, self._pos
        if self._n == 0 and self._since == 0:
            self._rx, self._ry = (x if x == x else 0.0), (y if y == y else 0.0)
        if self._n == w:
            ox, oy = self._xs[pos], self._ys[pos]
            self._remove(ox, oy)
        else:
            self._n += 1
        self._xs[pos], self._ys[pos] = x, y
        self._pos = pos + 1 if pos + 1 < w else 0
        self._add(x, y)
        self._acc_x += self._sxx
        self._acc_y += self._syy
        self._run_x = self._run_x + 1 if x == self._last_x else 1
        self._run_y = self._run_y + 1 if y == self._last_y else 1
        self._last_x, self._last_y = x, y
        self._since += 1
        if self._since >= w:
            self._recompute()

    def _add(self, x: float, y: float) -> None:
        if x != x or y != y:
            self._nan_x += x != x
            self._nan_y += y != y
            return
        dx, dy = x - self._rx, y - self._ry
        self._sx += dx
        self._sy += dy
        self._sxx += dx * dx
        self._syy += dy * dy
        self._sxy += dx * dy

    def _remove(self, x: float, y: float) -> None:
        if x != x or y != y:
            self._nan_x -= x != x
            self._nan_y -= y != y
            return
        dx, dy = x - self._rx, y - self._ry
        self._sx -= dx
        self._sy -= dy
        self._sxx -= dx * dx
        self._syy -= dy * dy
        self._sxy -= dx * dy

    def _recompute(self) -> None:
        self._since = 0
        n = self._n
        xs, ys = self._xs[:n], self._ys[:n]
        if self._nan_x or self._nan_y:
            ok = [(x, y) for x, y in zip(xs, ys, strict=True) if x == x and y == y]
            xs, ys = [p[0] for p in ok], [p[1] for p in ok]
        if xs:
            self._rx, self._ry = math.fsum(xs) / len(xs), math.fsum(ys) / len(ys)
        rx, ry = self._rx, self._ry
        dx = [x - rx for x in xs]
        dy = [y - ry for y in ys]
        # fsum: exactly rounded sums, so a recompute leaves no accumulated error
        self._sx, self._sy = math.fsum(dx), math.fsum(dy)
        self._sxx = math.fsum([d * d for d in dx])
        self._syy = math.fsum([d * d for d in dy])
        self._sxy = math.fsum([u * v for u, v in zip(dx, dy, strict=True)])
        self._acc_x, self._acc_y = self._sxx, self._syy

    def moments(self) -> tuple[float, float, float, float, float] | None:
        """(mean_x, mean_y, cxx, cyy, cxy) of the full window (NaNs if it holds a NaN).

        None until ``w`` values are held.
        """
        w = self._w
        if self._n < w:
            return None
        if self._nan_x or self._nan_y:
            return (math.nan,) * 5
        const_x, const_y = self._run_x >= w, self._run_y >= w
        cxx = self._sxx - self._sx * self._sx / w
        cyy = self._syy - self._sy * self._sy / w
        # A window much quieter than the values that passed through the sums since the
        # last recompute (a jump, then calm) could hold more rounding error than 1e-12
        # of its variance: recompute it exactly now (O(w), rare on price-like data).
        if (not const_x and cxx * _MAX_ACC_RATIO < self._acc_x) or (
            not const_y and cyy * _MAX_ACC_RATIO < self._acc_y
        ):
            self._recompute()
            cxx = self._sxx - self._sx * self._sx / w
            cyy = self._syy - self._sy * self._sy / w
        sx, sy = self._sx, self._sy
        mx = self._last_x if const_x else self._rx + sx / w
        my = self._last_y if const_y else self._ry + sy / w
        cxx = 0.0 if const_x else max(cxx, 0.0)
        cyy = 0.0 if const_y else max(cyy, 0.0)
        cxy = 0.0 if (const_x or const_y) else self._sxy - sx * sy / w
        return mx, my, cxx, cyy, cxy


class RollingMoments:
    """Incremental mean and sample std (ddof=1) of the last ``window`` values.

    ``update(x)`` returns :class:`MeanStd` once ``window`` values are held, else None.
    Equals ``pd.Series(x).rolling(window).agg(["mean", "std"])`` at every step.
    O(1) per update (amortised), bounded state.
    """

    __slots__ = ("_sums", "_value")

    def __init__(self, window: int) -> None:
        self._sums = _PairSums(check_window(window, minimum=2))
        self._value: MeanStd | None = None

    @property
    def window(self) -> int:
        return self._sums._w

    @property
    def count(self) -> int:
        """Values currently held (<= window)."""
        return self._sums.count

    @property
    def value(self) -> MeanStd | None:
        return self._value

    def update(self, x: float) -> MeanStd | None:
        x = float(x)
        s = self._sums
        s.push(x, 0.0)
        m = s.moments()
        if m is None:
            self._value = None
        else:
            self._value = MeanStd(m[0], math.sqrt(m[2] / (s._w - 1)))
        return self._value


class RollingOLS:
    """Incremental OLS of ``a`` on ``b`` over the last ``window`` bars.

    ``update(a, b)`` returns :class:`BetaAlpha` ``(beta, alpha)`` of
    ``a = alpha + beta * b + e`` fitted on bars ``t-w+1 .. t`` once ``window`` bars are
    held (None before). ``beta = cxy / cxx``, ``alpha = mean_a - beta * mean_b``; NaN
    when ``b`` is constant over the window; ``beta = 0`` when ``a`` is. ``r2`` is the
    window's coefficient of determination (NaN if either series is constant).
    Equals :func:`analytics.hedge.rolling_ols` at every step.
    """

    __slots__ = ("_sums", "_value", "_r2")

    def __init__(self, window: int) -> None:
        self._sums = _PairSums(check_window(window))
        self._value: BetaAlpha | None = None
        self._r2 = math.nan

    @property
    def window(self) -> int:
        return self._sums._w

    @property
    def count(self) -> int:
        return self._sums.count

    @property
    def value(self) -> BetaAlpha | None:
        return self._value

    @property
    def r2(self) -> float:
        return self._r2

    def update(self, a: float, b: float) -> BetaAlpha | None:
        s = self._sums
        s.push(float(b), float(a))  # x = regressor b, y = regressand a
        m = s.moments()
        if m is None:
            self._value, self._r2 = None, math.nan
            return None
        mb, ma, cbb, caa, cab = m
        if cbb == 0.0:
            self._value, self._r2 = BetaAlpha(math.nan, math.nan), math.nan
        else:
            beta = cab / cbb
            self._value = BetaAlpha(beta, ma - beta * mb)
            self._r2 = cab * cab / (cbb * caa) if caa > 0.0 else math.nan
        return self._value


class RollingCorr:
    """Incremental Pearson correlation of ``x`` and ``y`` over the last ``w`` pairs.

    ``update(x, y)`` returns the correlation (NaN if either series is constant over the
    window) once ``window`` pairs are held, None before. Equals
    ``pd.Series(x).rolling(window).corr(pd.Series(y))`` at every step.
    """

    __slots__ = ("_sums", "_value")

    def __init__(self, window: int) -> None:
        self._sums = _PairSums(check_window(window, minimum=2))
        self._value: float | None = None

    @property
    def window(self) -> int:
        return self._sums._w

    @property
    def count(self) -> int:
        return self._sums.count

    @property
    def value(self) -> float | None:
        return self._value

    def update(self, x: float, y: float) -> float | None:
        s = self._sums
        s.push(float(x), float(y))
        m = s.moments()
        if m is None:
            self._value = None
        else:
            _, _, cxx, cyy, cxy = m
            if cxx > 0.0 and cyy > 0.0:
                r = cxy / math.sqrt(cxx * cyy)
                self._value = -1.0 if r < -1.0 else 1.0 if r > 1.0 else r
            else:
                self._value = math.nan
        return self._value

