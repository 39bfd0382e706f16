"""``GET /api/market-screen`` and the `/market-screen` page's callbacks, on a real engine
loaded with the real recorded tapes' 1 s bars (spot and perp BTCUSDT/ETHUSDT): the same
rows as the analytics, p-values equal to statsmodels' ``coint``, a 400 naming every bad
parameter, 409 while collecting, 413 over the size budget, and the same answer for the
same URL (``end=`` pins the window)."""

from __future__ import annotations

import io
from types import SimpleNamespace
from urllib.parse import urlencode

import dash
import flask
import numpy as np
import pandas as pd
import pytest
from statsmodels.tsa.stattools import coint

from analytics.bars import bars_from_ticks
from analytics.engine import MarketEngine
from analytics.market_screen import MarketScreenParams, close_grid, market_screen
from dashapp import api, heavy
from dashapp import market_screen_queries as msq
from dashapp.facade import LiveMarketData
from dashapp.services import set_services
from tests.analytics.conftest import SAMPLE_DIR, load_trade_tape
from tests.analytics.test_market_screen import TAPES


@pytest.fixture(scope="module")
def real_bars():
    return {name: bars_from_ticks(**load_trade_tape(SAMPLE_DIR / f), tf_ms=1_000)
            for name, f in TAPES.items()}


def _runtime(bars):
    engine = MarketEngine(list(bars))
    for s, b in bars.items():
        engine.load_bars(s, b)
    return SimpleNamespace(engine=engine, ingestor=SimpleNamespace(rings=dict.fromkeys(bars)))


@pytest.fixture
def client(real_bars):
    set_services(LiveMarketData(_runtime(real_bars)))
    app = flask.Flask(__name__)
    api.register(app)
    return app.test_client()


URL = "/api/market-screen?n=4&timeframe=1s&lookback=300&min_corr=0&z_window=30"


def test_rows_equal_the_analytics_and_statsmodels(client, real_bars):
    r = client.get(URL)
    assert r.status_code == 200, r.json
    body = r.json
    params = MarketScreenParams(top_n=4, lookback=300, min_corr=0.0, z_window=30)
    ref = market_screen(real_bars, params)
    assert body["pairs_total"] == body["candidates"] == 6
    assert body["instruments"] == list(ref.names) and body["bars"] == 300
    assert [(row["a"], row["b"]) for row in body["rows"]] == [(p.a, p.b) for p in ref.rows]
    grid = close_grid(real_bars, top_n=4, lookback=300)
    x = np.log(grid.closes)
    x = x - x.mean(axis=0)
    for row in body["rows"]:
        i, j = grid.names.index(row["a"]), grid.names.index(row["b"])
        stat, pval, _ = coint(x[:, i], x[:, j], maxlag=body["maxlag"], autolag="aic")
        assert row["coint_stat"] == pytest.approx(stat, rel=1e-9)
        assert row["coint_pvalue"] == pytest.approx(pval, rel=1e-6)
    assert [row["rank"] for row in body["rows"]] == list(range(1, 7))
    # the same URL, the same answer
    assert client.get(URL).json == body


def test_csv_has_the_row_columns(client):
    r = client.get(URL + "&format=csv")
    assert r.status_code == 200 and r.mimetype == "text/csv"
    frame = pd.read_csv(io.BytesIO(r.data))
    assert list(frame.columns) == list(msq.ROW_FIELDS) and len(frame) == 6
    rows = client.get(URL).json["rows"]
    np.testing.assert_allclose(frame["coint_pvalue"], [r["coint_pvalue"] for r in rows],
                               rtol=1e-9)


def test_end_pins_the_window(client, real_bars):
    end = int(real_bars["perp:BTCUSDT"].ts[200])
    body = client.get(URL.replace("lookback=300", "lookback=150") + f"&end={end}").json
    assert body["end_ms"] == end and body["bars"] == 150
    ref = market_screen(real_bars, MarketScreenParams(top_n=4, lookback=150, min_corr=0.0,
                                                      z_window=30), end_ts=end)
    assert [r["coint_pvalue"] for r in body["rows"]] == pytest.approx(
        [p.coint_pvalue for p in ref.rows], rel=1e-12)
    iso = pd.Timestamp(end, unit="ms", tz="UTC").isoformat()
    assert client.get(URL.replace("lookback=300", "lookback=150") + "&"
                      + urlencode({"end": iso})).json == body


