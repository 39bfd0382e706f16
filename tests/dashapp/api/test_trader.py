"""``/api/backtest``, ``/api/screener``, ``/api/leadlag`` through a Flask test client, on a
real engine loaded with the sample tape's 1 s bars: same numbers as the analytics, and a
400 naming the parameter for every bad input."""

from __future__ import annotations

from types import SimpleNamespace

import flask
import numpy as np
import pytest
from statsmodels.tsa.stattools import coint

from analytics.backtest import BacktestParams, run_backtest
from analytics.bars import bars_from_ticks
from analytics.engine import MarketEngine
from analytics.stationarity import default_maxlag
from dashapp import api, queries
from dashapp.facade import LiveMarketData
from dashapp.services import set_services
from tests.analytics.conftest import _TAPE, SAMPLE_DIR, SYMBOLS, load_trade_tape


class FakeDatasets:
    """The ``datasets`` service's read API over one in-memory dataset ``up1`` (1 s)."""

    def __init__(self, bars: dict) -> None:
        self._bars = bars
        self.info = SimpleNamespace(name="up1", tf_ms=1000, symbols=tuple(bars),
                                    rows={s: len(b) for s, b in bars.items()})

    def get(self, name):
        return self.info if name == "up1" else None

    def list(self):
        return [self.info]

    def bars(self, name, symbol):
        return self._bars[symbol]


@pytest.fixture(scope="module")
def services():
    engine = MarketEngine(list(SYMBOLS))
    bars = {}
    for s in SYMBOLS:
        ticks = load_trade_tape(SAMPLE_DIR / _TAPE.format(s))
        bars[s] = bars_from_ticks(**ticks, tf_ms=1000)
        engine.load_bars(s, bars[s])
    # the dataset holds the same bars under other names
    uploaded = {"BTCX": bars["BTCUSDT"], "ETHX": bars["ETHUSDT"]}
    return SimpleNamespace(engine=engine, ingestor=SimpleNamespace(rings=dict.fromkeys(SYMBOLS)),
                           datasets=FakeDatasets(uploaded))


@pytest.fixture
def client(services):
    set_services(LiveMarketData(services))
    app = flask.Flask(__name__)
    api.register(app)
    return app.test_client()


BASE = "a=BTCUSDT&b=ETHUSDT&timeframe=1s&window=20"


def test_backtest_equals_the_analytics_on_the_pair_series(client):
    r = client.get(f"/api/backtest?{BASE}&entry=1.5&exit=0.1&fee_bps=1&slippage_bps=0.5")
    assert r.status_code == 200, r.json
    body = r.json
    frame = queries.pair_frame("BTCUSDT", "ETHUSDT", 1000, 20, "ols", "raw")
    ref = run_backtest(frame.ts.to_numpy(), frame.price_a, frame.price_b, frame.beta,
                       frame.zscore, params=BacktestParams(entry=1.5, exit=0.1, fee_bps=1,
                                                           slippage_bps=0.5), tf_ms=1000)
    assert len(body["trades"]) == len(ref.trades) > 3
    assert body["total_pnl"] == pytest.approx(ref.total_pnl)
    assert body["sharpe"] == pytest.approx(ref.sharpe)
    assert body["max_drawdown"] == pytest.approx(ref.max_drawdown)
    assert body["hit_rate"] == pytest.approx(ref.hit_rate)
    first, tr = body["trades"][0], ref.trades[0]
    assert set(first) >= {"side", "signal_ts", "entry_ts", "exit_ts", "entry_a", "entry_b",
                          "exit_a", "exit_b", "beta", "pnl"}
    assert first["pnl"] == pytest.approx(tr.pnl) and first["beta"] == pytest.approx(tr.beta)
    assert first["entry_ts"].endswith(".000Z") and first["entry_ts"][10] == "T"
    closed = [t["pnl"] for t in body["trades"] if t["exit_ts"] is not None]
    assert body["total_pnl"] == pytest.approx(sum(closed))
    assert body["params"] == {"entry": 1.5, "exit": 0.1, "stop": None, "max_hold": None,
                              "fee_bps": 1.0, "slippage_bps": 0.5, "fills": "last"}


