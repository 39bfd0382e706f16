"""Issue #16 on the markets page: ``python app.py --replay`` (both bundled markets) shows
one feed row per market (its own URL, status, msgs/s, gaps, reconnects), and the
cards of both markets' instruments, named as ``/api/health`` names them."""

from __future__ import annotations

from playwright.sync_api import expect

from tests.browser.test_basis import tab, two_market_app  # noqa: F401 (fixtures)
from tests.browser.test_markets import pid


def test_markets_page_shows_each_markets_feed_and_instruments(tab, two_market_app,  # noqa: F811
                                                              shot):
    import requests

    h = requests.get(f"{two_market_app}/api/health", timeout=30).json()
    assert set(h["feed"]["markets"]) == {"spot", "perp"}
    tab.goto("/")
    detail = tab.locator("#markets-feed-detail")
    for market in ("spot", "perp"):
        row = detail.locator(pid("feed-market", market))
        expect(row).to_contain_text("connected", timeout=30_000)
        expect(row).to_contain_text(h["feed"]["markets"][market]["url"])
    for name in ("spot:BTCUSDT", "perp:BTCUSDT", "spot:ETHUSDT", "perp:ETHUSDT"):
        tab.wait_for_selector(pid("markets-card", name))
    shot(tab, "markets-two-markets")
