"""One refresh of a pair panel: what to send, decided from the engine and the browser's
``DRAWN`` store (no Dash callback code here, so it is unit-testable and benchmarkable).

Every 500 ms (:func:`refresh`):

* **live only** (no bar closed since the last draw): the live z KPI and one
  ``extendData`` moving the live z marker: a few hundred bytes;
* **extend** (bars closed): ``extendData`` of the new points for every chart, plus the
  bar-close KPIs and the signal summary (candles are redrawn whole, see
  :func:`dashapp.pages.pair.pairview.bar_close_payloads`);
* **full** (new selection, a zoom or pan, alert thresholds changed, a reset, or
  ``REDRAW_EVERY`` bars appended since the last full draw): whole figures, downsampled,
  at full resolution inside the visible range.

Nothing here builds a costly pair on the request path: :func:`dashapp.pages.pair.pairview.
cached_snapshot` only reads a tracked one; an untracked pair is built on the spot only
when that is cheap (OLS, or a pair that just finished collecting), else in a thread
(:mod:`dashapp.pages.pair.pairbuilds`) while the panel says "building ..." (plan ``building``).
A pair with too few bars draws what it has (plan ``collecting``: prices from one bar,
"collecting: N of M bars" in every other chart), never the previous selection's
numbers. A dataset selection (``Selection.dataset``) is built once, in a thread, and
drawn whole; it has no live z.

Browser stores (selection, drawn, view, ADF) are checked like any input
(:func:`valid_drawn`, :func:`valid_view`, :func:`valid_adf`): a forged one is treated
as absent, never a 500.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd

from analytics.errors import InsufficientData
from analytics.pair import requirements
from analytics.signals import signal_summary
from dashapp import figures, selection, stores, updates
from dashapp.facade import MarketData
from dashapp.pages.pair import pairbuilds, pairview

GRAPHS = ("price", "spread", "z", "corr", "beta")


@dataclass
class PanelUpdate:
    """Outputs of one refresh; ``None`` means "no update" for that output."""

    figures: dict = field(default_factory=dict)  # graph -> go.Figure
    extend: dict = field(default_factory=dict)  # graph -> extendData tuple
    extend_from: int | None = None  # last bar ts the extend continues (drawn ts)
    drawn: dict | None = None
    live_z: str | None = None
    live_tone: str | None = None
    kpis: dict | None = None  # bar_kpis() values (the page renders the cards)
    signal: object | None = None  # SignalSummary
    collecting: dict | None = None  # chart -> text or None
    adf_disabled: bool | None = None
    status: str | None = None  # what the panel is doing ("building ..."); "" clears it
    plan: str = "none"


def alert_lines(market: MarketData, sel: selection.Selection) -> list[tuple[str, float]]:
    """Thresholds of enabled alert rules on this pair (z-score metrics)."""
    lines = market.alerts.active_thresholds(
        sel.a, sel.b, sel.tf_ms, sel.window, sel.regression, sel.prices, sel.source
    )
    return [(str(m), float(t)) for m, t in lines if "z" in str(m)]


def last_prices(market: MarketData, sel: selection.Selection):
    """Latest traded price of each leg and the later of their trade times; with
    ``source="mid"`` the latest quote's mid ``(bid + ask) / 2`` of each leg and the later
    of their quote times (O(1): the ingestor keeps the latest quote)."""
    if sel.source == "mid":
        qa, qb = market.quote(sel.a), market.quote(sel.b)
        if qa is None or qb is None:
            return None, None, None
        return (qa.bid + qa.ask) / 2, (qb.bid + qb.ask) / 2, max(qa.time_ms, qb.time_ms)
    la, lb = market.last_tick(sel.a), market.last_tick(sel.b)
    if la is None or lb is None:
        return None, None, None
    return la.price, lb.price, max(la.time_ms, lb.time_ms)


def leg_bars(market: MarketData, sel: selection.Selection):
    return market.bars(sel.a, sel.tf_ms), market.bars(sel.b, sel.tf_ms)


def pending_collecting(market: MarketData, sel: selection.Selection) -> dict:
    """ "collecting: N of M bars" for a pair not built yet (fewer bars than its hedge)."""
    have = min(len(market.bars(sel.a, sel.tf_ms)), len(market.bars(sel.b, sel.tf_ms)))
    req = requirements(sel.window, sel.regression)
    out = {
        c: None if have >= req[m] else f"collecting: {have} of {req[m]} bars"
        for c, m in (("spread", "spread"), ("z", "zscore"), ("corr", "corr"), ("beta", "beta"))
    }
    out["price"] = None if have else "collecting: 0 of 1 bars"
    out["adf"] = None if have >= req["adf"] else f"collecting: {have} of {req['adf']} bars"
    return out


#: The 500 ms refresh builds an untracked pair only when that is cheap: OLS (vectorised,
#: ~10 ms for a day), or any regression within this many bars of its first hedge (a
#: pair that just finished collecting: a handful of fits). Anything else (a robust or
#: Kalman day after an eviction or a server restart) is left to the selection callback.
CHEAP_BUILD_EXTRA_BARS = 50


def snapshot_or_build(market: MarketData, sel: selection.Selection):
    """Tracked snapshot; else build it when that is cheap (see above)."""
    snap = pairview.cached_snapshot(market, sel)
    if snap is not None:
        return snap
    have = min(len(market.bars(sel.a, sel.tf_ms)), len(market.bars(sel.b, sel.tf_ms)))
    need = requirements(sel.window, sel.regression)["beta"]
    if have < need:
        return None
    if sel.regression != "ols" and have > need + CHEAP_BUILD_EXTRA_BARS:
        return None
    try:
        return market.pair(*sel.engine_args())
    except InsufficientData:
        return None


def refresh(
    market: MarketData,
    sel_data: dict | None,
    view: dict | None,
    drawn: dict | None,
    adf: dict | None,
    trigger: str | None,
    builds: pairbuilds.Builds | None = None,
) -> PanelUpdate:
    """One 500 ms refresh (or a selection / zoom change, ``trigger`` = that kind).

    The stores come from the browser and are checked here like any input: a forged
    selection is no update, a forged drawn/view/ADF store is treated as absent."""
    up = PanelUpdate()
    sel = selection.Selection.from_store(sel_data)
    if sel is None:
        return up
    sel_data = sel.to_store()
    drawn, view, adf = valid_drawn(drawn), valid_view(view), valid_adf(adf)
    builds = builds or pairbuilds.BUILDS
    if sel.dataset is not None:
        return _refresh_dataset(up, sel, sel_data, view, drawn, adf, trigger, builds)
    names = market.names()
    if sel.a not in names or sel.b not in names:
        up.status = f"{sel.a} / {sel.b}: not both ingested; pick two of the listed symbols"
        return up
    snap = snapshot_or_build(market, sel)
    if snap is None:
        return _pending(up, market, sel, sel_data, drawn, adf, builds)
    up.status = ""
    pa, pb, now_ms = last_prices(market, sel)
    live = pairview.live_point(snap, pa, pb, now_ms)
    up.live_z = "–" if live is None else f"{live[1]:+.2f}"
    up.live_tone = _tone(None if live is None else live[1], sel.entry)
    lines = alert_lines(market, sel)
    x_range = _view_range(view)
    ts = snap.series.ts
    last_ts = int(ts[-1]) if len(ts) else None
    full = (
        drawn is None
        or drawn.get("key") != sel.key
        or drawn.get("sel") != sel_data
        or drawn.get("pending") is not None
        or trigger in ("selection", "view", "resync")
        or drawn.get("alerts") != [list(x) for x in lines]
        or drawn.get("view") != (list(x_range) if x_range else None)
        or snap.bar_seq < drawn.get("seq", 0)
        or (last_ts is not None and drawn.get("ts") is not None and last_ts < drawn["ts"])
    )
    new_bars = 0 if drawn is None else snap.bar_seq - drawn.get("seq", 0)
    if not full and drawn.get("since_full", 0) + new_bars > pairview.REDRAW_EVERY:
        full = True
    if full:
        up.plan = "full"
        bars_a = market.bars(sel.a, sel.tf_ms) if sel.mode == "candles" else None
        bars_b = market.bars(sel.b, sel.tf_ms) if sel.mode == "candles" else None
        up.figures = pairview.full_figures(
            snap, bars_a, bars_b, sel, x_range=x_range, alert_lines=lines, live=live
        )
        since = 0
    elif new_bars > 0:
        up.plan = "extend"
        up.extend = pairview.bar_close_payloads(snap, drawn.get("ts") or -1, sel, live=live)
        # zoomed charts hold a slice that may end before the last bar: no gap check
        up.extend_from = drawn.get("ts") if x_range is None else None
        if sel.mode == "candles":
            up.figures = {
                "price": pairview.price_figure(
                    snap, market.bars(sel.a, sel.tf_ms), market.bars(sel.b, sel.tf_ms), sel, x_range
                )
            }
            figures.apply_x_range(up.figures["price"], x_range)
        since = drawn.get("since_full", 0) + new_bars
    else:
        up.plan = "live"
        if live is not None and live != tuple(drawn.get("live") or ()):
            up.extend = {"z": updates.move_marker(live[0], live[1], figures.Z_TRACES["live"])}
        return _finish_live(up, drawn, live)
    return _with_bar_state(up, snap, sel, sel_data, adf, ts=last_ts, since_full=since,
                           alert_lines=lines, x_range=x_range, live=live)


def _with_bar_state(up, snap, sel, sel_data, adf, *, ts, since_full, alert_lines, x_range,
                    live) -> PanelUpdate:
    """KPIs, signal, collecting notes and the DRAWN record of a panel drawn up to ``ts``
    (live pairs and datasets alike)."""
    up.kpis = pairview.bar_kpis(snap, sel)
    up.signal = _signal(up.kpis, sel, adf)
    up.collecting = pairview.collecting(snap, sel)
    up.adf_disabled = up.collecting["adf"] is not None
    up.drawn = {
        "key": sel.key,
        "sel": sel_data,
        "seq": snap.bar_seq,
        "ts": ts,
        "since_full": since_full,
        "alerts": [list(x) for x in alert_lines],
        "view": list(x_range) if x_range else None,
        "live": list(live) if live else None,
    }
    return up


def building_text(sel: selection.Selection, state: pairbuilds.BuildState) -> str:
    """What the panel says while a build runs (or why it failed)."""
    what = f"{REG_NAMES.get(sel.regression, sel.regression)} fit · {selection.describe(sel)}"
    if state.error:
        return f"{what}: {state.error}"
    return (
        f"building {what} … {state.elapsed():.0f} s · the numbers below are the previous "
        "choice's (stale) until it is drawn"
    )


REG_NAMES = {"ols": "OLS", "huber": "Huber", "theilsen": "Theil-Sen", "kalman": "Kalman"}


def _pending(up, market: MarketData, sel, sel_data, drawn, adf, builds) -> PanelUpdate:
    """The pair is not built: build it in a thread when it has enough bars (the panel
    says so, the old numbers stay marked stale by the page), else draw what the new
    selection has (prices from one bar) and say what each chart collects."""
    up.adf_disabled = True
    up.live_z = "–"
    up.live_tone = None
    bars_a, bars_b = leg_bars(market, sel)
    have = min(len(bars_a), len(bars_b))
    need = requirements(sel.window, sel.regression)["beta"]
    if have >= need:
        up.plan = "building"
        up.status = building_text(sel, builds.live(market, sel.engine_args(), sel.key))
        return up
    if drawn is not None and drawn.get("sel") == sel_data and drawn.get("pending") == have:
        return PanelUpdate(plan="collecting")  # drawn already, no new bar: nothing to send
    up.plan = "collecting"
    up.status = ""
    up.collecting = pending_collecting(market, sel)
    up.figures = pairview.pending_figures(bars_a, bars_b, sel, up.collecting)
    up.kpis = pairview.empty_kpis()
    up.signal = _signal(up.kpis, sel, adf)
    up.drawn = {"key": sel.key, "sel": sel_data, "pending": have}
    return up


def _refresh_dataset(up, sel, sel_data, view, drawn, adf, trigger, builds) -> PanelUpdate:
    """A dataset's pair: built once in a thread (batch), drawn whole; no live z."""
    from dashapp import queries

    up.live_z = "–"
    up.live_tone = None
    try:
        info = queries.dataset_info(sel.dataset)
    except pairbuilds.BadParam as exc:
        up.status = str(exc)
        return up
    key = (sel.dataset, sel.key, tuple(sorted(info.rows.items())))

    def compute():
        bars_a = queries.dataset_bars(sel.dataset, sel.a, sel.tf_ms)
        bars_b = queries.dataset_bars(sel.dataset, sel.b, sel.tf_ms)
        return pairbuilds.dataset_snapshot(bars_a, bars_b, sel.window, sel.regression, sel.prices)

    snap, state = builds.dataset(key, compute, sel.key)
    if snap is None:
        up.adf_disabled = True
        up.plan = "building"
        up.status = building_text(sel, state)
        return up
    up.status = ""
    x_range = _view_range(view)
    if not (
        drawn is None
        or drawn.get("key") != sel.key
        or drawn.get("sel") != sel_data
        or trigger in ("selection", "view")
        or drawn.get("view") != (list(x_range) if x_range else None)
    ):
        return up
    up.plan = "full"
    up.figures = pairview.full_figures(
        snap, snap.bars_a, snap.bars_b, sel, x_range=x_range, alert_lines=[], live=None
    )
    last_ts = int(snap.series.ts[-1]) if len(snap.series) else None
    return _with_bar_state(up, snap, sel, sel_data, adf, ts=last_ts, since_full=0,
                           alert_lines=[], x_range=x_range, live=None)


