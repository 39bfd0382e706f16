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
import re
from dataclasses import asdict, dataclass, replace
from urllib.parse import urlencode

import numpy as np
import pandas as pd

from analytics.pair import PRICE_MODES, REGRESSIONS, requirements
from analytics.stationarity import ADF_MIN_OBS, half_life
from analytics.timeframes import format_timeframe, parse_timeframe
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
    dataset: str | None = None  # an uploaded dataset (batch), None = the live feed

    @property
    def tf_ms(self) -> int:
        return TIMEFRAMES.get(self.tf) or parse_timeframe(self.tf)

    @property
    def key(self) -> str:
        """Identity of the analytics (what uirevision and the drawn store follow)."""
        base = f"{self.a}|{self.b}|{self.tf}|{self.window}|{self.regression}|{self.prices}"
        return base if self.dataset is None else f"{base}|dataset={self.dataset}"

    def engine_args(self) -> tuple:
        return (self.a, self.b, self.tf_ms, self.window, self.regression, self.prices)

    def query_params(self) -> dict:
        """Every control, as the URL carries it (``dataset`` only when not live)."""
        out = {
            "a": self.a,
            "b": self.b,
            "tf": self.tf,
            "w": self.window,
            "reg": self.regression,
            "prices": self.prices,
            "mode": self.mode,
            "k": f"{self.k:g}",
            "entry": f"{self.entry:g}",
        }
        if self.dataset is not None:
            out["dataset"] = self.dataset
        return out

    def query(self) -> str:
        return "?" + urlencode(self.query_params())

    def to_store(self) -> dict:
        return asdict(self)

    @classmethod
    def from_store(cls, data) -> Selection | None:
        """The store's selection, or None when it is absent or not one (the browser
        can send anything: a forged store is refused here, never a 500 later)."""
        if not isinstance(data, dict) or set(data) - set(cls.__slots__):
            return None
        try:
            return cls(**_checked_store(data))
        except (TypeError, ValueError, KeyError):
            return None


def _checked_store(d: dict) -> dict:
    """Type and range checks of a stored selection (raises ValueError/KeyError)."""
    out = {}
    for name in ("a", "b"):
        v = d[name]
        if not isinstance(v, str) or not params.SYMBOL_RE.match(v):
            raise ValueError(name)
        out[name] = v
    if out["a"] == out["b"]:
        raise ValueError("a == b")
    tf = d.get("tf", "1s")
    if not isinstance(tf, str) or len(tf) > 8 or not 0 < parse_timeframe(tf) <= 86_400_000:
        raise ValueError("tf")
    w = d.get("window", DEFAULT_WINDOW)
    if type(w) is not int or not 3 <= w <= MAX_WINDOW:
        raise ValueError("window")
    choices = {
        "regression": REGRESSIONS,
        "prices": PRICE_MODES,
        "mode": PRICE_CHART_MODES,
    }
    for name, allowed in choices.items():
        v = d.get(name, allowed[0])
        if v not in allowed:
            raise ValueError(name)
        out[name] = v
    for name in ("k", "entry"):
        v = d.get(name, 2.0)
        if type(v) not in (int, float) or not (math.isfinite(v) and NUM_LO <= v <= NUM_HI):
            raise ValueError(name)
        out[name] = float(v)
    ds = d.get("dataset")
    if ds is not None and (not isinstance(ds, str) or not 0 < len(ds) <= 64):
        raise ValueError("dataset")
    return {**out, "tf": tf, "window": w, "dataset": ds}


def default_selection(symbols: list[str]) -> Selection:
    syms = sorted(symbols)
    pref = [s for s in ("BTCUSDT", "ETHUSDT") if s in syms]
    pick = pref if len(pref) == 2 else syms[:2]
    if len(pick) < 2:
        raise ValueError("the pair page needs at least two ingested symbols")
    return Selection(pick[0], pick[1])


#: What the red message calls each control (the labels on screen).
CONTROL_LABELS = {
    "a": "A",
    "b": "B",
    "tf": "Timeframe",
    "w": "Window (bars)",
    "reg": "Regression",
    "prices": "Prices",
    "mode": "Price chart",
    "k": "Bands k σ",
    "entry": "Entry |z|",
    "dataset": "Source",
}
PRICE_CHART_MODES = ("overlay", "candles")
_NUMBER_RE = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?", re.ASCII)
NUM_LO, NUM_HI = 0.5, 5.0  # bounds of k and entry


