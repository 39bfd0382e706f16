"""What a pair panel shows, computed from the market facade (read-only, no Dash callbacks).

The panel's choices are a :class:`dashapp.selection.Selection` (parsed there).

* :func:`cached_snapshot`: the tracked pair's snapshot *without* ever building one (the
  500 ms path must not run the day's batch build);
* :func:`full_figures` / :func:`bar_close_payloads`: every chart of the panel, whole
  (on selection change, zoom or periodically) or as ``extendData`` of the bars closed
  since the last draw;
* :func:`bar_kpis`, :func:`collecting`: KPI values and "collecting: N of M bars".
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from analytics.pair import requirements
from analytics.registry import STATISTICS
from analytics.stationarity import ADF_MIN_OBS, half_life
from dashapp import downsample, figures, updates
from dashapp.selection import Selection

MAX_POINTS = 1_000
MAX_CANDLES = 300
#: Bars appended by extendData before the panel is redrawn (and re-downsampled) whole.
REDRAW_EVERY = 600
#: Points kept per trace in the browser (extendData maxPoints).
MAX_BROWSER_POINTS = 20_000
HALF_LIFE_WINDOWS = 20  # half-life KPI over the last 20 windows of spread


def cached_snapshot(market, sel: Selection):
    """The tracked pair's snapshot, or None if it is not tracked (never builds)."""
    return market.tracked_pair(*sel.engine_args())


# ----------------------------------------------------------------- derived series
def spread_bands(spread: np.ndarray, window: int, k: float) -> tuple[np.ndarray, ...]:
    """Rolling mean and mean ± k·std (ddof=1) of the spread over ``window`` bars:
    the same statistics the z-score divides by, so the spread touches a band exactly
    when |z| = k."""
    s = pd.Series(spread, copy=False)
    roll = s.rolling(window, min_periods=window)
    mean, std = roll.mean().to_numpy(), roll.std(ddof=1).to_numpy()
    return mean, mean + k * std, mean - k * std


def _bands_tail(spread: np.ndarray, start: int, window: int, k: float):
    lo = max(0, start - window + 1)
    mean, up, dn = spread_bands(spread[lo:], window, k)
    off = start - lo
    return mean[off:], up[off:], dn[off:]


def normalized(prices: np.ndarray, base: float) -> np.ndarray:
    return prices / base * 100.0


def live_point(snap, price_a: float | None, price_b: float | None, now_ms: int | None):
    """(x, live z) for the marker, or None while undefined."""
    z = snap.live_zscore(price_a, price_b)
    if z is None or not math.isfinite(z) or now_ms is None:
        return None
    return float(now_ms), float(z)


# ----------------------------------------------------------------- full figures
def full_figures(
    snap,
    bars_a,
    bars_b,
    sel: Selection,
    *,
    x_range=None,
    alert_lines=None,
    live=None,
) -> dict:
    """Every chart of the panel, downsampled (full resolution inside a zoom)."""
    s = snap.series
    ts = np.asarray(s.ts)
    sl = downsample.visible_slice(ts, x_range)
    rev = sel.key
    spread = np.asarray(s.spread)
    mean, up, dn = spread_bands(spread, sel.window, sel.k)
    cols = [spread[sl], np.asarray(s.zscore)[sl], np.asarray(s.corr)[sl], np.asarray(s.beta)[sl]]
    idx = downsample.minmax_multi(cols, MAX_POINTS)
    t = ts[sl][idx]
    out = {
        "spread": figures.spread_figure(
            t, spread[sl][idx], mean[sl][idx], up[sl][idx], dn[sl][idx], k=sel.k, uirevision=rev
        ),
        "z": figures.zscore_figure(
            t,
            np.asarray(s.zscore)[sl][idx],
            entry=sel.entry,
            uirevision=rev,
            live=live,
            alert_lines=alert_lines,
        ),
        "corr": figures.line_figure(
            t, np.asarray(s.corr)[sl][idx], name="ρ", uirevision=rev, color="#9b59b6", hlines=(0.0,)
        ),
        "beta": figures.line_figure(
            t, np.asarray(s.beta)[sl][idx], name="β", uirevision=rev, color=figures.COLOR_B
        ),
        "price": price_figure(snap, bars_a, bars_b, sel, x_range),
    }
    for fig in out.values():
        figures.mark_breaks(fig, getattr(snap, "breaks", ()))  # session breaks (h4)
        figures.apply_x_range(fig, x_range)
    return out