def test_backtest_curve_and_defaults(client):
    body = client.get(f"/api/backtest?{BASE}&curve=1").json
    assert body["params"]["entry"] == 2.0 and body["params"]["exit"] == 0.0
    eq = body["equity"]
    assert len(eq["ts"]) == body["n_bars"] == len(eq["equity"])
    assert eq["equity"][-1] == pytest.approx(body["total_pnl"] + body["open_pnl"])
    assert "equity" not in client.get(f"/api/backtest?{BASE}").json


@pytest.mark.parametrize(
    "query, param",
    [
        ("entry=0", "entry"), ("entry=-1", "entry"), ("entry=abc", "entry"),
        ("entry=nan", "entry"), ("entry=1e9", "entry"), ("exit=2", "exit"),
        ("entry=1&exit=1.5", "exit"), ("stop=1.5", "stop"), ("stop=-3", "stop"),
        ("max_hold=0", "max_hold"), ("max_hold=2.5", "max_hold"),
        ("fee_bps=-1", "fee_bps"), ("fee_bps=1e6", "fee_bps"), ("fee_bps=x", "fee_bps"),
        ("slippage_bps=inf", "slippage_bps"), ("window=2", "window"),
        ("timeframe=7s", "timeframe"), ("timeframe=bogus", "timeframe"),
        ("regression=lasso", "regression"), ("prices=pct", "prices"),
        ("dataset=nosuch", "dataset"), ("curve=maybe", "curve"),
    ],
)
def test_backtest_bad_parameters_are_400s_naming_them(client, query, param):
    args = dict(kv.split("=") for kv in f"{BASE}&{query}".split("&"))  # query wins
    r = client.get("/api/backtest", query_string=args)
    assert r.status_code == 400, r.json
    assert r.json["param"] == param and r.json["error"].startswith(param)


@pytest.mark.parametrize(
    "query, param",
    [("b=ETHUSDT", "a"), ("a=BTCUSDT&b=BTCUSDT", "b"), ("a=DOGEUSDT&b=ETHUSDT", "a"),
     ("a=%3DCMD&b=ETHUSDT", "a")],
)
def test_backtest_bad_symbols(client, query, param):
    r = client.get(f"/api/backtest?{query}")
    assert r.status_code == 400 and r.json["param"] == param


def test_backtest_too_little_data_is_a_409(client):
    r = client.get("/api/backtest?a=BTCUSDT&b=ETHUSDT&window=600")
    assert r.status_code == 409
    assert r.json["needed"] == 2 * 600 and r.json["have"] < r.json["needed"]


def test_screener_pvalue_equals_statsmodels_and_the_adf_endpoint(client, services):
    r = client.get("/api/screener?timeframe=1s&window=30")
    assert r.status_code == 200, r.json
    (row,) = r.json["rows"]
    assert (row["a"], row["b"], row["rank"]) == ("BTCUSDT", "ETHUSDT", 1)
    adf = client.get("/api/adf?a=BTCUSDT&b=ETHUSDT&window=30").json
    assert row["coint_pvalue"] == pytest.approx(adf["coint_pvalue"], rel=1e-12)
    assert row["half_life_bars"] == pytest.approx(adf["halflife"], rel=1e-12)
    frame = queries.pair_frame("BTCUSDT", "ETHUSDT", 1000, 30, "ols", "raw")
    ref = coint(frame.price_a, frame.price_b, maxlag=default_maxlag(len(frame), "n"),
                autolag="aic")
    assert row["coint_pvalue"] == pytest.approx(ref[1], rel=1e-12)
    for q, p in (("timeframe=15m", "timeframe"), ("window=1", "window"),
                 ("lookback=5", "lookback"), ("prices=x", "prices")):
        bad = client.get(f"/api/screener?{q}")
        assert bad.status_code == 400 and bad.json["param"] == p


