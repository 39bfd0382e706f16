"""The markets page in headless Chromium against ``app.py --replay`` (10x the real tape)."""

from __future__ import annotations

import json
import time

import pytest
import requests


def pid(kind: str, index: str) -> str:
    return "[id='" + json.dumps({"index": index, "type": kind}, separators=(",", ":")) + "']"


def wait_for(predicate, timeout: float = 20.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}; last value {last!r}")


def test_markets_lists_symbols_with_changing_prices(page, shot, app_health):
    symbols = sorted(s for s in app_health()["symbols"] if ":" not in s)  # card names
    assert len(symbols) >= 2
    page.goto("/")
    for s in symbols:
        page.wait_for_selector(pid("markets-card", s))
    first = {
        s: wait_for(
            lambda s=s: page.inner_text(pid("markets-price", s)).strip().replace("–", ""),
            what=f"{s} price",
        )
        for s in symbols
    }
    seen = {s: {first[s]} for s in symbols}
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(len(v) < 2 for v in seen.values()):
        for s in symbols:
            seen[s].add(page.inner_text(pid("markets-price", s)).strip())
        time.sleep(0.25)
    assert all(len(v) >= 2 for v in seen.values()), seen
    card = page.inner_text(pid("markets-card", symbols[0]))
    for label in ("chg", "vol", "VWAP", "trades/s"):
        assert label in card
    feed = page.inner_text("#markets-feed-card")
    # at --replay-speed 10 trade times run 10x ahead of the clock: no lag figure, the
    # badge says it is a replay instead
    for label in ("CONNECTED", "msg/s", "replay ×10", "reconnects", "gaps"):
        assert label in feed
    # the heatmap shows every symbol, the sparkline has points
    wait_for(
        lambda: (
            page.evaluate(
                "() => { const g = document.querySelector('#markets-heatmap .js-plotly-plot');"
                " return g && g.data && g.data[0].x.length; }"
            )
            == len(symbols)
        ),
        what="heatmap",
    )
    n_spark = page.evaluate(
        "(sel) => document.querySelector(sel + ' .js-plotly-plot').data[0].x.length",
        pid("markets-spark", symbols[0]),
    )
    assert n_spark > 5
    shot(page, "markets")


def test_liquidity_filter_hides_and_shows_symbols(page, app_health):
    symbols = sorted(s for s in app_health()["symbols"] if ":" not in s)  # card names
    page.goto("/")
    page.wait_for_selector(pid("markets-card", symbols[0]))
    page.fill("#markets-min-trades", "100000000")
    page.press("#markets-min-trades", "Enter")
    wait_for(
        lambda: all(not page.is_visible(pid("markets-card", s)) for s in symbols), what="all hidden"
    )
    assert "hidden: " + ", ".join(symbols) in page.inner_text("#markets-filter-note")
    page.fill("#markets-min-trades", "")
    page.press("#markets-min-trades", "Enter")
    page.fill("#markets-min-volume", "1")
    page.press("#markets-min-volume", "Enter")
    wait_for(
        lambda: all(page.is_visible(pid("markets-card", s)) for s in symbols), what="shown again"
    )
    assert "all symbols shown" in page.inner_text("#markets-filter-note")


def test_heatmap_timeframe_switch(page):
    page.goto("/")
    page.wait_for_selector("#markets-heatmap .js-plotly-plot")
    page.click("#markets-timeframe label:has-text('1m')")
    wait_for(lambda: " 1m bars" in page.inner_text("#markets-heatmap-note"), what="1m note")


# -- issue 14.10 / 13.13: offline feed, small-sample heatmap, JSON 414, foreign Origin ----
@pytest.fixture(scope="module")
def offline_app(tmp_path_factory):
    """``python app.py`` whose feed cannot connect (no internet: a closed loopback
    port), no REST back-fill: the markets page shows the disconnected feed."""
    from tests.browser.conftest import _free_port, _health, running_app

    tmp = tmp_path_factory.mktemp("offline-app")
    dead = _free_port()
    with running_app(
        ["--feed-url", f"ws://127.0.0.1:{dead}", "--rest-url", "off",
         "--db", str(tmp / "offline.db")],
        tmp, ready=lambda base: _health(base) is not None, timeout=60, what="offline app",
    ) as base:
        yield base


def test_offline_feed_card_fits_the_page(browser, offline_app):
    """With no connection the feed card shows the long stream URL and the error; the
    page must still fit a 1280 px window (it was 1,461 px wide)."""
    ctx = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=offline_app)
    pg = ctx.new_page()
    try:
        pg.goto("/")
        pg.wait_for_selector("#markets-feed-detail table")
        wait_for(lambda: "disconnected" in pg.inner_text("#markets-feed-detail"),
                 what="disconnected feed card")
        assert "/stream?streams=" in pg.inner_text("#markets-feed-detail")
        widths = pg.evaluate(
            "() => [document.documentElement.scrollWidth, document.body.scrollWidth,"
            " window.innerWidth]"
        )
        assert max(widths[:2]) <= widths[2], widths
        box = pg.locator("#markets-feed-detail").bounding_box()
        assert box["x"] + box["width"] <= widths[2], box
    finally:
        ctx.close()


def test_heatmap_of_few_bars_is_greyed_and_says_n(page):
    page.goto("/")
    page.wait_for_selector("#markets-heatmap .js-plotly-plot")
    page.click("#markets-timeframe label:has-text('5m')")
    note = wait_for(
        lambda: (t := page.inner_text("#markets-heatmap-note")) and " 5m bars" in t and t,
        what="5m note",
    )
    assert "n = " in note and "too few" in note
    scale = page.evaluate(
        "() => document.querySelector('#markets-heatmap .js-plotly-plot').data[0].colorscale"
    )
    assert {c for _, c in scale} == {"#5b6270"}
    page.click("#markets-timeframe label:has-text('1s')")
    wait_for(lambda: " 1s bars" in page.inner_text("#markets-heatmap-note"), what="1s note")
    assert "too few" not in page.inner_text("#markets-heatmap-note")


def test_served_app_answers_414_in_json_and_refuses_a_foreign_origin(live_app):
    """``app.py`` as users start it: the server's own 414 is JSON, and a state change
    from another site's page is a 403 (the page's own callbacks keep working above)."""
    r = requests.get(f"{live_app}/api/bars?symbol={'X' * 70_000}", timeout=10)
    assert r.status_code == 414 and r.headers["Content-Type"] == "application/json"
    assert "URI" in r.json()["error"]
    r = requests.post(f"{live_app}/api/upload", files={"file": ("x.csv", b"a,b\n")},
                      headers={"Origin": "http://evil.example"}, timeout=10)
    assert r.status_code == 403 and r.json()["reason"] == "origin"
    r = requests.post(f"{live_app}/_dash-update-component", json={},
                      headers={"Host": "rebound.example"}, timeout=10)
    assert r.status_code == 403 and r.json()["reason"] == "host"
