"""Service functions behind the API, the pages and the downloads (one source of numbers).

They read the live engine (closed bars, pair series maintained incrementally) and call
analytics; they never touch the socket or SQLite directly.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analytics.book import book_columns
from analytics.registry import BAR_COLUMNS, pair_table
from analytics.sessions import last_segment, session_ids
from analytics.stationarity import adf_test, coint_test, half_life
from analytics.timeframes import format_timeframe
from dashapp.services import get_services

#: Added after the pair columns (``analytics.registry.PAIR_COLUMNS``) in ``/api/pair``
#: and the downloads: the session of each row (how many session breaks of the pair lie
#: at or before it, see :mod:`analytics.sessions`); a row whose ``session`` differs
#: from the previous row's starts after a break (replay loop seam, outage): no
#: statistic spans it.
SESSION_COLUMN = "session"


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
    (bucket start, epoch ms) column; ``start``/``end``/``limit`` as in :func:`rows_in`.

    Then the top-of-book columns (:func:`analytics.book.book_columns`: the book as of
    each bucket's end; NaN before the first quote, and for datasets). A live bar whose
    book is not final yet (a quote of its bucket may still come) waits, like a bar
    still open: a served row never changes."""
    book = None
    if dataset is not None:
        bars = dataset_bars(dataset, symbol, tf_ms)
    else:
        bars = get_services().bars(symbol, tf_ms)
        book = get_services().book_bars(symbol, tf_ms)  # after the bars: final covers more
        if book is not None and book.final_ms is not None:
            n = int(np.searchsorted(bars.ts, book.final_ms - tf_ms, side="right"))
            bars = bars.take(slice(0, n))
    bars = bars.take(rows_in(bars.ts, start, end, limit))
    cols = {**bars.columns(), "vwap": bars.vwap, **book_columns(bars.ts, tf_ms, book)}
    return pd.DataFrame({c: cols[c] for c in BAR_COLUMNS})


def pair_frame(
    a: str, b: str, tf_ms: int, window: int, regression: str, prices: str,
    dataset: str | None = None,
    start: int | None = None, end: int | None = None, limit: int | None = None,
    source: str = "trade",
) -> pd.DataFrame:
    """The pair series (columns ``analytics.registry.PAIR_COLUMNS`` then ``session``,
    built by the one :func:`analytics.registry.pair_table`) of live data, or of
    an uploaded dataset; ``start``/``end``/``limit`` pick rows as in :func:`rows_in`. The
    statistics are trailing and restart at each session break, so a cut of the series
    equals the same rows of the whole. ``source="mid"``: on the legs' mids
    (:mod:`analytics.midprice`); a dataset has no book (a 400 naming ``source``)."""
    if dataset is not None:
        no_book_in_dataset(source)
        frame = dataset_pair_frame(dataset, a, b, tf_ms, window, regression, prices)
        keep = rows_in(frame["ts"].to_numpy(), start, end, limit)
        frame = frame.iloc[keep].reset_index(drop=True)
        frame[SESSION_COLUMN] = np.zeros(len(frame), dtype=np.int64)  # no breaks in a file
        return frame
    snap = get_services().pair(a, b, tf_ms, window, regression, prices, source)
    series = snap.series
    keep = rows_in(series.ts, start, end, limit)
    frame = pair_table(series, keep)
    frame[SESSION_COLUMN] = session_ids(series.ts[keep], snap.session_breaks_ms, tf_ms)
    return frame


def no_book_in_dataset(source: str) -> None:
    """An uploaded OHLC dataset has trades' closes only: ``source=mid`` is a 400."""
    from dashapp.api.params import BadParam

    if source != "trade":
        raise BadParam("source", "an uploaded dataset has no top of book: use source=trade")


def pair_quotes(a: str, b: str, tf_ms: int, ts: np.ndarray) -> dict[str, np.ndarray]:
    """Both legs' best bid and ask as of the END of each bucket ``ts`` (carried
    forward, NaN before a leg's first quote; :func:`analytics.book.book_columns`):
    ``bid_a, ask_a, bid_b, ask_b``, what a ``fills=quote`` backtest crosses."""
    from analytics.book import book_columns

    market = get_services()
    out = {}
    for leg, name in (("a", a), ("b", b)):
        cols = book_columns(ts, tf_ms, market.book_bars(name, tf_ms))
        out[f"bid_{leg}"], out[f"ask_{leg}"] = cols["bid"], cols["ask"]
    return out


