"""Pair `/pair`: analytics of one or more pairs, each in its own tab with its own controls.

The URL carries every control of the active tab (``/pair?a=BTCUSDT&b=ETHUSDT&tf=1s&w=60&
reg=ols&prices=raw&mode=overlay&k=2&entry=2``, plus ``dataset=NAME`` for an uploaded
dataset) and follows them, so a view can be shared and reloaded.

Trust rules of the panel:

* a bad control (window 5000, entry 0, blank...) is named in red with its rule; the
  selection, and so every chart, stays on the last good one;
* the moment a control differs from what is drawn, the panel body is marked stale in
  the browser (no round trip); the selection callback only validates, the pair's build
  runs in a thread (:mod:`dashapp.pages.pair.pairbuilds`) while the panel says what it builds;
* a selection with too few bars shows its own prices and "collecting: N of M bars" in
  every other chart, never the previous selection's lines.

Update model: see :mod:`dashapp.pages.pair.pairlive` (one 500 ms interval, extendData on bar close,
whole figures only on selection change or zoom). The ADF test runs as a background job.
"""

from __future__ import annotations

import itertools
import json
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
from analytics.timeframes import LIVE_TIMEFRAMES
from dashapp import queries, selection
from dashapp.api.params import BadParam
from dashapp.components import dataset_select, pair_panel
from dashapp.ids import Pair, Shell
from dashapp.pages.pair import pairlive
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
    "source": Pair.PRICE_SOURCE,
}


def source_timeframes(dataset: str | None) -> list[str]:
    """Timeframes offered for a source: the live ones, or a dataset's own and coarser."""
    if dataset is None:
        return list(LIVE_TIMEFRAMES)
    return dataset_select.timeframe_options(dataset, tuple(LIVE_TIMEFRAMES))


def source_symbols(dataset: str | None) -> list[str]:
    if dataset is None:
        return list(get_services().names())
    return dataset_select.symbol_options(dataset)


def _tab(i: int, sel: selection.Selection, symbols: list[str], tfs=None) -> dbc.Tab:
    return dbc.Tab(
        pair_panel.panel(i, sel, symbols, tfs),
        label=f"{dataset_select.label_of(sel.a)} / {dataset_select.label_of(sel.b)} · {sel.tf}",
        tab_id=f"pair-{i}",
        id=pid(Pair.TAB, i),
    )


def layout(**query) -> html.Div:
    src = dataset_select.resolve(query.get(dataset_select.URL_PARAM))
    symbols = source_symbols(src.dataset)
    tfs = source_timeframes(src.dataset)
    try:
        sel, notes = selection.parse_query(query, symbols, tfs, src.dataset)
    except ValueError as exc:
        return dbc.Alert(str(exc), color="warning")
    if src.note:
        notes = [src.note, *notes]
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
            dbc.Tabs([_tab(0, sel, symbols, tfs)], id=Pair.TABS, active_tab="pair-0"),
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
    """Watch one more pair of the live feed in a new tab (the first pair not watched)."""
    symbols = sorted(get_services().names())
    chosen = [selection.Selection.from_store(s) for s in (selections or [])]
    watched = {(s.a, s.b) for s in chosen if s is not None and s.dataset is None}
    pairs = [p for p in itertools.permutations(symbols, 2) if p not in watched] or [
        tuple(symbols[:2])
    ]
    i = len(selections or [])
    patch = Patch()
    patch.append(_tab(i, selection.Selection(*pairs[0]), symbols))
    return patch, f"pair-{i}"


