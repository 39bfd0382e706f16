"""Pair `/pair`: analytics of one or more pairs, each in its own tab with its own controls.

The URL carries the active tab's selection (``/pair?a=BTCUSDT&b=ETHUSDT&tf=1s&w=60&
reg=ols&prices=raw``) and follows its controls, so a view can be shared and reloaded.
Update model: see :mod:`dashapp.pairlive` (one 500 ms interval, extendData on bar close,
whole figures only on selection change or zoom). The ADF test runs as a background job.
"""

from __future__ import annotations

import itertools
import time

import dash
import dash_bootstrap_components as dbc
from dash import (
    ALL,
    MATCH,
    Input,
    Output,
    Patch,
    State,
    callback,
    clientside_callback,
    ctx,
    dcc,
    html,
    no_update,
)

from analytics.errors import AnalyticsError
from dashapp import pairlive, pairview, queries
from dashapp.components import pair_panel
from dashapp.ids import Pair, Shell
from dashapp.params import BadParam
from dashapp.services import get_services

dash.register_page(__name__, path="/pair", name="Pair", order=1)

pid = Pair.pid
GRAPH_IDS = {
    "price": Pair.PRICE_GRAPH,
    "spread": Pair.SPREAD_GRAPH,
    "z": Pair.Z_GRAPH,
    "corr": Pair.CORR_GRAPH,
    "beta": Pair.BETA_GRAPH,
}
CONTROLS = {
    "a": Pair.A,
    "b": Pair.B,
    "tf": Pair.TF,
    "w": Pair.WINDOW,
    "reg": Pair.REG,
    "prices": Pair.PRICES,
    "mode": Pair.PRICE_MODE,
    "k": Pair.K,
    "entry": Pair.ENTRY,
}


def _tab(i: int, sel: pairview.Selection, symbols: list[str]) -> dbc.Tab:
    return dbc.Tab(
        pair_panel.panel(i, sel, symbols),
        label=f"{sel.a} / {sel.b}",
        tab_id=f"pair-{i}",
        id=pid(Pair.TAB, i),
    )


def layout(**query) -> html.Div:
    symbols = list(get_services().engine.symbols)
    try:
        sel, notes = pairview.parse_query(query, symbols)
    except ValueError as exc:
        return dbc.Alert(str(exc), color="warning")
    return html.Div(
        [
            dcc.Interval(id=Pair.TICK_INTERVAL, interval=500),
            dcc.Store(id=Pair.URL),
            html.Div(
                [
                    dbc.Alert(n, color="warning", dismissable=True, className="py-1 small")
                    for n in notes
                ],
                id=Pair.NOTE,
            ),
            html.Div(
                dbc.Button(
                    "+ watch another pair", id=Pair.ADD, size="sm", color="secondary", outline=True
                ),
                className="pair-add",
            ),
            dbc.Tabs([_tab(0, sel, symbols)], id=Pair.TABS, active_tab="pair-0"),
        ]
    )


@callback(
    Output(Pair.TABS, "children"),
    Output(Pair.TABS, "active_tab"),
    Input(Pair.ADD, "n_clicks"),
    State(pid(Pair.SELECTION, ALL), "data"),
    prevent_initial_call=True,
)
def add_pair(_n, selections):
    """Watch one more pair in a new tab (the first pair not watched yet)."""
    symbols = sorted(get_services().engine.symbols)
    watched = {(s["a"], s["b"]) for s in selections if s}
    pairs = [p for p in itertools.permutations(symbols, 2) if p not in watched] or [
        tuple(symbols[:2])
    ]
    i = len(selections)
    patch = Patch()
    patch.append(_tab(i, pairview.Selection(*pairs[0]), symbols))
    return patch, f"pair-{i}"


@callback(
    Output(pid(Pair.SELECTION, MATCH), "data"),
    Output(pid(Pair.ERROR, MATCH), "children"),
    Output(pid(Pair.TAB, MATCH), "label"),
    *[Input(pid(kind, MATCH), "value") for kind in CONTROLS.values()],
)
def select(*values):
    """Validate the panel's controls and build the pair's day once (~1 s for the robust
    regressions), here on control change and never in the 500 ms refresh."""
    try:
        sel = pairview.validate(
            dict(zip(CONTROLS, values, strict=True)), get_services().engine.symbols
        )
    except BadParam as exc:
        return no_update, dbc.Alert(str(exc), color="danger", className="py-1 small"), no_update
    try:
        get_services().engine.pair(*sel.engine_args())
    except AnalyticsError:
        pass  # too few bars yet: the panel says "collecting" and builds when ready
    return sel.to_store(), None, f"{sel.a} / {sel.b} · {sel.tf}"


