"""Service functions of the market-wide screen (:mod:`analytics.market_screen`), shared
by ``GET /api/market-screen`` and the page ``/market-screen``, so both show the same
numbers for the same parameters.

Parameters (query names; the page's URL carries the same ones, ``tf`` for
``timeframe``)::

    n=50            top N instruments by quote volume in the window (2 .. 500)
    timeframe=1m    a live bar timeframe
    lookback=1440   bars in the window (30 .. a day of the timeframe)
    min_corr=0.5    prefilter: |return correlation| at least this (0 .. 1)
    max_pairs=2000  at most this many candidates (strongest |corr| first; 1 .. 20000)
    prices=log      log | raw: what Engle-Granger regresses
    z_window=60     bars of the trailing z-score (3 .. lookback)
    both=0          1: test A on B and B on A, report the smaller p-value
    end=            pin the window's end (epoch ms or ISO-8601): the same URL, the same rows

A bad value is a :class:`~dashapp.api.params.BadParam` naming it; too few bars an
``InsufficientData``; a job over the size budget :class:`~dashapp.heavy.TooHeavy`.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Mapping
from math import comb

import numpy as np
import pandas as pd

from analytics.market_screen import (
    MARKET_SCREEN_PRICES,
    MAX_TOP_N,
    MarketScreen,
    MarketScreenParams,
    market_screen,
)
from analytics.timeframes import bars_per_day, format_timeframe
from dashapp import heavy
from dashapp.api import params
from dashapp.api.downloads import iso_ms
from dashapp.api.params import BadParam
from dashapp.services import get_services

#: Estimated µs per candidate pair and grid row of the batched Engle-Granger (lag search
#: over 13 nested regressions, refit, half-life, z), one core: measured 0.3 on the
#: 2-core dev box, rounded up.
EG_PAIR_ROW_US = 0.5
#: µs per instrument and row: the grid, the log returns and their correlation matrix.
GRID_ROW_US = 0.05
MAX_PAIRS = 20_000
DEFAULT_LOOKBACK = 1440
ROW_FIELDS = ("rank", "a", "b", "rank_a", "rank_b", "corr", "coint_stat", "coint_pvalue",
              "usedlag", "alpha", "beta", "half_life_bars", "half_life_seconds", "zscore",
              "abs_z")


def screen_args(args: Mapping) -> dict:
    """Parsed parameters (module docstring): ``{"p": MarketScreenParams, "tf_ms": int,
    "end_ts": int | None}``, the arguments of :func:`run`."""
    tf_ms = params.timeframe(args, default="1m")
    tracked = get_services().timeframes()
    if tf_ms not in tracked:
        names = ", ".join(format_timeframe(t) for t in tracked)
        raise BadParam("timeframe", f"bars exist for {names}, got {format_timeframe(tf_ms)}")
    day = bars_per_day(tf_ms)
    lookback = params.integer(args, "lookback", min(DEFAULT_LOOKBACK, day), 30, max(day, 30))
    p = MarketScreenParams(
        top_n=params.integer(args, "n", 50, 2, MAX_TOP_N),
        lookback=lookback,
        min_corr=params.number(args, "min_corr", 0.5, 0.0, 1.0),
        max_candidates=params.integer(args, "max_pairs", 2000, 1, MAX_PAIRS),
        prices=params.choice(args, "prices", MARKET_SCREEN_PRICES, "log"),
        z_window=params.integer(args, "z_window", min(60, lookback), 3, lookback),
        both_orders=params.choice(args, "both", ("0", "1", "false", "true"), "0")
        in ("1", "true"),
    )
    return {"p": p, "tf_ms": tf_ms, "end_ts": params.time_ms(args, "end")}


def estimate(p: MarketScreenParams, tf_ms: int) -> heavy.Estimate:
    """Size of a screen before it starts: the worst case of its candidates
    (``min(max_pairs, N (N - 1) / 2)``, twice with ``both``) over ``lookback`` rows."""
    n = min(p.top_n, len(get_services().names()))
    pairs = min(p.max_candidates, comb(n, 2)) * (2 if p.both_orders else 1)
    rows = p.lookback
    cost = pairs * rows * EG_PAIR_ROW_US + n * rows * GRID_ROW_US
    detail = (f"Engle-Granger on up to {pairs:,} pairs of the top {n} x {rows:,} "
              f"{format_timeframe(tf_ms)} bars")
    param = "max_pairs" if pairs > rows else "lookback"
    return heavy.Estimate("market screen", cost, rows, param, detail)


def run(p: MarketScreenParams, tf_ms: int, end_ts: int | None = None,
        progress: Callable[[int, int], None] | None = None) -> MarketScreen:
    """The screen over the live instruments' closed bars (one bar-clock instant) and
    their session breaks, its window ending at the last bucket that is final for EVERY
    instrument (``final_ms``, read before the bars): one instrument closes a bucket when
    it trades in the next, a quiet one when the clock passes, so the newest closed
    bucket of the busiest may still gain bars of others; below ``final_ms`` nothing can
    change, and the permalink's ``end`` repeats the same rows."""
    heavy.check(estimate(p, tf_ms))
    market = get_services()
    final = market.final_ms(tf_ms)
    if final is not None:
        last_final = final - tf_ms  # the last bucket [ts, ts + tf) with ts + tf <= final
        end_ts = last_final if end_ts is None else min(end_ts, last_final)
    names = sorted(market.names())
    bars = market.bars_of(names, tf_ms)
    breaks = {s: market.breaks(s) for s in names}
    with _one_blas_thread():
        return market_screen(bars, p, breaks=breaks, end_ts=end_ts, progress=progress)