def price_figure(snap, bars_a, bars_b, sel: Selection, x_range=None):
    s = snap.series
    return price_figure_from(
        np.asarray(s.ts), np.asarray(s.price_a), np.asarray(s.price_b), bars_a, bars_b, sel,
        x_range,
    )


def price_figure_from(ts, pa, pb, bars_a, bars_b, sel: Selection, x_range=None):
    """The price chart from aligned closes (overlay) or each leg's bars (candles)."""
    if sel.mode == "candles":
        legs = []
        for sym, bars in ((sel.a, bars_a), (sel.b, bars_b)):
            bts = np.asarray(bars.ts)
            sl = downsample.visible_slice(bts, x_range)
            legs.append(
                (
                    sym,
                    downsample.ohlc_buckets(
                        bts[sl],
                        bars.open[sl],
                        bars.high[sl],
                        bars.low[sl],
                        bars.close[sl],
                        bars.quote_volume[sl],
                        MAX_CANDLES,
                    ),
                )
            )
        return figures.candles_figure(legs, uirevision=sel.key)
    sl = downsample.visible_slice(ts, x_range)
    if len(ts) == 0:
        return figures.overlay_figure(ts, pa, pb, a=sel.a, b=sel.b, uirevision=sel.key)
    na, nb = normalized(pa, pa[0]), normalized(pb, pb[0])
    idx = downsample.minmax_multi([na[sl], nb[sl]], MAX_POINTS)
    return figures.overlay_figure(
        ts[sl][idx], na[sl][idx], nb[sl][idx], a=sel.a, b=sel.b, uirevision=sel.key
    )


def pending_figures(bars_a, bars_b, sel: Selection, notes: dict) -> dict:
    """Every chart while the pair cannot be computed yet (too few bars): prices from
    the legs' bars (one common bar is enough), each other chart a placeholder saying
    what it waits for (``notes``: chart -> "collecting: N of M bars"). Nothing of
    another selection stays on screen."""
    from analytics.align import align_pair

    out = {}
    for chart, height in (("spread", 230), ("z", 230), ("corr", 190), ("beta", 190)):
        out[chart] = figures.empty_figure(
            height=height, uirevision=sel.key, text=notes.get(chart) or "collecting…"
        )
    ts = pa = pb = np.empty(0)
    if len(bars_a) and len(bars_b):
        aligned = align_pair(bars_a, bars_b)
        ts, pa, pb = np.asarray(aligned.ts), np.asarray(aligned.a), np.asarray(aligned.b)
    if len(ts) == 0:
        out["price"] = figures.empty_figure(
            height=300, uirevision=sel.key, text=notes.get("price") or "collecting: 0 of 1 bars"
        )
    else:
        out["price"] = price_figure_from(ts, pa, pb, bars_a, bars_b, sel)
    return out


