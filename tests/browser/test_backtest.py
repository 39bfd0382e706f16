"""The backtest page on the running replay: a run shows KPIs, charts and trades, and the
trades download is a CSV of those trades."""

from __future__ import annotations

import re

from playwright.sync_api import expect


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
