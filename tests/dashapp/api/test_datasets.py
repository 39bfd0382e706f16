"""``/api/upload``, ``/api/datasets`` and ``dataset=`` on ``/api/bars`` and ``/api/pair``,
through a Flask test client on a real engine (the sample tape's 1 s bars) and a real
dataset store in a temporary SQLite file.

Must-shows of issue 6 covered here: the round trip (bars exported by the app and uploaded
again give identical pair analytics), the real Binance kline files upload and analyse,
and every kind of bad file is refused with its message while the store stays unchanged.
"""

from __future__ import annotations

import io
import json
import sqlite3
from types import SimpleNamespace

import flask
import numpy as np
import pandas as pd
import pytest

from analytics.bars import bars_from_ticks
from analytics.engine import MarketEngine
from analytics.pair import pair_series
from dashapp import api
from dashapp.facade import LiveMarketData
from dashapp.services import set_services
from ingest.store.sqlite_datasets import SqliteDatasetStore
from tests.analytics.conftest import _TAPE, SAMPLE_DIR, SYMBOLS, load_trade_tape

BTC_1H = SAMPLE_DIR / "BTCUSDT-1h-2021-01.csv"
ETH_1H = SAMPLE_DIR / "ETHUSDT-1h-2021-01.csv"


@pytest.fixture(scope="module")
def engine():
    eng = MarketEngine(list(SYMBOLS))
    for s in SYMBOLS:
        eng.load_bars(
            s,
            bars_from_ticks(
                **load_trade_tape(SAMPLE_DIR / _TAPE.format(s)), tf_ms=1000
            ),
        )
    return eng


@pytest.fixture
def services(engine, tmp_path):
    svc = SimpleNamespace(
        engine=engine,
        ingestor=SimpleNamespace(rings=dict.fromkeys(SYMBOLS)),
        datasets=SqliteDatasetStore(tmp_path / "app.db"),
    )
    yield svc
    svc.datasets.close()


@pytest.fixture
def client(services):
    set_services(LiveMarketData(services))
    app = flask.Flask(__name__)
    api.register(app)
    return app.test_client()


def post(client, content: bytes, filename: str, **form):
    data = {"file": (io.BytesIO(content), filename), **form}
    return client.post("/api/upload", data=data, content_type="multipart/form-data")


def db_state(services) -> list:
    with sqlite3.connect(services.datasets.path) as conn:
        return [
            conn.execute(f"SELECT * FROM {t} ORDER BY 1, 2").fetchall()
            for t in ("datasets", "dataset_symbols", "dataset_bars")
        ]


# -- round trip ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "tf,regression,prices",
    [
        ("1s", "ols", "raw"),
        ("1s", "kalman", "log"),
        ("1m", "ols", "log"),
        ("1s", "huber", "raw"),
    ],
)
def test_round_trip_exported_bars_give_identical_pair_analytics(
    client, tf, regression, prices
):
    for sym in SYMBOLS:
        r = client.get(f"/api/bars?symbol={sym}&timeframe={tf}&format=csv")
        assert r.status_code == 200
        up = post(client, r.data, f"export_{sym}.csv", symbol=sym, dataset="rt")
        assert up.status_code == 200, up.json
    assert up.json["symbols"] == list(SYMBOLS) and up.json["timeframe"] == tf
    window = 5 if tf == "1m" else 30
    q = f"a=BTCUSDT&b=ETHUSDT&window={window}&regression={regression}&prices={prices}"
    live = client.get(f"/api/pair?{q}&timeframe={tf}")
    uploaded = client.get(f"/api/pair?{q}&dataset=rt")  # timeframe: the dataset's own
    assert live.status_code == uploaded.status_code == 200, (live.json, uploaded.json)
    assert len(live.json) > 5
    assert uploaded.json == live.json  # identical, number for number, null for null


def test_round_trip_of_the_long_bars_download_with_a_symbol_column(client, services):
    from dashapp import queries

    parts = []
    for sym in SYMBOLS:
        f = queries.bars_frame(sym, 1000)
        f.insert(0, "symbol", sym)
        parts.append(f)
    from dashapp.api.downloads import frame_bytes

    content = frame_bytes(pd.concat(parts, ignore_index=True), "csv")
    r = post(client, content, "bars_BTCUSDT-ETHUSDT_1s.csv", dataset="long")
    assert r.status_code == 200, r.json
    assert r.json["symbols"] == list(SYMBOLS)
    a = client.get("/api/pair?a=BTCUSDT&b=ETHUSDT&window=20&dataset=long").json
    b = client.get("/api/pair?a=BTCUSDT&b=ETHUSDT&window=20&timeframe=1s").json
    assert a == b


