"""Markets page feed strip: the connection badges (status, msgs/s, lag or replay pace,
reconnects, gaps). The per-symbol cards this module once drew are the markets grid now
(``dashapp/pages/markets/page.py``, one row per instrument).
"""

from __future__ import annotations

import dash_bootstrap_components as dbc
from dash import html

from dashapp.ids import Markets

FEED_BADGES = ("status", "rate", "lag", "reconnects", "gaps")


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
