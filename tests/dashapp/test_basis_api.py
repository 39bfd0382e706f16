"""``GET /api/basis`` over a real engine holding the REAL recorded spot and perp BTCUSDT
+ ETHUSDT 1 s bars (sample_data/), through the live facade: the numbers equal pandas,
JSON and CSV carry the same columns, cuts equal the whole, every bad parameter is a 400
naming it. Also: the pair API accepts two instruments of one symbol."""

from __future__ import annotations

import io
from types import SimpleNamespace

import flask
import numpy as np
import pandas as pd
import pytest

from analytics.bars import bars_from_ticks
from analytics.basis import BASIS_COLUMNS
from analytics.engine import MarketEngine
from analytics.instruments import Universe
from dashapp import api
from dashapp.facade import LiveMarketData
from dashapp.services import set_services
from tests.analytics.conftest import SAMPLE_DIR, load_trade_tape
from tests.analytics.test_basis import pandas_basis

TAPES = {
    "perp:BTCUSDT": "binance-um-ws-trade_BTCUSDT_2024-08-08T235416Z_2024-08-08T235959Z.jsonl.gz",
    "spot:BTCUSDT": "binance-spot-ws-trade_BTCUSDT_2024-08-08T235415Z_2024-08-09T000505Z.jsonl.gz",
    "perp:ETHUSDT": "binance-um-ws-trade_ETHUSDT_2024-08-08T235416Z_2024-08-09T000000Z.jsonl.gz",
    "spot:ETHUSDT": "binance-spot-ws-trade_ETHUSDT_2024-08-08T235415Z_2024-08-09T000505Z.jsonl.gz",
}
Q = "/api/basis?perp=perp:BTCUSDT&spot=spot:BTCUSDT&timeframe=1s&window=30"


@pytest.fixture(scope="module")
def ticks():
    return {name: load_trade_tape(SAMPLE_DIR / f) for name, f in TAPES.items()}


def make_client(ticks, names, market="spot"):
    universe = Universe.parse(names, market)
    engine = MarketEngine(list(universe.names))
    last = 0
    for inst in universe:
        bars = bars_from_ticks(**ticks[inst.key], tf_ms=1000)
        engine.load_bars(universe.name(inst), bars)
        last = max(last, int(bars.ts[-1]))
    engine.on_clock(last + 5_000)  # every bucket closed, as the bar clock does live
    store = SimpleNamespace(  # the store's naming of instruments outside the universe
        name=lambda inst: universe.name(inst) if inst in universe else inst.key)
    rt = SimpleNamespace(engine=engine, universe=universe, market=market, store=store,
                         ingestor=SimpleNamespace(rings=dict.fromkeys(universe.names)))
    set_services(LiveMarketData(rt))
    app = flask.Flask(__name__)
    api.register(app)
    return app.test_client()


@pytest.fixture
def client(ticks):  # per test: another test may have installed other services
    return make_client(ticks, list(TAPES))


