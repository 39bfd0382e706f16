"""``start``, ``end`` and ``limit`` on ``/api/bars`` and ``/api/pair``: a cut equals the
same rows of the whole pull, bounds are inclusive, ISO-8601 and epoch ms agree, and every
bad value is a 400 naming its parameter. On the real sample tape's 1 s bars."""

from __future__ import annotations

import pandas as pd
import pytest

from dashapp.api import params
from dashapp.api.params import BadParam
from tests.dashapp.api.test_datasets import client, engine, services  # noqa: F401 (fixtures)

PAIR = "/api/pair?a=BTCUSDT&b=ETHUSDT&timeframe=1s&window=30"
BARS = "/api/bars?symbol=ETHUSDT&timeframe=1s"


@pytest.mark.parametrize("path", [PAIR, BARS, PAIR + "&regression=kalman&prices=log"])
def test_limit_is_the_tail_of_the_whole_pull(client, path):
    whole = client.get(path).json
    assert len(whole) > 600
    for n in (1, 7, 600, len(whole), len(whole) + 5):
        cut = client.get(f"{path}&limit={n}").json
        assert cut == whole[-n:]


@pytest.mark.parametrize("path", [PAIR, BARS])
def test_start_and_end_are_inclusive_and_iso_equals_epoch_ms(client, path):
    whole = client.get(path).json
    lo, hi = whole[100]["ts"], whole[400]["ts"]  # ISO-8601 strings with ms
    by_iso = client.get(f"{path}&start={lo}&end={hi}").json
    assert by_iso == whole[100:401]
    lo_ms, hi_ms = (params.time_ms({"t": t}, "t") for t in (lo, hi))
    assert client.get(f"{path}&start={lo_ms}&end={hi_ms}").json == by_iso
    # the same instant written at UTC+02:00 ("+" escaped in a query string)
    lo_plus2 = pd.Timestamp(lo).tz_convert("Etc/GMT-2").isoformat().replace("+", "%2B")
    assert "02:00" in lo_plus2
    assert client.get(f"{path}&start={lo_plus2}").json == whole[100:]
    assert client.get(f"{path}&start={lo_ms}&limit=5").json == whole[-5:]
    assert client.get(f"{path}&end={hi_ms}&limit=5").json == whole[396:401]
    assert client.get(f"{path}&start={hi_ms + 1}&end={hi_ms + 1}").json == []


def test_a_cut_of_a_dataset_pair_equals_the_same_rows_of_the_whole(client):
    from tests.dashapp.api.test_datasets import BTC_1H, ETH_1H, post

    for sym, f in (("BTCUSDT", BTC_1H), ("ETHUSDT", ETH_1H)):
        assert post(client, f.read_bytes(), f.name, dataset="h1", symbol=sym).status_code == 200
    q = "/api/pair?dataset=h1&a=ETHUSDT&b=BTCUSDT&window=24"
    whole = client.get(q).json
    assert client.get(q + "&limit=50").json == whole[-50:]
    assert client.get(q + f"&start={whole[10]['ts']}&end={whole[20]['ts']}").json == whole[10:21]
    bars = client.get("/api/bars?dataset=h1&symbol=BTCUSDT").json
    assert client.get("/api/bars?dataset=h1&symbol=BTCUSDT&limit=3").json == bars[-3:]


@pytest.mark.parametrize(
    "query,param",
    [
        ("limit=0", "limit"),
        ("limit=-5", "limit"),
        ("limit=1000001", "limit"),
        ("limit=ten", "limit"),
        ("start=yesterday-ish", "start"),
        ("start=-1", "start"),
        ("end=99999999999999999999", "end"),
        ("start=1e309", "start"),
        ("end=NaN", "end"),
        ("start=2024-01-02&end=2024-01-01", "end"),
        ("start=0001-01-01", "start"),
        ("start=' OR 1=1--", "start"),
    ],
)
@pytest.mark.parametrize("path", [PAIR, BARS])
def test_bad_range_values_are_a_400_naming_the_parameter(client, path, query, param):
    r = client.get(f"{path}&{query}")
    assert r.status_code == 400, r.data
    assert r.json["param"] == param
    assert param in r.json["error"]


