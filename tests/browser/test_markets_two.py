"""Issue #16 on the markets page: ``python app.py --replay`` (both bundled markets) shows
one feed row per market (its own URL, status, msgs/s, gaps, reconnects), and a grid
row for each market's instruments, named as ``/api/health`` names them."""

from __future__ import annotations

from playwright.sync_api import expect

from tests.browser.test_basis import tab, two_market_app  # noqa: F401 (fixtures)
from tests.browser.test_markets import GRID, grid_rows, pid


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
    names = ("spot:BTCUSDT", "perp:BTCUSDT", "spot:ETHUSDT", "perp:ETHUSDT")
    for name in names:  # one grid row per instrument, labelled with its market
        tab.wait_for_selector(f"#{GRID} .ag-row[row-id='{name}']")
    labels = {r["name"]: r["label"] for r in grid_rows(tab)}
    assert labels == {n: f"{n.split(':')[1]} · {n.split(':')[0]}" for n in names}
    cell = tab.inner_text(f"#{GRID} .ag-row[row-id='perp:BTCUSDT'] [col-id='label']")
    assert cell.strip() == "BTCUSDT · perp"
    shot(tab, "markets-two-markets")
