"""Issue #17 in the browser: ``python app.py --replay`` on the committed raw futures
captures (trades AND ``@bookTicker``): the markets grid's quoted spread column, its
spread filter (persisted in the URL), the pair page on mids and the backtest paying the
spread, all opened from their URLs."""

from __future__ import annotations

import re

import pytest
import requests
from playwright.sync_api import expect

from tests.browser.conftest import IGNORED_CONSOLE, _health, running_app

RAW = [f"sample_data/hftbacktest-rawcapture-trade-book_um_{s}_20240808_2354-2356.gz"
       for s in ("BTCUSDT", "ETHUSDT")]


@pytest.fixture(scope="module")
def book_app(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("book-app")

    def quoted(base: str) -> bool:
        h = _health(base)
        if h is None or h["feed"].get("book_updates", 0) < 2_000:
            return False
        r = requests.get(f"{base}/api/pair", timeout=10, params={
            "a": "BTCUSDT", "b": "ETHUSDT", "window": "20", "source": "mid", "limit": "1"})
        return r.status_code == 200 and r.json() and r.json()[-1]["zscore"] is not None

    with running_app(["--replay", *RAW, "--replay-speed", "4", "--db", str(tmp / "k.db")],
                     tmp, ready=quoted, timeout=120, what="book replay ready") as base:
        yield base


@pytest.fixture
def tab(browser, book_app):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=book_app)
    pg = context.new_page()
    errors: list[str] = []
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error" and not any(
        s in m.text for s in IGNORED_CONSOLE) else None)
    pg.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))
    pg.set_default_timeout(30_000)
    yield pg
    context.close()
    assert not errors, "browser errors:\n" + "\n".join(errors)


def test_grid_shows_the_quoted_spread_and_the_spread_filter_is_a_link(tab):
    from tests.browser.test_markets import GRID, grid_rows, wait_for

    tab.goto("/")
    cell = tab.locator(f"#{GRID} .ag-row[row-id='BTCUSDT'] [col-id='spread_bps']")
    expect(cell).to_have_text(re.compile(r"^\d+\.\d\d$"))
    spreads = wait_for(lambda: (r := {x["name"]: x["spread_bps"] for x in grid_rows(tab)})
                       and all(v is not None for v in r.values()) and r, what="spreads")
    assert set(spreads) == {"BTCUSDT", "ETHUSDT"} and all(v > 0 for v in spreads.values())
    # BTCUSDT quotes ~0.016 bps, ETHUSDT ~0.037 bps: 0.025 hides ETHUSDT only
    tab.fill("#markets-max-spread", "0.025")
    tab.press("#markets-max-spread", "Tab")
    tab.wait_for_function("() => location.search.includes('max_spread_bps=0.025')")
    wait_for(lambda: [r["name"] for r in grid_rows(tab)] == ["BTCUSDT"],
             what="ETH hidden by the filter")
    expect(tab.locator("#markets-grid-note")).to_contain_text("1 of 2 instruments")
    # the link opens with the filter on
    tab.goto("/?max_spread_bps=0.025")
    expect(tab.locator("#markets-max-spread")).to_have_value("0.025")
    tab.wait_for_selector(f"#{GRID} .ag-row[row-id='BTCUSDT']")
    wait_for(lambda: [r["name"] for r in grid_rows(tab)] == ["BTCUSDT"],
             what="ETH hidden by the link's filter")


def test_pair_page_on_mids_from_its_url(tab):
    tab.goto("/pair?a=BTCUSDT&b=ETHUSDT&tf=1s&w=20&source=mid")
    sel = tab.locator('[id=\'{"index":0,"type":"pair-price-source"}\']')
    expect(sel).to_have_value("mid")
    live = tab.locator('[id=\'{"index":0,"type":"pair-live-z"}\']')
    expect(live).to_have_text(re.compile(r"^[+-]\d+\.\d\d$"), timeout=60_000)
    tab.wait_for_function("() => location.search.includes('source=mid')")
    expect(tab.locator("body")).not_to_contain_text("URL parameter source")


def test_backtest_paying_the_spread_from_its_url(tab, book_app):
    tab.goto("/backtest?a=BTCUSDT&b=ETHUSDT&w=20&entry=1&exit=0&fee_bps=0&source=mid"
             "&fills=quote")
    expect(tab.locator("#backtest-fills input[value='quote']")).to_be_checked()
    expect(tab.locator("#backtest-price-source input[value='mid']")).to_be_checked()
    for _ in range(10):
        tab.locator("#backtest-run").click()
        expect(tab.locator("#backtest-run")).to_be_enabled(timeout=60_000)
        if tab.locator("#backtest-kpi-row").count():
            break
        tab.wait_for_timeout(1_500)
    expect(tab.locator("#backtest-range")).to_contain_text("mid prices, fills at the quote")
    expect(tab.locator("#backtest-breakdown")).to_contain_text("buys at the ask")
    net = tab.locator("#backtest-net").inner_text()
    assert re.fullmatch(r"[+-][0-9,]+\.\d\d", net), net
    rows = tab.locator("#backtest-trades .ag-row")
    if rows.count():
        expect(tab.locator("#backtest-trades")).to_contain_text("×")


def test_screener_on_mids_from_its_url(tab):
    tab.goto("/screener?w=20&source=mid")
    expect(tab.locator("#screener-price-source input[value='mid']")).to_be_checked()
    expect(tab.locator("#screener-done")).to_contain_text("mid prices", timeout=60_000)
    expect(tab.locator("#screener-grid")).to_contain_text("BTCUSDT")