@pytest.mark.parametrize(
    "text,ms",
    [
        ("0", 0),
        ("1723161255000", 1_723_161_255_000),
        ("2024-08-08T23:54:15.000Z", 1_723_161_255_000),
        ("2024-08-08T23:54:15", 1_723_161_255_000),  # no offset: UTC
        ("2024-08-09T01:54:15+02:00", 1_723_161_255_000),
        ("2024-08-08 23:54:15.123", 1_723_161_255_123),
        ("2999-01-01T00:00:00Z", 32_472_144_000_000),  # beyond pandas ns range
        ("9999-12-31T23:59:59.999Z", params.MAX_EPOCH_MS),
        ("  ", None),
    ],
)
def test_time_ms_reads_epoch_ms_and_iso(text, ms):
    assert params.time_ms({"t": text}, "t") == ms
    assert params.time_ms({}, "t") is None


def test_row_range_returns_none_when_nothing_is_asked():
    assert params.row_range({}) == (None, None, None)
    assert params.row_range({"start": "5", "end": "5", "limit": "2"}) == (5, 5, 2)
    with pytest.raises(BadParam, match="end: must not be before start"):
        params.row_range({"start": "6", "end": "5"})


@pytest.mark.parametrize("chunk", [1, 3, 4, 1000])
def test_json_records_in_chunks_equal_one_dump(chunk):
    import numpy as np
    import orjson

    from dashapp.api.market import json_records

    frame = pd.DataFrame(
        {"ts": [0, 1, 1000, 1_723_161_255_123], "x": [1.5, np.nan, np.inf, -0.0],
         "n": [1, 2, 3, 4]}
    )
    body = b"".join(json_records(frame, chunk_rows=chunk))
    expect = frame.assign(
        ts=["1970-01-01T00:00:00.000Z", "1970-01-01T00:00:00.001Z",
            "1970-01-01T00:00:01.000Z", "2024-08-08T23:54:15.123Z"]
    )
    assert orjson.loads(body) == orjson.loads(
        orjson.dumps(expect.to_dict("records"), option=orjson.OPT_SERIALIZE_NUMPY)
    )
    assert b"".join(json_records(frame.iloc[:0], chunk_rows=chunk)) == b"[]"


def test_a_pull_longer_than_a_chunk_streams_and_parses_whole(client, monkeypatch):
    from dashapp.api import market

    monkeypatch.setattr(market, "JSON_CHUNK_ROWS", 64)
    r = client.get(PAIR)
    assert "Content-Length" not in r.headers and len(r.json) > 64 * 5
    assert r.json[-65:] == client.get(f"{PAIR}&limit=65").json
    monkeypatch.undo()
    assert r.json == client.get(PAIR).json  # streamed or not, the same records
    short = client.get(f"{PAIR}&limit=10")
    assert int(short.headers["Content-Length"]) == len(short.data)


def test_adf_of_a_dataset_matches_statsmodels_on_its_spread(client):
    import numpy as np
    from statsmodels.tsa.stattools import adfuller, coint

    from tests.dashapp.api.test_datasets import BTC_1H, ETH_1H, post

    for sym, f in (("BTCUSDT", BTC_1H), ("ETHUSDT", ETH_1H)):
        assert post(client, f.read_bytes(), f.name, dataset="h1", symbol=sym).status_code == 200
    q = "a=ETHUSDT&b=BTCUSDT&window=24&prices=log&dataset=h1"
    rep = client.get(f"/api/adf?{q}").json
    assert rep["dataset"] == "h1" and rep["timeframe"] == "1h"
    rows = pd.DataFrame(client.get(f"/api/pair?{q}").json).astype(
        {"spread": float, "price_a": float, "price_b": float}
    )
    spread = rows["spread"].dropna().to_numpy()
    # the app's lag cap (analytics.stationarity): Schwert's rule, at most 12
    lag = min(int(np.ceil(12 * (len(spread) / 100) ** 0.25)), 12)
    stat, pvalue, usedlag, nobs, *_ = adfuller(
        spread, maxlag=lag, autolag="AIC", result_object=False
    )
    assert rep["stat"] == pytest.approx(stat, rel=1e-9)
    assert rep["pvalue"] == pytest.approx(pvalue, rel=1e-9)
    assert (rep["usedlag"], rep["nobs"]) == (usedlag, nobs)
    lag = min(int(np.ceil(12 * (len(rows) / 100) ** 0.25)), 12)
    c_stat, c_p, _ = coint(
        np.log(rows["price_a"]), np.log(rows["price_b"]), maxlag=lag, autolag="aic"
    )
    assert rep["coint_stat"] == pytest.approx(c_stat, rel=1e-9)
    assert rep["coint_pvalue"] == pytest.approx(c_p, rel=1e-9)
    bad = client.get("/api/adf?a=ETHUSDT&b=BTCUSDT&dataset=nope")
    assert bad.status_code == 400 and bad.json["param"] == "dataset"
