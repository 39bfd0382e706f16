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
