"""One refresh of a pair panel: what to send, decided from the engine and the browser's
``DRAWN`` store (no Dash callback code here, so it is unit-testable and benchmarkable).

Every 500 ms (:func:`refresh`):

* **live only** (no bar closed since the last draw): the live z KPI and one
  ``extendData`` moving the live z marker: a few hundred bytes;
* **extend** (bars closed): ``extendData`` of the new points for every chart, plus the
  bar-close KPIs and the signal summary (candles are redrawn whole, see
  :func:`dashapp.pairview.bar_close_payloads`);
* **full** (new selection, a zoom or pan, alert thresholds changed, a reset, or
  ``REDRAW_EVERY`` bars appended since the last full draw): whole figures, downsampled,
  at full resolution inside the visible range.

Nothing here builds a pair: :func:`dashapp.pairview.cached_snapshot` only reads a
tracked one. The build happens in the selection callback, on control change; while a
pair has too few bars to build, :func:`refresh` builds it once enough bars exist
(cheap: a handful of bars).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd

from analytics.errors import InsufficientData
from analytics.pair import requirements
from analytics.signals import signal_summary
from dashapp import figures, pairview, updates

GRAPHS = ("price", "spread", "z", "corr", "beta")


@dataclass
class PanelUpdate:
    """Outputs of one refresh; ``None`` means "no update" for that output."""

    figures: dict = field(default_factory=dict)  # graph -> go.Figure
    extend: dict = field(default_factory=dict)  # graph -> extendData tuple
    drawn: dict | None = None
    live_z: str | None = None
    live_tone: str | None = None
    kpis: dict | None = None  # bar_kpis() values (the page renders the cards)
    signal: object | None = None  # SignalSummary
    collecting: dict | None = None  # chart -> text or None
    adf_disabled: bool | None = None
    plan: str = "none"


def alert_lines(services, sel: pairview.Selection) -> list[tuple[str, float]]:
    """Thresholds of enabled alert rules on this pair (z-score metrics), if the alerts
    service exists."""
    alerts = getattr(services, "alerts", None)
    if alerts is None or not hasattr(alerts, "active_thresholds"):
        return []
    lines = alerts.active_thresholds(
        sel.a, sel.b, sel.tf_ms, sel.window, sel.regression, sel.prices
    )
    return [(str(m), float(t)) for m, t in lines if "z" in str(m)]


def last_prices(services, sel: pairview.Selection):
    """Latest traded price of each leg and the later of their trade times."""
    rings = services.ingestor.rings
    la, lb = rings[sel.a].last(), rings[sel.b].last()
    if la is None or lb is None:
        return None, None, None
    return la.price, lb.price, max(la.time_ms, lb.time_ms)


def pending_collecting(engine, sel: pairview.Selection) -> dict:
    """ "collecting: N of M bars" for a pair not built yet (fewer bars than its hedge)."""
    have = min(len(engine.bars(sel.a, sel.tf_ms)), len(engine.bars(sel.b, sel.tf_ms)))
    req = requirements(sel.window, sel.regression)
    if have >= req["beta"]:  # enough bars but not tracked: evicted or server restarted
        msg = "not tracked on the server any more: change a control or reload"
        return dict.fromkeys(("price", "spread", "z", "corr", "beta", "adf"), msg)
    out = {
        c: f"collecting: {have} of {req[m]} bars"
        for c, m in (("spread", "spread"), ("z", "zscore"), ("corr", "corr"), ("beta", "beta"))
    }
    out["price"] = None if have else "collecting: 0 of 1 bars"
    out["adf"] = f"collecting: {have} of {req['adf']} bars"
    return out


#: The 500 ms refresh builds an untracked pair only when that is cheap: OLS (vectorised,
#: ~10 ms for a day), or any regression within this many bars of its first hedge (a
#: pair that just finished collecting: a handful of fits). Anything else (a robust or
#: Kalman day after an eviction or a server restart) is left to the selection callback.
CHEAP_BUILD_EXTRA_BARS = 50


def snapshot_or_build(engine, sel: pairview.Selection):
    """Tracked snapshot; else build it when that is cheap (see above)."""
    snap = pairview.cached_snapshot(engine, sel)
    if snap is not None:
        return snap
    have = min(len(engine.bars(sel.a, sel.tf_ms)), len(engine.bars(sel.b, sel.tf_ms)))
    need = requirements(sel.window, sel.regression)["beta"]
    if have < need:
        return None
    if sel.regression != "ols" and have > need + CHEAP_BUILD_EXTRA_BARS:
        return None
    try:
        return engine.pair(*sel.engine_args())
    except InsufficientData:
        return None


def refresh(
    services,
    sel_data: dict | None,
    view: dict | None,
    drawn: dict | None,
    adf: dict | None,
    trigger: str | None,
) -> PanelUpdate:
    """One 500 ms refresh (or a selection / zoom change, ``trigger`` = that kind)."""
    up = PanelUpdate()
    sel = pairview.Selection.from_store(sel_data)
    if sel is None:
        return up
    engine = services.engine
    snap = snapshot_or_build(engine, sel)
    if snap is None:
        up.collecting = pending_collecting(engine, sel)
        up.adf_disabled = True
        up.live_z = "–"
        return up
    pa, pb, now_ms = last_prices(services, sel)
    live = pairview.live_point(snap, pa, pb, now_ms)
    up.live_z = "–" if live is None else f"{live[1]:+.2f}"
    up.live_tone = _tone(None if live is None else live[1], sel.entry)
    lines = alert_lines(services, sel)
    x_range = _view_range(view)
    ts = snap.series.ts
    last_ts = int(ts[-1]) if len(ts) else None
    full = (
        drawn is None
        or drawn.get("key") != sel.key
        or drawn.get("sel") != sel_data
        or trigger in ("selection", "view")
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
        bars_a = engine.bars(sel.a, sel.tf_ms) if sel.mode == "candles" else None
        bars_b = engine.bars(sel.b, sel.tf_ms) if sel.mode == "candles" else None
        up.figures = pairview.full_figures(
            snap, bars_a, bars_b, sel, x_range=x_range, alert_lines=lines, live=live
        )
        since = 0
    elif new_bars > 0:
        up.plan = "extend"
        up.extend = pairview.bar_close_payloads(snap, drawn.get("ts") or -1, sel, live=live)
        if sel.mode == "candles":
            up.figures = {
                "price": pairview.price_figure(
                    snap, engine.bars(sel.a, sel.tf_ms), engine.bars(sel.b, sel.tf_ms), sel, x_range
                )
            }
            figures.apply_x_range(up.figures["price"], x_range)
        since = drawn.get("since_full", 0) + new_bars
    else:
        up.plan = "live"
        if live is not None and live != tuple(drawn.get("live") or ()):
            up.extend = {"z": updates.move_marker(live[0], live[1], figures.Z_TRACES["live"])}
        return _finish_live(up, drawn, live)
    up.kpis = pairview.bar_kpis(snap, sel)
    up.signal = _signal(up.kpis, sel, adf)
    up.collecting = pairview.collecting(snap, sel)
    up.adf_disabled = up.collecting["adf"] is not None
    up.drawn = {
        "key": sel.key,
        "sel": sel_data,
        "seq": snap.bar_seq,
        "ts": last_ts,
        "since_full": since,
        "alerts": [list(x) for x in lines],
        "view": list(x_range) if x_range else None,
        "live": list(live) if live else None,
    }
    return up


def _finish_live(up: PanelUpdate, drawn: dict, live) -> PanelUpdate:
    if up.extend:
        up.drawn = {**drawn, "live": list(live)}
    return up


def _tone(z: float | None, entry: float) -> str | None:
    if z is None or not math.isfinite(z):
        return None
    return ("down" if z > 0 else "up") if abs(z) > entry else None


def _signal(k: dict, sel: pairview.Selection, adf: dict | None):
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
    if not view or view.get("range") is None:
        return None
    lo, hi = view["range"]
    return float(lo), float(hi)


def x_range_from_relayout(relayout: dict | None):
    """Plotly relayoutData -> ("range", (lo_ms, hi_ms)) | ("auto", None) | None.

    Date axes report ranges as strings ("2024-08-09 00:01:02.5"), UTC as drawn."""
    if not relayout:
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
    return ("range", (_to_ms(lo), _to_ms(hi)))


def _to_ms(v) -> float:
    if isinstance(v, int | float):
        return float(v)
    return float(pd.Timestamp(v).value // 1_000_000)
