"""Markets `/`: a card per symbol, the feed status, a return-correlation heatmap and a
liquidity filter. One 500 ms interval drives it; see :mod:`dashapp.pages.markets.marketsview` for
what each refresh sends (short strings for the numbers, extendData for sparklines, a
Patch for the heatmap values): a few kB at most.
"""

from __future__ import annotations

import dash
import dash_bootstrap_components as dbc
from dash import ALL, Input, Output, State, callback, ctx, dcc, html, no_update

from analytics.timeframes import LIVE_TIMEFRAMES
from dashapp import stores, updates
from dashapp.components.symbol_card import (
    change_text,
    feed_strip_layout,
    feed_values,
    quote_values,
    stat_values,
    symbol_card,
)
from dashapp.components.url_query import sync_query
from dashapp.ids import Markets
from dashapp.pages.markets import marketsview
from dashapp.pages.markets.marketsview import max_spread_arg
from dashapp.services import get_services
from dashapp.status import feed_card

dash.register_page(__name__, path="/", name="Markets", order=0)

#: the feed detail card is resent at once when one of these changes, else every
#: FEED_DETAIL_EVERY refreshes (its counters: messages, rates, lag)
FEED_DETAIL_KEYS = ("connected", "url", "bad_frames", "reconnects", "gaps", "error")
FEED_DETAIL_EVERY = 4


def _number(id_: str, placeholder: str, value=None) -> dbc.Input:
    return dbc.Input(
        id=id_,
        type="number",
        min=0,
        placeholder=placeholder,
        size="sm",
        debounce=True,
        style={"width": 120},
        value=value,
    )


def layout(max_spread_bps: str | None = None, **_query) -> html.Div:
    """``/?max_spread_bps=N`` opens with the spread filter at N bps."""
    symbols = sorted(get_services().names())
    return html.Div(
        [
            dcc.Interval(id=Markets.TICK_INTERVAL, interval=500),
            dcc.Store(id=Markets.STATE),
            dbc.Row(
                [
                    dbc.Col(feed_strip_layout(), md=True),
                    dbc.Col(
                        html.Div(
                            [
                                html.Span("timeframe", className="ctl-label d-inline me-2"),
                                dbc.RadioItems(
                                    id=Markets.TIMEFRAME,
                                    value="1s",
                                    inline=True,
                                    options=[
                                        {"label": t, "value": t} for t in LIVE_TIMEFRAMES
                                    ],
                                    className="btn-group btn-group-sm",
                                    inputClassName="btn-check",
                                    labelClassName="btn btn-outline-info btn-sm",
                                    labelCheckedClassName="active",
                                ),
                            ],
                            className="d-flex align-items-center",
                        ),
                        width="auto",
                    ),
                ],
                className="g-2 mb-2 align-items-center",
            ),
            dbc.Row(
                [
                    dbc.Col(
                        html.Span(
                            "Liquidity filter: hide symbols under", className="ctl-label d-inline"
                        ),
                        width="auto",
                    ),
                    dbc.Col(_number(Markets.MIN_TRADES, "trades/min"), width="auto"),
                    dbc.Col(_number(Markets.MIN_VOLUME, "USDT/min"), width="auto"),
                    dbc.Col(html.Span("or quoted spread over", className="ctl-label d-inline"),
                            width="auto"),
                    dbc.Col(_number(Markets.MAX_SPREAD, "bps",
                                    max_spread_arg(max_spread_bps)), width="auto"),
                    dbc.Col(dcc.Store(id=Markets.URL_SINK), width="auto"),
                    dbc.Col(
                        html.Small(id=Markets.FILTER_NOTE, className="text-muted"), width="auto"
                    ),
                ],
                className="g-2 mb-2 align-items-center filter-row",
            ),
            dbc.Row(
                [symbol_card(s) for s in symbols], id=Markets.SYMBOL_TABLE, className="g-2 mb-2"
            ),
            dbc.Row(
                [
                    dbc.Col(
                        dbc.Card(
                            [
                                dbc.CardHeader(
                                    html.Small(id=Markets.HEATMAP_NOTE, className="text-muted")
                                ),
                                dbc.CardBody(
                                    dcc.Graph(id=Markets.HEATMAP, config={"displaylogo": False}),
                                    className="p-1",
                                ),
                            ],
                            className="chart-card",
                        ),
                        lg=7,
                    ),
                    dbc.Col(html.Div(id=Markets.FEED_DETAIL), lg=5),
                ],
                className="g-2",
            ),
        ]
    )


