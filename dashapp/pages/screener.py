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

from analytics.errors import InsufficientData, NoQuotes
from analytics.screener import same_asset
from analytics.timeframes import SUPPORTED_UI, format_timeframe
from dashapp import ids, stores
from dashapp import trader_queries as tq
from dashapp.api.params import BadParam
from dashapp.components import backtest_view as view
from dashapp.components import dataset_select
from dashapp.components.url_query import sync_query

dash.register_page(__name__, path="/screener", name="Screener", order=45)

S = ids.Screener
MIN_REFRESH_S = 10


def layout(dataset: str | None = None, tf: str | None = None, w: str = "60",
           reg: str = "ols", prices: str = "raw", lookback: str | None = None,
           source: str = "trade", **_query) -> html.Div:
    """``/screener?dataset=NAME&tf=..&w=..&reg=..&prices=..&lookback=..&source=trade|mid``
    (``dataset`` absent: the live feed; an unknown one falls back to live with a note;
    ``source=mid``: every pair on its legs' mids)."""
    price_source, source = source, dataset_select.resolve(dataset)
    symbols = dataset_select.symbol_options(source.dataset)
    tfs = dataset_select.timeframe_options(source.dataset, SUPPORTED_UI)
    opts = dataset_select.labelled(symbols)  # "BTCUSDT · perp"
    # lead-lag opens on a symbol's perp against its spot when both are ingested
    basis = [(p, q) for p in symbols for q in symbols if p.startswith("perp:")
             and same_asset(p, q)]
    ll_a, ll_b = basis[0] if basis else (symbols[0] if symbols else None,
                                         symbols[1] if len(symbols) > 1 else None)
    dd = dict(size="sm")
    return html.Div([
        html.H4("Pair screener", className="mb-1"),
        html.P("Every pair of the source's symbols (the live feed's or a dataset's), ranked "
               "by Engle-Granger p-value (A on B), then half-life, current |z|, liquidity. "
               f"Live: re-screens when bars close (at most every {MIN_REFRESH_S} s). Click a "
               "row to open the pair.", className="small text-muted"),
        dbc.Row([
            dataset_select.selector(S.SOURCE, source, width=3),
            view.labelled("Timeframe", dbc.Select(id=S.TF, options=tfs,
                                                    value=tf if tf in tfs else tfs[0],
                                                    **dd), 1),
            view.labelled("Window (bars)", view.num_input(S.WINDOW, w, step=1), 1),
            view.labelled("Regression", dbc.Select(id=S.REG, options=view.REG_OPTIONS,
                                                     value=reg, **dd), 1),
            view.labelled("Prices", dbc.RadioItems(id=S.PRICES, options=view.PRICE_OPTIONS,
                                                   value=prices, inline=True), 1),
            view.labelled("Price", dbc.RadioItems(
                id=S.PRICE_SOURCE, options=view.SOURCE_OPTIONS,
                value=price_source if price_source in ("trade", "mid") else "trade",
                inline=True), 1),
            view.labelled("Lookback (bars)", view.num_input(
                S.LOOKBACK, lookback or None, step=1,
                placeholder="1 day" if source.is_live else "all bars"), 1),
            dbc.Col([
                dbc.Button("Screen now", id=S.RUN, color="primary", size="sm"),
                html.Span([dbc.Spinner(size="sm", color="info"), " screening…"], id=S.SPINNER,
                          className="small text-info ms-2", style={"display": "none"}),
            ], md=2, className="mb-2"),
        ], className="g-2 align-items-end"),
        html.Div(id=S.STATUS, className="small text-muted mb-1"),
        html.Div(id=S.MESSAGE),
        view.screener_grid(S.GRID),
        dbc.Row([
            dbc.Col([
                html.H6("Lead-lag of one pair", className="mt-3"),
                dbc.Row([
                    view.labelled("A", dbc.Select(id=S.LL_A, options=opts, value=ll_a, **dd),
                                  4),
                    view.labelled("B", dbc.Select(id=S.LL_B, options=opts, value=ll_b, **dd),
                                  4),
                    view.labelled("Max lag (bars)", view.num_input(S.LL_K, 10, step=1), 4),
                ], className="g-2"),
                html.Div(id=S.LL_NOTE, className="small text-muted"),
                dcc.Graph(id=S.LL_GRAPH, config={"displaylogo": False}),
            ], lg=6),
            dbc.Col([html.H6("Peak lag, all symbols", className="mt-3"),
                     dcc.Graph(id=S.HEATMAP, config={"displaylogo": False})], lg=6),
        ]),
        dcc.Interval(id=S.INTERVAL, interval=2_000),
        dcc.Store(id=S.TRIGGER), dcc.Store(id=S.LAST), dcc.Store(id=S.URL_SINK),
        dcc.Location(id=S.URL, refresh="callback-nav"),
    ])


