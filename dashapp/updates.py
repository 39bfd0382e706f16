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

import numpy as np
from dash import Patch


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