def _ids(kind: str) -> list[dict]:
    """The pattern ids an ALL output resolved to, in layout order."""
    return [
        o["id"]
        for o in next(
            o for o in ctx.outputs_list if isinstance(o, list) and o and o[0]["id"]["type"] == kind
        )
    ]


@callback(
    output=dict(
        badge_text=Output(Markets.feed(ALL), "children"),
        badge_color=Output(Markets.feed(ALL), "color"),
        feed_detail=Output(Markets.FEED_DETAIL, "children"),
        price=Output(Markets.price(ALL), "children"),
        price_class=Output(Markets.price(ALL), "className"),
        change=Output(Markets.change(ALL), "children"),
        change_class=Output(Markets.change(ALL), "className"),
        stat=Output(Markets.stat(ALL, ALL), "children"),
        card_style=Output(Markets.card(ALL), "style"),
        spark_figure=Output(Markets.spark(ALL), "figure"),
        spark_extend=Output(Markets.spark(ALL), "extendData"),
        heatmap=Output(Markets.HEATMAP, "figure"),
        heatmap_note=Output(Markets.HEATMAP_NOTE, "children"),
        filter_note=Output(Markets.FILTER_NOTE, "children"),
        state=Output(Markets.STATE, "data"),
    ),
    inputs=dict(
        _n=Input(Markets.TICK_INTERVAL, "n_intervals"),
        tf=Input(Markets.TIMEFRAME, "value"),
        min_trades=Input(Markets.MIN_TRADES, "value"),
        min_volume=Input(Markets.MIN_VOLUME, "value"),
        max_spread=Input(Markets.MAX_SPREAD, "value"),
        state=State(Markets.STATE, "data"),
    ),
)
def refresh_markets(_n, tf, min_trades, min_volume, max_spread, state):
    """Tick-level widgets of the markets page, every 500 ms (and on a filter change)."""
    market = get_services()
    up = marketsview.refresh(market, tf, min_trades, min_volume, state,
                             max_spread_arg(max_spread))
    feed = market.feed_health()
    badge_text, badge_color = feed_values(feed)
    badges = [i["index"] for i in _ids(Markets.feed("")["type"])]
    syms = [i["index"] for i in _ids(Markets.price("")["type"])]
    stats = {s: {**stat_values(st), **quote_values(up.quotes.get(s))}
             for s, st in up.stats.items()}
    changes = {s: change_text(up.stats.get(s)) for s in syms}
    detail_key = [feed.get(k) for k in FEED_DETAIL_KEYS]
    state = stores.mapping(state)  # a browser store: a forged one is no state
    same_detail = state.get("feed_key") == detail_key and (_n or 0) % FEED_DETAIL_EVERY
    same_hidden = state.get("hidden") == up.hidden

    def sparks(kind: str) -> list:
        return [
            no_update if up.sparks.get(s) is None or up.sparks[s][0] != kind else up.sparks[s][1]
            for s in syms
        ]

    stat_ids = _ids(Markets.stat("", "")["type"])
    return dict(
        badge_text=[badge_text[b] for b in badges],
        badge_color=[badge_color[b] for b in badges],
        feed_detail=no_update if same_detail else feed_card(feed),
        price=[updates.format_price(up.stats[s].last) if s in up.stats else "–" for s in syms],
        price_class=[up.price_class.get(s, "sym-price") for s in syms],
        change=[changes[s][0] for s in syms],
        change_class=[changes[s][1] for s in syms],
        stat=[stats.get(i["index"], {}).get(i["stat"], "–") for i in stat_ids],
        card_style=[no_update] * len(syms)
        if same_hidden
        else [{"display": "none"} if s in up.hidden else {} for s in syms],
        spark_figure=sparks("figure"),
        spark_extend=sparks("extend"),
        heatmap=no_update if up.heatmap is None else up.heatmap,
        heatmap_note=no_update if up.heatmap_note is None else up.heatmap_note,
        filter_note=f"hidden: {', '.join(up.hidden)}" if up.hidden else "all symbols shown",
        state={**up.state, "feed_key": detail_key, "hidden": up.hidden},
    )


# The spread filter is a link: ``/?max_spread_bps=5`` opens with it (the address bar
# follows the control, no navigation).
sync_query("/", Markets.URL_SINK, {"max_spread_bps": Markets.MAX_SPREAD})
