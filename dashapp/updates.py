"""Pure payload builders for the 500 ms path: ``extendData`` tuples, ``Patch`` objects,
and the small numbers the markets cards show.

``extendData`` is ``(update, trace_indices, max_points)`` with ``update`` a dict of
attribute -> one list per trace (plotly.js ``extendTraces``); ``max_points`` trims the
oldest points in the browser (a number, or per attribute a list per trace). Lists only:
``Patch`` and Dash's JSON refuse numpy scalars in places, and NaN is sent as ``None``
(a gap) because JSON has no NaN.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from dash import Patch

TRADE_WINDOW_MS = 60_000  # trades/min and volume/min are measured over the last minute


def clean(values) -> list:
    """Floats as a JSON-safe list, NaN/inf -> None."""
    arr = np.asarray(values, dtype=float)
    out = arr.tolist()
    if not np.isfinite(arr).all():
        out = [v if math.isfinite(v) else None for v in out]
    return out


def extend(traces: list[dict[str, list]], indices: list[int], max_points) -> tuple:
    """Merge per-trace ``{attr: list}`` into one extendData tuple."""
    if len(traces) != len(indices):
        raise ValueError("one dict of columns per trace index")
    keys = list(traces[0])
    if any(list(t) != keys for t in traces):
        raise ValueError("every trace must extend the same attributes")
    update = {k: [t[k] for t in traces] for k in keys}
    return update, list(indices), max_points


def move_marker(x: float, y: float, index: int) -> tuple:
    """extendData that replaces a one-point marker trace (maxPoints 1)."""
    return {"x": [[x]], "y": [[y]]}, [index], 1


def heatmap_patch(matrix: np.ndarray) -> Patch:
    """Patch the values and labels of a correlation heatmap (trace 0), not the figure."""
    m = np.asarray(matrix, dtype=float)
    p = Patch()
    p["data"][0]["z"] = [clean(row) for row in m]
    p["data"][0]["text"] = [["–" if not math.isfinite(v) else f"{v:.2f}" for v in row] for row in m]
    return p


# ----------------------------------------------------------------- markets numbers
@dataclass(frozen=True, slots=True)
class SymbolStats:
    """What one markets card shows. Change, volume and VWAP cover ``span_ms`` (the
    bars held, at most a day); trades/min and volume/min the last minute."""

    last: float | None
    change_pct: float | None
    volume: float  # quote volume (USDT) over span
    vwap: float | None
    trades_per_s: float
    trades_per_min: float
    volume_per_min: float  # quote volume (USDT) over the last minute
    span_ms: int


def symbol_stats(
    bars_1m, bars_1s, last: float | None, trades_per_s: float, now_ms: int | None
) -> SymbolStats:
    """Card numbers from closed 1 m bars (the day) and 1 s bars (the last minute)."""
    qv = float(np.sum(bars_1m.quote_volume)) + float(
        np.sum(_recent(bars_1s, bars_1m, "quote_volume"))
    )
    vol = float(np.sum(bars_1m.volume)) + float(np.sum(_recent(bars_1s, bars_1m, "volume")))
    first = None
    if len(bars_1m):
        first = float(bars_1m.open[0])
        start = int(bars_1m.ts[0])
    elif len(bars_1s):
        first = float(bars_1s.open[0])
        start = int(bars_1s.ts[0])
    else:
        start = now_ms or 0
    change = None
    if first and last is not None:
        change = (last / first - 1.0) * 100.0
    tpm, vpm = 0.0, 0.0
    if len(bars_1s) and now_ms is not None:
        i = int(np.searchsorted(bars_1s.ts, now_ms - TRADE_WINDOW_MS, side="left"))
        tpm = float(np.sum(bars_1s.trades[i:]))
        vpm = float(np.sum(bars_1s.quote_volume[i:]))
    return SymbolStats(
        last=last,
        change_pct=change,
        volume=qv,
        vwap=qv / vol if vol > 0 else None,
        trades_per_s=float(trades_per_s),
        trades_per_min=tpm,
        volume_per_min=vpm,
        span_ms=max(0, (now_ms or start) - start),
    )


def _recent(bars_1s, bars_1m, field: str) -> np.ndarray:
    """1 s bars after the last closed minute (so the day total includes them once)."""
    if not len(bars_1s):
        return np.empty(0)
    cut = int(bars_1m.ts[-1]) + 60_000 if len(bars_1m) else -(2**62)
    i = int(np.searchsorted(bars_1s.ts, cut, side="left"))
    return np.asarray(getattr(bars_1s, field))[i:]


def returns_correlation(
    closes: dict[str, tuple[np.ndarray, np.ndarray]], max_bars: int
) -> tuple[list[str], np.ndarray, int]:
    """Pearson correlation of log returns on the bars every symbol has (inner join on
    ts, the last ``max_bars``). Returns (symbols, matrix, bars used); NaN where a
    symbol did not move."""
    syms = sorted(closes)
    if len(syms) < 2:
        return syms, np.full((len(syms), len(syms)), np.nan), 0
    common = None
    for s in syms:
        ts = closes[s][0]
        common = ts if common is None else np.intersect1d(common, ts, assume_unique=True)
    common = common[-(max_bars + 1) :]
    if len(common) < 3:
        return syms, np.full((len(syms), len(syms)), np.nan), max(len(common) - 1, 0)
    rets = []
    for s in syms:
        ts, close = closes[s]
        pos = np.searchsorted(ts, common)
        rets.append(np.diff(np.log(close[pos])))
    r = np.vstack(rets)
    with np.errstate(invalid="ignore", divide="ignore"):
        sd = r.std(axis=1, ddof=1)
        rc = r - r.mean(axis=1, keepdims=True)
        cov = rc @ rc.T / (r.shape[1] - 1)
        m = cov / np.outer(sd, sd)
    m[~np.isfinite(m)] = np.nan
    np.fill_diagonal(m, np.where(sd > 0, 1.0, np.nan))
    return syms, np.clip(m, -1.0, 1.0), r.shape[1]


def liquid(
    stats: SymbolStats, min_trades_per_min: float | None, min_volume_per_min: float | None
) -> bool:
    """Does a symbol pass the liquidity filter (None / empty thresholds pass)?"""
    if min_trades_per_min and stats.trades_per_min < min_trades_per_min:
        return False
    if min_volume_per_min and stats.volume_per_min < min_volume_per_min:
        return False
    return True


def format_price(price: float | None) -> str:
    """Two decimals for prices >= 1 (USDT quotes), significant digits below."""
    if price is None or not math.isfinite(price):
        return "–"
    return f"{price:,.2f}" if price >= 1 else f"{price:.6g}"


def format_money(v: float | None) -> str:
    if v is None or not math.isfinite(v):
        return "–"
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(v) >= size:
            return f"{v / size:,.2f}{unit}"
    return f"{v:,.0f}"


def format_span(ms: int) -> str:
    s = ms // 1000
    if s >= 86_400 - 60:
        return "24h"
    if s >= 3600:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    return f"{s // 60}m{s % 60:02d}s"