def _screen_args(source, tf, window, reg, prices, lookback, price_source="trade") -> dict:
    return tq.screen_args({"dataset": dataset_select.dataset_of(source) or "",
                           "timeframe": tf, "window": "" if window is None else str(window),
                           "regression": reg, "prices": prices,
                           "lookback": "" if lookback is None else str(lookback),
                           "source": price_source or "trade"})


@callback(
    Output(S.TRIGGER, "data"),
    Input(S.INTERVAL, "n_intervals"), State(S.TF, "value"), State(S.SOURCE, "value"),
    State(S.LAST, "data"),
    prevent_initial_call=True,
)
def watch_bars(_n, tf, source, last):
    """Cheap check (bar counts only) that starts a re-screen when a bar has closed (a
    dataset's count changes only with an upload)."""
    try:
        count = tq.bar_count(tq.params.timeframe({"timeframe": tf}),
                             dataset_select.dataset_of(source))
    except BadParam:
        return no_update
    last = stores.mapping(last)  # a browser store: a forged one counts as "never screened"
    t_last = stores.number(last.get("t")) or 0.0
    if last and (last.get("count") == count or time.time() - t_last < MIN_REFRESH_S):
        return no_update
    return {"count": count, "t": time.time()}


@callback(
    Output(S.GRID, "rowData"), Output(S.HEATMAP, "figure"), Output(S.STATUS, "children"),
    Output(S.MESSAGE, "children"), Output(S.LAST, "data"),
    Input(S.RUN, "n_clicks"), Input(S.TRIGGER, "data"), Input(S.SOURCE, "value"),
    Input(S.TF, "value"), Input(S.WINDOW, "value"), Input(S.REG, "value"),
    Input(S.PRICES, "value"), Input(S.LOOKBACK, "value"), Input(S.PRICE_SOURCE, "value"),
    State(S.LL_K, "value"),
    background=True,
    running=[(Output(S.RUN, "disabled"), True, False),
             (Output(S.INTERVAL, "disabled"), True, False),  # no re-trigger mid-screen
             (Output(S.SPINNER, "style"), {"display": "inline"}, {"display": "none"})],
)
def run_screen(_n, _trigger, source, tf, window, reg, prices, lookback, price_source, k):
    """The screen runs coint on every pair: a background job, never the request path."""
    try:
        args = _screen_args(source, tf, window, reg, prices, lookback, price_source)
        dataset = args.get("dataset")
        count = tq.bar_count(args["tf_ms"], dataset)
        result = tq.screen(**args)
        k = tq.max_lag_arg({"max_lag": "" if k is None else str(k)})
        matrix = tq.lead_lag_all(args["tf_ms"], k, args["max_bars"], dataset)
    except (BadParam, NoQuotes) as exc:
        return no_update, no_update, no_update, dbc.Alert(str(exc), color="warning"), no_update
    except InsufficientData as exc:
        return ([], no_update, f"collecting: {exc.have} of {exc.needed} ({exc.what})", None,
                {"count": -1, "t": time.time()})
    rows = tq.screen_payload(result)["rows"]
    where = "live feed" if dataset is None else f"dataset {dataset}"
    if args.get("source") == "mid":
        where += ", mid prices; liquidity: quote updates/min"
    status = (f"{len(rows)} pairs, {format_timeframe(args['tf_ms'])} bars ({where}), "
              f"w={args['window']}; screened at {time.strftime('%H:%M:%S', time.gmtime())} UTC")
    return (rows, view.leadlag_heatmap(matrix, f"ll-{tf}"), html.Span(status, id="screener-done"),
            None, {"count": count, "t": time.time()})


