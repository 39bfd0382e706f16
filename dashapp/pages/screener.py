"""Screener `/screener`: every pair of ingested symbols, ranked, plus lead-lag.

Refresh on bar close, never on the 500 ms path: a cheap 2 s interval compares the
timeframe's closed-bar count with the last screen's and, when bars closed and at least
``MIN_REFRESH_S`` passed, writes a trigger that starts the background screen (the
coint tests run in a forked process). Clicking a row opens the pair on the pair page.
Lead-lag of one pair (a few numpy correlations) is computed in a normal callback.
"""

from __future__ import annotations

import time
from urllib.parse import urlencode

import dash
import dash_bootstrap_components as dbc
from dash import Input, Output, State, callback, dcc, html, no_update

from analytics.errors import InsufficientData
from analytics.timeframes import format_timeframe
from dashapp import ids, trader_queries as tq
from dashapp.components import backtest_view as view
from dashapp.params import BadParam
from dashapp.services import get_services

dash.register_page(__name__, path="/screener", name="Screener", order=45)

S = ids.Screener
MIN_REFRESH_S = 10


def layout(tf: str = "1s", w: str = "60", **_query) -> html.Div:
    symbols = sorted(get_services().ingestor.rings)
    opts = [{"label": s, "value": s} for s in symbols]
    dd = dict(size="sm")
    return html.Div([
        html.H4("Pair screener", className="mb-1"),
        html.P("Every pair of ingested symbols, ranked by Engle-Granger p-value (A on B), "
               "then half-life, current |z|, liquidity. Re-screens when bars close (at most "
               f"every {MIN_REFRESH_S} s). Click a row to open the pair.",
               className="small text-muted"),
        dbc.Row([
            view.labelled("Timeframe", dbc.Select(id=S.TF, options=view.TF_OPTIONS,
                                                    value=tf if tf in ("1s", "1m", "5m") else "1s",
                                                    **dd), 1),
            view.labelled("Window (bars)", view.num_input(S.WINDOW, w, step=1), 1),
            view.labelled("Regression", dbc.Select(id=S.REG, options=view.REG_OPTIONS,
                                                     value="ols", **dd), 1),
            view.labelled("Prices", dbc.RadioItems(id=S.PRICES, options=view.PRICE_OPTIONS,
                                                   value="raw", inline=True), 1),
            view.labelled("Lookback (bars)", view.num_input(S.LOOKBACK, None, step=1,
                                                            placeholder="1 day"), 1),
            dbc.Col([
                dbc.Button("Screen now", id=S.RUN, color="primary", size="sm"),
                html.Span([dbc.Spinner(size="sm", color="info"), " screening…"], id=S.SPINNER,
                          className="small text-info ms-2", style={"display": "none"}),
            ], md=3, className="mb-2"),
        ], className="g-2 align-items-end"),
        html.Div(id=S.STATUS, className="small text-muted mb-1"),
        html.Div(id=S.MESSAGE),
        view.screener_grid(S.GRID),
        dbc.Row([
            dbc.Col([
                html.H6("Lead-lag of one pair", className="mt-3"),
                dbc.Row([
                    view.labelled("A", dbc.Select(
                        id=S.LL_A, options=opts, value=symbols[0] if symbols else None, **dd), 4),
                    view.labelled("B", dbc.Select(id=S.LL_B, options=opts,
                                                    value=symbols[1] if len(symbols) > 1 else None,
                                                    **dd), 4),
                    view.labelled("Max lag (bars)", view.num_input(S.LL_K, 10, step=1), 4),
                ], className="g-2"),
                html.Div(id=S.LL_NOTE, className="small text-muted"),
                dcc.Graph(id=S.LL_GRAPH, config={"displaylogo": False}),
            ], lg=6),
            dbc.Col([html.H6("Peak lag, all symbols", className="mt-3"),
                     dcc.Graph(id=S.HEATMAP, config={"displaylogo": False})], lg=6),
        ]),
        dcc.Interval(id=S.INTERVAL, interval=2_000),
        dcc.Store(id=S.TRIGGER), dcc.Store(id=S.LAST),
        dcc.Location(id=S.URL, refresh="callback-nav"),
    ])


def _screen_args(tf, window, reg, prices, lookback) -> dict:
    return tq.screen_args({"timeframe": tf, "window": "" if window is None else str(window),
                           "regression": reg, "prices": prices,
                           "lookback": "" if lookback is None else str(lookback)})


