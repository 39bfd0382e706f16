"""Markets `/`: a card per symbol, the feed status, a return-correlation heatmap and a
liquidity filter. One 500 ms interval drives it; see :mod:`dashapp.marketsview` for
what each refresh sends (short strings for the numbers, extendData for sparklines, a
Patch for the heatmap values): a few kB at most.
"""

from __future__ import annotations

import dash
import dash_bootstrap_components as dbc
from dash import ALL, Input, Output, State, callback, ctx, dcc, html, no_update

from dashapp import marketsview, stores, updates
from dashapp.components.symbol_card import (
    change_text,
    feed_strip_layout,
    feed_values,
    stat_values,
    symbol_card,
)
from dashapp.ids import Markets
from dashapp.services import get_services
from dashapp.status import feed_card

dash.register_page(__name__, path="/", name="Markets", order=0)

#: the feed detail card is resent at once when one of these changes, else every
#: FEED_DETAIL_EVERY refreshes (its counters: messages, rates, lag)
FEED_DETAIL_KEYS = ("connected", "url", "bad_frames", "reconnects", "gaps", "error")
FEED_DETAIL_EVERY = 4


def _number(id_: str, placeholder: str) -> dbc.Input:
    return dbc.Input(
        id=id_,
        type="number",
        min=0,
        placeholder=placeholder,
        size="sm",
        debounce=True,
        style={"width": 120},
    )


def layout(**_query) -> html.Div:
    symbols = sorted(get_services().engine.symbols)
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
                                        {"label": t, "value": t} for t in marketsview.TIMEFRAMES
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
    Output(Markets.feed(ALL), "children"),
    Output(Markets.feed(ALL), "color"),
    Output(Markets.FEED_DETAIL, "children"),
    Output(Markets.price(ALL), "children"),
    Output(Markets.price(ALL), "className"),
    Output(Markets.change(ALL), "children"),
    Output(Markets.change(ALL), "className"),
    Output(Markets.stat(ALL, ALL), "children"),
    Output(Markets.card(ALL), "style"),
    Output(Markets.spark(ALL), "figure"),
    Output(Markets.spark(ALL), "extendData"),
    Output(Markets.HEATMAP, "figure"),
    Output(Markets.HEATMAP_NOTE, "children"),
    Output(Markets.FILTER_NOTE, "children"),
    Output(Markets.STATE, "data"),
    Input(Markets.TICK_INTERVAL, "n_intervals"),
    Input(Markets.TIMEFRAME, "value"),
    Input(Markets.MIN_TRADES, "value"),
    Input(Markets.MIN_VOLUME, "value"),
    State(Markets.STATE, "data"),
)
def refresh_markets(_n, tf, min_trades, min_volume, state):
    """Tick-level widgets of the markets page, every 500 ms (and on a filter change)."""
    services = get_services()
    up = marketsview.refresh(services, tf, min_trades, min_volume, state)
    feed = services.feed_health()
    badge_text, badge_color = feed_values(feed)
    badges = [i["index"] for i in _ids(Markets.feed("")["type"])]
    syms = [i["index"] for i in _ids(Markets.price("")["type"])]
    stats = {s: stat_values(st) for s, st in up.stats.items()}
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

    return (
        [badge_text[b] for b in badges],
        [badge_color[b] for b in badges],
        no_update if same_detail else feed_card(feed),
        [updates.format_price(up.stats[s].last) if s in up.stats else "–" for s in syms],
        [up.price_class.get(s, "sym-price") for s in syms],
        [changes[s][0] for s in syms],
        [changes[s][1] for s in syms],
        [stats.get(i["index"], {}).get(i["stat"], "–") for i in _ids(Markets.stat("", "")["type"])],
        [no_update] * len(syms)
        if same_hidden
        else [{"display": "none"} if s in up.hidden else {} for s in syms],
        sparks("figure"),
        sparks("extend"),
        no_update if up.heatmap is None else up.heatmap,
        no_update if up.heatmap_note is None else up.heatmap_note,
        f"hidden: {', '.join(up.hidden)}" if up.hidden else "all symbols shown",
        {**up.state, "feed_key": detail_key, "hidden": up.hidden},
    )
