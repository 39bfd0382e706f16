"""Service functions behind the API, the pages and the downloads (one source of numbers).

They read the live engine (closed bars, pair series maintained incrementally) and call
analytics; they never touch the socket or SQLite directly.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analytics.stationarity import adf_test, coint_test, half_life
from analytics.timeframes import format_timeframe
from dashapp.services import get_services

PAIR_COLUMNS = ("ts", "price_a", "price_b", "alpha", "beta", "spread", "zscore", "corr")
BAR_COLUMNS = (
    "ts", "open", "high", "low", "close", "volume", "quote_volume", "trades", "vwap", "buy_volume",
)


def rows_in(ts: np.ndarray, start: int | None, end: int | None, limit: int | None) -> slice:
    """The rows of an increasing ``ts`` with ``start <= ts <= end``, the last ``limit``
    of them: a slice, so callers cut their columns before building anything (O(rows
    kept), whatever the day held)."""
    lo = 0 if start is None else int(np.searchsorted(ts, start, side="left"))
    hi = len(ts) if end is None else int(np.searchsorted(ts, end, side="right"))
    if limit is not None:
        lo = max(lo, hi - limit)
    return slice(lo, max(lo, hi))


def bars_frame(
    symbol: str, tf_ms: int, dataset: str | None = None,
    start: int | None = None, end: int | None = None, limit: int | None = None,
) -> pd.DataFrame:
    """Closed bars of the last day (or of an uploaded dataset), with an int ``ts``
    (bucket start, epoch ms) column; ``start``/``end``/``limit`` as in :func:`rows_in`."""
    if dataset is not None:
        bars = dataset_bars(dataset, symbol, tf_ms)
    else:
        bars = get_services().engine.bars(symbol, tf_ms)
    bars = bars.take(rows_in(bars.ts, start, end, limit))
    cols = {**bars.columns(), "vwap": bars.vwap}
    return pd.DataFrame({c: cols[c] for c in BAR_COLUMNS})


def pair_frame(
    a: str, b: str, tf_ms: int, window: int, regression: str, prices: str,
    dataset: str | None = None,
    start: int | None = None, end: int | None = None, limit: int | None = None,
) -> pd.DataFrame:
    """The pair series (columns ``PAIR_COLUMNS``) of live data, or of an uploaded dataset;
    ``start``/``end``/``limit`` pick rows as in :func:`rows_in`. The statistics are
    trailing, so a cut of the series equals the same rows of the whole."""
    if dataset is not None:
        frame = dataset_pair_frame(dataset, a, b, tf_ms, window, regression, prices)
        keep = rows_in(frame["ts"].to_numpy(), start, end, limit)
        return frame.iloc[keep].reset_index(drop=True)
    series = get_services().engine.pair(a, b, tf_ms, window, regression, prices).series
    keep = rows_in(series.ts, start, end, limit)
    return pd.DataFrame({c: getattr(series, c)[keep] for c in PAIR_COLUMNS})


def dataset_info(dataset: str):
    """The uploaded dataset ``dataset`` (:class:`ingest.datasets.DatasetInfo`), or a
    ``BadParam("dataset")`` naming the datasets there are."""
    from dashapp.params import BadParam

    info = get_services().datasets.get(dataset)
    if info is None:
        names = [d.name for d in get_services().datasets.list()]
        have = ", ".join(names[:20]) if names else "none uploaded yet (POST /api/upload)"
        raise BadParam("dataset", f"no such dataset: {dataset[:64]!r}; datasets: {have}")
    return info


def dataset_bars(dataset: str, symbol: str, tf_ms: int | None = None):
    """Bars of ``symbol`` in an uploaded dataset, at its timeframe or a multiple of it
    (resampled exactly, :func:`analytics.bars.resample_bars`)."""
    from analytics.bars import resample_bars
    from dashapp.params import BadParam

    info = dataset_info(dataset)
    if symbol not in info.symbols:
        raise BadParam(
            "symbol", f"{symbol} is not in dataset {dataset!r}; it holds {', '.join(info.symbols)}"
        )
    bars = get_services().datasets.bars(dataset, symbol)
    if tf_ms is None or tf_ms == info.tf_ms:
        return bars
    if tf_ms % info.tf_ms:
        raise BadParam(
            "timeframe",
            f"dataset {dataset!r} has {format_timeframe(info.tf_ms)} bars: use a multiple "
            f"of {format_timeframe(info.tf_ms)}, got {format_timeframe(tf_ms)}",
        )
    return resample_bars(bars, tf_ms=tf_ms)


def dataset_pair_frame(
    dataset: str, a: str, b: str, tf_ms: int, window: int, regression: str, prices: str
) -> pd.DataFrame:
    """Pair series of an uploaded OHLC dataset: the same :func:`analytics.align.align_pair`
    and :func:`analytics.pair.pair_series` as the live engine, over all its bars."""
    from analytics.features import pair_from_bars

    bars_a = dataset_bars(dataset, a, tf_ms)
    bars_b = dataset_bars(dataset, b, tf_ms)
    _, series = pair_from_bars(bars_a, bars_b, window=window, regression=regression,
                               prices=prices)
    return series.to_frame()


def adf_report(
    a: str, b: str, tf_ms: int, window: int, regression: str, prices: str,
    dataset: str | None = None,
) -> dict:
    """ADF of the spread, Engle-Granger cointegration and half-life over the last day
    (or over all of an uploaded dataset's bars).

    The ADF runs on the pair's trailing spread series (each point with its own trailing
    beta, exactly as charted); the Engle-Granger test runs on the aligned prices
    (raw or log as chosen) and is the one to trust for cointegration, because an ADF on
    residuals of a fitted regression is biased towards rejecting the unit root.
    """
    if dataset is None:
        series = get_services().engine.pair(a, b, tf_ms, window, regression, prices).series
        spread, pa, pb = series.spread, series.price_a, series.price_b
    else:
        frame = dataset_pair_frame(dataset, a, b, tf_ms, window, regression, prices)
        spread, pa, pb = (frame[c].to_numpy() for c in ("spread", "price_a", "price_b"))
    spread = spread[np.isfinite(spread)]
    adf = adf_test(spread)
    if prices == "log":
        pa, pb = np.log(pa), np.log(pb)
    coint = coint_test(pa, pb)
    hl = half_life(spread)
    return {
        "a": a,
        "b": b,
        "dataset": dataset,
        "timeframe": format_timeframe(tf_ms),
        "window": window,
        "regression": regression,
        "prices": prices,
        "stat": adf.stat,
        "pvalue": adf.pvalue,
        "usedlag": adf.usedlag,
        "nobs": adf.nobs,
        "critical_values": adf.critical_values,
        "coint_stat": coint.stat,
        "coint_pvalue": coint.pvalue,
        "halflife": hl.bars if np.isfinite(hl.bars) else None,
        "halflife_seconds": hl.bars * tf_ms / 1000 if np.isfinite(hl.bars) else None,
    }