@callback(
    Output(S.TRIGGER, "data"),
    Input(S.INTERVAL, "n_intervals"), State(S.TF, "value"), State(S.LAST, "data"),
    prevent_initial_call=True,
)
def watch_bars(_n, tf, last):
    """Cheap check (bar counts only) that starts a re-screen when a bar has closed."""
    try:
        count = tq.bar_count(tq.params.timeframe({"timeframe": tf}))
    except BadParam:
        return no_update
    if last and (last.get("count") == count or time.time() - last["t"] < MIN_REFRESH_S):
        return no_update
    return {"count": count, "t": time.time()}


@callback(
    Output(S.GRID, "rowData"), Output(S.HEATMAP, "figure"), Output(S.STATUS, "children"),
    Output(S.MESSAGE, "children"), Output(S.LAST, "data"),
    Input(S.RUN, "n_clicks"), Input(S.TRIGGER, "data"),
    Input(S.TF, "value"), Input(S.WINDOW, "value"), Input(S.REG, "value"),
    Input(S.PRICES, "value"), Input(S.LOOKBACK, "value"), State(S.LL_K, "value"),
    background=True,
    running=[(Output(S.RUN, "disabled"), True, False),
             (Output(S.INTERVAL, "disabled"), True, False),  # no re-trigger mid-screen
             (Output(S.SPINNER, "style"), {"display": "inline"}, {"display": "none"})],
)
def run_screen(_n, _trigger, tf, window, reg, prices, lookback, k):
    """The screen runs coint on every pair: a background job, never the request path."""
    try:
        args = _screen_args(tf, window, reg, prices, lookback)
        count = tq.bar_count(args["tf_ms"])
        result = tq.screen(**args)
        k = tq.max_lag_arg({"max_lag": "" if k is None else str(k)})
        matrix = tq.lead_lag_all(args["tf_ms"], k, args["max_bars"])
    except BadParam as exc:
        return no_update, no_update, no_update, dbc.Alert(str(exc), color="warning"), no_update
    except InsufficientData as exc:
        return ([], no_update, f"collecting: {exc.have} of {exc.needed} ({exc.what})", None,
                {"count": -1, "t": time.time()})
    rows = tq.screen_payload(result)["rows"]
    status = (f"{len(rows)} pairs, {format_timeframe(args['tf_ms'])} bars, w={args['window']}; "
              f"screened at {time.strftime('%H:%M:%S', time.gmtime())} UTC")
    return (rows, view.leadlag_heatmap(matrix, f"ll-{tf}"), html.Span(status, id="screener-done"),
            None, {"count": count, "t": time.time()})


@callback(
    Output(S.URL, "href"),
    Input(S.GRID, "cellClicked"), State(S.GRID, "virtualRowData"),
    State(S.TF, "value"), State(S.WINDOW, "value"), State(S.REG, "value"),
    State(S.PRICES, "value"),
    prevent_initial_call=True,
)
def open_pair(cell, rows, tf, window, reg, prices):
    """A click on a screener row opens that pair on the pair page."""
    if not cell or not rows or cell.get("rowIndex") is None:
        return no_update
    row = rows[cell["rowIndex"]]
    query = urlencode({"a": row["a"], "b": row["b"], "tf": tf, "w": window or 60,
                       "reg": reg, "prices": prices})
    return f"/pair?{query}"


@callback(
    Output(S.LL_GRAPH, "figure"), Output(S.LL_NOTE, "children"),
    Input(S.LL_A, "value"), Input(S.LL_B, "value"), Input(S.LL_K, "value"),
    Input(S.TF, "value"), Input(S.LAST, "data"),
)
def lead_lag(a, b, k, tf, _last):
    """Cross-correlation of one pair's returns (2k+1 numpy correlations: cheap)."""
    try:
        if not a or not b or a == b:
            raise BadParam("b", "choose two different symbols")
        tf_ms = tq.params.timeframe({"timeframe": tf})
        k = tq.max_lag_arg({"max_lag": "" if k is None else str(k)})
        ll = tq.lead_lag(a, b, tf_ms, k)
    except (BadParam, InsufficientData) as exc:
        msg = (f"collecting: {exc.have} of {exc.needed} bars"
               if isinstance(exc, InsufficientData) else str(exc))
        return no_update, msg
    peak = ("no defined correlation" if ll.peak_lag is None else
            f"peak at lag {ll.peak_lag:+d} bars (corr {ll.peak_corr:.3f}): "
            + (f"{a} leads {b}" if ll.peak_lag > 0 else
               f"{b} leads {a}" if ll.peak_lag < 0 else "moves together within a bar"))
    return view.leadlag_figure(ll, a, b, f"{a}-{b}-{tf}"), f"{ll.nobs:,} aligned bars; {peak}"