# ----------------------------------------------------------------- bar close
def bar_close_payloads(snap, drawn_ts: int, sel: Selection, live=None) -> dict:
    """extendData per chart for the points after ``drawn_ts`` (overlay mode prices;
    candles are redrawn whole by the caller). Empty dict when nothing is new."""
    s = snap.series
    ts = np.asarray(s.ts)
    start = int(np.searchsorted(ts, drawn_ts, side="right"))
    if start >= len(ts):
        return {}
    t = ts[start:].astype(np.int64).tolist()
    spread = np.asarray(s.spread)
    mean, up, dn = _bands_tail(spread, start, sel.window, sel.k)
    n = MAX_BROWSER_POINTS
    z_cols = [{"x": t, "y": updates.clean(s.zscore[start:])}]
    z_idx = [figures.Z_TRACES["z"]]
    z_max: int | dict = n
    if live is not None:
        z_cols.append({"x": [live[0]], "y": [live[1]]})
        z_idx.append(figures.Z_TRACES["live"])
        z_max = {"x": [n, 1], "y": [n, 1]}
    pa, pb = np.asarray(s.price_a), np.asarray(s.price_b)
    out = {
        "spread": updates.extend(
            [{"x": t, "y": updates.clean(c)} for c in (spread[start:], mean, up, dn)],
            list(SPREAD_INDEX),
            n,
        ),
        "z": updates.extend(z_cols, z_idx, z_max),
        "corr": updates.extend([{"x": t, "y": updates.clean(s.corr[start:])}], [0], n),
        "beta": updates.extend([{"x": t, "y": updates.clean(s.beta[start:])}], [0], n),
    }
    if sel.mode == "overlay":
        out["price"] = updates.extend(
            [
                {"x": t, "y": updates.clean(normalized(pa[start:], pa[0]))},
                {"x": t, "y": updates.clean(normalized(pb[start:], pb[0]))},
            ],
            [0, 1],
            n,
        )
    return out


SPREAD_INDEX = tuple(figures.SPREAD_TRACES.values())


# ----------------------------------------------------------------- KPIs
def empty_kpis(bars: int = 0) -> dict:
    """The KPI values of a selection with nothing defined yet (every card says "–"):
    every statistic of :data:`analytics.registry.STATISTICS`, R^2, the day's half-life."""
    return {**{f.name: None for f in STATISTICS}, "r2": None, "half_life": None, "bars": bars}


def bar_kpis(snap, sel: Selection) -> dict:
    """Every declared statistic at the last closed bar (beta, alpha, z, corr, ...), R^2
    (window) and the half-life (bars) of the recent spread."""
    s = snap.series
    n = len(s)
    out = empty_kpis(n)
    if n == 0:
        return out
    fin = lambda v: float(v) if math.isfinite(float(v)) else None  # noqa: E731
    out.update({f.name: fin(getattr(s, f.name)[-1]) for f in STATISTICS})
    w = sel.window
    if out["beta"] is not None and n >= w:
        pa, pb = np.asarray(s.price_a[-w:]), np.asarray(s.price_b[-w:])
        if sel.prices == "log":
            pa, pb = np.log(pa), np.log(pb)
        resid = pa - out["alpha"] - out["beta"] * pb
        tot = float(((pa - pa.mean()) ** 2).sum())
        out["r2"] = 1.0 - float((resid**2).sum()) / tot if tot > 0 else None
    spread = np.asarray(s.spread[-HALF_LIFE_WINDOWS * w :])
    spread = spread[np.isfinite(spread)]
    if len(spread) >= max(10, w) and np.ptp(spread) > 0:
        out["half_life"] = half_life(spread).bars
    return out


def collecting(snap, sel: Selection) -> dict[str, str | None]:
    """Per chart: None when its analytic is defined, else "collecting: N of M bars"."""
    req = requirements(sel.window, sel.regression)
    needs = snap.needs or {}
    have = len(snap.series)
    out: dict[str, str | None] = {}
    for chart, metric in (
        ("spread", "spread"),
        ("z", "zscore"),
        ("corr", "corr"),
        ("beta", "beta"),
    ):
        left = needs.get(metric, 0)
        m = req[metric]
        out[chart] = None if left <= 0 else f"collecting: {m - left} of {m} bars"
    out["price"] = None if have else "collecting: 0 of 1 bars"
    out["adf"] = None if have >= ADF_MIN_OBS else f"collecting: {have} of {ADF_MIN_OBS} bars"
    return out
