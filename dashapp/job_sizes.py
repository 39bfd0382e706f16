"""How big a heavy request is, found before any work starts (row counts only).

Each function returns a :class:`dashapp.heavy.Estimate` from parsed request arguments:
the rows the job will process (a dataset's stored row counts scaled to the asked
timeframe, or the live engine's closed-bar counts, which are O(1) views) and the cost
model of :mod:`dashapp.heavy`. A live pair the engine already tracks costs only its rows
(its series is maintained incrementally): polling it is never refused for size.
"""

from __future__ import annotations

from math import comb

from analytics.timeframes import format_timeframe
from dashapp import heavy, queries
from dashapp.services import get_services


def pair_rows(a: str, b: str, tf_ms: int, dataset: str | None) -> int:
    """Aligned rows a pair series over all bars would have (an upper bound)."""
    if dataset is not None:
        info = queries.dataset_info(dataset)
        scale = max(1, tf_ms // info.tf_ms)
        rows = info.rows  # the store's per-symbol counts
        return min(rows.get(a, 0), rows.get(b, 0)) // scale + 1
    market = get_services()
    return max(len(market.bars(a, tf_ms)), len(market.bars(b, tf_ms)))


def _is_tracked(a, b, tf_ms, window, regression, prices, dataset, source="trade") -> bool:
    if dataset is not None:
        return False
    return any(
        (k.a, k.b, k.tf_ms, k.window, k.regression, k.prices, k.source)
        == (a, b, tf_ms, window, regression, prices, source)
        for k in get_services().tracked_pairs()
    )


def pair_job(
    job: str, *, a: str, b: str, tf_ms: int, window: int, regression: str, prices: str,
    dataset: str | None = None, extra_row_us: float = 0.0, source: str = "trade",
) -> heavy.Estimate:
    """A pair series (built unless tracked) plus ``extra_row_us`` per row (ADF, backtest)."""
    n = pair_rows(a, b, tf_ms, dataset)
    tracked = _is_tracked(a, b, tf_ms, window, regression, prices, dataset, source)
    series_us = n * 0.1 if tracked else heavy.pair_cost(n, window, regression)
    if dataset is not None:
        series_us += n * heavy.DATASET_ROW_US
    fits = 0 if tracked else heavy.robust_fits(n, window, regression)
    fit_part = fits * heavy.fit_us(regression, window)
    where = f"dataset {dataset!r}" if dataset else "live"
    detail = f"{regression} w={window} over {n:,} {format_timeframe(tf_ms)} bars ({where})"
    if fits:
        detail += f", {fits} robust window fits"
    # the parameter to change first: the window when robust fits dominate, else the bars
    param = "window" if fit_part > (series_us - fit_part) + n * extra_row_us else "timeframe"
    return heavy.Estimate(job, series_us + n * extra_row_us, n, param, detail)


def screen_job(tf_ms: int, window: int, regression: str, prices: str,
               max_bars: int | None, dataset: str | None = None,
               source: str = "trade") -> heavy.Estimate:
    if dataset is not None:  # a dataset's symbols: stored counts scaled to tf_ms
        info = queries.dataset_info(dataset)
        syms = info.symbols
        counts = [pair_rows(s, s, tf_ms, dataset) for s in syms]
    else:
        market = get_services()
        counts = [len(market.bars(s, tf_ms)) for s in sorted(market.names())]
    counts = [c for c in counts if c]
    n = min(max(counts, default=0), max_bars or 10**12)
    pairs = comb(len(counts), 2)
    cost = pairs * (heavy.pair_cost(n, window, regression) + n * heavy.SCREEN_PAIR_ROW_US)
    detail = (f"{pairs} pairs x {n:,} {format_timeframe(tf_ms)} bars ({regression} "
              f"w={window})")
    robust = pairs * heavy.robust_fits(n, window, regression) * heavy.fit_us(regression, window)
    param = "window" if robust > cost / 2 else "lookback"
    return heavy.Estimate("screener", cost, n, param, detail)


def leadlag_job(a: str, b: str, tf_ms: int, max_lag: int,
                max_bars: int | None, dataset: str | None = None) -> heavy.Estimate:
    n = min(pair_rows(a, b, tf_ms, dataset), max_bars or 10**12)
    cost = n * (heavy.ROW_US["ols"] + (2 * max_lag + 1) * heavy.LEADLAG_ROW_LAG_US)
    return heavy.Estimate(
        "lead-lag", cost, n, "lookback",
        f"{n:,} {format_timeframe(tf_ms)} bars at lags -{max_lag}..{max_lag}",
    )
