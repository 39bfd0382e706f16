"""What a pair panel shows, computed from the live engine (read-only, no Dash).

* :class:`Selection`: one panel's validated choices (URL query, controls, store);
* :func:`parse_query`: ``/pair?a=..&b=..&tf=..&w=..&reg=..&prices=..`` -> a Selection,
  falling back to the default of every bad value with a note saying why;
* :func:`cached_snapshot`: the tracked pair's snapshot *without* ever building one (the
  500 ms path must not run the day's batch build);
* :func:`full_figures` / :func:`bar_close_payloads`: every chart of the panel, whole
  (on selection change, zoom or periodically) or as ``extendData`` of the bars closed
  since the last draw;
* :func:`bar_kpis`, :func:`collecting`: KPI values and "collecting: N of M bars".
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from urllib.parse import urlencode

import numpy as np
import pandas as pd

from analytics.pair import requirements
from analytics.stationarity import ADF_MIN_OBS, half_life
from analytics.timeframes import format_timeframe
from dashapp import downsample, figures, params, updates

TIMEFRAMES = {"1s": 1_000, "1m": 60_000, "5m": 300_000}
MAX_WINDOW = 3_600
DEFAULT_WINDOW = 60
MAX_POINTS = 1_000
MAX_CANDLES = 300
#: Bars appended by extendData before the panel is redrawn (and re-downsampled) whole.
REDRAW_EVERY = 600
#: Points kept per trace in the browser (extendData maxPoints).
MAX_BROWSER_POINTS = 20_000
HALF_LIFE_WINDOWS = 20  # half-life KPI over the last 20 windows of spread


@dataclass(frozen=True, slots=True)
class Selection:
    a: str
    b: str
    tf: str = "1s"
    window: int = DEFAULT_WINDOW
    regression: str = "ols"
    prices: str = "raw"
    mode: str = "overlay"  # price chart: "overlay" (normalized lines) or "candles"
    k: float = 2.0  # spread band width in sigmas
    entry: float = 2.0  # z entry threshold (lines, signal summary)

    @property
    def tf_ms(self) -> int:
        return TIMEFRAMES[self.tf]

    @property
    def key(self) -> str:
        """Identity of the analytics (what uirevision and the drawn store follow)."""
        return f"{self.a}|{self.b}|{self.tf}|{self.window}|{self.regression}|{self.prices}"

    def engine_args(self) -> tuple:
        return (self.a, self.b, self.tf_ms, self.window, self.regression, self.prices)

    def query(self) -> str:
        return "?" + urlencode(
            {
                "a": self.a,
                "b": self.b,
                "tf": self.tf,
                "w": self.window,
                "reg": self.regression,
                "prices": self.prices,
            }
        )

    def to_store(self) -> dict:
        return asdict(self)

    @classmethod
    def from_store(cls, data: dict | None) -> Selection | None:
        return None if not data else cls(**data)


def default_selection(symbols: list[str]) -> Selection:
    syms = sorted(symbols)
    pref = [s for s in ("BTCUSDT", "ETHUSDT") if s in syms]
    pick = pref if len(pref) == 2 else syms[:2]
    if len(pick) < 2:
        raise ValueError("the pair page needs at least two ingested symbols")
    return Selection(pick[0], pick[1])


def validate(values: dict, symbols: list[str]) -> Selection:
    """Controls/URL values -> Selection; raises :class:`~dashapp.params.BadParam`."""
    known = set(symbols)
    a = params.symbol(values, "a", known)
    b = params.symbol(values, "b", known)
    if a == b:
        raise params.BadParam("b", "must differ from a")
    tf = str(values.get("tf") or "1s").strip()
    if tf not in TIMEFRAMES:
        raise params.BadParam("tf", f"{tf[:20]!r} is not one of {', '.join(TIMEFRAMES)}")
    w = params.integer(values, "w", DEFAULT_WINDOW, 3, MAX_WINDOW)
    reg = params.regression({"regression": values.get("reg")})
    prices = params.prices({"prices": values.get("prices")})
    mode = params.choice(values, "mode", ("overlay", "candles"), "overlay")
    k = _number(values, "k", 2.0, 0.5, 5.0)
    entry = _number(values, "entry", 2.0, 0.5, 5.0)
    return Selection(a, b, tf, w, reg, prices, mode, k, entry)


def _number(values: dict, name: str, default: float, lo: float, hi: float) -> float:
    raw = values.get(name)
    if raw is None or str(raw).strip() == "":
        return default
    try:
        v = float(raw)
    except (TypeError, ValueError):
        raise params.BadParam(name, f"{str(raw)[:20]!r} is not a number") from None
    if not (math.isfinite(v) and lo <= v <= hi):
        raise params.BadParam(name, f"must be between {lo:g} and {hi:g}, got {v:g}")
    return v


def parse_query(query: dict, symbols: list[str]) -> tuple[Selection, list[str]]:
    """URL query -> Selection; each bad value falls back to its default with a note."""
    sel = default_selection(symbols)
    known = set(symbols)
    checks = {
        "a": lambda v: params.symbol({"a": v}, "a", known),
        "b": lambda v: params.symbol({"b": v}, "b", known),
        "tf": lambda v: validate({"a": sel.a, "b": sel.b, "tf": v}, symbols).tf,
        "w": lambda v: params.integer({"w": v}, "w", DEFAULT_WINDOW, 3, MAX_WINDOW),
        "reg": lambda v: params.regression({"regression": v}),
        "prices": lambda v: params.prices({"prices": v}),
    }
    fields = {
        "a": "a",
        "b": "b",
        "tf": "tf",
        "w": "window",
        "reg": "regression",
        "prices": "prices",
    }
    values, notes = {}, []
    for name, check in checks.items():
        if name not in query:
            continue
        try:
            values[fields[name]] = check(query[name])
        except params.BadParam as exc:
            notes.append(f"URL parameter {exc} (using {getattr(sel, fields[name])})")
    chosen = replace(sel, **values)
    if chosen.a == chosen.b:
        notes.append(f"URL parameters a and b are both {chosen.a} (using {sel.a} / {sel.b})")
        chosen = replace(chosen, a=sel.a, b=sel.b)
    return chosen, notes


def cached_snapshot(engine, sel: Selection):
    """The tracked pair's snapshot, or None if it is not tracked (never builds)."""
    args = sel.engine_args()
    from analytics.engine import PairKey

    if PairKey(*args) not in set(engine.tracked_pairs()):
        return None
    return engine.pair(*args)


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
        figures.apply_x_range(fig, x_range)
    return out


