"""Market screen `/market-screen`: the top N instruments by quote volume, screened for
cointegrated pairs (:mod:`analytics.market_screen`).

The screen is a background job (Dash background callback in the app's background
manager: a forked process, or a Celery worker with ``--bus``), never the 500 ms path;
its progress bar follows the batched Engle-Granger chunk by chunk. It runs on load
(the URL carries every parameter: the same URL, the same screen) and on "Run"; the
status line gives a permalink with ``end=`` (the window's last bar), which repeats the
very same rows while that bar is in memory. Clicking a row opens the pair.
"""

from __future__ import annotations

from urllib.parse import urlencode

import dash
import dash_ag_grid as dag
import dash_bootstrap_components as dbc
from dash import Input, Output, State, callback, dcc, html, no_update

from analytics.errors import InsufficientData
from analytics.timeframes import format_timeframe
from dashapp import ids
from dashapp import market_screen_queries as msq
from dashapp.api.params import BadParam
from dashapp.components import backtest_view as view
from dashapp.components.url_query import sync_query
from dashapp.services import get_services

dash.register_page(__name__, path="/market-screen", name="Market screen", order=46)

M = ids.MarketScreen
PRICE_OPTIONS = [{"label": "log", "value": "log"}, {"label": "raw", "value": "raw"}]
ORDER_OPTIONS = [{"label": "A = higher volume", "value": "0"},
                 {"label": "both orders", "value": "1"}]
_NUM = "params.value == null ? '–' : d3.format('{}')(params.value)"
#: (field, header, width, d3 format or None, filter)
COLUMNS = (
    ("rank", "#", 64, "d", "agNumberColumnFilter"),
    ("a", "A", 130, None, "agTextColumnFilter"),
    ("b", "B", 130, None, "agTextColumnFilter"),
    ("corr", "corr", 90, ".3f", "agNumberColumnFilter"),
    ("coint_pvalue", "p-value", 105, ".2e", "agNumberColumnFilter"),
    ("coint_stat", "EG stat", 95, ".3f", "agNumberColumnFilter"),
    ("usedlag", "lag", 70, "d", "agNumberColumnFilter"),
    ("beta", "beta", 95, ".4g", "agNumberColumnFilter"),
    ("half_life_bars", "half-life (bars)", 130, ",.1f", "agNumberColumnFilter"),
    ("half_life_seconds", "half-life (s)", 120, ",.0f", "agNumberColumnFilter"),
    ("zscore", "z", 85, ".2f", "agNumberColumnFilter"),
    ("abs_z", "|z|", 85, ".2f", "agNumberColumnFilter"),
)


def _timeframes() -> list[str]:
    return [format_timeframe(t) for t in get_services().timeframes()]


def grid() -> dag.AgGrid:
    cols = []
    for field, name, width, fmt, flt in COLUMNS:
        col = {"field": field, "headerName": name, "width": width, "filter": flt}
        if fmt:
            col["valueFormatter"] = {"function": _NUM.format(fmt)}
            col["type"] = "rightAligned"
        cols.append(col)
    return dag.AgGrid(
        id=M.GRID, columnDefs=cols, rowData=[], getRowId="params.data.a + '|' + params.data.b",
        defaultColDef={"sortable": True, "resizable": True, "floatingFilter": True,
                       "suppressHeaderMenuButton": True},
        dashGridOptions={"theme": view.GRID_THEME, "animateRows": False,
                         "rowSelection": {"mode": "singleRow", "checkboxes": False,
                                          "enableClickSelection": True},
                         "pagination": True, "paginationPageSize": 50, "rowHeight": 30},
        style={"height": "640px"}, className="market-screen-grid",
    )


def layout(n: str = "50", tf: str | None = None, lookback: str | None = None,
           min_corr: str = "0.5", max_pairs: str = "2000", prices: str = "log",
           z_window: str = "60", both: str = "0", end: str | None = None,
           **_query) -> html.Div:
    """``/market-screen?n=&tf=&lookback=&min_corr=&max_pairs=&prices=&z_window=&both=&end=``
    (:mod:`dashapp.market_screen_queries`; a bad value shows its message on run)."""
    tfs = _timeframes()
    tf = tf if tf in tfs else ("1m" if "1m" in tfs else tfs[0])
    dd = dict(size="sm")
    return html.Div([
        html.H4("Market screen", className="mb-1"),
        html.P("The top N instruments by quote volume in the window, their log-return "
               "correlations as a prefilter (|corr| ≥ min, at most max pairs, strongest "
               "first), then Engle-Granger (A on B; p-value equal to statsmodels' coint), "
               "the spread's half-life and its current z over the z window. Ranked by "
               "p-value, then half-life, then |z|. Click a row to open the pair.",
               className="small text-muted"),
        dbc.Row([
            view.labelled("Top N", view.num_input(M.N, n, step=1), 1),
            view.labelled("Timeframe", dbc.Select(
                id=M.TF, options=[{"label": t, "value": t} for t in tfs], value=tf, **dd), 1),
            view.labelled("Lookback (bars)", view.num_input(M.LOOKBACK, lookback, step=1,
                                                            placeholder="1440"), 1),
            view.labelled("Min |corr|", view.num_input(M.MIN_CORR, min_corr), 1),
            view.labelled("Max pairs", view.num_input(M.MAX_PAIRS, max_pairs, step=1), 1),
            view.labelled("Prices", dbc.RadioItems(id=M.PRICES, options=PRICE_OPTIONS,
                                                   value=prices if prices in ("log", "raw")
                                                   else "log", inline=True), 1),
            view.labelled("z window (bars)", view.num_input(M.Z_WINDOW, z_window, step=1), 1),
            view.labelled("Order", dbc.Select(id=M.BOTH, options=ORDER_OPTIONS,
                                              value="1" if both in ("1", "true") else "0",
                                              **dd), 2),
            dbc.Col(dbc.Button("Run", id=M.RUN, color="primary", size="sm"), md=1,
                    className="mb-2"),
        ], className="g-2 align-items-end"),
        html.Div(dbc.Progress(id=M.PROGRESS, value=0, label="", striped=True, animated=True,
                              style={"height": "18px"}),
                 id=M.PROGRESS_WRAP, style={"display": "none"}, className="mb-2"),
        html.Div(id=M.STATUS, className="small text-muted mb-1"),
        html.Div(id=M.MESSAGE),
        grid(),
        dcc.Store(id=M.END, data=end), dcc.Store(id=M.URL_SINK),
        dcc.Location(id=M.URL, refresh="callback-nav"),
    ])