# ----------------------------------------------------------------- browser stores
def _num(v) -> bool:
    return stores.number(v) is not None


def valid_drawn(drawn) -> dict | None:
    """The DRAWN store if it is one this module wrote, else None (a full redraw)."""
    if not isinstance(drawn, dict) or not isinstance(drawn.get("key"), str):
        return None
    if not isinstance(drawn.get("sel"), dict):
        return None
    if "pending" in drawn:
        return drawn if type(drawn["pending"]) is int else None
    ints = ("seq", "since_full")
    if any(type(drawn.get(k)) is not int for k in ints):
        return None
    if drawn.get("ts") is not None and type(drawn["ts"]) is not int:
        return None
    alerts = drawn.get("alerts")
    if not isinstance(alerts, list) or not all(
        isinstance(x, list) and len(x) == 2 and isinstance(x[0], str) and _num(x[1])
        for x in alerts
    ):
        return None
    for k in ("view", "live"):
        v = drawn.get(k)
        if v is not None and not (isinstance(v, list) and len(v) == 2 and all(map(_num, v))):
            return None
    return drawn


def valid_view(view) -> dict | None:
    """The VIEW store ({"range": [lo, hi] | None}) or None when it is not one."""
    if not isinstance(view, dict):
        return None
    r = view.get("range")
    if r is None:
        return {"range": None}
    if isinstance(r, list) and len(r) == 2 and all(map(_num, r)) and r[0] != r[1]:
        return {"range": [float(r[0]), float(r[1])]}
    return None


