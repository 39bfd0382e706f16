"""Issue #16 in the browser: ``python app.py --replay`` (the bundled spot AND perp tapes,
two markets) opened on the basis view and on a cross-market pair, both from the URL."""

from __future__ import annotations

import pytest
import requests
from playwright.sync_api import expect

from tests.browser.conftest import IGNORED_CONSOLE, REPLAY_SPEED, _health, running_app

BASIS_URL = "/basis?perp=perp:BTCUSDT&spot=spot:BTCUSDT&timeframe=1s&window=20&max_lag=5"


@pytest.fixture(scope="module")
def two_market_app(tmp_path_factory):
    """``python app.py --replay`` with no files: both markets (contract C2)."""
    tmp = tmp_path_factory.mktemp("basis-app")

    def both_markets_trading(base: str) -> bool:
        h = _health(base)
        return h is not None and all(
            h["symbols"].get(n, {}).get("ticks", 0) > 200
            for n in ("perp:BTCUSDT", "spot:BTCUSDT"))

    with running_app(["--replay", "--replay-speed", REPLAY_SPEED, "--db", str(tmp / "b.db")],
                     tmp, ready=both_markets_trading, timeout=90,
                     what="two-market app ready") as base:
        yield base


@pytest.fixture
def tab(browser, two_market_app):
    """A fresh page; console errors and page errors fail the test."""
    context = browser.new_context(viewport={"width": 1280, "height": 900},
                                  base_url=two_market_app)
    pg = context.new_page()
    errors: list[str] = []
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error" and not any(
        s in m.text for s in IGNORED_CONSOLE) else None)
    pg.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))
    pg.set_default_timeout(30_000)
    yield pg
    context.close()
    assert not errors, "browser errors:\n" + "\n".join(errors)


def test_basis_view_from_the_url(tab, two_market_app, shot):
    tab.goto(BASIS_URL)
    expect(tab.locator("#basis-perp")).to_have_value("perp:BTCUSDT")
    expect(tab.locator("#basis-spot")).to_have_value("spot:BTCUSDT")
    expect(tab.locator("#basis-perp option:checked")).to_have_text("BTCUSDT · perp")
    expect(tab.locator("#basis-spot option:checked")).to_have_text("BTCUSDT · spot")
    expect(tab.locator("#basis-done")).to_contain_text("BTCUSDT · perp against BTCUSDT · spot")
    expect(tab.locator("#basis-bps-graph .main-svg").first).to_be_visible()
    expect(tab.locator("#basis-z-graph .main-svg").first).to_be_visible()
    expect(tab.locator("#basis-ll-note")).to_contain_text("lag", timeout=60_000)
    # the KPI shows the API's latest basis (bps) for the same query (same numbers)
    api = requests.get(f"{two_market_app}/api/basis", timeout=30, params={
        "perp": "perp:BTCUSDT", "spot": "spot:BTCUSDT", "timeframe": "1s", "window": "20",
        "max_lag": "5"}).json()
    assert api["rows"], api
    kpi = tab.locator("#basis-kpi-bps").inner_text()
    assert kpi == "–" or -500 < float(kpi) < 500
    shown = {f"{r['basis_bps']:+.3f}" for r in api["rows"][-30:] if r["basis_bps"] is not None}
    assert kpi in shown, (kpi, sorted(shown)[:5])
    # the link opens the same instruments as a pair
    link = tab.locator("#basis-pair-link")
    expect(link).to_have_attribute("href", "/pair?a=perp%3ABTCUSDT&b=spot%3ABTCUSDT&tf=1s&w=20")
    # "Alert on the basis" opens the rule modal on basis_bps of these legs; saved, the
    # rule is the API's
    tab.get_by_role("button", name="Alert on the basis").click()
    tab.locator(".modal.show").wait_for()
    expect(tab.locator("#alerts-modal-metric")).to_have_value("basis_bps")
    expect(tab.locator("#alerts-modal-a")).to_have_value("perp:BTCUSDT")
    expect(tab.locator("#alerts-modal-b")).to_have_value("spot:BTCUSDT")
    expect(tab.locator("#alerts-modal-a option:checked")).to_have_text("BTCUSDT · perp")
    tab.get_by_role("button", name="Save").click()
    tab.locator(".modal.show").wait_for(state="hidden")
    rules = requests.get(f"{two_market_app}/api/alerts", timeout=10).json()
    assert [(r["metric"], r["a"], r["b"]) for r in rules] == [
        ("basis_bps", "perp:BTCUSDT", "spot:BTCUSDT")], rules
    requests.delete(f"{two_market_app}/api/alerts/{rules[0]['id']}", timeout=10,
                    headers={"Origin": two_market_app})
    # a control change is written to the address bar
    tab.fill("#basis-window", "30")
    tab.press("#basis-window", "Tab")
    tab.wait_for_function("() => location.search.includes('window=30')")
    shot(tab, "basis")
    # source=mid from the URL: the bundled default replay has no top of book, so the
    # page says why instead of drawing an empty chart
    tab.goto(BASIS_URL + "&source=mid")
    expect(tab.locator("#basis-source")).to_have_value("mid")
    expect(tab.locator("#basis-error")).to_contain_text("no top-of-book quote")


def test_cross_market_pair_from_the_url(tab):
    tab.goto("/pair?a=perp:BTCUSDT&b=spot:BTCUSDT&tf=1s&w=20")
    body = tab.locator("body")
    expect(body).not_to_contain_text("URL parameter a")
    expect(body).not_to_contain_text("URL parameter b")
    expect(tab.locator("[id*='pair-z-graph'] .main-svg").first).to_be_visible(timeout=90_000)
    # the pickers and the tab show labels ("BTCUSDT · perp"), the URL keeps the names
    checked = tab.locator("option:checked")
    expect(checked.filter(has_text="BTCUSDT · perp")).to_have_count(1)
    expect(checked.filter(has_text="BTCUSDT · spot")).to_have_count(1)
    expect(tab.get_by_role("tab").first).to_contain_text("BTCUSDT · perp / BTCUSDT · spot")
    expect(tab.locator("body")).not_to_contain_text("not both ingested")
    # one symbol on two markets: the panel links to its basis view
    link = tab.locator("[id*='pair-basis-link']").first
    expect(link).to_be_visible()
    expect(link).to_have_attribute(
        "href", "/basis?perp=perp%3ABTCUSDT&spot=spot%3ABTCUSDT&timeframe=1s&window=20")
    link.click()
    tab.wait_for_url("**/basis?perp=perp%3ABTCUSDT&spot=spot%3ABTCUSDT*")
    expect(tab.locator("#basis-done")).to_contain_text("BTCUSDT · perp against BTCUSDT · spot")


def test_screener_offers_the_same_symbol_on_two_markets_first(tab):
    tab.goto("/screener?w=10")
    expect(tab.locator("#screener-ll-a")).to_have_value("perp:BTCUSDT")
    expect(tab.locator("#screener-ll-b")).to_have_value("spot:BTCUSDT")
    expect(tab.locator("#screener-ll-a option:checked")).to_have_text("BTCUSDT · perp")
    expect(tab.locator("#screener-done")).to_contain_text("6 pairs", timeout=120_000)
    rows = tab.locator("#screener-grid .ag-row")
    firsts = sorted(
        (rows.nth(i).locator("[col-id='a']").inner_text(),
         rows.nth(i).locator("[col-id='b']").inner_text()) for i in range(2))
    assert firsts == [("perp:BTCUSDT", "spot:BTCUSDT"), ("perp:ETHUSDT", "spot:ETHUSDT")], firsts