def test_json_equals_the_definition_computed_with_pandas(client, ticks):
    got = client.get(Q).json
    want = pandas_basis({"perp": ticks["perp:BTCUSDT"], "spot": ticks["spot:BTCUSDT"]}, 30)
    rows = pd.DataFrame(got["rows"])
    assert got["columns"] == list(BASIS_COLUMNS) == list(rows.columns)
    assert (got["perp"], got["spot"]) == ("perp:BTCUSDT", "spot:BTCUSDT")
    assert (got["perp_label"], got["spot_label"]) == ("BTCUSDT · perp", "BTCUSDT · spot")
    assert len(rows) == len(want) > 300
    ts = np.array([pd.Timestamp(t).value // 10**6 for t in rows["ts"]])
    np.testing.assert_array_equal(ts, want.index.to_numpy())
    np.testing.assert_allclose(rows["basis_bps"], want["bps"], rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(rows["basis"], want["basis"], atol=1e-9)
    z = rows["zscore"].to_numpy(dtype=float)
    assert np.isnan(z[:29]).all()  # null in JSON until the window is full
    np.testing.assert_allclose(z[29:], want["z"].to_numpy()[29:], rtol=1e-8)
    np.testing.assert_allclose(rows["mean_bps"].to_numpy(dtype=float)[29:],
                               want["mean"].to_numpy()[29:], rtol=1e-9)
    assert got["last"]["ts"] == got["rows"][-1]["ts"]
    assert got["last"]["basis_bps"] == pytest.approx(want["bps"].iloc[-1], rel=1e-12)
    ll = got["leadlag"]
    assert ll["lags"] == list(range(-10, 11)) and ll["nobs"] == len(want)
    rp, rs = np.log(want["perp"]).diff(), np.log(want["spot"]).diff()
    assert ll["corr"][10 + 1] == pytest.approx(rp.corr(rs.shift(-1)), rel=1e-9)
    assert ll["leader"] in ("perp", "spot", "together")


def test_csv_has_the_json_columns_and_values(client):
    js = client.get(Q).json
    resp = client.get(Q + "&format=csv")
    assert resp.status_code == 200 and resp.mimetype == "text/csv"
    assert "basis_perp.BTCUSDT-spot.BTCUSDT_1s_" in resp.headers["Content-Disposition"]
    csv = pd.read_csv(io.StringIO(resp.get_data(as_text=True)))
    assert list(csv.columns) == js["columns"]
    assert list(csv["ts"]) == [r["ts"] for r in js["rows"]]
    np.testing.assert_allclose(csv["basis_bps"], [r["basis_bps"] for r in js["rows"]],
                               rtol=1e-9)  # CSV writes 10 significant digits


def test_a_cut_equals_the_same_rows_of_the_whole(client):
    rows = client.get(Q).json["rows"]
    assert client.get(Q + "&limit=7").json["rows"] == rows[-7:]
    lo, hi = rows[50]["ts"], rows[120]["ts"]
    assert client.get(f"{Q}&start={lo}&end={hi}").json["rows"] == rows[50:121]


@pytest.mark.parametrize("query,param,says", [
    ("perp=perp:BTCUSDT", "spot", "required"),
    ("spot=spot:BTCUSDT", "perp", "required"),
    ("perp=BTCUSDT&spot=spot:BTCUSDT", "perp", "perp:BTCUSDT, spot:BTCUSDT"),
    ("perp=spot:BTCUSDT&spot=spot:BTCUSDT", "perp", "takes a perp one"),
    ("perp=perp:BTCUSDT&spot=perp:ETHUSDT", "spot", "takes a spot one"),
    ("perp=perp:SOLUSDT&spot=spot:BTCUSDT", "perp", "not ingested"),
    ("perp=perp:BTC-USDT&spot=spot:BTCUSDT", "perp", "not an instrument"),
    ("perp=moon:BTCUSDT&spot=spot:BTCUSDT", "perp", "unknown market"),
    ("perp=perp:BTCUSDT&spot=spot:BTCUSDT&timeframe=7s", "timeframe", "1s"),
    ("perp=perp:BTCUSDT&spot=spot:BTCUSDT&window=2", "window", "between"),
    ("perp=perp:BTCUSDT&spot=spot:BTCUSDT&max_lag=0", "max_lag", "between"),
    ("perp=perp:BTCUSDT&spot=spot:BTCUSDT&format=xml", "format", "json"),
    ("perp=perp:BTCUSDT&spot=spot:BTCUSDT&limit=0", "limit", "between"),
    ("perp=perp:BTCUSDT&spot=spot:BTCUSDT&source=bid", "source", "trade"),
])
def test_each_bad_parameter_is_a_400_naming_it(client, query, param, says):
    resp = client.get("/api/basis?" + query)
    assert resp.status_code == 400, resp.get_data(as_text=True)
    assert resp.json["param"] == param
    assert says in resp.json["error"]


def test_cross_market_pairs_on_the_pair_api(client):
    rows = client.get("/api/pair?a=perp:BTCUSDT&b=spot:BTCUSDT&window=30").json
    basis = client.get(Q).json["rows"]
    assert [r["ts"] for r in rows] == [r["ts"] for r in basis]
    assert [r["price_a"] for r in rows] == [r["price_perp"] for r in basis]
    # the case of what was typed does not matter; a bare symbol on two markets is a 400
    same = client.get("/api/pair?a=PERP:btcusdt&b=spot:BTCUSDT&window=30").json
    assert same == rows
    resp = client.get("/api/pair?a=BTCUSDT&b=spot:ETHUSDT")
    assert resp.status_code == 400 and resp.json["param"] == "a"
    assert "perp:BTCUSDT, spot:BTCUSDT" in resp.json["error"]


@pytest.mark.parametrize("path", [
    "/api/bars?symbol=perp:BTCUSDT",
    "/api/adf?a=perp:BTCUSDT&b=spot:BTCUSDT&window=30",
    "/api/backtest?a=perp:BTCUSDT&b=spot:BTCUSDT&window=30",
    "/api/leadlag?a=perp:BTCUSDT&b=spot:BTCUSDT",
    "/api/pair?a=perp:BTCUSDT&b=spot:ETHUSDT&window=30&format=csv",
])
def test_every_route_takes_two_markets_instruments(client, path):
    resp = client.get(path)
    assert resp.status_code == 200, resp.get_data(as_text=True)[:300]
    if "format=csv" in path:  # no ':' in the download's name
        assert "pair_perp.BTCUSDT-spot.ETHUSDT_1s_" in resp.headers["Content-Disposition"]
    bare = client.get(path.replace("perp:BTCUSDT", "BTCUSDT"))
    assert bare.status_code == 400 and "perp:BTCUSDT, spot:BTCUSDT" in bare.json["error"]


def test_one_market_run_keeps_bare_names_and_refuses_a_basis(ticks):
    c = make_client(ticks, ["spot:BTCUSDT", "spot:ETHUSDT"])
    assert c.get("/api/pair?a=BTCUSDT&b=ETHUSDT&window=30").status_code == 200
    # the instrument syntax names the same instruments
    assert (c.get("/api/pair?a=spot:BTCUSDT&b=ETHUSDT&window=30").json
            == c.get("/api/pair?a=BTCUSDT&b=ETHUSDT&window=30").json)
    resp = c.get("/api/basis?perp=BTCUSDT&spot=ETHUSDT")
    assert resp.status_code == 400 and resp.json["param"] == "perp"
    assert "no perp instrument ingested" in resp.json["error"]
    resp = c.get("/api/pair?a=perp:BTCUSDT&b=ETHUSDT")
    assert resp.status_code == 400 and resp.json["param"] == "a"


def test_too_few_bars_for_the_window_is_a_409(client):
    resp = client.get("/api/basis?perp=perp:BTCUSDT&spot=spot:BTCUSDT&timeframe=1m&window=60")
    assert resp.status_code == 409, resp.get_data(as_text=True)
    assert resp.json["needed"] == 60 and resp.json["have"] < 60
    ok = client.get("/api/basis?perp=perp:BTCUSDT&spot=spot:BTCUSDT&timeframe=1m&window=3")
    assert ok.status_code == 200 and len(ok.json["rows"]) >= resp.json["have"] > 3


def test_source_mid_without_quotes_is_a_409_saying_so(client):
    resp = client.get(Q + "&source=mid")
    assert resp.status_code == 409, resp.get_data(as_text=True)
    assert "quote" in resp.json["error"]
    assert client.get(Q + "&source=trade").json["source"] == "trade"