@callback(
    Output(pid(Pair.A, MATCH), "options"),
    Output(pid(Pair.A, MATCH), "value"),
    Output(pid(Pair.B, MATCH), "options"),
    Output(pid(Pair.B, MATCH), "value"),
    Output(pid(Pair.TF, MATCH), "options"),
    Output(pid(Pair.TF, MATCH), "value"),
    Input(pid(Pair.SOURCE, MATCH), "value"),
    State(pid(Pair.A, MATCH), "value"),
    State(pid(Pair.B, MATCH), "value"),
    State(pid(Pair.TF, MATCH), "value"),
    prevent_initial_call=True,
)
def source_changed(source, a, b, tf):
    """A new source offers its own symbols and timeframes (kept when it has them)."""
    dataset = dataset_select.dataset_of(source)
    if dataset is not None and get_services().datasets.get(dataset) is None:
        return (no_update,) * 6  # select() names the bad source
    symbols = sorted(source_symbols(dataset))
    tfs = source_timeframes(dataset)
    a, b = dataset_select.pick_legs(symbols, a, b)
    opts = dataset_select.labelled(symbols)  # "BTCUSDT · perp"
    return opts, a, opts, b, pair_panel.tf_options(tfs), tf if tf in tfs else tfs[0]


def _error(exc: BadParam, current: selection.Selection | None):
    label = selection.CONTROL_LABELS.get(exc.param, exc.param)
    rule = str(exc).split(": ", 1)[-1]
    still = (
        f" The charts still show {selection.describe(current)} · "
        f"{pairlive.REG_NAMES[current.regression]}, k={current.k:g}, entry={current.entry:g}."
        if current is not None
        else ""
    )
    return dbc.Alert(
        [html.B(f"{label}: "), f"{rule}.{still}"],
        color="danger",
        className="py-1 px-2 small mb-2 pair-bad-control",
    )


INVALID_MARKED = {"w": "w_invalid", "k": "k_invalid", "entry": "entry_invalid"}


@callback(
    output=dict(
        selection=Output(pid(Pair.SELECTION, MATCH), "data"),
        error=Output(pid(Pair.ERROR, MATCH), "children"),
        label=Output(pid(Pair.TAB, MATCH), "label"),
        w_invalid=Output(pid(Pair.WINDOW, MATCH), "invalid"),
        k_invalid=Output(pid(Pair.K, MATCH), "invalid"),
        entry_invalid=Output(pid(Pair.ENTRY, MATCH), "invalid"),
    ),
    inputs=dict(
        values=[Input(pid(kind, MATCH), "value") for kind in CONTROLS.values()],
        source=Input(pid(Pair.SOURCE, MATCH), "value"),
        current=State(pid(Pair.SELECTION, MATCH), "data"),
    ),
)
def select(values, source, current):
    """Validate the panel's controls (fast: the build runs off the request path, see
    :mod:`dashapp.pages.pair.pairbuilds`). A bad value is named in red with its rule; the
    selection, and so every chart, stays on the last good one."""
    out = {name: False for name in INVALID_MARKED.values()}
    try:
        dataset = dataset_select.dataset_of(source)
        if dataset is not None:
            queries.dataset_info(dataset)  # BadParam("dataset") naming the datasets there are
        sel = selection.validate(
            dict(zip(CONTROLS, values, strict=True)),
            source_symbols(dataset),
            source_timeframes(dataset),
            dataset,
        )
    except BadParam as exc:
        if exc.param in INVALID_MARKED:
            out[INVALID_MARKED[exc.param]] = True
        current_sel = selection.Selection.from_store(current)
        return {**out, "selection": no_update, "error": _error(exc, current_sel),
                "label": no_update}
    return {**out, "selection": sel.to_store(), "error": None,
            "label": f"{dataset_select.label_of(sel.a)} / {dataset_select.label_of(sel.b)} · "
                     f"{sel.tf}"}


GRAPH_KEYS = ("price", "spread", "z", "corr", "beta")