# -- real Binance kline files ---------------------------------------------------------------
def test_real_binance_klines_upload_and_analyse(client):
    r1 = post(client, BTC_1H.read_bytes(), BTC_1H.name, dataset="spot-1h")
    r2 = post(client, ETH_1H.read_bytes(), ETH_1H.name, dataset="spot-1h")
    assert r1.status_code == r2.status_code == 200
    assert r2.json == {
        "dataset": "spot-1h",
        "symbols": ["BTCUSDT", "ETHUSDT"],
        "added": ["ETHUSDT"],
        "rows": 744,
        "inserted": 744,
        "identical": 0,
        "start": "2021-01-01T00:00:00.000Z",
        "end": "2021-01-31T23:00:00.000Z",
        "timeframe": "1h",
        "kind": "binance",
        "filename": ETH_1H.name,
    }
    bars = client.get("/api/bars?dataset=spot-1h&symbol=BTCUSDT").json
    assert len(bars) == 744 and bars[0]["open"] == 28923.63
    assert bars[0]["ts"] == "2021-01-01T00:00:00.000Z"
    pair = client.get(
        "/api/pair?dataset=spot-1h&a=ETHUSDT&b=BTCUSDT&window=24&prices=log"
    )
    assert pair.status_code == 200
    got = pd.DataFrame(pair.json)
    # oracle: pandas reads the files independently, then the analytics on its closes
    cols = ["open_time", "o", "h", "l", "close", "v", "ct", "qv", "n", "tb", "tq", "i"]
    a = pd.read_csv(ETH_1H, header=None, names=cols)
    b = pd.read_csv(BTC_1H, header=None, names=cols)
    ref = pair_series(a.open_time, a.close, b.close, window=24, prices="log")
    assert len(got) == 744
    np.testing.assert_allclose(
        got.zscore.astype(float), ref.zscore, rtol=1e-12, equal_nan=True
    )
    np.testing.assert_allclose(
        got.beta.astype(float), ref.beta, rtol=1e-12, equal_nan=True
    )
    # resampled to 1 d on request (a multiple of the dataset's 1 h)
    day = client.get("/api/bars?dataset=spot-1h&symbol=BTCUSDT&timeframe=1d").json
    assert len(day) == 31 and day[0]["open"] == 28923.63


def test_binance_1m_files_of_both_kinds_upload(client):
    for name in ("BTCUSDT-1m-2022-09-05.csv", "BTCUSDT-1m-2020-01-01.csv"):
        r = post(client, (SAMPLE_DIR / name).read_bytes(), name)
        assert r.status_code == 200, r.json
        assert r.json["dataset"] == name[:-4] and r.json["rows"] == 1440
        assert r.json["timeframe"] == "1m"
    names = [d["dataset"] for d in client.get("/api/datasets").json["datasets"]]
    assert names == ["BTCUSDT-1m-2020-01-01", "BTCUSDT-1m-2022-09-05"]


# -- bad files: each refused with its message, the store unchanged ----------------------------
GOOD = BTC_1H.read_text().splitlines()


def _lines(lines: list[str]) -> bytes:
    return ("\n".join(lines) + "\n").encode()


def _swap(lines, i, j):
    out = list(lines)
    out[i], out[j] = out[j], out[i]
    return out


def _set(lines, i, col, value):
    out = list(lines)
    cells = out[i].split(",")
    cells[col] = value
    out[i] = ",".join(cells)
    return out


def _five_minute_tail(lines):
    out = list(lines[:60])
    start = int(out[40].split(",")[0])
    for k, i in enumerate(range(40, 60)):
        cells = out[i].split(",")
        cells[0], cells[6] = (
            str(start + k * 7_200_000),
            str(start + k * 7_200_000 + 7_199_999),
        )
        out[i] = ",".join(cells)
    return out


BAD_FILES = {
    "wrong columns": (b"when,price\n2024-01-01,1\n", "wrong columns"),
    "text in a number": (
        _lines(_set(GOOD, 9, 2, "12x")),
        "column 'high': not a number in line 10 ('12x')",
    ),
    "empty": (b"", "the file is empty"),
    "over the cap": (b"x" * (32 * 1024 * 1024 + 1), "over the cap"),
    "unsorted": (_lines(_swap(GOOD, 20, 21)), "times not sorted ascending: line 22"),
    "duplicate times": (
        _lines(GOOD[:30] + [GOOD[29]] + GOOD[30:]),
        "duplicate times: line 31",
    ),
    "high < low": (_lines(_set(GOOD, 4, 2, "1.0")), "high < low in line 5"),
    "mixed timeframes": (_lines(_five_minute_tail(GOOD)), "mixed timeframes"),
}


@pytest.mark.parametrize("kind", list(BAD_FILES))
def test_bad_file_is_refused_and_nothing_changes(client, services, kind):
    assert (
        post(client, ETH_1H.read_bytes(), ETH_1H.name, dataset="keep").status_code
        == 200
    )
    before, listed = db_state(services), client.get("/api/datasets").json
    content, expected = BAD_FILES[kind]
    r = post(client, content, BTC_1H.name, dataset="keep")
    status = 413 if kind == "over the cap" else 400
    assert r.status_code == status, r.json
    assert set(r.json) == {"error", "problems"}
    assert any(expected in p for p in r.json["problems"]), r.json["problems"]
    assert db_state(services) == before
    assert client.get("/api/datasets").json == listed
    assert client.get("/api/pair?dataset=keep&a=ETHUSDT&b=BTCUSDT").json["param"] == "b"


