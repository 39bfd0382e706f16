"""The market screen page on the wide replay (300 perps derived from the real tapes): the
background screen of the top 50 fills the grid, the grid equals the API on the run's
permalink (the same URL, the same rows), sorting and filtering work, and a row click
opens the pair."""

from __future__ import annotations

import time
from urllib.parse import parse_qsl, urlsplit

import requests
from playwright.sync_api import expect

QUERY = "n=50&tf=1s&lookback=240&min_corr=0.3&max_pairs=400&z_window=30"


def _wait_for_rows(page, timeout_s: float = 120.0) -> None:
    """The screen is a background job; right after a replay loop seam the window may be
    collecting (no grid spans a session break): run it again until rows come."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if page.locator("#market-screen-done").count() and page.locator(
                "#mscreen-grid .ag-row").count():
            return
        page.wait_for_timeout(2_000)
        run = page.locator("#mscreen-run")
        if not page.locator("#market-screen-done").count() and run.is_enabled():
            run.click()
    raise AssertionError("no market-screen rows after %.0f s; status: %s"
                         % (timeout_s, page.locator("#mscreen-status").inner_text()))


def test_market_screen_ranks_sorts_filters_and_opens_a_pair(wide_page, wide_app, shot):
    page = wide_page
    page.goto(f"{wide_app}/market-screen?{QUERY}")
    expect(page.locator("#mscreen-n")).to_have_value("50")
    expect(page.locator("#mscreen-tf")).to_have_value("1s")
    _wait_for_rows(page)
    status = page.locator("#mscreen-status")
    expect(status).to_contain_text("by quote volume")

    # the permalink pins the window: the API gives the very rows the grid shows
    link = page.locator("#mscreen-permalink").get_attribute("href")
    query = dict(parse_qsl(urlsplit(link).query))
    query["timeframe"] = query.pop("tf")
    api = requests.get(f"{wide_app}/api/market-screen", params=query, timeout=60).json()
    assert api["candidates"] > 0, api
    # the top 50, less the legs that started late or never moved (listed with why)
    assert len(api["instruments"]) + len(api["excluded"]) == 50
    expect(status).to_contain_text(f"top {len(api['instruments'])} by quote volume")
    expect(status).to_contain_text(f"{api['pairs_total']:,} pairs")
    first = api["rows"][0]
    row = page.locator("#mscreen-grid .ag-row[row-index='0']")
    expect(row.locator("[col-id='a']")).to_have_text(first["a"])
    expect(row.locator("[col-id='b']")).to_have_text(first["b"])
    expect(status).to_contain_text(f"{api['candidates']:,} tested")
    shot(page, "market-screen")

    # the permalink itself: the same rows again, said to be pinned
    page.goto(f"{wide_app}{link}")
    _wait_for_rows(page)
    expect(status).to_contain_text("pinned window")
    expect(row.locator("[col-id='a']")).to_have_text(first["a"])
    mantissa, exp = f"{first['coint_pvalue']:.2e}".split("e")  # d3 '.2e': 3.62e-9, 1.00e+0
    expect(row.locator("[col-id='coint_pvalue']")).to_have_text(
        f"{mantissa}e{int(exp):+d}")

    # sort by |z|, descending (two clicks on the header)
    header = page.locator("#mscreen-grid [role='columnheader'][col-id='abs_z']")
    header.click()
    header.click()
    top_z = max((r["abs_z"] for r in api["rows"] if r["abs_z"] is not None), default=None)
    if top_z is not None:
        expect(page.locator("#mscreen-grid .ag-row[row-index='0'] [col-id='abs_z']")
               ).to_have_text(f"{top_z:.2f}")

    # filter column A by the best pair's A leg: every row left has it
    want = first["a"]
    page.locator("#mscreen-grid .ag-floating-filter[col-id='a'] input").fill(want)
    page.wait_for_timeout(800)
    cells = page.locator("#mscreen-grid .ag-row [col-id='a']")
    n = cells.count()
    assert n >= 1
    assert all(want in cells.nth(i).inner_text() for i in range(n))

    # a click opens the pair on the pair page (the z window as its window)
    pick = page.locator("#mscreen-grid .ag-row[row-index='0']")
    a = pick.locator("[col-id='a']").inner_text()
    b = pick.locator("[col-id='b']").inner_text()
    pick.locator("[col-id='corr']").click()
    page.wait_for_url("**/pair?*")
    got = dict(parse_qsl(urlsplit(page.url).query))
    assert (got["a"], got["b"], got["tf"], got["w"], got["prices"]) == (a, b, "1s", "30",
                                                                        "log")


def test_a_wide_screen_shows_its_progress_then_its_rows(wide_page, wide_app):
    """Every pair of the top 300 (capped at 20,000 candidates, both orders: 40,000
    Engle-Granger tests) runs long enough to watch: the progress bar shows while the
    background job runs, the Run button is disabled, then the rows come."""
    page = wide_page
    page.goto(f"{wide_app}/market-screen?n=300&tf=1s&lookback=240&min_corr=0"
              "&max_pairs=20000&z_window=30&both=1")
    expect(page.locator("#mscreen-progress-wrap")).to_be_visible(timeout=30_000)
    expect(page.locator("#mscreen-run")).to_be_disabled()
    _wait_for_rows(page, timeout_s=180)
    expect(page.locator("#mscreen-progress-wrap")).to_be_hidden()
    expect(page.locator("#mscreen-status")).to_contain_text("both orders")
    expect(page.locator("#mscreen-status")).to_contain_text("tested")
