"""Markets page widgets: one card per symbol, the feed status strip.

Every number is its own element with a pattern id, so the 500 ms refresh sends short
strings (a few kB for five symbols), never component trees.

Top of book (#17): each card's third line is the latest quote (``MarketData.quote``):
best bid, best ask, the quoted spread ``1e4 (ask - bid) / mid`` in bps
(:func:`analytics.book.quote_spread_bps`) and the imbalance
``bid_qty / (bid_qty + ask_qty)`` (1: all size on the bid), "–" before the first
quote (or with ``--no-book``).
"""

from __future__ import annotations

import dash_bootstrap_components as dbc
from dash import dcc, html

from dashapp import updates
from dashapp.ids import Markets

#: stat name -> label (the change % has its own element: it is coloured)
STATS = {"span": "over", "vol": "vol", "vwap": "VWAP", "tps": "trades/s", "tpm": "/min",
         "bid": "bid", "ask": "ask", "sprd": "spread", "imb": "imb"}
#: the top-of-book stats (:func:`quote_values`)
QUOTE_STATS = ("bid", "ask", "sprd", "imb")
FEED_BADGES = ("status", "rate", "lag", "reconnects", "gaps")


def _stat(sym: str, name: str) -> html.Span:
    return html.Span(
        [html.Span(STATS[name], className="k"), html.Span("–", id=Markets.stat(sym, name))],
        className="me-2 text-nowrap",
    )


def symbol_card(sym: str) -> dbc.Col:
    return dbc.Col(
        dbc.Card(
            dbc.CardBody(
                [
                    html.Div(
                        [
                            html.Span(sym, className="sym-name"),
                            html.Span("–", id=Markets.price(sym), className="sym-price"),
                        ],
                        className="d-flex justify-content-between align-items-center",
                    ),
                    html.Div(
                        [
                            html.Div(
                                [
                                    html.Span(
                                        [
                                            html.Span("chg", className="k"),
                                            html.Span("–", id=Markets.change(sym)),
                                        ],
                                        className="me-2 text-nowrap",
                                    ),
                                    _stat(sym, "span"),
                                    _stat(sym, "vol"),
                                ]
                            ),
                            html.Div([_stat(sym, "vwap"), _stat(sym, "tps"), _stat(sym, "tpm")]),
                            html.Div([_stat(sym, s) for s in QUOTE_STATS],
                                     className="sym-book"),
                        ],
                        className="sym-stat mt-1",
                    ),
                    dcc.Graph(
                        id=Markets.spark(sym),
                        config={"displayModeBar": False},
                        style={"height": 48},
                        className="mt-1",
                    ),
                ],
                className="p-2",
            ),
            className="sym-card h-100",
        ),
        id=Markets.card(sym),
        xs=12,
        sm=6,
        lg=4,
        xl=True,
        className="sym-col",
    )


def stat_values(st: updates.SymbolStats) -> dict[str, str]:
    return {
        "span": updates.format_span(st.span_ms),
        "vol": updates.format_money(st.volume) + " USDT",
        "vwap": updates.format_price(st.vwap),
        "tps": f"{st.trades_per_s:,.1f}",
        "tpm": f"{st.trades_per_min:,.0f}",
    }


def quote_spread_bps(quote) -> float | None:
    """Quoted spread of a quote (bps of its mid), None without one."""
    if quote is None:
        return None
    from analytics.book import quote_spread_bps as spread_bps

    return float(spread_bps(quote.bid, quote.ask))


def quote_values(quote) -> dict[str, str]:
    """The card's top-of-book texts (module notes); "–" each without a quote."""
    if quote is None:
        return dict.fromkeys(QUOTE_STATS, "–")
    size = quote.bid_qty + quote.ask_qty
    return {
        "bid": updates.format_price(quote.bid),
        "ask": updates.format_price(quote.ask),
        "sprd": f"{quote_spread_bps(quote):,.2f} bps",
        "imb": "–" if size <= 0 else f"{quote.bid_qty / size:.2f}",
    }


def change_text(st: updates.SymbolStats | None) -> tuple[str, str]:
    if st is None or st.change_pct is None:
        return "–", ""
    return f"{st.change_pct:+.2f}%", "chg-up" if st.change_pct >= 0 else "chg-down"


def feed_strip_layout() -> html.Div:
    return html.Div(
        [dbc.Badge("–", id=Markets.feed(b), color="secondary") for b in FEED_BADGES],
        id=Markets.FEED_CARD,
        className="feed-strip",
    )


def feed_values(feed: dict) -> tuple[dict[str, str], dict[str, str]]:
    """Badge texts and colours: connection, msgs/s, lag, reconnects, gaps."""
    ok = bool(feed.get("connected"))
    lag = feed.get("lag_ms")
    text = {
        "status": "CONNECTED"
        if ok
        else "DISCONNECTED · retrying · " + str(feed.get("error") or "")[:60],
        "rate": f"{feed.get('msgs_per_s', 0):,.0f} msg/s",
        "lag": f"lag {'–' if lag is None else f'{lag:,} ms'}"
        if feed.get("replay_speed") in (None, 1)
        else f"replay ×{feed['replay_speed']:g}",
        "reconnects": f"reconnects {feed.get('reconnects', 0):,}",
        "gaps": f"gaps {feed.get('gaps', 0):,}",
    }
    color = {
        "status": "success" if ok else "danger",
        "rate": "secondary",
        "lag": "warning" if lag is not None and abs(lag) > 2000 else "secondary",
        "reconnects": "warning" if feed.get("reconnects") else "secondary",
        "gaps": "warning" if feed.get("gaps") else "secondary",
    }
    return text, color
