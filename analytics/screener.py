"""Pair screener: every pair of symbols at one timeframe, with the numbers that say
whether a mean-reversion trade is worth a look.

Per unordered pair ``(A, B)`` (A the regressand, in the order the symbols are given),
on the aligned grid of :func:`analytics.align.align_pair` (the last ``max_bars``):

* ``coint_pvalue``: Engle-Granger :func:`analytics.stationarity.coint_test` of A on B
  over the aligned prices (log prices when ``prices="log"``), exactly what
  ``/api/adf`` reports as ``coint_pvalue`` (H0: no cointegration; small is good);
* ``half_life``: :func:`analytics.stationarity.half_life` of the pair's trailing spread
  (:func:`analytics.pair.pair_series`, defined points), in bars and seconds;
* ``zscore`` / ``abs_z``: the z-score at the last bar (how far the spread is *now*);
* ``corr``: the trailing return correlation at the last bar;
* ``liquidity``: trades per minute of the *less* liquid leg over the aligned span
  (execution is bounded by the thinner leg); both legs are reported.

Ranking: pairs of one asset on two markets (``perp:BTCUSDT`` / ``spot:BTCUSDT``,
``same_asset``) first, then within each group rows with results first, by
``coint_pvalue`` ascending, then ``half_life``
ascending, then ``abs_z`` descending, then ``liquidity`` descending; rows that cannot be
computed yet (too few bars, a constant leg) come last with the reason in ``error``
(``collecting: N of M bars``). The pages let the user re-sort by any column.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np

from analytics.align import align_pair
from analytics.bars import Bars
from analytics.errors import AnalyticsError, InsufficientData
from analytics.pair import pair_series, requirements
from analytics.sessions import last_session
from analytics.stationarity import ADF_MIN_OBS, coint_test, half_life

log = logging.getLogger(__name__)

__all__ = ["ScreenResult", "ScreenRow", "same_asset", "screen_pair", "screen_pairs"]


@dataclass(frozen=True, slots=True)
class ScreenRow:
    """One pair; the numbers are None where they could not be computed (``error``)."""

    a: str
    b: str
    n_bars: int
    coint_pvalue: float | None = None
    coint_stat: float | None = None
    half_life_bars: float | None = None
    half_life_seconds: float | None = None
    zscore: float | None = None
    abs_z: float | None = None
    corr: float | None = None
    beta: float | None = None
    liquidity: float | None = None
    trades_per_min_a: float | None = None
    trades_per_min_b: float | None = None
    last_ts: int | None = None
    error: str | None = None
    #: One asset on two markets (``perp:BTCUSDT`` / ``spot:BTCUSDT``): the basis pair.
    same_asset: bool = False


@dataclass(frozen=True, slots=True)
class ScreenResult:
    """Ranked rows (see the module docstring) and the settings they were computed with."""

    rows: tuple[ScreenRow, ...]
    tf_ms: int
    window: int
    regression: str
    prices: str
    symbols: tuple[str, ...]


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def _trades_per_min(bars: Bars, start: int, end: int, tf_ms: int) -> float:
    """Trades per minute of ``bars`` in buckets ``start .. end`` (inclusive)."""
    sel = (bars.ts >= start) & (bars.ts <= end)
    minutes = (end - start + tf_ms) / 60_000.0
    return float(bars.trades[sel].sum()) / minutes


def screen_pair(
    a: str,
    b: str,
    bars_a: Bars,
    bars_b: Bars,
    *,
    window: int,
    regression: str = "ols",
    prices: str = "raw",
    max_bars: int | None = None,
    breaks: tuple[object, object] | None = None,
) -> ScreenRow:
    """Screen one pair (module docstring). Too little data gives a row with ``error``.

    ``breaks`` (each leg's session break times, ms): the pair is screened on its last
    session only, so no window or test spans a break."""
    al = align_pair(bars_a, bars_b, max_bars=max_bars)
    if breaks is not None:
        al = last_session(al, *breaks)
    n = len(al)
    need = max(requirements(window, regression)["zscore"], ADF_MIN_OBS)
    if n < need:
        return ScreenRow(a, b, n, error=f"collecting: {n} of {need} bars")
    try:
        ps = pair_series(al.ts, al.a, al.b, window=window, regression=regression,
                         prices=prices, tf_ms=al.tf_ms)
        pa, pb = (np.log(al.a), np.log(al.b)) if prices == "log" else (al.a, al.b)
        co = coint_test(pa, pb)
        spread = ps.spread[np.isfinite(ps.spread)]
        hl = half_life(spread)
    except InsufficientData as exc:
        return ScreenRow(a, b, n, error=f"collecting: {exc.have} of {exc.needed} bars")
    except AnalyticsError as exc:  # a constant leg: the tests are undefined
        return ScreenRow(a, b, n, error=str(exc))
    tf = al.tf_ms
    start, end = int(al.ts[0]), int(al.ts[-1])
    tpm_a = _trades_per_min(bars_a, start, end, tf)
    tpm_b = _trades_per_min(bars_b, start, end, tf)
    z = float(ps.zscore[-1])
    return ScreenRow(
        a=a, b=b, n_bars=n,
        coint_pvalue=float(co.pvalue), coint_stat=float(co.stat),
        half_life_bars=_finite(hl.bars),
        half_life_seconds=_finite(hl.bars * tf / 1000.0),
        zscore=_finite(z), abs_z=_finite(abs(z)),
        corr=_finite(float(ps.corr[-1])), beta=_finite(float(ps.beta[-1])),
        liquidity=min(tpm_a, tpm_b), trades_per_min_a=tpm_a, trades_per_min_b=tpm_b,
        last_ts=end,
    )


def same_asset(a: str, b: str) -> bool:
    """Whether two instrument names are one symbol on two markets (``perp:BTCUSDT``,
    ``spot:BTCUSDT``): names carry their market only when the symbol is on two."""
    return a != b and ":" in a and ":" in b and a.rsplit(":", 1)[1] == b.rsplit(":", 1)[1]


def _rank_key(row: ScreenRow) -> tuple:
    first = 0 if row.same_asset else 1  # the same asset on two markets is offered first
    if row.error is not None or row.coint_pvalue is None:
        return (first, 1, math.inf, math.inf, 0.0, 0.0, row.a, row.b)
    hl = math.inf if row.half_life_bars is None else row.half_life_bars
    return (first, 0, row.coint_pvalue, hl, -(row.abs_z or 0.0), -(row.liquidity or 0.0),
            row.a, row.b)


def screen_pairs(
    bars: Mapping[str, Bars],
    *,
    window: int,
    regression: str = "ols",
    prices: str = "raw",
    max_bars: int | None = None,
    breaks: Mapping[str, object] | None = None,
) -> ScreenResult:
    """Screen every unordered pair of the symbols in ``bars`` (same timeframe).

    Parameters
    ----------
    bars : mapping of symbol -> Bars
        Closed bars per symbol, one timeframe. Pair ``(A, B)`` follows this order.
    window, regression, prices
        As :func:`analytics.pair.pair_series`.
    max_bars : int, optional
        Use only the last ``max_bars`` aligned bars of each pair.
    breaks : mapping of symbol -> break times (ms), optional
        Session breaks: each pair is screened on its last session.

    Returns
    -------
    ScreenResult
        Rows ranked as the module docstring says.
    """
    syms = tuple(bars)
    if len(syms) < 2:
        raise ValueError(f"the screener needs at least two symbols, got {len(syms)}")
    tfs = {bars[s].tf_ms for s in syms}
    if len(tfs) != 1:
        raise ValueError(f"all bars must share one timeframe, got {sorted(tfs)} ms")
    rows = [
        replace(screen_pair(a, b, bars[a], bars[b], window=window, regression=regression,
                            prices=prices, max_bars=max_bars,
                            breaks=None if not breaks else (breaks.get(a), breaks.get(b))),
                same_asset=same_asset(a, b))
        for a, b in itertools.combinations(syms, 2)
    ]
    rows.sort(key=_rank_key)
    return ScreenResult(tuple(rows), tfs.pop(), int(window), regression, prices, syms)
