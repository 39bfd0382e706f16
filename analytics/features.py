"""The data page's table: one row per aligned bar with every feature at that point.

Everything here is trailing: the row of bar ``t`` uses bars ``<= t`` only.

Columns (:data:`FEATURE_COLUMNS`)
---------------------------------
``ts``
    Bucket start (epoch ms, UTC) of the aligned pair grid (:func:`analytics.align.align_pair`).
``a_open, a_high, a_low, a_close, a_volume`` (and ``b_...``)
    The leg's bar in that bucket. When the leg did not trade in the bucket there is no
    bar: open/high/low are NaN, volume 0, and ``close`` is the carried-forward close the
    pair analytics use.
``beta, alpha, spread, zscore, corr``
    The pair series exactly as ``GET /api/pair`` (:func:`analytics.pair.pair_series`):
    ``spread_t = A_t - alpha_t - beta_t B_t``, ``z_t`` over the trailing ``w`` spreads,
    ``corr_t`` of raw log returns over the trailing ``w`` returns.
``vol_a, vol_b``
    Rolling volatility of each leg: annualised standard deviation of the log returns of
    the aligned closes over the trailing ``w`` returns,
    ``vol_t = std(ln(P_i / P_{i-1}), i = t-w+1..t; ddof=1) * sqrt(365 * 86,400 s / tf)``
    (crypto trades 24/7). Needs ``w + 1`` bars.
``adf_pvalue, adf_ts``
    The last ADF p-value of the spread (H0: unit root): the ADF regression
    ``Δs_j = c + γ s_{j-1} + Σ_{i=1..p} φ_i Δs_{j-i} + e_j`` on the trailing ``L`` finite
    spreads ending at the bar it was computed at, with a **fixed** lag ``p`` (no AIC
    search: that is what makes it cheap; see docs/performance.md), MacKinnon p-value of the
    t-statistic of ``γ``. It is computed at every ``K``-th bar of the grid
    (``i ≡ K - 1 mod K``) and held until the next one; ``adf_ts`` is the bar it was
    computed at. Defaults: ``L = max(4w, 100)``, ``p = min(ceil(12 (L/100)^(1/4)), 12)``,
    ``K = max(w, bars_per_day / 288)`` (at most 288 tests a day of 1 s bars).
    Equal to ``adfuller(x, maxlag=p, autolag=None)`` on the same window.
``signal``
    The mean-reversion position of the backtest rules: +1 long the spread, -1 short,
    0 flat, as decided at the close of the bar. Flat: ``z > entry`` -> -1,
    ``z < -entry`` -> +1; short: ``z <= exit`` -> 0; long: ``z >= -exit`` -> 0; an
    undefined ``z`` changes nothing. Defaults ``entry = 2``, ``exit = 0``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analytics.align import AlignedPair, align_pair
from analytics.bars import Bars
from analytics.pair import PairSeries, pair_series
from analytics.rolling import check_window, window_moments
from analytics.sessions import segment_bounds
from analytics.stationarity import ADF_MAX_LAG, ADF_MIN_OBS
from analytics.timeframes import bars_per_day

__all__ = [
    "FEATURE_COLUMNS",
    "PairFeatures",
    "adf_fixed_lag",
    "default_adf_every",
    "pair_features",
    "pair_from_bars",
    "rolling_adf",
    "rolling_volatility",
    "signal_positions",
]

log = logging.getLogger(__name__)

_YEAR_MS = 365 * 86_400_000
_LEG_COLS = ("open", "high", "low", "close", "volume")
FEATURE_COLUMNS = (
    "ts",
    *(f"a_{c}" for c in _LEG_COLS),
    *(f"b_{c}" for c in _LEG_COLS),
    "beta",
    "alpha",
    "spread",
    "zscore",
    "corr",
    "vol_a",
    "vol_b",
    "adf_pvalue",
    "adf_ts",
    "signal",
)


def pair_from_bars(
    bars_a: Bars,
    bars_b: Bars,
    *,
    window: int,
    regression: str = "ols",
    prices: str = "raw",
    max_bars: int | None = None,
) -> tuple[AlignedPair, PairSeries]:
    """Align two legs' bars and compute the pair series, as the live engine builds it.

    The same two calls as :class:`analytics.engine.PairTracker`'s batch build
    (:func:`align_pair` then :func:`pair_series`, robust refits on the bar-time schedule
    of :func:`analytics.robust.refit_due`), so an uploaded dataset and live data give
    the same numbers for the same bars.
    """
    aligned = align_pair(bars_a, bars_b, max_bars=max_bars)
    series = pair_series(
        aligned.ts,
        aligned.a,
        aligned.b,
        window=window,
        regression=regression,
        prices=prices,
        tf_ms=aligned.tf_ms,
    )
    return aligned, series


def rolling_volatility(close: object, *, window: int, tf_ms: int) -> np.ndarray:
    """Annualised std of log returns over the trailing ``window`` returns (see module).

    Returns NaN for the first ``window`` bars (``window + 1`` prices make ``window``
    returns) and wherever a window holds a non-finite return.
    """
    w = check_window(window, minimum=2)
    p = np.asarray(close, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.diff(np.log(p), prepend=np.nan)
    m = window_moments(r, window=w)
    out = np.sqrt(m.cxx / (w - 1)) * math.sqrt(_YEAR_MS / tf_ms)
    return np.where(np.isfinite(out), out, np.nan)


def adf_fixed_lag(x: np.ndarray, lag: int) -> tuple[float, float]:
    """ADF t-statistic and MacKinnon p-value with a constant and exactly ``lag`` lags.

    The regression of ``adfuller(x, maxlag=lag, regression="c", autolag=None)``:
    ``Δx_j = γ x_{j-1} + Σ_{i=1..lag} φ_i Δx_{j-i} + c + e_j`` for
    ``j = lag+1 .. n-1``; statistic ``γ̂ / se(γ̂)``, with ``se`` from
    ``s² (XᵀX)⁻¹``, ``s² = RSS / (nobs - k)``. Solved by QR (about 50 µs on 240 points
    against 8 ms for the statsmodels call).
    """
    from statsmodels.tsa.adfvalues import mackinnonp

    x = np.asarray(x, dtype=np.float64)
    dx = np.diff(x)
    nobs = len(dx) - lag
    k = lag + 2
    if nobs <= k:
        return math.nan, math.nan
    cols = [x[lag : lag + nobs]]
    cols += [dx[lag - i : lag - i + nobs] for i in range(1, lag + 1)]
    cols.append(np.ones(nobs))
    X = np.column_stack(cols)
    y = dx[lag : lag + nobs]
    q, r = np.linalg.qr(X)
    try:
        r_inv = np.linalg.inv(r)
    except np.linalg.LinAlgError:
        return math.nan, math.nan
    coef = r_inv @ (q.T @ y)
    resid = y - X @ coef
    s2 = float(resid @ resid) / (nobs - k)
    se = math.sqrt(s2 * float(r_inv[0] @ r_inv[0]))
    if not (se > 0 and math.isfinite(se)):
        return math.nan, math.nan
    stat = float(coef[0] / se)
    return stat, float(mackinnonp(stat, regression="c", N=1))


def default_adf_every(window: int, tf_ms: int) -> int:
    """``K = max(w, bars_per_day(tf) // 288)``: at most 288 ADF tests a day."""
    return max(int(window), bars_per_day(tf_ms) // 288)


def default_adf_lookback(window: int) -> int:
    return max(4 * int(window), 100)


def default_adf_lag(lookback: int) -> int:
    """``min(ceil(12 (L/100)^(1/4)), ADF_MAX_LAG, L // 2 - 2)``, as ``adf_test``'s cap."""
    schwert = math.ceil(12.0 * (lookback / 100.0) ** 0.25)
    return max(min(schwert, ADF_MAX_LAG, lookback // 2 - 2), 0)


def rolling_adf(
    spread: object, ts: object, *, every: int, lookback: int, lag: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Trailing fixed-lag ADF p-value every ``every`` bars, held in between.

    Parameters
    ----------
    spread : array_like
        The spread per bar (NaN before it is defined).
    ts : array_like of int
        Bar times, carried into the second output.
    every : int
        ``K``: computed at bars ``i`` with ``i % K == K - 1``.
    lookback : int
        ``L``: the test uses the last ``L`` spreads ending at bar ``i``; none until ``L``
        finite spreads exist in that window.
    lag : int, optional
        Fixed ADF lag; default :func:`default_adf_lag`.

    Returns
    -------
    pvalue, computed_ts : ndarray
        Per bar, the last p-value computed at or before it and the ``ts`` of the bar it
        was computed at (NaN / -1 before the first).
    """
    s = np.asarray(spread, dtype=np.float64)
    t = np.asarray(ts, dtype=np.int64)
    k = check_window(every, minimum=1, name="every")
    L = check_window(lookback, minimum=ADF_MIN_OBS, name="lookback")
    p = default_adf_lag(L) if lag is None else int(lag)
    n = len(s)
    pv = np.full(n, np.nan)
    at = np.full(n, -1, dtype=np.int64)
    last_p, last_t = math.nan, -1
    for i in range(k - 1, n, k):
        lo = i - L + 1
        if lo >= 0:
            win = s[lo : i + 1]
            if np.isfinite(win).all() and not np.all(win == win[0]):
                last_p = adf_fixed_lag(win, p)[1]
                last_t = int(t[i])
        if last_t >= 0:  # held until the next computation
            end = min(i + k, n)
            pv[i:end] = last_p
            at[i:end] = last_t
    return pv, at


def signal_positions(z: object, *, entry: float = 2.0, exit: float = 0.0) -> np.ndarray:
    """Position after the decision at each bar's close (+1 long spread, -1 short, 0 flat).

    Flat: ``z > entry`` -> -1, ``z < -entry`` -> +1. Short: ``z <= exit`` -> 0. Long:
    ``z >= -exit`` -> 0. A NaN ``z`` keeps the position. One transition per bar.
    """
    if (
        not (math.isfinite(entry) and math.isfinite(exit))
        or entry <= 0
        or exit >= entry
    ):
        raise ValueError(
            f"need entry > 0 and exit < entry, got entry={entry}, exit={exit}"
        )
    za = np.asarray(z, dtype=np.float64)
    out = np.zeros(len(za), dtype=np.int8)
    pos = 0
    for i, v in enumerate(za.tolist()):
        if v == v:  # not NaN
            if pos == 0:
                if v > entry:
                    pos = -1
                elif v < -entry:
                    pos = 1
            elif pos == -1 and v <= exit:
                pos = 0
            elif pos == 1 and v >= -exit:
                pos = 0
        out[i] = pos
    return out


@dataclass(frozen=True)
class PairFeatures:
    """The features table and the parameters that made it (see the module docstring)."""

    frame: pd.DataFrame
    tf_ms: int
    window: int
    regression: str
    prices: str
    entry: float
    exit: float
    adf_every: int
    adf_lookback: int
    adf_lag: int

    def __len__(self) -> int:
        return len(self.frame)


def _leg_columns(
    bars: Bars, grid: np.ndarray, carried: np.ndarray, prefix: str
) -> dict:
    idx = np.searchsorted(bars.ts, grid)
    idx_c = np.minimum(idx, max(len(bars) - 1, 0))
    has = (
        (idx < len(bars)) & (bars.ts[idx_c] == grid)
        if len(bars)
        else np.zeros(len(grid), bool)
    )
    out = {}
    for c in ("open", "high", "low"):
        out[f"{prefix}_{c}"] = (
            np.where(has, getattr(bars, c)[idx_c], np.nan)
            if len(bars)
            else np.full(len(grid), np.nan)
        )
    out[f"{prefix}_close"] = np.asarray(carried, dtype=np.float64)
    out[f"{prefix}_volume"] = (
        np.where(has, bars.volume[idx_c], 0.0) if len(bars) else np.zeros(len(grid))
    )
    return out


def pair_features(
    bars_a: Bars,
    bars_b: Bars,
    series: PairSeries,
    *,
    window: int,
    regression: str = "ols",
    prices: str = "raw",
    entry: float = 2.0,
    exit: float = 0.0,
    adf_every: int | None = None,
    adf_lookback: int | None = None,
    adf_lag: int | None = None,
    breaks: object | None = None,
) -> PairFeatures:
    """Build the features table from the legs' bars and their pair series.

    Parameters
    ----------
    bars_a, bars_b : Bars
        The legs (OHLCV per bucket), same timeframe.
    series : PairSeries or engine PairColumns
        The pair series (``ts, price_a, price_b, alpha, beta, spread, zscore, corr``) on
        the aligned grid of these bars (live: the engine's snapshot; dataset:
        :func:`pair_from_bars`), which sets the rows.
    window, regression, prices
        The options the series was built with (``window`` is also the volatility
        window).
    entry, exit : float
        Signal thresholds (:func:`signal_positions`).
    adf_every, adf_lookback, adf_lag : int, optional
        ``K``, ``L``, ``p`` of :func:`rolling_adf` (defaults in the module docstring).
    breaks : array_like of int, optional
        Session starts on the ``ts`` scale (``PairSnapshot.breaks``): volatility and
        the signal restart in each session (no return spans a break, no position is
        carried across one); the series' own columns already restart there, so no
        ADF window spans one either (its spreads are NaN at a session's start).

    Returns
    -------
    PairFeatures
    """
    tf = bars_a.tf_ms
    if bars_b.tf_ms != tf:
        raise ValueError(f"legs have different timeframes ({tf} vs {bars_b.tf_ms} ms)")
    w = check_window(window)
    k = default_adf_every(w, tf) if adf_every is None else int(adf_every)
    L = default_adf_lookback(w) if adf_lookback is None else int(adf_lookback)
    p = default_adf_lag(L) if adf_lag is None else int(adf_lag)
    ts = np.asarray(series.ts, dtype=np.int64)
    data: dict[str, np.ndarray] = {"ts": ts}
    data.update(_leg_columns(bars_a, ts, series.price_a, "a"))
    data.update(_leg_columns(bars_b, ts, series.price_b, "b"))
    for c in ("beta", "alpha", "spread", "zscore", "corr"):
        data[c] = np.asarray(getattr(series, c), dtype=np.float64)
    data["vol_a"] = data["vol_b"] = np.full(len(ts), np.nan)
    data["signal"] = np.zeros(len(ts), dtype=np.int8)
    for lo, hi in segment_bounds(ts, breaks):
        if hi - lo > w:
            for leg in ("a", "b"):
                px = np.asarray(getattr(series, f"price_{leg}"))[lo:hi]
                data[f"vol_{leg}"][lo:hi] = rolling_volatility(px, window=w, tf_ms=tf)
        data["signal"][lo:hi] = signal_positions(data["zscore"][lo:hi], entry=entry, exit=exit)
    pv, at = rolling_adf(data["spread"], ts, every=k, lookback=L, lag=p)
    data["adf_pvalue"] = pv
    data["adf_ts"] = at
    frame = pd.DataFrame({c: data[c] for c in FEATURE_COLUMNS})
    return PairFeatures(
        frame, tf, w, regression, prices, float(entry), float(exit), k, L, p
    )