def price_figure(snap, bars_a, bars_b, sel: Selection, x_range=None):
    s = snap.series
    ts = np.asarray(s.ts)
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
    pa, pb = np.asarray(s.price_a), np.asarray(s.price_b)
    if len(ts) == 0:
        return figures.overlay_figure(ts, pa, pb, a=sel.a, b=sel.b, uirevision=sel.key)
    na, nb = normalized(pa, pa[0]), normalized(pb, pb[0])
    idx = downsample.minmax_multi([na[sl], nb[sl]], MAX_POINTS)
    return figures.overlay_figure(
        ts[sl][idx], na[sl][idx], nb[sl][idx], a=sel.a, b=sel.b, uirevision=sel.key
    )


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
def bar_kpis(snap, sel: Selection) -> dict:
    """beta, alpha, R^2 (window), half-life (bars), correlation at the last closed bar."""
    s = snap.series
    n = len(s)
    out = {
        "beta": None,
        "alpha": None,
        "r2": None,
        "half_life": None,
        "corr": None,
        "zscore": None,
        "bars": n,
    }
    if n == 0:
        return out
    fin = lambda v: float(v) if math.isfinite(float(v)) else None  # noqa: E731
    out.update(
        beta=fin(s.beta[-1]), alpha=fin(s.alpha[-1]), corr=fin(s.corr[-1]), zscore=fin(s.zscore[-1])
    )
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


def describe(sel: Selection) -> str:
    return (
        f"{sel.a} / {sel.b} · {format_timeframe(sel.tf_ms)} · w={sel.window} · "
        f"{sel.regression} · {sel.prices}"
    )


def with_values(sel: Selection, **changes) -> Selection:
    return replace(sel, **changes)


def alert_rule(sel: Selection) -> dict:
    """Partial alert rule (JSON rule format of ``POST /api/alerts``) for this panel:
    z-score crossing above the entry threshold; the modal lets the trader edit it."""
    return {
        "metric": "zscore",
        "a": sel.a,
        "b": sel.b,
        "timeframe": sel.tf,
        "window": sel.window,
        "regression": sel.regression,
        "prices": sel.prices,
        "op": "crosses_above",
        "threshold": sel.entry,
    }
