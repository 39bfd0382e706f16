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


GRID = "markets-grid"


def grid_rows(page) -> list[dict]:
    """The grid's rows after its filters and sort, in display order (the grid API)."""
    return page.evaluate(
        f"""() => {{ const a = dash_ag_grid.getApi('{GRID}'); const out = [];
        a.forEachNodeAfterFilterAndSort(n => out.push(n.data)); return out; }}"""
    )


def select_rows(page, names: list[str]) -> None:
    """Tick the rows' checkboxes (as a user does). A refresh may redraw a row between
    finding its checkbox and the click (rows re-sort as volumes move), so each click is
    retried until the grid says the row is selected."""
    for name in names:
        box = page.locator(f"#{GRID} .ag-row[row-id='{name}'] input[type=checkbox]").first
        for _ in range(10):
            try:
                box.click(timeout=2_000)
            except Exception:  # noqa: BLE001 (detached by a redraw: find it again)
                pass
            if page.evaluate(f"() => dash_ag_grid.getApi('{GRID}').getRowNode('{name}')"
                             ".isSelected()"):
                break
            time.sleep(0.2)
        else:
            raise AssertionError(f"row {name} could not be selected")


def test_markets_grid_lists_symbols_with_changing_prices(page, shot, app_health):
    symbols = sorted(s for s in app_health()["symbols"] if ":" not in s)  # row ids
    assert len(symbols) >= 2
    page.goto("/")
    for s in symbols:
        page.wait_for_selector(f"#{GRID} .ag-row[row-id='{s}']")
    priced = wait_for(
        lambda: (rows := grid_rows(page)) and all(r["last"] for r in rows) and rows,
        what="prices")
    first = {r["name"]: r["last"] for r in priced}
    assert sorted(first) == symbols
    seen = {s: {first[s]} for s in symbols}
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(len(v) < 2 for v in seen.values()):
        for r in grid_rows(page):
            seen[r["name"]].add(r["last"])
        time.sleep(0.25)
    assert all(len(v) >= 2 for v in seen.values()), seen
    # the cell shows the price the row holds, formatted; every number column has a value
    row = grid_rows(page)[0]
    cell = page.inner_text(f"#{GRID} .ag-row[row-id='{row['name']}'] [col-id='trades_per_min']")
    assert cell.replace(",", "").strip().isdigit()
    for field in ("change_pct", "volume", "trades_per_min", "volume_per_min"):
        assert row[field] is not None, field
    # sparklines: an SVG line per visible row, once a refresh carried its closes
    wait_for(lambda: page.locator(f"#{GRID} svg.spark-svg").count() == len(symbols),
             what="sparklines")
    n_points = page.evaluate(
        f"() => Number(document.querySelector('#{GRID} svg.spark-svg').dataset.n)")
    assert n_points > 5
    feed = page.inner_text("#markets-feed-card")
    # at --replay-speed 10 trade times run 10x ahead of the clock: no lag figure, the
    # badge says it is a replay instead
    for label in ("CONNECTED", "msg/s", "replay ×10", "reconnects", "gaps"):
        assert label in feed
    # the heatmap (top 10 by volume) shows every symbol
    wait_for(
        lambda: (
            page.evaluate(
                "() => { const g = document.querySelector('#markets-heatmap .js-plotly-plot');"
                " return g && g.data && g.data[0].x && g.data[0].x.length; }"
            )
            == len(symbols)
        ),
        what="heatmap",
    )
    shot(page, "markets")


def test_liquidity_filter_hides_and_shows_symbols(page, app_health):
    symbols = sorted(s for s in app_health()["symbols"] if ":" not in s)
    page.goto("/")
    page.wait_for_selector(f"#{GRID} .ag-row[row-id='{symbols[0]}']")
    page.fill("#markets-min-trades", "100000000")
    page.press("#markets-min-trades", "Enter")
    wait_for(lambda: grid_rows(page) == [], what="all hidden")
    wait_for(lambda: f"0 of {len(symbols)} instruments" in page.inner_text("#markets-grid-note"),
             what="note")
    page.fill("#markets-min-trades", "")
    page.press("#markets-min-trades", "Enter")
    page.fill("#markets-min-volume", "1")
    page.press("#markets-min-volume", "Enter")
    wait_for(lambda: len(grid_rows(page)) == len(symbols), what="shown again")
    wait_for(lambda: f"all {len(symbols)} instruments" in page.inner_text("#markets-grid-note"),
             what="note")


def test_two_selected_rows_open_their_pair(page, app_health):
    symbols = sorted(s for s in app_health()["symbols"] if ":" not in s)[:2]
    page.goto("/")
    page.wait_for_selector(f"#{GRID} .ag-row[row-id='{symbols[1]}']")
    assert page.is_disabled("#markets-open-pair")
    select_rows(page, symbols)
    wait_for(lambda: not page.is_disabled("#markets-open-pair"), what="Open pair enabled")
    page.click("#markets-open-pair")
    page.wait_for_url("**/pair?**")
    url = page.url
    assert f"a={symbols[0]}&b={symbols[1]}" in url, url  # A, B by name


def test_heatmap_of_the_selected_rows(page, app_health):
    symbols = sorted(s for s in app_health()["symbols"] if ":" not in s)[:2]
    page.goto("/")
    page.wait_for_selector(f"#{GRID} .ag-row[row-id='{symbols[1]}']")
    page.select_option("#markets-heat-set", "selected")
    wait_for(lambda: "select at least two rows" in page.inner_text("#markets-heatmap-note"),
             what="watchlist hint")
    select_rows(page, symbols)
    wait_for(lambda: page.evaluate(
        "() => { const g = document.querySelector('#markets-heatmap .js-plotly-plot');"
        " return g && g.data && g.data[0] && g.data[0].x; }") == symbols, what="watchlist")
    assert f"all {len(symbols)} shown" in page.inner_text("#markets-heatmap-note")


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
        assert "/stream" in pg.inner_text("#markets-feed-detail")  # the feed's URL
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
