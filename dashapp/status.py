"""Pure builders for feed-status widgets (badge, card) from the health JSON."""

from __future__ import annotations

import time

import dash_bootstrap_components as dbc
from dash import html

_WRAP = {"overflowWrap": "anywhere", "wordBreak": "break-word"}
_KEY_STYLE = {"width": "40%"}


def _fmt_int(n: int | None) -> str:
    return "–" if n is None else f"{n:,}"


def _store_line(store: dict | None) -> str:
    """"writing", or why not: the page must say when ticks are only in memory."""
    if not store:
        return "–"
    if store.get("writable", True):
        return f"writing · {_fmt_int(store.get('pending'))} pending"
    return (
        f"NOT WRITING (kept in memory, retrying) · {_fmt_int(store.get('pending'))} "
        f"pending · {store.get('last_error') or 'unknown error'}"
    )


def _backfill_line(feed: dict) -> str:
    bf = feed.get("backfill")
    if not bf:
        return "off"
    text = f"{_fmt_int(feed.get('gaps_filled'))} ids recovered"
    if bf.get("error"):
        text += f" · retrying: {bf['error']}"
    return text


def feed_badge(feed: dict) -> dbc.Badge:
    store = feed.get("store") or {}
    if feed.get("connected") and not store.get("writable", True):
        text = f"LIVE · STORE NOT WRITING · {store.get('last_error') or ''}"
        return dbc.Badge(text[:120], color="warning", className="p-2")
    if feed.get("connected"):
        text = f"LIVE · {feed['msgs_per_s']:,.0f} msg/s"
        if feed.get("replay_speed") is not None:
            text = f"REPLAY ×{feed['replay_speed']:g} · {feed['msgs_per_s']:,.0f} msg/s"
        if feed.get("lag_ms") is not None:
            text += f" · lag {feed['lag_ms']:,} ms"
        return dbc.Badge(text, color="success", className="p-2")
    err = feed.get("error") or "connecting"
    return dbc.Badge(f"DISCONNECTED · retrying · {err}"[:120], color="danger", className="p-2",
                     style={"whiteSpace": "normal", "maxWidth": "100%", **_WRAP})


def feed_card(feed: dict) -> dbc.Card:
    age = None
    if feed.get("last_message_ms"):
        age = max(0, int(time.time() * 1000) - feed["last_message_ms"])
    rows = [
        ("Status", "connected" if feed.get("connected") else "disconnected, retrying"),
        ("URL", feed.get("url") or "–"),
        ("Messages", _fmt_int(feed.get("messages"))),
        ("Msgs/s", f"{feed.get('msgs_per_s', 0):,.1f}"),
        ("Bad frames", _fmt_int(feed.get("bad_frames"))),
        ("Reconnects", _fmt_int(feed.get("reconnects"))),
        ("Missing ids (gaps)", _fmt_int(feed.get("gaps"))),
        ("Back-fill", _backfill_line(feed)),
        # exactness: trades older than a published bar (stored bars rebuilt), frames
        # refused (trade time far off the feed's clocks / id jump REST disagrees with)
        ("Late trades", _fmt_int(feed.get("late_trades"))),
        ("Rejected · quarantined",
         f"{_fmt_int(feed.get('rejected_times'))} · {_fmt_int(feed.get('quarantined'))}"),
        ("Store", _store_line(feed.get("store"))),
        ("Last message", "–" if age is None else f"{age:,} ms ago"),
        ("Lag (now − T)", "–" if feed.get("lag_ms") is None else f"{feed['lag_ms']:,} ms"),
        ("Error", feed.get("error") or "none"),
    ]
    # Long values (the combined-stream URL, a resolver error with no internet) wrap
    # anywhere instead of widening the card past the page.
    # (overflow-wrap is inherited: set once on the table; with a fixed layout the first
    # row's header width sets the column, so the card's bytes barely grow.)
    body = html.Table(
        [
            html.Tr([
                html.Th(k, className="pe-3 text-muted fw-normal",
                        **({"style": _KEY_STYLE} if i == 0 else {})),
                html.Td(v),
            ])
            for i, (k, v) in enumerate(rows)
        ],
        className="small",
        style={"width": "100%", "tableLayout": "fixed", **_WRAP},
    )
    color = "success" if feed.get("connected") else "danger"
    if feed.get("connected") and not (feed.get("store") or {}).get("writable", True):
        color = "warning"
    parts = [body]
    if len(feed.get("markets") or {}) > 1:  # several markets: each feed's own row
        parts.append(market_table(feed["markets"]))
    if len(feed.get("connections") or ()) > 1:  # a market over several connections
        parts.append(connection_table(feed["connections"]))
    return dbc.Card(
        [dbc.CardHeader("Feed"), dbc.CardBody(parts)], color=color, outline=True,
        style={"minWidth": 0, "maxWidth": "100%"},
    )