ADF_NUMBERS = ("stat", "pvalue")


def valid_adf(adf) -> dict | None:
    """The ADF store if it holds a report of the shape :func:`run_adf` writes."""
    if not isinstance(adf, dict) or not isinstance(adf.get("key"), str):
        return None
    if not all(_num(adf.get(k)) for k in ADF_NUMBERS):
        return None
    cp = adf.get("coint_pvalue")
    if cp is not None and not _num(cp):
        return None
    if not isinstance(adf.get("at", ""), str):
        return None
    return adf


def _finish_live(up: PanelUpdate, drawn: dict, live) -> PanelUpdate:
    up.status = None
    if up.extend:
        up.drawn = {**drawn, "live": list(live)}
    return up


def _tone(z: float | None, entry: float) -> str | None:
    if z is None or not math.isfinite(z):
        return None
    return ("down" if z > 0 else "up") if abs(z) > entry else None


def _signal(k: dict, sel: selection.Selection, adf: dict | None):
    same = adf if adf and adf.get("key") == sel.key else {}
    return signal_summary(
        k.get("zscore"),
        window=sel.window,
        entry=sel.entry,
        coint_pvalue=same.get("coint_pvalue"),
        adf_pvalue=same.get("pvalue"),
        corr=k.get("corr"),
        half_life_bars=k.get("half_life"),
    )