def test_upload_request_errors(client):
    r = client.post(
        "/api/upload", data={"symbol": "BTCUSDT"}, content_type="multipart/form-data"
    )
    assert r.status_code == 400 and r.json["error"] == "file: is required"
    r = post(client, BTC_1H.read_bytes(), BTC_1H.name, dataset="no spaces allowed")
    assert r.status_code == 400 and "dataset name" in r.json["problems"][0]
    assert (
        post(client, BTC_1H.read_bytes(), BTC_1H.name, dataset="d").status_code == 200
    )
    r = post(client, BTC_1H.read_bytes(), BTC_1H.name, dataset="d")  # the same file again
    assert r.status_code == 200 and r.json["inserted"] == 0 and r.json["identical"] == 744
    r = post(
        client,
        (SAMPLE_DIR / "BTCUSDT-1m-2020-01-01.csv").read_bytes(),
        "ETHUSDT-1m-x.csv",
        dataset="d",
    )
    assert (
        r.status_code == 400
        and "holds 1h bars, this file has 1m bars" in r.json["problems"][0]
    )


def test_upload_appends_the_next_part_to_an_existing_dataset(client):
    """November after October (two consecutive parts of the real 1 h file), overlapping by
    24 identical bars: one dataset with every bar once; a conflicting row is refused."""
    lines = BTC_1H.read_text().splitlines()
    oct_, nov = _lines(lines[:400]), _lines(lines[376:])
    assert post(client, oct_, "BTCUSDT-1h-part1.csv", dataset="months").status_code == 200
    r = post(client, nov, "BTCUSDT-1h-part2.csv", dataset="months")
    assert r.status_code == 200, r.json
    assert (r.json["inserted"], r.json["identical"], r.json["rows"]) == (344, 24, 368)
    (ds,) = client.get("/api/datasets").json["datasets"]
    assert ds["rows"] == {"BTCUSDT": 744} and ds["end"] == "2021-01-31T23:00:00.000Z"
    whole = client.get("/api/bars?dataset=months&symbol=BTCUSDT&format=csv").data
    post(client, BTC_1H.read_bytes(), BTC_1H.name, dataset="whole")
    assert client.get("/api/bars?dataset=whole&symbol=BTCUSDT&format=csv").data == whole
    r = post(client, _lines(_set(lines[376:], 3, 5, "1.5")), "BTCUSDT-1h-x.csv",
             dataset="months")
    assert r.status_code == 400
    assert "line 4 (2021-01-16T19:00:00.000Z) has volume 1.5" in r.json["problems"][0]
    assert "DELETE /api/datasets/months" in r.json["problems"][-1]


# -- dataset parameter ------------------------------------------------------------------------
def test_dataset_parameter_errors_name_the_parameter(client):
    post(client, BTC_1H.read_bytes(), BTC_1H.name, dataset="one")
    r = client.get("/api/pair?dataset=nope&a=BTCUSDT&b=ETHUSDT")
    assert r.status_code == 400 and r.json["param"] == "dataset"
    assert "no such dataset: 'nope'; datasets: one" in r.json["error"]
    r = client.get(
        "/api/bars?dataset=one&symbol=ETHUSDT"
    )  # a live symbol, not in the dataset
    assert r.status_code == 400 and r.json["param"] == "symbol"
    r = client.get("/api/bars?dataset=one&symbol=BTCUSDT&timeframe=90m")
    assert r.status_code == 400 and r.json["param"] == "timeframe"
    r = client.get("/api/pair?dataset=one&a=BTCUSDT&b=BTCUSDT")
    assert r.status_code == 400 and r.json["param"] == "b"


def test_delete_dataset(client):
    post(client, BTC_1H.read_bytes(), BTC_1H.name, dataset="gone")
    assert client.delete("/api/datasets/gone").json == {"removed": "gone"}
    r = client.delete("/api/datasets/gone")
    assert r.status_code == 404 and r.json["param"] == "dataset"
    assert client.get("/api/datasets").json == {"datasets": []}
    assert client.get("/api/bars?dataset=gone&symbol=BTCUSDT").status_code == 400


def test_dataset_bars_are_never_mixed_into_live_data(client, engine):
    before = {s: len(engine.bars(s, 1000)) for s in SYMBOLS}
    post(client, BTC_1H.read_bytes(), BTC_1H.name, dataset="sep")
    assert {s: len(engine.bars(s, 1000)) for s in SYMBOLS} == before
    live = client.get("/api/bars?symbol=BTCUSDT&timeframe=1s").json
    assert live[0]["ts"].startswith("2024-08-08")
    assert json.dumps(live).count("2021-01-01") == 0