def _args(n, tf, lookback, min_corr, max_pairs, prices, z_window, both, end) -> dict:
    def text(v):
        return "" if v is None else str(v)

    return {"n": text(n), "timeframe": text(tf), "lookback": text(lookback),
            "min_corr": text(min_corr), "max_pairs": text(max_pairs), "prices": text(prices),
            "z_window": text(z_window), "both": text(both), "end": text(end)}


def permalink(args: dict, end_ms: int) -> str:
    """The page's URL for these parameters with ``end`` pinned (``tf`` for timeframe)."""
    query = {("tf" if k == "timeframe" else k): v for k, v in args.items() if v != ""}
    query["end"] = str(end_ms)
    return "/market-screen?" + urlencode(query)


@callback(
    Output(M.GRID, "rowData"), Output(M.STATUS, "children"), Output(M.MESSAGE, "children"),
    Input(M.RUN, "n_clicks"),
    State(M.N, "value"), State(M.TF, "value"), State(M.LOOKBACK, "value"),
    State(M.MIN_CORR, "value"), State(M.MAX_PAIRS, "value"), State(M.PRICES, "value"),
    State(M.Z_WINDOW, "value"), State(M.BOTH, "value"), State(M.END, "data"),
    background=True,
    progress=[Output(M.PROGRESS, "value"), Output(M.PROGRESS, "label")],
    progress_default=[0, ""],
    running=[(Output(M.RUN, "disabled"), True, False),
             (Output(M.PROGRESS_WRAP, "style"), {"display": "block"}, {"display": "none"})],
)
def run_screen(set_progress, _n, n, tf, lookback, min_corr, max_pairs, prices, z_window,
               both, end):
    """The screen (batched Engle-Granger over up to thousands of pairs): a background
    job with a progress bar, never the request path."""
    args = _args(n, tf, lookback, min_corr, max_pairs, prices, z_window, both, end)
    try:
        parsed = msq.screen_args(args)
        set_progress((0, "collecting bars"))

        def step(done: int, total: int) -> None:
            set_progress((round(100 * done / max(total, 1)), f"{done:,} of {total:,} pairs"))

        result = msq.run(**parsed, progress=msq.throttled(step))
    except BadParam as exc:
        return no_update, no_update, dbc.Alert(str(exc), color="warning")
    except InsufficientData as exc:
        return [], f"collecting: {exc.have} of {exc.needed} ({exc.what})", None
    rows = msq.rows_payload(result)
    link = permalink(args, result.end_ts)
    pinned = "pinned window (end= in the URL): " if args["end"] else ""
    status = html.Span([pinned + msq.summary(result), " · ",
                        html.A("permalink (this window)", href=link, id=M.PERMALINK)],
                       id="market-screen-done")
    return rows, status, None


@callback(
    Output(M.URL, "href"),
    Input(M.GRID, "cellClicked"), State(M.GRID, "virtualRowData"), State(M.TF, "value"),
    State(M.Z_WINDOW, "value"), State(M.PRICES, "value"),
    prevent_initial_call=True,
)
def open_pair(cell, rows, tf, z_window, prices):
    """A click on a row opens the pair on the pair page (z window as its window). The
    row id is ``A|B`` (names never hold ``|``); the row index is the fallback."""
    if not cell:
        return no_update
    row_id = cell.get("rowId")
    if isinstance(row_id, str) and row_id.count("|") == 1:
        a, b = row_id.split("|")
    else:
        idx = cell.get("rowIndex")
        if not rows or not isinstance(idx, int) or not 0 <= idx < len(rows):
            return no_update
        a, b = rows[idx]["a"], rows[idx]["b"]
    return "/pair?" + urlencode({"a": a, "b": b, "tf": tf, "w": z_window or 60,
                                 "prices": prices or "log"})


@callback(
    Output(M.END, "data"),
    Input(M.N, "value"), Input(M.TF, "value"), Input(M.LOOKBACK, "value"),
    Input(M.MIN_CORR, "value"), Input(M.MAX_PAIRS, "value"), Input(M.PRICES, "value"),
    Input(M.Z_WINDOW, "value"), Input(M.BOTH, "value"),
    prevent_initial_call=True,
)
def unpin(*_controls):
    """A changed control un-pins the window (the URL drops ``end`` too): the next run
    screens up to the latest final bar."""
    return None


sync_query("/market-screen", M.URL_SINK, {
    "n": M.N, "tf": M.TF, "lookback": M.LOOKBACK, "min_corr": M.MIN_CORR,
    "max_pairs": M.MAX_PAIRS, "prices": M.PRICES, "z_window": M.Z_WINDOW, "both": M.BOTH,
}, omit={"both": "0"})