@pytest.mark.parametrize("query, param", [
    ("n=1", "n"), ("n=x", "n"), ("n=501", "n"), ("timeframe=7x", "timeframe"),
    ("timeframe=1h", "timeframe"), ("lookback=5", "lookback"), ("min_corr=2", "min_corr"),
    ("min_corr=nan", "min_corr"), ("max_pairs=0", "max_pairs"), ("prices=pct", "prices"),
    ("z_window=2", "z_window"), ("z_window=400&lookback=300", "z_window"),
    ("both=maybe", "both"), ("end=yesterday-ish", "end"), ("format=xml", "format"),
])
def test_bad_parameters_are_400_naming_them(client, query, param):
    tf = "" if query.startswith("timeframe") else "timeframe=1s&"
    r = client.get(f"/api/market-screen?{tf}{query}")
    assert r.status_code == 400, r.json
    assert r.json["param"] == param


def test_too_few_bars_is_409(real_bars):
    short = {s: b.take(slice(0, 12)) for s, b in real_bars.items()}
    set_services(LiveMarketData(_runtime(short)))
    app = flask.Flask(__name__)
    api.register(app)
    r = app.test_client().get("/api/market-screen?timeframe=1s&lookback=100")
    assert r.status_code == 409 and r.json["needed"] > r.json["have"]


def test_over_the_size_budget_is_413_naming_the_parameter(client):
    old = heavy.gate().limits
    heavy.configure(heavy.HeavyLimits(max_cost_s=1e-6))
    try:
        r = client.get(URL)
    finally:
        heavy.configure(old)
    assert r.status_code == 413 and r.json["param"] in ("lookback", "max_pairs")


# ------------------------------------------------------------------ the page
@pytest.fixture
def page(real_bars):
    set_services(LiveMarketData(_runtime(real_bars)))
    if not dash.page_registry:  # the page module registers itself into an app's pages
        dash.Dash(__name__, use_pages=True, pages_folder="")
    import dashapp.pages.market_screen as module

    return module


def test_layout_carries_the_url_parameters(page):
    html = str(page.layout(n="4", tf="1s", lookback="300", min_corr="0.2", prices="raw",
                           both="1", end="1723161500000"))
    for text in ("'4'", "'1s'", "'300'", "'0.2'", "'raw'", "'1'", "1723161500000"):
        assert text in html


def test_run_screen_returns_the_api_rows_and_a_pinned_permalink(page, client):
    progress = []
    rows, status, message = page.run_screen(progress.append, 1, 4, "1s", 300, 0, 2000,
                                            "log", 30, "0", None)
    assert message is None
    assert rows == client.get(URL).json["rows"]
    assert progress[0] == (0, "collecting bars") and progress[-1][0] == 100
    link = next(c for c in status.children if getattr(c, "href", None)).href
    assert link.startswith("/market-screen?") and "end=" in link and "tf=1s" in link
    # the permalink's parameters give the same rows through the API
    query = link.split("?", 1)[1].replace("tf=", "timeframe=")
    assert client.get(f"/api/market-screen?{query}").json["rows"] == rows


def test_run_screen_names_a_bad_control(page):
    _, _, message = page.run_screen(lambda _p: None, 1, 1, "1s", 300, 0, 2000, "log", 30,
                                    "0", None)
    assert "n:" in str(message.children)


def test_open_pair_links_the_clicked_pair(page):
    href = page.open_pair({"rowId": "perp:BTCUSDT|spot:BTCUSDT", "rowIndex": 3}, [], "1s",
                          30, "log")
    assert href == "/pair?a=perp%3ABTCUSDT&b=spot%3ABTCUSDT&tf=1s&w=30&prices=log"
    rows = [{"a": "X", "b": "Y"}]
    assert page.open_pair({"rowIndex": 0}, rows, "1m", None, "raw") == (
        "/pair?a=X&b=Y&tf=1m&w=60&prices=raw")
    assert page.open_pair({"rowIndex": 5}, rows, "1m", 60, "raw") is dash.no_update


def test_a_pinned_url_says_so_and_a_changed_control_unpins(page, real_bars, client):
    end = int(real_bars["perp:BTCUSDT"].ts[250])
    rows, status, _ = page.run_screen(lambda _p: None, 1, 4, "1s", 150, 0, 2000, "log", 30,
                                      "0", str(end))
    assert "pinned window" in str(status.children[0])
    api = client.get(URL.replace("lookback=300", "lookback=150") + f"&end={end}").json
    assert rows == api["rows"] and api["end_ms"] == end
    assert page.unpin(5, "1s", 150, 0, 2000, "log", 30, "0") is None