def _view_range(view: dict | None):
    view = valid_view(view)
    if not view or view.get("range") is None:
        return None
    lo, hi = view["range"]
    return float(lo), float(hi)


def x_range_from_relayout(relayout: dict | None):
    """Plotly relayoutData -> ("range", (lo_ms, hi_ms)) | ("auto", None) | None.

    Date axes report ranges as strings ("2024-08-09 00:01:02.5"), UTC as drawn."""
    if not relayout or not isinstance(relayout, dict):
        return None
    lo = hi = None
    for key, value in relayout.items():
        if not key.startswith("xaxis"):
            continue
        axis, _, prop = key.partition(".")
        if prop == "autorange" and value:
            return ("auto", None)
        if prop == "range" and isinstance(value, list | tuple) and len(value) == 2:
            lo, hi = value
        elif prop == "range[0]":
            lo = value
        elif prop == "range[1]":
            hi = value
    if lo is None or hi is None:
        return None
    try:
        span = (_to_ms(lo), _to_ms(hi))
    except (TypeError, ValueError, OverflowError):
        return None  # not a time: the browser sent something plotly never does
    if not all(map(math.isfinite, span)) or span[0] == span[1]:
        return None
    return ("range", span)


def _to_ms(v) -> float:
    if isinstance(v, bool):
        raise TypeError("a bool is not a time")
    if isinstance(v, int | float):
        return float(v)
    ts = pd.Timestamp(str(v))
    if ts is pd.NaT:
        raise ValueError("not a time")
    return float(ts.value // 1_000_000)