@callback(
    Output(S.URL, "href"),
    Input(S.GRID, "cellClicked"), State(S.GRID, "virtualRowData"), State(S.SOURCE, "value"),
    State(S.TF, "value"), State(S.WINDOW, "value"), State(S.REG, "value"),
    State(S.PRICES, "value"), State(S.PRICE_SOURCE, "value"),
    prevent_initial_call=True,
)
def open_pair(cell, rows, source, tf, window, reg, prices, price_source="trade"):
    """A click on a screener row opens that pair on the pair page (on the same source)."""
    if not cell or not rows or cell.get("rowIndex") is None:
        return no_update
    row = rows[cell["rowIndex"]]
    query = urlencode({**dataset_select.query(dataset_select.dataset_of(source)),
                       "a": row["a"], "b": row["b"], "tf": tf, "w": window or 60,
                       "reg": reg, "prices": prices,
                       **({"source": "mid"} if price_source == "mid" else {})})
    return f"/pair?{query}"


@callback(
    Output(S.LL_GRAPH, "figure"), Output(S.LL_NOTE, "children"),
    Input(S.LL_A, "value"), Input(S.LL_B, "value"), Input(S.LL_K, "value"),
    Input(S.TF, "value"), Input(S.LAST, "data"), State(S.SOURCE, "value"),
)
def lead_lag(a, b, k, tf, _last, source):
    """Cross-correlation of one pair's returns (2k+1 numpy correlations: cheap)."""
    try:
        if not a or not b or a == b:
            raise BadParam("b", "choose two different symbols")
        tf_ms = tq.params.timeframe({"timeframe": tf})
        k = tq.max_lag_arg({"max_lag": "" if k is None else str(k)})
        ll = tq.lead_lag(a, b, tf_ms, k, dataset=dataset_select.dataset_of(source))
    except (BadParam, InsufficientData) as exc:
        msg = (f"collecting: {exc.have} of {exc.needed} bars"
               if isinstance(exc, InsufficientData) else str(exc))
        return no_update, msg
    peak = ("no defined correlation" if ll.peak_lag is None else
            f"peak at lag {ll.peak_lag:+d} bars (corr {ll.peak_corr:.3f}): "
            + (f"{a} leads {b}" if ll.peak_lag > 0 else
               f"{b} leads {a}" if ll.peak_lag < 0 else "moves together within a bar"))
    return view.leadlag_figure(ll, a, b, f"{a}-{b}-{tf}"), f"{ll.nobs:,} aligned bars; {peak}"


@callback(
    Output(S.LL_A, "options"), Output(S.LL_A, "value"), Output(S.LL_B, "options"),
    Output(S.LL_B, "value"), Output(S.TF, "options"), Output(S.TF, "value"),
    Input(S.SOURCE, "value"), State(S.LL_A, "value"), State(S.LL_B, "value"),
    State(S.TF, "value"),
    prevent_initial_call=True,
)
def follow_source(source, a, b, tf):
    """Another source: its symbols for the lead-lag pair, its timeframes."""
    return dataset_select.follow(source, a, b, tf, SUPPORTED_UI)


sync_query("/screener", S.URL_SINK, {
    dataset_select.URL_PARAM: S.SOURCE, "tf": S.TF, "w": S.WINDOW, "reg": S.REG,
    "prices": S.PRICES, "lookback": S.LOOKBACK, "source": S.PRICE_SOURCE,
}, omit={dataset_select.URL_PARAM: dataset_select.LIVE_VALUE, "source": "trade"})
