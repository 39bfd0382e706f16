"""Markets `/`: a grid of every instrument (dash-ag-grid), the feed status, a
return-correlation heatmap over the top N by volume or a watchlist, pre-filters.

The grid (row id = run name): instrument, market, last, change %, volume, trades/min,
USDT/min, quoted spread (bps, blank without the book) and a sparkline drawn only for
the rows on screen; sortable, filterable (quick filter box, a filter per column, and
the liquidity / spread pre-filters, which are column filters). Select two rows (their
checkboxes) and "Open pair" goes to ``/pair?a=&b=``; with "selected rows" as the
heatmap set, the selected rows are the heatmap's watchlist.

Every 500 ms the server answers only the cells that changed since the version the tab
holds (:mod:`dashapp.board`, :func:`marketsview.board_refresh`); the browser applies
them as a grid transaction (``assets/markets_board.js``). The heatmap has its own
2 s interval and recomputes only on a bar close (:func:`marketsview.heatmap_refresh`).
"""

from __future__ import annotations

import dash
import dash_ag_grid as dag
import dash_bootstrap_components as dbc
from dash import (
    ALL,
    ClientsideFunction,
    Input,
    Output,
    State,
    callback,
    clientside_callback,
    ctx,
    dcc,
    html,
    no_update,
)

from analytics.timeframes import LIVE_TIMEFRAMES
from dashapp import stores
from dashapp.components.backtest_view import GRID_THEME
from dashapp.components.symbol_card import feed_strip_layout, feed_values
from dashapp.components.url_query import sync_query
from dashapp.ids import Markets
from dashapp.pages.markets import marketsview
from dashapp.pages.markets.marketsview import (
    DEFAULT_HEAT_SET,
    HEAT_SETS,
    max_spread_arg,
    prefilters,
)
from dashapp.services import get_services
from dashapp.status import feed_card

dash.register_page(__name__, path="/", name="Markets", order=0)

#: the feed detail card is resent at once when one of these changes, else every
#: FEED_DETAIL_EVERY refreshes (its counters: messages, rates, lag)
FEED_DETAIL_KEYS = ("connected", "url", "bad_frames", "reconnects", "gaps", "error")
FEED_DETAIL_EVERY = 4


def _fmt(spec: str) -> dict:
    return {"function": f"params.value == null ? '' : d3.format('{spec}')(params.value)"}


PRICE_FMT = {"function": "params.value == null ? '–' : (Math.abs(params.value) >= 1 ? "
             "d3.format(',.2f')(params.value) : d3.format('.6~g')(params.value))"}
NUMBER_FILTER = "agNumberColumnFilter"
GRID_ROW_PX = 28
GRID_HEAD_PX = 96
GRID_MAX_PX = 560


def column_defs() -> list[dict]:
    """The grid's columns (fields = :func:`analytics.board.row_cells` keys + spark)."""
    num = {"type": "rightAligned", "filter": NUMBER_FILTER}
    return [
        {"field": "label", "headerName": "instrument", "pinned": "left", "width": 175,
         "filter": "agTextColumnFilter", "sortable": True},
        {"field": "market", "headerName": "mkt", "width": 80, "filter": "agTextColumnFilter"},
        {"field": "last", "headerName": "last", "width": 115, "valueFormatter": PRICE_FMT,
         "enableCellChangeFlash": True, **num},
        {"field": "change_pct", "headerName": "chg %", "width": 95,
         "valueFormatter": _fmt("+.2f"),
         "cellClassRules": {"text-success": "params.value > 0",
                            "text-danger": "params.value < 0"}, **num},
        {"field": "volume", "headerName": "volume", "width": 110, "sort": "desc",
         "valueFormatter": _fmt(".3~s"), "headerTooltip": "quote volume (USDT) over the "
         "window held (at most a day)", **num},
        {"field": "trades_per_min", "headerName": "trades/min", "width": 115,
         "valueFormatter": _fmt(",d"), **num},
        {"field": "volume_per_min", "headerName": "USDT/min", "width": 110,
         "valueFormatter": _fmt(".3~s"), **num},
        {"field": "spread_bps", "headerName": "spread bps", "width": 115,
         "valueFormatter": _fmt(".2f"), "filterParams": {"includeBlanksInLessThan": True},
         **num},
        {"field": "spark", "headerName": "last 60 bars", "width": 150, "sortable": False,
         "filter": False, "cellRenderer": "Sparkline"},
    ]