def _one_blas_thread():
    """BLAS at one thread for the screen: its matmuls are small (13 x 13 Gram matrices),
    and idle BLAS threads spinning on a busy 2-core box made a top-50 screen 1.37 s
    instead of 0.27 s (measured). threadpoolctl comes with scikit-learn."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - a dependency of scikit-learn
        return contextlib.nullcontext()
    return threadpool_limits(limits=1)


def throttled(fn: Callable[[int, int], None], every_s: float = 0.25
              ) -> Callable[[int, int], None]:
    """``fn`` called at most every ``every_s`` (and always for the last chunk): a page's
    progress bar is a round trip per call."""
    last = [0.0]

    def call(done: int, total: int) -> None:
        now = time.monotonic()
        if done >= total or now - last[0] >= every_s:
            last[0] = now
            fn(done, total)

    return call


def _clean(v):
    if isinstance(v, float | np.floating):
        return float(v) if math.isfinite(v) else None
    if isinstance(v, np.integer | np.bool_):
        return v.item()
    return v


def rows_payload(result: MarketScreen) -> list[dict]:
    """The ranked rows as JSON objects (``rank`` from 1; non-finite numbers -> null:
    ``coint_stat`` is -inf for collinear legs, p-value 0)."""
    out = []
    for i, r in enumerate(result.rows, 1):
        row = {f: _clean(getattr(r, f)) for f in ROW_FIELDS[1:]}
        out.append({"rank": i, **row})
    return out


def payload(result: MarketScreen) -> dict:
    """Everything ``GET /api/market-screen`` answers in JSON."""
    p = result.params
    start, end = iso_ms(np.array([result.start_ts, result.end_ts], dtype=np.int64))
    return {
        "timeframe": format_timeframe(result.tf_ms), "n": p.top_n, "lookback": p.lookback,
        "min_corr": p.min_corr, "max_pairs": p.max_candidates, "prices": p.prices,
        "z_window": p.z_window, "both": p.both_orders,
        "bars": result.n_bars, "start": str(start), "end": str(end), "end_ms": result.end_ts,
        "instruments": list(result.names),
        "excluded": [{"name": s, "reason": why} for s, why in result.excluded],
        "pairs_total": result.pairs_total, "above_corr": result.above_corr,
        "candidates": result.candidates, "maxlag": result.maxlag,
        "critical_values": dict(zip(("1%", "5%", "10%"), result.critical_values,
                                    strict=True)),
        "exact_fallbacks": result.exact_fallbacks,
        "rows": rows_payload(result),
    }


def rows_frame(result: MarketScreen) -> pd.DataFrame:
    """The rows as a frame (CSV download), columns :data:`ROW_FIELDS`."""
    return pd.DataFrame(rows_payload(result), columns=list(ROW_FIELDS))


def summary(result: MarketScreen) -> str:
    """One line: what was screened and how many pairs survived each step."""
    p = result.params
    start, end = (pd.Timestamp(t, unit="ms").strftime("%H:%M:%S")
                  for t in (result.start_ts, result.end_ts))
    orders = ", both orders" if p.both_orders else ""
    excl = (f"; {len(result.excluded)} excluded (late start or flat price: "
            f"{', '.join(s for s, _ in result.excluded[:3])}"
            f"{', …' if len(result.excluded) > 3 else ''})" if result.excluded else "")
    return (f"top {len(result.names)} by quote volume, {result.n_bars:,} "
            f"{format_timeframe(result.tf_ms)} bars {start}–{end} UTC ({p.prices} prices"
            f"{orders}): {result.pairs_total:,} pairs, {result.above_corr:,} with |corr| ≥ "
            f"{p.min_corr:g}, {result.candidates:,} tested (max lag {result.maxlag})"
            f"{excl}")