@callback(
    output=dict(
        figure={g: Output(pid(GRAPH_IDS[g], MATCH), "figure") for g in GRAPH_KEYS},
        extend=Output(pid(Pair.EXTEND, MATCH), "data"),
        drawn=Output(pid(Pair.DRAWN, MATCH), "data"),
        live_z=Output(pid(Pair.LIVE_Z, MATCH), "children"),
        live_class=Output(pid(Pair.LIVE_Z, MATCH), "className"),
        kpi=Output(pid(Pair.KPI, MATCH), "children"),
        signal=Output(pid(Pair.SIGNAL, MATCH), "children"),
        collecting=Output(pair_panel.collecting_id(MATCH, ALL), "children"),
        adf_disabled=Output(pid(Pair.ADF_BUTTON, MATCH), "disabled"),
        status=Output(pid(Pair.STATUS, MATCH), "children"),
    ),
    inputs=dict(
        _n=Input(Pair.TICK_INTERVAL, "n_intervals"),
        sel_data=Input(pid(Pair.SELECTION, MATCH), "data"),
        view=Input(pid(Pair.VIEW, MATCH), "data"),
        _resync=Input(pid(Pair.RESYNC, MATCH), "data"),
        drawn=State(pid(Pair.DRAWN, MATCH), "data"),
        adf=State(pid(Pair.ADF_STORE, MATCH), "data"),
    ),
    prevent_initial_call=True,
)
def refresh(_n, sel_data, view, _resync, drawn, adf):
    """Tick widgets every 500 ms; bar charts only when a bar closed (extendData)."""
    trig = ctx.triggered_id
    kind = trig.get("type") if isinstance(trig, dict) else None
    trigger = {Pair.SELECTION: "selection", Pair.VIEW: "view", Pair.RESYNC: "resync"}.get(kind)
    up = pairlive.refresh(get_services(), sel_data, view, drawn, adf, trigger)
    lists = [o for o in ctx.outputs_list if isinstance(o, list)]
    charts = [c["id"]["chart"] for c in (lists[0] if lists else [])]
    return pair_panel.refresh_outputs(up, sel_data, adf, charts)


# extendData only of the points after each trace's last x: two refreshes in flight at
# once (a slow server, a selection change) carry overlapping bars, and plotly appends
# blindly, so without this filter a line would double back in time.
clientside_callback(
    """function (ext) {
        const dc = window.dash_clientside;
        const outs = dc.callback_context.outputs_list;
        const keys = %s;
        const none = outs.map(() => dc.no_update);
        if (!ext) { return none; }
        const graph = o => {
            const el = document.getElementById(
                JSON.stringify({index: o.id.index, type: o.id.type}));
            return el && (el.classList.contains("js-plotly-plot") ? el
                          : el.querySelector(".js-plotly-plot"));
        };
        const lastX = (gd, ti) => {
            const tr = gd && gd.data && gd.data[ti];
            return tr && tr.x && tr.x.length ? Number(tr.x[tr.x.length - 1]) : null;
        };
        // A chart that ends before the bar this payload continues missed a payload
        // (overtaken): redraw the panel whole instead of drawing a gap.
        const behind = outs.slice(0, -1).some(o => {
            const p = ext[keys[o.id.type]];
            if (!p || ext.from === null || ext.from === undefined) { return false; }
            const last = lastX(graph(o), p[1][0]);
            return last !== null && last < ext.from;
        });
        if (behind) { return [...none.slice(0, -1), Date.now()]; }
        return outs.map((o, n) => {
            if (n === outs.length - 1) { return dc.no_update; }
            const p = ext[keys[o.id.type]];
            const gd = graph(o);
            if (!p || !gd || !gd.data) { return dc.no_update; }
            const [update, idx, maxp] = p;
            const out = {};
            Object.keys(update).forEach(k => { out[k] = []; });
            let any = false;
            idx.forEach((ti, j) => {
                const mp = typeof maxp === "number" ? maxp : maxp.x[j];
                const old = lastX(gd, ti);
                const keep = update.x[j].map(x => mp === 1 || old === null || Number(x) > old);
                Object.keys(update).forEach(k => {
                    out[k].push(update[k][j].filter((_, i) => keep[i]));
                });
                if (keep.some(Boolean)) { any = true; }
            });
            return any ? [out, idx, maxp] : dc.no_update;
        });
    }""" % json.dumps({GRAPH_IDS[g]: g for g in GRAPH_KEYS}),
    *[Output(pid(GRAPH_IDS[g], MATCH), "extendData") for g in GRAPH_KEYS],
    Output(pid(Pair.RESYNC, MATCH), "data"),
    Input(pid(Pair.EXTEND, MATCH), "data"),
    prevent_initial_call=True,
)