def board_grid(rows: int) -> dag.AgGrid:
    """The grid, ``rows`` high up to GRID_MAX_PX (then it scrolls: only the rows on
    screen are rendered)."""
    return dag.AgGrid(
        id=Markets.GRID,
        columnDefs=column_defs(),
        rowData=[],
        getRowId="params.data.name",
        columnSize="responsiveSizeToFit",
        defaultColDef={"sortable": True, "resizable": True, "floatingFilter": True,
                       "suppressHeaderMenuButton": True},
        dashGridOptions={
            "theme": GRID_THEME,
            "rowSelection": {"mode": "multiRow", "checkboxes": True, "headerCheckbox": False,
                             "enableClickSelection": False},
            "animateRows": False,
            "rowHeight": GRID_ROW_PX,
            "selectionColumnDef": {"pinned": "left", "width": 44},
            "rowBuffer": 5,
            "tooltipShowDelay": 300,
            "suppressCellFocus": True,
            # the page's pre-filters (assets/dashAgGridFunctions.js, PREFILTER store)
            "isExternalFilterPresent": {"function": "marketsPrefilterOn()"},
            "doesExternalFilterPass": {"function": "marketsPrefilterPass(params)"},
        },
        style={"height": f"{min(GRID_MAX_PX, GRID_HEAD_PX + GRID_ROW_PX * max(rows, 3))}px"},
        className="markets-grid",
    )


def _number(id_: str, placeholder: str, value=None) -> dbc.Input:
    return dbc.Input(id=id_, type="number", min=0, placeholder=placeholder, size="sm",
                     debounce=True, style={"width": 110}, value=value)


def _timeframe_radio() -> html.Div:
    return html.Div(
        [
            html.Span("timeframe", className="ctl-label d-inline me-2"),
            dbc.RadioItems(
                id=Markets.TIMEFRAME, value="1s", inline=True,
                options=[{"label": t, "value": t} for t in LIVE_TIMEFRAMES],
                className="btn-group btn-group-sm", inputClassName="btn-check",
                labelClassName="btn btn-outline-info btn-sm",
                labelCheckedClassName="active",
            ),
        ],
        className="d-flex align-items-center",
    )


def layout(max_spread_bps: str | None = None, **_query) -> html.Div:
    """``/?max_spread_bps=N`` opens with the spread filter at N bps."""
    filters = dbc.Row(
        [
            dbc.Col(dbc.Input(id=Markets.QUICK_FILTER, placeholder="filter instruments…",
                              size="sm", debounce=False, style={"width": 180}), width="auto"),
            dbc.Col(html.Span("hide under", className="ctl-label d-inline"), width="auto"),
            dbc.Col(_number(Markets.MIN_TRADES, "trades/min"), width="auto"),
            dbc.Col(_number(Markets.MIN_VOLUME, "USDT/min"), width="auto"),
            dbc.Col(html.Span("or spread over", className="ctl-label d-inline"), width="auto"),
            dbc.Col(_number(Markets.MAX_SPREAD, "bps", max_spread_arg(max_spread_bps)),
                    width="auto"),
            dbc.Col(dcc.Store(id=Markets.URL_SINK), width="auto"),
            dbc.Col(html.Small(id=Markets.GRID_NOTE, className="text-muted"), width="auto"),
            dbc.Col(
                [
                    dbc.Button("Open pair", id=Markets.OPEN_PAIR, color="info", size="sm",
                               disabled=True, href=None, className="me-2"),
                    html.Small("select two rows (checkboxes) to open their pair",
                               id=Markets.PAIR_NOTE, className="text-muted"),
                ],
                width="auto", className="ms-auto d-flex align-items-center",
            ),
        ],
        className="g-2 mb-2 align-items-center filter-row",
    )
    heat = dbc.Card(
        [
            dbc.CardHeader(
                [
                    dbc.Select(id=Markets.HEAT_SET, value=DEFAULT_HEAT_SET, size="sm",
                               options=[{"label": v, "value": k} for k, v in HEAT_SETS.items()],
                               style={"width": 180}, className="d-inline-block me-2"),
                    html.Small(id=Markets.HEATMAP_NOTE, className="text-muted"),
                ],
            ),
            dbc.CardBody(dcc.Graph(id=Markets.HEATMAP, config={"displaylogo": False}),
                         className="p-1"),
        ],
        className="chart-card",
    )
    return html.Div(
        [
            dcc.Interval(id=Markets.TICK_INTERVAL, interval=500),
            dcc.Interval(id=Markets.HEAT_INTERVAL, interval=2000),
            dcc.Store(id=Markets.STATE),
            dcc.Store(id=Markets.BOARD),
            dcc.Store(id=Markets.CLIENT),
            dcc.Store(id=Markets.HEAT_STATE),
            dcc.Store(id=Markets.QUICK_SINK),
            dcc.Store(id=Markets.PREFILTER_SINK),
            dcc.Store(id=Markets.PREFILTER, data=prefilters(None, None, max_spread_bps)),
            dbc.Row(
                [dbc.Col(feed_strip_layout(), md=True), dbc.Col(_timeframe_radio(), width="auto")],
                className="g-2 mb-2 align-items-center",
            ),
            filters,
            board_grid(len(get_services().names())),
            dbc.Row([dbc.Col(heat, lg=7), dbc.Col(html.Div(id=Markets.FEED_DETAIL), lg=5)],
                    className="g-2 mt-2"),
        ]
    )