#: Columns of the per-market feed table: header, how a market's feed health shows.
MARKET_COLUMNS = (
    ("Market", None),
    ("Status", lambda f: "connected" if f.get("connected") else "disconnected"),
    ("Msgs/s", lambda f: f"{f.get('msgs_per_s', 0):,.1f}"),
    ("Gaps", lambda f: _fmt_int(f.get("gaps"))),
    ("Reconnects", lambda f: _fmt_int(f.get("reconnects"))),
    ("URL", lambda f: f.get("url") or "–"),
)


def market_table(markets: dict[str, dict]) -> html.Table:
    """One row per market's feed (``feed.markets`` of ``/api/health``): each market
    has its own connection, so one can be down while the other is live."""
    head = html.Tr([html.Th(h, className="pe-2 text-muted fw-normal") for h, _ in
                    MARKET_COLUMNS])
    rows = [
        html.Tr(
            [html.Td(market, className="fw-semibold")]
            + [html.Td(fmt(f)) for _, fmt in MARKET_COLUMNS[1:]],
            id={"type": "feed-market", "index": market},
            className="" if f.get("connected") else "text-danger",
        )
        for market, f in markets.items()
    ]
    return html.Table([head, *rows], className="small mt-2",
                      style={"width": "100%", **_WRAP})


#: Columns of the per-connection table: header, how a connection's health shows.
CONNECTION_COLUMNS = (
    ("#", lambda c: f"{c.get('market', '')}#{c.get('id')}"),
    ("Kind", lambda c: c.get("kind") or "trade"),  # perp's book-only /public ones: "book"
    ("Streams", lambda c: f"{_fmt_int(c.get('subscribed'))}/{_fmt_int(c.get('streams'))}"),
    ("Status", lambda c: "connected" if c.get("connected") else "disconnected"),
    ("Msgs/s", lambda c: f"{c.get('msgs_per_s', 0):,.1f}"),
    ("Reconnects", lambda c: _fmt_int(c.get("reconnects"))),
    ("Gaps", lambda c: _fmt_int(c.get("gaps"))),
    ("Error", lambda c: c.get("error") or ""),
)
#: Rows shown at most: connections in trouble first (300 instruments take 1-2
#: connections per market at Binance's 1,024 streams; a small
#: --streams-per-connection may make dozens).
CONNECTION_ROWS_SHOWN = 12


def _in_trouble(c: dict) -> bool:
    return not c.get("connected") or bool(c.get("error")) \
        or (c.get("subscribed") or 0) < (c.get("streams") or 0)


def connection_table(connections: list[dict]) -> html.Table:
    """One row per websocket connection (``feed.connections`` of ``/api/health``,
    ingest/feeds/pool.py): each reconnects and back-fills on its own, so one can be
    down while the others are live. Troubled ones first; at most
    ``CONNECTION_ROWS_SHOWN`` rows, then how many more (all connected)."""
    ordered = sorted(connections, key=lambda c: (not _in_trouble(c), c.get("market", ""),
                                                 c.get("id") or 0))
    shown = ordered[:CONNECTION_ROWS_SHOWN]
    head = html.Tr([html.Th(h, className="pe-2 text-muted fw-normal")
                    for h, _ in CONNECTION_COLUMNS])
    rows = [
        html.Tr([html.Td(fmt(c)) for _, fmt in CONNECTION_COLUMNS],
                id={"type": "feed-connection", "index": f"{c.get('market', '')}#{c.get('id')}"},
                className="text-danger" if _in_trouble(c) else "")
        for c in shown
    ]
    more = len(ordered) - len(shown)
    if more:
        healthy = sum(not _in_trouble(c) for c in ordered[len(shown):])
        rows.append(html.Tr(html.Td(f"… {more} more ({healthy} connected, all streams)",
                                    colSpan=len(CONNECTION_COLUMNS),
                                    className="text-muted")))
    return html.Table([head, *rows], className="small mt-2",
                      style={"width": "100%", **_WRAP})
