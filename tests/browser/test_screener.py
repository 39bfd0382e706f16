"""The screener page on the running replay: a ranked row, the lead-lag chart and
heatmap, and a row click opening the pair page."""

from __future__ import annotations

from playwright.sync_api import expect


def test_screener_ranks_the_pair_and_opens_it(page, live_app, shot):
    page.goto(f"{live_app}/screener")
    win = page.locator("#screener-window")
    win.fill("10")
    win.press("Tab")
    for _ in range(20):
        if page.locator("#screener-done").count() and page.locator(
                "#screener-grid .ag-row").count():
            break
        page.wait_for_timeout(1_500)
        if not page.locator("#screener-done").count():
            page.locator("#screener-run").click()
    row = page.locator("#screener-grid .ag-row").first
    expect(row).to_contain_text("BTCUSDT")
    expect(row).to_contain_text("ETHUSDT")
    expect(page.locator("#screener-status")).to_contain_text("1 pairs")
    expect(page.locator("#screener-ll-note")).to_contain_text("aligned bars")
    expect(page.locator("#screener-heatmap .main-svg").first).to_be_visible()
    shot(page, "screener")
    row.locator("[col-id='a']").click()
    page.wait_for_url("**/pair?a=BTCUSDT&b=ETHUSDT&tf=1s&w=10&reg=ols&prices=raw")