# The browser merges the message into the rows it holds and updates the grid by a
# transaction (a whole rowData only on a full message); it then says which version and
# which visible sparklines it holds.
clientside_callback(
    ClientsideFunction(namespace="markets", function_name="apply"),
    Output(Markets.GRID, "rowData"),
    Output(Markets.GRID, "rowTransaction"),
    Output(Markets.CLIENT, "data"),
    Output(Markets.GRID_NOTE, "children"),
    Input(Markets.BOARD, "data"),
    State(Markets.GRID, "id"),
)

clientside_callback(
    ClientsideFunction(namespace="markets", function_name="quickFilter"),
    Output(Markets.QUICK_SINK, "data"),
    Input(Markets.QUICK_FILTER, "value"),
    State(Markets.GRID, "id"),
    prevent_initial_call=True,
)


@callback(
    Output(Markets.PREFILTER, "data"),
    Input(Markets.MIN_TRADES, "value"),
    Input(Markets.MIN_VOLUME, "value"),
    Input(Markets.MAX_SPREAD, "value"),
    prevent_initial_call=True,  # the layout opens with them (the URL's spread filter)
)
def apply_prefilters(min_trades, min_volume, max_spread):
    """The pre-filters' thresholds (blank, 0 or not a number: off), which the grid's
    external filter applies (``marketsPrefilterPass``)."""
    return prefilters(min_trades, min_volume, max_spread)


# the grid re-filters when the thresholds change (and opens with them: the store's
# first value is in the layout)
clientside_callback(
    ClientsideFunction(namespace="markets", function_name="prefilter"),
    Output(Markets.PREFILTER_SINK, "data"),
    Input(Markets.PREFILTER, "data"),
    State(Markets.GRID, "id"),
)


@callback(
    Output(Markets.OPEN_PAIR, "href"),
    Output(Markets.OPEN_PAIR, "disabled"),
    Output(Markets.PAIR_NOTE, "children"),
    Input(Markets.GRID, "selectedRows"),
)
def pair_from_selection(selected):
    names = sorted(marketsview.selected_names(selected))
    link = marketsview.pair_link(selected)
    if link:
        return link, False, f"{names[0]} / {names[1]}"
    if not names:
        return None, True, "select two rows (checkboxes) to open their pair"
    return None, True, f"{len(names)} selected: select exactly two to open a pair"


@callback(
    Output(Markets.HEATMAP, "figure"),
    Output(Markets.HEATMAP_NOTE, "children"),
    Output(Markets.HEAT_STATE, "data"),
    Input(Markets.HEAT_INTERVAL, "n_intervals"),
    Input(Markets.TIMEFRAME, "value"),
    Input(Markets.HEAT_SET, "value"),
    Input(Markets.GRID, "selectedRows"),
    State(Markets.HEAT_STATE, "data"),
)
def refresh_heatmap(_n, tf, heat_set, selected, state):
    """Every 2 s (and on a change of set or timeframe): the heatmap, recomputed only
    when a bar closed or the set changed."""
    if heat_set != "selected" and ctx.triggered_id == Markets.GRID:
        return no_update, no_update, no_update
    fig, note, heat = marketsview.heatmap_refresh(get_services(), heat_set, selected, tf,
                                                  state)
    return (no_update if fig is None else fig, no_update if note is None else note, heat)


def _ids(kind: str) -> list[dict]:
    """The pattern ids an ALL output resolved to, in layout order."""
    return [
        o["id"]
        for o in next(
            o for o in ctx.outputs_list if isinstance(o, list) and o and o[0]["id"]["type"] == kind
        )
    ]


@callback(
    Output(Markets.feed(ALL), "children"),
    Output(Markets.feed(ALL), "color"),
    Output(Markets.FEED_DETAIL, "children"),
    Output(Markets.BOARD, "data"),
    Output(Markets.STATE, "data"),
    Input(Markets.TICK_INTERVAL, "n_intervals"),
    Input(Markets.TIMEFRAME, "value"),
    State(Markets.CLIENT, "data"),
    State(Markets.STATE, "data"),
)
def refresh_markets(n, tf, client, state):
    """Every 500 ms: the grid's cells changed since the tab's version and its visible
    sparklines; the feed strip, its detail card on a change or every 4th refresh."""
    market = get_services()
    board = marketsview.board_refresh(market, client, tf)
    feed = market.feed_health()
    text, color = feed_values(feed)
    badges = [i["index"] for i in _ids(Markets.feed("")["type"])]
    key = [feed.get(k) for k in FEED_DETAIL_KEYS]
    state = stores.mapping(state)
    same = state.get("feed_key") == key and (n or 0) % FEED_DETAIL_EVERY
    texts, colors = [text[b] for b in badges], [color[b] for b in badges]
    shown = state.get("badges") == [texts, colors]  # unchanged badges: not resent
    keep = [no_update] * len(badges)
    return (keep if shown else texts, keep if shown else colors,
            no_update if same else feed_card(feed), board,
            {"feed_key": key, "badges": [texts, colors]})


# The spread filter is a link: ``/?max_spread_bps=5`` opens with it (the address bar
# follows the control, no navigation).
sync_query("/", Markets.URL_SINK, {"max_spread_bps": Markets.MAX_SPREAD})
