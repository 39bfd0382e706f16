"""Feed badges: a replay faster than recorded pace shows no lag figure, but says so."""

from __future__ import annotations

from dashapp.components.symbol_card import feed_values
from dashapp.status import feed_badge

FEED = {"connected": True, "msgs_per_s": 1234.0, "reconnects": 0, "gaps": 0}


def test_live_feed_shows_its_lag():
    badge = feed_badge({**FEED, "lag_ms": 42})
    assert badge.children == "LIVE · 1,234 msg/s · lag 42 ms"
    text, _ = feed_values({**FEED, "lag_ms": 42})
    assert text["lag"] == "lag 42 ms"


def test_fast_replay_says_replay_instead_of_a_meaningless_lag():
    feed = {**FEED, "lag_ms": None, "replay_speed": 10.0}
    assert feed_badge(feed).children == "REPLAY ×10 · 1,234 msg/s"
    text, color = feed_values(feed)
    assert text["lag"] == "replay ×10" and color["lag"] == "secondary"


def test_replay_at_recorded_pace_keeps_the_lag():
    feed = {**FEED, "lag_ms": 7, "replay_speed": 1.0}
    assert feed_badge(feed).children == "REPLAY ×1 · 1,234 msg/s · lag 7 ms"
    assert feed_values(feed)[0]["lag"] == "lag 7 ms"


def _text(component) -> str:
    """All the text under a Dash component."""
    kids = getattr(component, "children", component)
    if kids is None:
        return ""
    if isinstance(kids, (str, int, float)):
        return str(kids)
    if not isinstance(kids, list):
        kids = [kids]
    return " ".join(_text(k) for k in kids)


def test_feed_card_shows_each_markets_feed_row_and_one_market_none():
    from dashapp.status import feed_card, market_table

    spot = {**FEED, "url": "ws://h/stream?streams=btcusdt@trade", "msgs_per_s": 12.5,
            "gaps": 3, "reconnects": 1}
    perp = {**FEED, "url": "ws://h/market/stream?streams=btcusdt@trade", "connected": False,
            "msgs_per_s": 40.0, "gaps": 0, "reconnects": 7}
    table = market_table({"spot": spot, "perp": perp})
    rows = {r.id["index"]: [_text(td) for td in r.children] for r in table.children[1:]}
    assert rows == {
        "spot": ["spot", "connected", "12.5", "3", "1", spot["url"]],
        "perp": ["perp", "disconnected", "40.0", "0", "7", perp["url"]],
    }
    card = feed_card({**FEED, "url": "u", "markets": {"spot": spot, "perp": perp}})
    assert "feed-market" in str(card) and spot["url"] in _text(card)
    assert "feed-market" not in str(feed_card({**FEED, "url": "u"}))  # one market: as before


def _conn(i: int, **kw) -> dict:
    return {"id": i, "market": "perp", "streams": 1024, "subscribed": 1024,
            "connected": True, "msgs_per_s": 10.0, "reconnects": 0, "gaps": 0,
            "error": None, **kw}


def test_feed_card_lists_connections_troubled_first_and_stays_compact():
    """A market over many connections: one row per connection, the one that is down
    first (red), at most CONNECTION_ROWS_SHOWN rows, then how many more."""
    from dashapp.status import CONNECTION_ROWS_SHOWN, connection_table, feed_card

    conns = [_conn(i) for i in range(20)]
    conns[7] = _conn(7, connected=False, subscribed=0, reconnects=3,
                     error="silent for 31s (watchdog)")
    table = connection_table(conns)
    rows = table.children[1:]
    assert len(rows) == CONNECTION_ROWS_SHOWN + 1
    first = [_text(td) for td in rows[0].children]
    assert first == ["perp#7", "trade", "0/1,024", "disconnected", "10.0", "3", "0",
                     "silent for 31s (watchdog)"]
    assert rows[0].className == "text-danger" and rows[1].className == ""
    assert _text(rows[-1]) == f"… {20 - CONNECTION_ROWS_SHOWN} more (8 connected, all streams)"
    # the card shows the table only when a market has several connections
    one = {**FEED, "connections": conns[:1]}
    assert "perp#0" not in _text(feed_card(one).children[1])
    assert "perp#7" in _text(feed_card({**FEED, "connections": conns}).children[1])
