"""Market-wide pair screen: the top N instruments by quote volume, a return-correlation
prefilter, then an exact Engle-Granger test, half-life and current |z| per candidate.

Why a second screener: :mod:`analytics.screener` screens every pair of a handful of
symbols, one statsmodels call per pair on the pair's own two-leg grid. Over the top 50
of a market (1,225 pairs) or the top 100 (4,950) that is tens of seconds to minutes;
this screen does the same test on one common grid for all instruments, batched
(:mod:`analytics.eg_batch`), with a cheap prefilter in front.

Steps (all deterministic: the same bars and parameters give the same rows)
-------------------------------------------------------------------------
1. **Window and selection** (:func:`close_grid`). ``end`` = the latest closed bar of any
   instrument; the window is the ``lookback`` buckets ``end - (lookback - 1) tf .. end``.
   The top ``top_n`` instruments by quote volume in the window (``sum(price * qty)`` of
   their bars there; ties by name) are screened.
2. **Common grid.** Every bucket of the timeframe from ``start`` to ``end``. A leg
   *starts* at its first bar, or at the first bar of its last session after a session
   break (:mod:`analytics.sessions`: nothing before it is used or filled). With
   ``m`` = the window start or, if later, the **upper median** of the selected legs'
   starts (``sorted(starts)[N // 2]``), a leg that starts more than a tenth of the span
   ``m .. end`` after ``m`` (a new listing, a session restarted by an unrecoverable gap,
   a quiet tail instrument's first trade long after the app started) is excluded with
   its reason instead of cutting the grid short for all the others; ``start`` is the
   window start or, if later, the latest start of the legs kept (so the grid covers at
   least 90 % of ``m .. end`` and every kept leg has a value at ``start``).
   A leg's value in a bucket is the close of its bar there, else the close of its latest
   earlier bar (**carried forward**: no trade means the last traded price stands; the
   pair page's two-leg grid carries forward the same way, see :mod:`analytics.align`).
   In pandas: ``close.reindex(range(start, end + tf, tf), method="ffill")``. An
   instrument whose price never moves on the grid is excluded too (the tests are
   undefined). Exclusions and their reasons: ``MarketScreen.excluded``.
3. **Prefilter.** Log returns ``r = diff(log close)`` of the N columns, one correlation
   matrix ``np.corrcoef(r, rowvar=False)``; the pairs ``i < j`` (in rank order) with
   ``|corr| >= min_corr`` are candidates, and at most ``max_candidates`` of them are kept,
   the largest ``|corr|`` first (ties by rank). ``MarketScreen.above_corr`` says how many
   passed the threshold, ``candidates`` how many were tested.
4. **Engle-Granger** on each candidate (``prices="log"``: on log prices, else raw):
   ``coint(A, B, trend="c", maxlag=M, autolag="aic")`` computed exactly, batched
   (:func:`analytics.eg_batch.engle_granger_batch`; ``M`` = ``maxlag`` or the project's
   rule, 12 on a day of 1 m bars). **A** is the higher-ranked leg (more quote volume),
   regressed on **B**; with ``both_orders`` both regressions are tested and the one
   with the smaller p-value is reported (a tie keeps rank order), at twice the cost.
5. **Spread, half-life, |z|.** The spread is the Engle-Granger residual
   ``s_t = A_t - alpha - beta B_t`` (one hedge over the grid, fitted up to ``end``: no bar
   after the screen time is used). ``half_life`` as
   :func:`analytics.stationarity.half_life`: OLS ``s_t = c + phi s_{t-1} + e``,
   ``-ln 2 / ln phi`` bars when ``0 < phi < 1``, else None (no monotone decay).
   ``z = (s_T - mean(s_{T-w+1..T})) / std(s_{T-w+1..T}, ddof=1)`` with ``w = z_window``
   bars (trailing, the last value included, as the pair page's z-score); ``abs_z = |z|``.
   The pair page's own spread uses a *rolling* hedge, so its z differs from this one.
6. **Rank**: ``coint_pvalue`` ascending, then ``half_life`` ascending (None last), then
   ``abs_z`` descending, then names. :meth:`MarketScreen.filtered` narrows the rows.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from analytics.bars import Bars
from analytics.eg_batch import eg_maxlag, engle_granger_batch
from analytics.errors import InsufficientData
from analytics.sessions import break_buckets
from analytics.stationarity import ADF_MIN_OBS

__all__ = [
    "MARKET_SCREEN_PRICES",
    "CloseGrid",
    "MarketPair",
    "MarketScreen",
    "MarketScreenParams",
    "close_grid",
    "correlation_candidates",
    "market_screen",
]

MARKET_SCREEN_PRICES = ("log", "raw")
MAX_TOP_N = 500
MIN_Z_WINDOW = 3


@dataclass(frozen=True, slots=True)
class MarketScreenParams:
    """What a market screen is asked (each checked: a ``ValueError`` naming the field)."""

    top_n: int = 50
    lookback: int = 1440
    min_corr: float = 0.5
    max_candidates: int = 2000
    prices: str = "log"
    z_window: int = 60
    maxlag: int | None = None
    both_orders: bool = False

    def __post_init__(self) -> None:
        def whole(name: str, lo: int, hi: int | None = None) -> None:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < lo or (
                    hi is not None and v > hi):
                bound = f"an int in {lo} .. {hi}" if hi is not None else f"an int >= {lo}"
                raise ValueError(f"{name} must be {bound}, got {v!r}")

        whole("top_n", 2, MAX_TOP_N)
        whole("lookback", ADF_MIN_OBS)
        whole("max_candidates", 1)
        whole("z_window", MIN_Z_WINDOW)
        if self.maxlag is not None:
            whole("maxlag", 0)
        mc = self.min_corr
        if isinstance(mc, bool) or not isinstance(mc, int | float) or not 0.0 <= mc <= 1.0:
            raise ValueError(f"min_corr must be a number in 0 .. 1, got {mc!r}")
        if self.prices not in MARKET_SCREEN_PRICES:
            raise ValueError(f"prices must be one of {MARKET_SCREEN_PRICES}, got "
                             f"{self.prices!r}")


@dataclass(frozen=True, slots=True, eq=False)
class CloseGrid:
    """The screened instruments' closes on one grid (module docstring, steps 1-2).

    ``closes[:, i]`` is ``names[i]``; ``names`` in rank order (quote volume descending).
    """

    ts: np.ndarray
    closes: np.ndarray
    names: tuple[str, ...]
    quote_volume: np.ndarray
    tf_ms: int
    window_start: int
    excluded: tuple[tuple[str, str], ...] = ()

    def __len__(self) -> int:
        return int(self.ts.shape[0])


@dataclass(frozen=True, slots=True)
class MarketPair:
    """One tested pair: A regressed on B (``a = alpha + beta * b + spread``)."""

    a: str
    b: str
    rank_a: int
    rank_b: int
    corr: float
    coint_stat: float
    coint_pvalue: float
    usedlag: int
    alpha: float
    beta: float
    half_life_bars: float | None
    half_life_seconds: float | None
    zscore: float | None
    abs_z: float | None


@dataclass(frozen=True, slots=True)
class MarketScreen:
    """Ranked rows and what they were computed on (module docstring)."""

    rows: tuple[MarketPair, ...]
    params: MarketScreenParams
    tf_ms: int
    names: tuple[str, ...]
    n_bars: int
    start_ts: int
    end_ts: int
    pairs_total: int
    above_corr: int
    candidates: int
    maxlag: int
    critical_values: tuple[float, float, float]
    exact_fallbacks: int
    excluded: tuple[tuple[str, str], ...] = field(default=())

    def filtered(self, *, max_pvalue: float | None = None,
                 max_half_life_bars: float | None = None,
                 min_abs_z: float | None = None) -> tuple[MarketPair, ...]:
        """The rows (still ranked) with ``coint_pvalue <= max_pvalue``, a half-life of
        at most ``max_half_life_bars`` and ``abs_z >= min_abs_z`` (None: no bound)."""
        def keep(r: MarketPair) -> bool:
            if max_pvalue is not None and not r.coint_pvalue <= max_pvalue:
                return False
            if max_half_life_bars is not None and (
                    r.half_life_bars is None or r.half_life_bars > max_half_life_bars):
                return False
            return min_abs_z is None or (r.abs_z is not None and r.abs_z >= min_abs_z)

        return tuple(r for r in self.rows if keep(r))


def _leg_start(bars: Bars, breaks: object | None, tf_ms: int) -> int:
    """First bar of the leg's last session (its first bar without a break)."""
    bb = break_buckets(breaks, tf_ms)
    bb = bb[bb <= int(bars.ts[-1])]
    if not len(bb):
        return int(bars.ts[0])
    i = int(np.searchsorted(bars.ts, bb[-1], side="left"))
    return int(bars.ts[min(i, len(bars) - 1)])


