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
