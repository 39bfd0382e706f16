"""Markets `/`: feed status and, per symbol, the last price, trade count and rate.

Refreshed by one 500 ms interval; the payload is a few hundred bytes (a small table),
so it is rebuilt whole rather than patched.
"""

from __future__ import annotations

import dash
import dash_bootstrap_components as dbc
from dash import Input, Output, callback, dcc, html

from dashapp import ids
from dashapp.services import get_services
from dashapp.status import feed_card

dash.register_page(__name__, path="/", name="Markets", order=0)


def layout(**_query) -> html.Div:
    return html.Div(
        [
            dcc.Interval(id=ids.Markets.TICK_INTERVAL, interval=500),
            dbc.Row(
                [
                    dbc.Col(html.Div(id=ids.Markets.SYMBOL_TABLE), lg=8),
                    dbc.Col(html.Div(id=ids.Markets.FEED_CARD), lg=4),
                ],
                className="g-3",
            ),
        ]
    )


def format_price(price: float) -> str:
    """Two decimals for prices >= 1 (USDT quotes), significant digits below."""
    return f"{price:,.2f}" if price >= 1 else f"{price:.6g}"


def symbol_table(symbols: dict) -> dbc.Table:
    header = html.Thead(
        html.Tr([html.Th(h) for h in ("Symbol", "Last", "Last trade id", "Trades", "Trades/s")])
    )
    rows = []
    for sym, s in sorted(symbols.items()):
        last = "–" if s["last_price"] is None else format_price(s["last_price"])
        rows.append(
            html.Tr(
                [
                    html.Td(sym, className="fw-bold"),
                    html.Td(last, className="font-monospace", id=f"markets-last-{sym}"),
                    html.Td(s["last_trade_id"] if s["last_trade_id"] is not None else "–"),
                    html.Td(f"{s['ticks']:,}"),
                    html.Td(f"{s['msgs_per_s']:,.1f}"),
                ]
            )
        )
    return dbc.Table([header, html.Tbody(rows)], hover=True, size="sm", className="align-middle")


@callback(
    Output(ids.Markets.SYMBOL_TABLE, "children"),
    Output(ids.Markets.FEED_CARD, "children"),
    Input(ids.Markets.TICK_INTERVAL, "n_intervals"),
)
def refresh_markets(_n):
    """Tick-level widgets of the markets page, every 500 ms."""
    health = get_services().health()
    return symbol_table(health["symbols"]), feed_card(health["feed"])