# The body turns "stale" the moment a control differs from what is drawn (no server
# round trip): the old numbers are never shown unmarked while a new choice is pending.
clientside_callback(
    """function (a, b, tf, w, reg, prices, mode, k, entry, psrc, source, drawn) {
        const s = drawn && drawn.sel;
        const num = v => String(v === null || v === undefined ? "" : v).trim();
        const same = !!s && s.a === a && s.b === b && s.tf === tf
            && num(w) !== "" && Number(num(w)) === s.window
            && s.regression === reg && s.prices === prices && s.mode === mode
            && num(k) !== "" && Number(num(k)) === s.k
            && num(entry) !== "" && Number(num(entry)) === s.entry
            && (s.source || "trade") === (psrc || "trade")
            && (s.dataset || "live") === (source || "live");
        return same ? "pair-body" : "pair-body stale";
    }""",
    Output(pid(Pair.BODY, MATCH), "className"),
    *[Input(pid(kind, MATCH), "value") for kind in CONTROLS.values()],
    Input(pid(Pair.SOURCE, MATCH), "value"),
    Input(pid(Pair.DRAWN, MATCH), "data"),
)


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
    return no_update if view == (pairlive.valid_view(args[-1]) or {"range": None}) else view


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
    """ADF + Engle-Granger on the day's spread (or the dataset's), in a background
    process (seconds)."""
    sel = selection.Selection.from_store(sel_data)
    if sel is None:
        return no_update, no_update
    try:
        report = queries.adf_report(*sel.engine_args()[:6], dataset=sel.dataset,
                                    source=sel.source)
    except (AnalyticsError, KeyError, ValueError) as exc:
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
    if not isinstance(trig, dict) or trig.get("index") not in pos:
        return no_update
    j = pos.index(trig["index"])
    if not isinstance(clicks, list) or not isinstance(selections, list):
        return no_update
    if j >= len(clicks) or j >= len(selections):
        return no_update
    sel = selection.Selection.from_store(selections[j])
    if not clicks[j] or sel is None:
        return no_update
    return selection.alert_rule(sel)


clientside_callback(
    """function (active, selections) {
        const ids = window.dash_clientside.callback_context.inputs_list[1].map(x => x.id.index);
        const i = ids.indexOf(parseInt(String(active || "pair-0").split("-")[1], 10));
        const sel = i < 0 ? null : selections[i];
        if (!sel || window.location.pathname.slice(-5) !== "/pair") {
            return window.dash_clientside.no_update;
        }
        const q = new URLSearchParams({a: sel.a, b: sel.b, tf: sel.tf, w: String(sel.window),
                                       reg: sel.regression, prices: sel.prices,
                                       mode: sel.mode, k: String(sel.k),
                                       entry: String(sel.entry)});
        if (sel.source && sel.source !== "trade") { q.set("source", sel.source); }
        if (sel.dataset) { q.set("dataset", sel.dataset); }
        // replaceState: no navigation, so the pages router does not rebuild the page
        window.history.replaceState(window.history.state, "", window.location.pathname + "?" + q);
        return q.toString();
    }""",
    Output(Pair.URL, "data"),
    Input(Pair.TABS, "active_tab"),
    Input(pid(Pair.SELECTION, ALL), "data"),
    prevent_initial_call=True,
)