@callback(
    *[Output(pid(g, MATCH), "figure") for g in GRAPH_IDS.values()],
    *[Output(pid(g, MATCH), "extendData") for g in GRAPH_IDS.values()],
    Output(pid(Pair.DRAWN, MATCH), "data"),
    Output(pid(Pair.LIVE_Z, MATCH), "children"),
    Output(pid(Pair.LIVE_Z, MATCH), "className"),
    Output(pid(Pair.KPI, MATCH), "children"),
    Output(pid(Pair.SIGNAL, MATCH), "children"),
    Output(pair_panel.collecting_id(MATCH, ALL), "children"),
    Output(pid(Pair.ADF_BUTTON, MATCH), "disabled"),
    Input(Pair.TICK_INTERVAL, "n_intervals"),
    Input(pid(Pair.SELECTION, MATCH), "data"),
    Input(pid(Pair.VIEW, MATCH), "data"),
    State(pid(Pair.DRAWN, MATCH), "data"),
    State(pid(Pair.ADF_STORE, MATCH), "data"),
    prevent_initial_call=True,
)
def refresh(_n, sel_data, view, drawn, adf):
    """Tick widgets every 500 ms; bar charts only when a bar closed (extendData)."""
    trig = ctx.triggered_id
    kind = trig.get("type") if isinstance(trig, dict) else None
    trigger = {Pair.SELECTION: "selection", Pair.VIEW: "view"}.get(kind)
    up = pairlive.refresh(get_services(), sel_data, view, drawn, adf, trigger)
    charts = [c["id"]["chart"] for c in ctx.outputs_list[-2]]
    return pair_panel.refresh_outputs(up, sel_data, adf, list(GRAPH_IDS), charts)


@callback(
    Output(pid(Pair.VIEW, MATCH), "data"),
    *[Input(pid(g, MATCH), "relayoutData") for g in GRAPH_IDS.values()],
    State(pid(Pair.VIEW, MATCH), "data"),
    prevent_initial_call=True,
)
def share_zoom(*args):
    """One visible time range for all the panel's charts, sliced at full resolution."""
    parsed = pairlive.x_range_from_relayout(ctx.triggered[0]["value"])
    if parsed is None:
        return no_update
    view = {"range": None if parsed[0] == "auto" else list(parsed[1])}
    return no_update if view == (args[-1] or {"range": None}) else view


@callback(
    Output(pid(Pair.ADF_STORE, MATCH), "data"),
    Output(pid(Pair.ADF_RESULT, MATCH), "children"),
    Input(pid(Pair.ADF_BUTTON, MATCH), "n_clicks"),
    State(pid(Pair.SELECTION, MATCH), "data"),
    background=True,
    running=[(Output(pid(Pair.ADF_BUTTON, MATCH), "children"), "Running ADF…", "Run ADF")],
    prevent_initial_call=True,
)
def run_adf(_clicks, sel_data):
    """ADF + Engle-Granger on the day's spread, in a background process (seconds)."""
    sel = pairview.Selection.from_store(sel_data)
    if sel is None:
        return no_update, no_update
    try:
        report = queries.adf_report(*sel.engine_args())
    except (AnalyticsError, KeyError) as exc:
        return no_update, pair_panel.adf_card(None, f"ADF not possible yet: {exc}")
    report = {**report, "key": sel.key, "at": time.strftime("%H:%M:%S UTC", time.gmtime())}
    return report, pair_panel.adf_card(report)


@callback(
    Output(Shell.ALERT_PREFILL, "data", allow_duplicate=True),
    Input(pid(Pair.ALERT_BUTTON, ALL), "n_clicks"),
    State(pid(Pair.SELECTION, ALL), "data"),
    prevent_initial_call=True,
)
def alert_on_this(clicks, selections):
    """Open the shell's alert modal pre-filled with this panel's z-score rule."""
    trig = ctx.triggered_id
    pos = [s["id"]["index"] for s in ctx.states_list[0]]
    if not isinstance(trig, dict) or trig["index"] not in pos:
        return no_update
    j = pos.index(trig["index"])
    sel = pairview.Selection.from_store(selections[j])
    if not clicks[j] or sel is None:
        return no_update
    return pairview.alert_rule(sel)


clientside_callback(
    """function (active, selections) {
        const ids = window.dash_clientside.callback_context.inputs_list[1].map(x => x.id.index);
        const i = ids.indexOf(parseInt(String(active || "pair-0").split("-")[1], 10));
        const sel = i < 0 ? null : selections[i];
        if (!sel || window.location.pathname.slice(-5) !== "/pair") {
            return window.dash_clientside.no_update;
        }
        const q = new URLSearchParams({a: sel.a, b: sel.b, tf: sel.tf, w: String(sel.window),
                                       reg: sel.regression, prices: sel.prices});
        // replaceState: no navigation, so the pages router does not rebuild the page
        window.history.replaceState(window.history.state, "", window.location.pathname + "?" + q);
        return q.toString();
    }""",
    Output(Pair.URL, "data"),
    Input(Pair.TABS, "active_tab"),
    Input(pid(Pair.SELECTION, ALL), "data"),
    prevent_initial_call=True,
)
