"""The markets grid at 300 instruments (issue #19) in headless Chromium against
``app.py --replay --replay-universe 300 --market futures`` (the wide replay: BTCUSDT and
ETHUSDT real, 298 perps derived from them, 10x pace).

Every instrument is a row (the grid's own count: only the rows on screen are in the
page), a click on a header sorts by that column (checked on the grid's rows in display
order), the quick filter and a column filter narrow the rows (checked against the
rows' own values), and two selected rows open their pair on ``/pair`` with both legs.
"""

from __future__ import annotations

import requests

from tests.browser.test_markets import GRID, grid_rows, select_rows, wait_for
from tests.browser.test_pair import pid as pair_pid

WIDE = 300


def _traded(base: str) -> set[str]:
    h = requests.get(f"{base}/api/health", timeout=30).json()
    return {k.split(":", 1)[1] for k, s in h["symbols"].items()
            if ":" in k and s.get("last_trade_id") is not None}


def _header(page, field: str):
    return page.locator(f"#{GRID} .ag-header-cell[col-id='{field}'] .ag-header-cell-label")


def test_grid_of_300_sorts_filters_and_opens_a_pair(wide_page, wide_app, shot):
    page = wide_page
    page.goto("/")
    page.wait_for_selector(f"#{GRID} .ag-row[row-id='BTCUSDT']")
    count = wait_for(
        lambda: (n := page.evaluate(
            f"() => dash_ag_grid.getApi('{GRID}').getDisplayedRowCount()")) >= WIDE and n,
        timeout=30, what=f"{WIDE} rows")
    assert count == WIDE
    rendered = page.locator(f"#{GRID} .ag-center-cols-container .ag-row").count()
    assert 0 < rendered < WIDE  # virtual rows: only what is on screen is in the page
    rows = grid_rows(page)
    assert {r["name"] for r in rows} >= _traded(wide_app)  # every traded instrument
    # the default order: volume, largest first
    vols = [r["volume"] or 0 for r in rows]
    assert vols == sorted(vols, reverse=True)
    wait_for(lambda: page.locator(f"#{GRID} svg.spark-svg").count() >= 5, timeout=30,
             what="sparklines of the visible rows")
    assert "all 300 instruments" in page.inner_text("#markets-grid-note")
    shot(page, "markets-grid")

    # sort: one click ascending, a second descending, on the grid's own values
    _header(page, "trades_per_min").click()
    wait_for(lambda: (v := [r["trades_per_min"] for r in grid_rows(page)]) == sorted(v),
             what="ascending trades/min")
    _header(page, "trades_per_min").click()
    wait_for(lambda: (v := [r["trades_per_min"] for r in grid_rows(page)])
             == sorted(v, reverse=True) and v[0] > v[-1], what="descending trades/min")

    # quick filter: the rows whose name holds the text, no other
    page.fill("#markets-quick-filter", "BTC")
    wait_for(lambda: 0 < len(grid_rows(page)) < WIDE, what="filtered")
    shown = {r["name"] for r in grid_rows(page)}
    everything = {r["name"] for r in rows}
    assert shown == {n for n in everything if "BTC" in n}, shown
    page.fill("#markets-quick-filter", "")
    wait_for(lambda: len(grid_rows(page)) == WIDE, what="unfiltered")

    # the pre-filter "hide under N trades/min": every row left holds at least N
    # trades/min (N = the median, so both sides are non-empty)
    tpm = sorted(r["trades_per_min"] for r in grid_rows(page))
    cut = tpm[len(tpm) // 2]
    page.fill("#markets-min-trades", str(cut))
    page.press("#markets-min-trades", "Enter")
    wait_for(lambda: 0 < len(grid_rows(page)) < WIDE, what="pre-filtered")
    assert all(r["trades_per_min"] >= cut for r in grid_rows(page))
    page.fill("#markets-min-trades", "")
    page.press("#markets-min-trades", "Enter")
    wait_for(lambda: len(grid_rows(page)) == WIDE, what="pre-filter cleared")

    # two rows -> Open pair -> the pair page with both legs
    legs = sorted(r["name"] for r in grid_rows(page)[:2])  # A, B: by name
    select_rows(page, legs)
    wait_for(lambda: not page.is_disabled("#markets-open-pair"), what="Open pair enabled")
    assert page.inner_text("#markets-pair-note") == f"{legs[0]} / {legs[1]}"
    page.click("#markets-open-pair")
    page.wait_for_url("**/pair?**")
    page.wait_for_selector(pair_pid("pair-live-z"))
    assert page.input_value(pair_pid("pair-a")) == legs[0]
    assert page.input_value(pair_pid("pair-b")) == legs[1]