def test_leadlag_endpoint(client):
    r = client.get("/api/leadlag?a=BTCUSDT&b=ETHUSDT&max_lag=5")
    assert r.status_code == 200, r.json
    body = r.json
    assert body["lags"] == list(range(-5, 6)) and len(body["corr"]) == 11
    assert body["peak_lag"] == body["lags"][int(np.nanargmax(np.abs(body["corr"])))]
    for q, p in (("a=BTCUSDT&b=ETHUSDT&max_lag=0", "max_lag"), ("a=BTCUSDT", "b"),
                 ("a=BTCUSDT&b=ETHUSDT&max_lag=x", "max_lag")):
        bad = client.get(f"/api/leadlag?{q}")
        assert bad.status_code == 400 and bad.json["param"] == p


def test_backtest_on_an_uploaded_dataset(client):
    live = client.get(f"/api/backtest?{BASE}&entry=1.5").json
    up = client.get("/api/backtest?a=BTCX&b=ETHX&window=20&entry=1.5&dataset=up1")
    assert up.status_code == 200, up.json
    assert up.json["dataset"] == "up1"
    assert up.json["total_pnl"] == pytest.approx(live["total_pnl"], rel=1e-9)
    assert len(up.json["trades"]) == len(live["trades"])
    bad = client.get("/api/backtest?a=BTCUSDT&b=ETHX&dataset=up1")
    assert bad.status_code == 400 and bad.json["param"] == "a"
    assert "BTCX" in bad.json["error"]
    bad_tf = client.get("/api/backtest?a=BTCX&b=ETHX&dataset=up1&timeframe=1500ms")
    assert bad_tf.status_code == 400 and bad_tf.json["param"] == "timeframe"


def test_screener_and_leadlag_on_an_uploaded_dataset(client):
    """Issue 14.4: ``dataset=`` screens a dataset's symbols; the fake dataset holds the
    live bars under other names, so every number equals the live screen's."""
    live = client.get("/api/screener?timeframe=1s&window=30").json
    up = client.get("/api/screener?dataset=up1&window=30")
    assert up.status_code == 200, up.json
    (row,), (ref,) = up.json["rows"], live["rows"]
    assert (row["a"], row["b"]) == ("BTCX", "ETHX")
    for k in ("coint_pvalue", "half_life_bars", "zscore", "beta", "n_bars"):
        assert row[k] == pytest.approx(ref[k], rel=1e-12), k
    ll = client.get("/api/leadlag?dataset=up1&a=BTCX&b=ETHX&max_lag=5")
    assert ll.status_code == 200, ll.json
    assert ll.json["corr"] == client.get("/api/leadlag?a=BTCUSDT&b=ETHUSDT&max_lag=5").json[
        "corr"]
    for q, p in (("dataset=nope", "dataset"), ("dataset=up1&timeframe=1500ms", "timeframe"),
                 ("dataset=up1&lookback=3", "lookback")):
        bad = client.get(f"/api/screener?{q}")
        assert bad.status_code == 400 and bad.json["param"] == p, bad.json
    bad = client.get("/api/leadlag?dataset=up1&a=BTCUSDT&b=ETHX")
    assert bad.status_code == 400 and bad.json["param"] == "a"


def test_sharpe_is_annualised_only_over_a_long_enough_sample(client):
    """Issue 14.9: 13 minutes of 1 s bars show the per-bar Sharpe and say why."""
    import math

    from analytics.backtest import YEAR_MS
    from dashapp import trader_queries as tq
    from dashapp.components import backtest_view as view

    pair, bt = tq.backtest_args({"a": "BTCUSDT", "b": "ETHUSDT", "window": "20",
                                 "entry": "1.5"})
    r = tq.backtest(**pair, bt=bt)
    title, value, hint = view.sharpe_kpi(r)
    assert title == "Sharpe (per bar)" and "too short to annualise" in hint
    assert value == pytest.approx(r.sharpe / math.sqrt(YEAR_MS / 1000), rel=1e-12)
    long = SimpleNamespace(n_bars=744, tf_ms=3_600_000, sharpe=1.25)
    assert view.sharpe_kpi(long)[:2] == ("Sharpe (ann.)", 1.25)
