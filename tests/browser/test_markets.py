"""The markets page in headless Chromium against ``app.py --replay`` (10x the real tape)."""

from __future__ import annotations

import json
import time


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
    symbols = sorted(app_health()["symbols"])
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
    symbols = sorted(app_health()["symbols"])
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