def close_grid(bars: Mapping[str, Bars], *, top_n: int, lookback: int,
               breaks: Mapping[str, object] | None = None,
               end_ts: int | None = None) -> CloseGrid:
    """Steps 1-2 of the module docstring: select the top ``top_n`` by quote volume in
    the last ``lookback`` buckets and put their closes on one grid.

    ``end_ts`` (ms) pins the window's end (bars after it are ignored): a screen repeated
    with the same ``end_ts`` sees the same bars. Raises :class:`InsufficientData` with
    fewer than two instruments or fewer than ``ADF_MIN_OBS`` grid points.
    """
    tfs = {b.tf_ms for b in bars.values()}
    if len(tfs) > 1:
        raise ValueError(f"all bars must share one timeframe, got {sorted(tfs)} ms")
    if end_ts is not None:
        bars = {s: b.take(slice(0, int(np.searchsorted(b.ts, end_ts, side="right"))))
                for s, b in bars.items()}
    held = {s: b for s, b in bars.items() if len(b)}
    if len(held) < 2:
        raise InsufficientData("market screen (instruments with bars)", 2, len(held))
    tf = tfs.pop()
    end = max(int(b.ts[-1]) for b in held.values())
    window_start = end - (lookback - 1) * tf
    qv = {s: float(b.quote_volume[b.ts >= window_start].sum()) for s, b in held.items()}
    ranked = sorted((s for s in held if qv[s] > 0.0), key=lambda s: (-qv[s], s))[:top_n]
    if len(ranked) < 2:
        raise InsufficientData("market screen (instruments trading in the window)", 2,
                               len(ranked))
    brk = breaks or {}
    starts = {s: _leg_start(held[s], brk.get(s), tf) for s in ranked}
    median = max(window_start, sorted(starts.values())[len(ranked) // 2])
    cutoff = median + (end - median) // (10 * tf) * tf  # the first tenth of the span
    late = tuple((s, "starts too late for the window (its session's first bar: "
                     f"{np.datetime64(starts[s], 'ms')} UTC)") for s in ranked
                 if starts[s] > cutoff)
    ranked = [s for s in ranked if starts[s] <= cutoff]
    start = max([window_start] + [starts[s] for s in ranked])
    ts = np.arange(start, end + tf, tf, dtype=np.int64)
    if len(ts) < ADF_MIN_OBS:
        raise InsufficientData("market screen (common grid bars)", ADF_MIN_OBS, len(ts))
    closes = np.empty((len(ts), len(ranked)))
    for j, s in enumerate(ranked):
        b = held[s]
        idx = np.searchsorted(b.ts, ts, side="right") - 1  # >= 0: start >= first bar
        closes[:, j] = b.close[idx]
    moving = ~np.all(closes == closes[0], axis=0)
    excluded = late + tuple((s, "constant price over the window")
                            for s, m in zip(ranked, moving, strict=True) if not m)
    keep = np.flatnonzero(moving)
    closes = np.ascontiguousarray(closes[:, keep])
    names = tuple(ranked[i] for i in keep)
    if len(names) < 2:
        raise InsufficientData("market screen (instruments whose price moves)", 2,
                               len(names))
    qv_arr = np.array([qv[s] for s in names])
    for arr in (ts, closes, qv_arr):
        arr.flags.writeable = False
    return CloseGrid(ts, closes, names, qv_arr, tf, window_start, excluded)


def correlation_candidates(closes: np.ndarray, *, min_corr: float, max_candidates: int
                           ) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Step 3: ``(ia, ib, corr, above)`` of the kept pairs ``ia < ib`` (strongest
    ``|corr|`` first, ties by ``(ia, ib)``) and how many passed ``min_corr``."""
    r = np.diff(np.log(closes), axis=0)
    n = r.shape[1]
    with np.errstate(divide="ignore", invalid="ignore"):
        c = np.corrcoef(r, rowvar=False) if r.shape[0] > 1 else np.full((n, n), np.nan)
    ia, ib = np.triu_indices(n, k=1)
    cij = np.asarray(c)[ia, ib]
    ok = np.abs(cij) >= min_corr  # False for NaN (a leg with no return variance)
    ia, ib, cij = ia[ok], ib[ok], cij[ok]
    order = np.lexsort((ib, ia, -np.abs(cij)))[:max_candidates]
    return ia[order], ib[order], cij[order], int(ok.sum())


def _spread_stats(x: np.ndarray, ia: np.ndarray, ib: np.ndarray, alpha: np.ndarray,
                  beta: np.ndarray, z_window: int, chunk: int = 512
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Step 5, batched: AR(1) ``phi`` of each spread and its last trailing z."""
    phi = np.empty(len(ia))
    z = np.empty(len(ia))
    for lo in range(0, len(ia), chunk):
        sl = slice(lo, lo + chunk)
        s = x[:, ia[sl]] - alpha[sl] - beta[sl] * x[:, ib[sl]]  # (T, p)
        lag, cur = s[:-1], s[1:]
        dl = lag - lag.mean(axis=0)
        dc = cur - cur.mean(axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            phi[sl] = np.einsum("tp,tp->p", dl, dc) / np.einsum("tp,tp->p", dl, dl)
            tail = s[-z_window:]
            sd = tail.std(axis=0, ddof=1)
            z[sl] = np.where(sd > 0.0, (s[-1] - tail.mean(axis=0)) / sd, np.nan)
    return phi, z


def _finite(v: float) -> float | None:
    return float(v) if math.isfinite(v) else None


def _rank_key(r: MarketPair) -> tuple:
    hl = math.inf if r.half_life_bars is None else r.half_life_bars
    return (r.coint_pvalue, hl, -(r.abs_z or 0.0), r.a, r.b)


def market_screen(
    bars: Mapping[str, Bars],
    params: MarketScreenParams = MarketScreenParams(),
    *,
    breaks: Mapping[str, object] | None = None,
    end_ts: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> MarketScreen:
    """Screen the market (module docstring).

    Parameters
    ----------
    bars : mapping of name -> Bars
        Closed bars of every instrument of the run at one timeframe.
    params : MarketScreenParams
    breaks : mapping of name -> session break times (ms), optional
    end_ts : int, optional
        Pin the window's end (:func:`close_grid`).
    progress : callable(done, total), optional
        Candidates tested so far (called per batch chunk).

    Returns
    -------
    MarketScreen
        Ranked rows; ``InsufficientData`` while too few bars or instruments.
    """
    grid = close_grid(bars, top_n=params.top_n, lookback=params.lookback, breaks=breaks,
                      end_ts=end_ts)
    t, n = grid.closes.shape
    if t < params.z_window:
        raise InsufficientData("market screen (bars for the z window)", params.z_window, t)
    maxlag = eg_maxlag(t) if params.maxlag is None else params.maxlag
    if maxlag > t // 2 - 1:
        raise ValueError(f"maxlag must be <= {t // 2 - 1} for {t} bars, got {maxlag}")
    ia, ib, corr, above = correlation_candidates(
        grid.closes, min_corr=params.min_corr, max_candidates=params.max_candidates)
    x = np.log(grid.closes) if params.prices == "log" else grid.closes
    if params.both_orders and len(ia):
        total = 2 * len(ia)
        eg = engle_granger_batch(x, np.concatenate([ia, ib]), np.concatenate([ib, ia]),
                                 maxlag=maxlag, progress=progress and (
                                     lambda d, _t: progress(d, total)))
        k = len(ia)
        swap = eg.pvalue[k:] < eg.pvalue[:k]
        pick = np.where(swap, np.arange(k) + k, np.arange(k))
        ia, ib = np.where(swap, ib, ia), np.where(swap, ia, ib)
    else:
        eg = engle_granger_batch(x, ia, ib, maxlag=maxlag, progress=progress)
        pick = np.arange(len(ia))
    stat, pval, lags = eg.stat[pick], eg.pvalue[pick], eg.usedlag[pick]
    alpha, beta = eg.alpha[pick], eg.beta[pick]
    phi, z = _spread_stats(x, ia, ib, alpha, beta, params.z_window)
    tf_s = grid.tf_ms / 1000.0
    rows = []
    for p in range(len(ia)):
        ph = float(phi[p])
        hl = -math.log(2.0) / math.log(ph) if 0.0 < ph < 1.0 else None
        zp = _finite(float(z[p]))
        rows.append(MarketPair(
            a=grid.names[ia[p]], b=grid.names[ib[p]], rank_a=int(ia[p]) + 1,
            rank_b=int(ib[p]) + 1, corr=float(corr[p]), coint_stat=float(stat[p]),
            coint_pvalue=float(pval[p]), usedlag=int(lags[p]), alpha=float(alpha[p]),
            beta=float(beta[p]), half_life_bars=hl,
            half_life_seconds=None if hl is None else hl * tf_s,
            zscore=zp, abs_z=None if zp is None else abs(zp),
        ))
    rows.sort(key=_rank_key)
    return MarketScreen(
        rows=tuple(rows), params=params, tf_ms=grid.tf_ms, names=grid.names, n_bars=t,
        start_ts=int(grid.ts[0]), end_ts=int(grid.ts[-1]), pairs_total=n * (n - 1) // 2,
        above_corr=above, candidates=len(rows), maxlag=maxlag,
        critical_values=eg.critical_values, exact_fallbacks=eg.exact_fallbacks,
        excluded=grid.excluded,
    )