def mid_bars_of(names, tf_ms: int) -> dict:
    """Mid bars (:func:`analytics.midprice.mid_bars`) of live instruments, from their
    book bars at ``tf_ms``; empty for an instrument without a quote."""
    from analytics.bars import Bars
    from analytics.midprice import mid_bars

    market = get_services()
    out = {}
    for name in names:
        book = market.book_bars(name, tf_ms)
        out[name] = (Bars.empty(tf_ms) if book is None else
                     mid_bars(book.ts, book.bid, book.ask, book.updates, tf_ms))
    return out


def frame_breaks(frame: pd.DataFrame) -> np.ndarray:
    """``ts`` of the rows of a :func:`pair_frame` that start a new session (the break
    buckets inside it, the ``breaks`` of :func:`analytics.backtest.run_backtest`)."""
    if SESSION_COLUMN not in frame or len(frame) < 2:
        return np.zeros(0, dtype=np.int64)
    sid = frame[SESSION_COLUMN].to_numpy()
    return frame["ts"].to_numpy(np.int64)[1:][sid[1:] != sid[:-1]]


def dataset_info(dataset: str):
    """The uploaded dataset ``dataset`` (:class:`ingest.store.DatasetInfo`), or a
    ``BadParam("dataset")`` naming the datasets there are."""
    from dashapp.api.params import BadParam

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
    from dashapp.api.params import BadParam

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
    return pair_table(series)


def adf_report(
    a: str, b: str, tf_ms: int, window: int, regression: str, prices: str,
    dataset: str | None = None, source: str = "trade",
) -> dict:
    """ADF of the spread, Engle-Granger cointegration and half-life over the last day
    (or over all of an uploaded dataset's bars).

    The ADF runs on the pair's trailing spread series (each point with its own trailing
    beta, exactly as charted); the Engle-Granger test runs on the aligned prices
    (raw or log as chosen) and is the one to trust for cointegration, because an ADF on
    residuals of a fitted regression is biased towards rejecting the unit root.

    Both run on the **last session** only (the bars after the last session break):
    a test across a break would see the jump at the seam. ``breaks`` lists the breaks
    inside the day (bucket starts, epoch ms) and ``since_ms`` the first bar tested.
    """
    from dashapp import heavy, job_sizes  # the size budget, for the page's job too

    heavy.check(job_sizes.pair_job(
        "ADF", a=a, b=b, tf_ms=tf_ms, window=window, regression=regression, prices=prices,
        dataset=dataset, extra_row_us=heavy.ADF_ROW_US, source=source))
    if dataset is None:
        snap = get_services().pair(a, b, tf_ms, window, regression, prices, source)
        series = snap.series
        ts, spread, pa, pb = series.ts, series.spread, series.price_a, series.price_b
        inside = np.asarray(snap.breaks, dtype=np.int64)
    else:
        no_book_in_dataset(source)
        frame = dataset_pair_frame(dataset, a, b, tf_ms, window, regression, prices)
        ts = frame["ts"].to_numpy(np.int64)
        spread, pa, pb = (frame[c].to_numpy() for c in ("spread", "price_a", "price_b"))
        inside = np.zeros(0, dtype=np.int64)
    s0 = last_segment(ts, inside)
    ts, spread, pa, pb = ts[s0:], spread[s0:], pa[s0:], pb[s0:]
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
        "source": source,
        "stat": adf.stat,
        "pvalue": adf.pvalue,
        "usedlag": adf.usedlag,
        "nobs": adf.nobs,
        "critical_values": adf.critical_values,
        "coint_stat": coint.stat,
        "coint_pvalue": coint.pvalue,
        "halflife": hl.bars if np.isfinite(hl.bars) else None,
        "halflife_seconds": hl.bars * tf_ms / 1000 if np.isfinite(hl.bars) else None,
        "since_ms": int(ts[0]) if len(ts) else None,
        "breaks": [int(x) for x in inside],
    }