def validate(
    values: dict, symbols: list[str], timeframes=None, dataset: str | None = None
) -> Selection:
    """Controls/URL values -> Selection; raises :class:`~dashapp.params.BadParam`.

    Strict, because a control the trader typed into must never be replaced silently: a
    blank window, ``3.5`` bars, ``k = 0`` are errors, not defaults. ``timeframes`` are
    the source's (default: the live :data:`TIMEFRAMES`)."""
    tfs = tuple(timeframes or TIMEFRAMES)
    known = set(symbols)
    a = params.symbol(values, "a", known)
    b = params.symbol(values, "b", known)
    if a == b:
        raise params.BadParam("b", "must differ from a")
    tf = str(values.get("tf") or tfs[0]).strip()
    if tf not in tfs:
        raise params.BadParam("tf", f"{tf[:20]!r} is not one of {', '.join(tfs)}")
    w = whole_number(values, "w", 3, MAX_WINDOW)
    reg = params.regression({"regression": values.get("reg")})
    prices = params.prices({"prices": values.get("prices")})
    mode = params.choice(values, "mode", PRICE_CHART_MODES, "overlay")
    k = _number(values, "k", NUM_LO, NUM_HI)
    entry = _number(values, "entry", NUM_LO, NUM_HI)
    return Selection(a, b, tf, w, reg, prices, mode, k, entry, dataset)


def _text(values: dict, name: str) -> str:
    raw = values.get(name)
    text = "" if raw is None else str(raw).strip()
    if text == "":
        raise params.BadParam(name, "is required")
    return text


def whole_number(values: dict, name: str, lo: int, hi: int) -> int:
    """A required whole number in ``[lo, hi]`` (ASCII digits)."""
    text = _text(values, name)
    rule = f"must be a whole number from {lo} to {hi}"
    try:
        v = float(text) if params_number(text) else None
    except ValueError:
        v = None
    if v is None or not math.isfinite(v):
        raise params.BadParam(name, f"{rule}, got {text[:20]!r}")
    if v != int(v):
        raise params.BadParam(name, f"{rule}, got {text[:20]}")
    if not lo <= v <= hi:
        raise params.BadParam(name, f"{rule}, got {int(v)}")
    return int(v)


def params_number(text: str) -> bool:
    """ASCII decimal notation only (``float()`` also reads other scripts' digits)."""
    return _NUMBER_RE.fullmatch(text) is not None


def _number(values: dict, name: str, lo: float, hi: float) -> float:
    text = _text(values, name)
    rule = f"must be a number from {lo:g} to {hi:g}"
    v = float(text) if params_number(text) else math.nan
    if not (math.isfinite(v) and lo <= v <= hi):
        raise params.BadParam(name, f"{rule}, got {text[:20]}")
    return v


def parse_query(
    query: dict, symbols: list[str], timeframes=None, dataset: str | None = None
) -> tuple[Selection, list[str]]:
    """URL query -> Selection; each bad value falls back to its default with a note.

    ``symbols`` and ``timeframes`` are the source's (the live feed's by default, or
    those of ``dataset``)."""
    tfs = tuple(timeframes or TIMEFRAMES)
    sel = replace(default_selection(symbols), tf=tfs[0], dataset=dataset)
    known = set(symbols)

    def tf_check(v):
        v = str(v).strip()
        if v not in tfs:
            raise params.BadParam("tf", f"{v[:20]!r} is not one of {', '.join(tfs)}")
        return v

    checks = {
        "a": lambda v: params.symbol({"a": v}, "a", known),
        "b": lambda v: params.symbol({"b": v}, "b", known),
        "tf": tf_check,
        "w": lambda v: whole_number({"w": v}, "w", 3, MAX_WINDOW),
        "reg": lambda v: params.regression({"regression": v}),
        "prices": lambda v: params.prices({"prices": v}),
        "mode": lambda v: params.choice({"mode": v}, "mode", PRICE_CHART_MODES, "overlay"),
        "k": lambda v: _number({"k": v}, "k", NUM_LO, NUM_HI),
        "entry": lambda v: _number({"entry": v}, "entry", NUM_LO, NUM_HI),
    }
    fields = {"w": "window", "reg": "regression"}
    values, notes = {}, []
    for name, check in checks.items():
        if name not in query:
            continue
        field_name = fields.get(name, name)
        try:
            values[field_name] = check(query[name])
        except params.BadParam as exc:
            notes.append(f"URL parameter {exc} (using {getattr(sel, field_name)})")
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
    """The KPI values of a selection with nothing defined yet (every card says "–")."""
    return {
        "beta": None,
        "alpha": None,
        "r2": None,
        "half_life": None,
        "corr": None,
        "zscore": None,
        "bars": bars,
    }


def bar_kpis(snap, sel: Selection) -> dict:
    """beta, alpha, R^2 (window), half-life (bars), correlation at the last closed bar."""
    s = snap.series
    n = len(s)
    out = empty_kpis(n)
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
    src = "" if sel.dataset is None else f" · dataset {sel.dataset}"
    return (
        f"{sel.a} / {sel.b} · {format_timeframe(sel.tf_ms)} · w={sel.window} · "
        f"{sel.prices}{src}"
    )


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
