"""The backtest page on the running replay: a run shows KPIs, charts and trades, and the
trades download is a CSV of those trades."""

from __future__ import annotations

import re

import requests
from playwright.sync_api import expect

from tests.browser.uploads import upload


def _fill(page, selector: str, value: str) -> None:
    box = page.locator(selector)
    box.fill(value)
    box.press("Tab")


def test_backtest_runs_and_shows_a_result(page, live_app, shot):
    page.goto(f"{live_app}/backtest")
    expect(page.locator("#backtest-run")).to_be_visible()
    # short window and entry so the replay's first minutes already give trades
    _fill(page, "#backtest-window", "10")
    _fill(page, "#backtest-entry", "1.2")
    # wait until enough bars: retry the run until the KPI row appears
    for _ in range(20):
        page.locator("#backtest-run").click()
        expect(page.locator("#backtest-run")).to_be_enabled(timeout=30_000)
        if page.locator("#backtest-kpi-row").count():
            break
        page.wait_for_timeout(1_500)
    kpis = page.locator("#backtest-kpi-row")
    expect(kpis).to_be_visible()
    expect(kpis).to_contain_text("Sharpe")
    expect(page.locator("#backtest-range")).to_contain_text("BTCUSDT vs ETHUSDT")
    n_trades = int(re.search(r"Trades(\d+)", kpis.inner_text().replace("\n", "")).group(1))
    if n_trades:
        expect(page.locator("#backtest-trades .ag-row").first).to_be_visible()
    expect(page.locator("#backtest-equity-graph .main-svg").first).to_be_visible()
    shot(page, "backtest")
    with page.expect_download() as dl:
        page.locator("#backtest-dl-trades").click()
    download = dl.value
    assert download.suggested_filename.startswith("backtest_trades_BTCUSDT-ETHUSDT_1s_")
    text = open(download.path()).read()
    assert text.splitlines()[0].startswith("side,signal_ts,entry_ts,exit_ts")
    assert len(text.splitlines()) == n_trades + 1


def test_backtest_bad_input_names_the_field(page, live_app):
    page.goto(f"{live_app}/backtest")
    _fill(page, "#backtest-exit", "3")
    page.locator("#backtest-run").click()
    expect(page.locator("#backtest-message")).to_contain_text("exit: must be below entry")


# -- datasets, the sample rule for Sharpe, stale results, the trades grid (issue 14.4, 14.9)
def _run(page) -> None:
    page.locator("#backtest-run").click()
    expect(page.locator("#backtest-run")).to_be_enabled(timeout=30_000)


def test_backtest_runs_on_a_dataset_from_its_link(page, live_app):
    upload(live_app, "bt-1h")
    page.goto(f"{live_app}/backtest?dataset=bt-1h&w=24")
    expect(page.locator("#backtest-source")).to_have_value("bt-1h")
    expect(page.locator("#backtest-tf")).to_have_value("1h")
    expect(page.locator("#backtest-a")).to_have_value("BTCUSDT")
    expect(page.locator("#backtest-b")).to_have_value("ETHUSDT")
    _run(page)
    expect(page.locator("#backtest-range")).to_contain_text("dataset bt-1h", timeout=30_000)
    expect(page.locator("#backtest-range")).to_contain_text("744 bars")
    ref = requests.get(f"{live_app}/api/backtest?dataset=bt-1h&a=BTCUSDT&b=ETHUSDT"
                       "&window=24&entry=2&exit=0&fee_bps=1", timeout=30).json()
    kpis = page.locator("#backtest-kpi-row")
    expect(kpis).to_contain_text(f"{100 * ref['total_return']:+.3f} %")
    # 31 days of bars: long enough to annualise
    expect(kpis).to_contain_text("Sharpe (ann.)")
    expect(kpis).to_contain_text(f"{ref['sharpe']:.2f}")
    # the address bar follows the controls (a link to share)
    page.locator("#backtest-window").fill("30")
    page.locator("#backtest-window").press("Tab")
    page.wait_for_function("() => location.search.includes('w=30')"
                           " && location.search.includes('dataset=bt-1h')")


def test_a_short_live_sample_shows_sharpe_per_bar_and_says_why(page, live_app):
    page.goto(f"{live_app}/backtest?w=10")
    for _ in range(20):
        _run(page)
        if page.locator("#backtest-kpi-row").count():
            break
        page.wait_for_timeout(1_500)
    kpis = page.locator("#backtest-kpi-row")
    expect(kpis).to_contain_text("Sharpe (per bar)")
    expect(kpis).to_contain_text("too short to annualise")
    expect(kpis).not_to_contain_text("Sharpe (ann.)")


def test_a_bad_field_clears_the_previous_result(page, live_app):
    upload(live_app, "bt-1h")
    page.goto(f"{live_app}/backtest?dataset=bt-1h&w=24")
    _run(page)
    expect(page.locator("#backtest-kpi-row")).to_be_visible(timeout=30_000)
    expect(page.locator("#backtest-trades .ag-row").first).to_be_visible()
    page.locator("#backtest-exit").fill("3")
    page.locator("#backtest-exit").press("Tab")
    _run(page)
    expect(page.locator("#backtest-message")).to_contain_text("exit: must be below entry")
    expect(page.locator("#backtest-kpi-row")).to_have_count(0)
    expect(page.locator("#backtest-range")).to_have_count(0)
    expect(page.locator("#backtest-trades .ag-row")).to_have_count(0)
    expect(page.locator("#backtest-equity-graph .scatterlayer .trace")).to_have_count(0)
    page.locator("#backtest-dl-trades").click()  # nothing shown: nothing to download
    expect(page.locator("#backtest-message")).to_contain_text("Run a backtest first")


def test_the_trades_grid_fits_a_1400_px_screen(browser, live_app):
    upload(live_app, "bt-1h")
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, base_url=live_app)
    page = context.new_page()
    try:
        page.goto("/backtest?dataset=bt-1h&w=24")
        page.locator("#backtest-entry").fill("1.5")
        page.locator("#backtest-entry").press("Tab")
        _run(page)
        expect(page.locator("#backtest-trades .ag-row").first).to_be_visible(timeout=30_000)
        grid = page.locator("#backtest-trades .ag-body-viewport").bounding_box()
        for col in ("beta", "pnl", "exit_reason", "exit_ts"):
            box = page.locator(f"#backtest-trades .ag-header-cell[col-id='{col}']").bounding_box()
            assert box is not None and box["x"] + box["width"] <= grid["x"] + grid["width"] + 1, (
                col, box, grid)
        wide = page.evaluate("""() => { const v = document.querySelector(
            '#backtest-trades .ag-center-cols-viewport');
            return [v.scrollWidth, v.clientWidth]; }""")
        assert wide[0] <= wide[1] + 1, wide  # no horizontal scrolling
        page.locator("#backtest-trades").scroll_into_view_if_needed()
        page.screenshot(path="diagrams/screenshots/backtest-dataset.png", full_page=True)
    finally:
        context.close()
