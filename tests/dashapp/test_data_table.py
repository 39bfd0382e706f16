"""The data page's server side: ag-grid filter/sort models -> pandas, paging, the exact
download of what the filters show, selections, and the page's callbacks as functions."""

from __future__ import annotations

import base64
import io
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from analytics.bars import bars_from_ticks
from analytics.engine import MarketEngine
from analytics.upload import parse_ohlc_csv
from dashapp.api.params import BadParam
from dashapp.components import data_table as dt
from dashapp.facade import LiveMarketData
from dashapp.services import set_services
from ingest.store.sqlite_datasets import SqliteDatasetStore
from tests.analytics.conftest import _TAPE, SAMPLE_DIR, SYMBOLS, load_trade_tape


@pytest.fixture(scope="module")
def services(tmp_path_factory):
    eng = MarketEngine(list(SYMBOLS))
    for s in SYMBOLS:
        eng.load_bars(
            s,
            bars_from_ticks(
                **load_trade_tape(SAMPLE_DIR / _TAPE.format(s)), tf_ms=1000
            ),
        )
    store = SqliteDatasetStore(tmp_path_factory.mktemp("dt") / "app.db")
    for name in ("BTCUSDT-1h-2021-01.csv", "ETHUSDT-1h-2021-01.csv"):
        store.add(
            "m21", parse_ohlc_csv((SAMPLE_DIR / name).read_bytes(), filename=name)
        )
    svc = SimpleNamespace(
        engine=eng,
        ingestor=SimpleNamespace(rings=dict.fromkeys(SYMBOLS)),
        datasets=store,
    )
    set_services(LiveMarketData(svc))
    yield svc
    store.close()


@pytest.fixture(scope="module")
def live(services):
    table = dt.make_table(
        "live", "BTCUSDT", "ETHUSDT", "1s", 20, "ols", "raw", 1.5, 50
    )
    return table, dt.features_for(table)


def num(type_, filter_, to=None):
    d = {"filterType": "number", "type": type_, "filter": filter_}
    if to is not None:
        d["filterTo"] = to
    return d


def test_number_filters_equal_pandas(live):
    _, f = live
    fr = f.frame
    z, c = fr.zscore, fr["corr"]
    cases = [
        ({"zscore": num("greaterThan", 1)}, z > 1),
        ({"zscore": num("lessThanOrEqual", -0.5)}, z <= -0.5),
        ({"zscore": num("inRange", -1, 1)}, (z > -1) & (z < 1)),
        ({"signal": num("equals", -1)}, fr.signal == -1),
        ({"signal": num("notEqual", 0)}, fr.signal != 0),
        ({"zscore": {"filterType": "number", "type": "blank"}}, z.isna()),
        (
            {"zscore": num("greaterThan", 1), "corr": num("lessThan", 0.5)},
            (z > 1) & (c < 0.5),
        ),
        (
            {
                "zscore": {
                    "filterType": "number",
                    "operator": "OR",
                    "conditions": [num("greaterThan", 2), num("lessThan", -2)],
                }
            },
            (z > 2) | (z < -2),
        ),
        (
            {
                "zscore": {
                    "filterType": "number",
                    "operator": "AND",
                    "conditions": [num("greaterThan", -2), num("lessThan", 2)],
                }
            },
            (z > -2) & (z < 2),
        ),
        ({"zscore": num("greaterThan", None)}, pd.Series(True, index=fr.index)),
    ]
    for model, expected in cases:
        mask = dt.filter_mask(fr, model)
        np.testing.assert_array_equal(
            mask, expected.to_numpy(dtype=bool), err_msg=str(model)
        )
        assert 0 < mask.sum() <= len(fr) or expected.sum() == 0


def test_text_filters_on_iso_times(live):
    _, f = live
    fr = f.frame
    iso = pd.Series(
        np.datetime_as_string(fr.ts.to_numpy().astype("datetime64[ms]"), unit="ms")
    )
    iso = iso + "Z"
    model = {"ts": {"filterType": "text", "type": "contains", "filter": "T23:58"}}
    np.testing.assert_array_equal(
        dt.filter_mask(fr, model), iso.str.contains("T23:58").to_numpy()
    )
    model = {"ts": {"filterType": "text", "type": "startsWith", "filter": "2024-08-09"}}
    assert dt.filter_mask(fr, model).sum() == iso.str.startswith("2024-08-09").sum() > 0
    model = {"adf_ts": {"filterType": "text", "type": "blank"}}
    np.testing.assert_array_equal(dt.filter_mask(fr, model), (fr.adf_ts < 0).to_numpy())


def test_bad_filter_models_name_the_problem(live):
    _, f = live
    with pytest.raises(BadParam, match="no column"):
        dt.filter_mask(f.frame, {"nope": num("equals", 1)})
    with pytest.raises(BadParam, match="unsupported number filter"):
        dt.filter_mask(f.frame, {"zscore": num("regex", 1)})
    with pytest.raises(BadParam, match="no column"):
        dt.sort_frame(f.frame, [{"colId": "nope", "sort": "asc"}])


def test_sort_and_paging(live):
    _, f = live
    req = {
        "startRow": 100,
        "endRow": 200,
        "sortModel": [{"colId": "zscore", "sort": "desc"}],
        "filterModel": {"zscore": num("greaterThan", -10)},
    }
    resp = dt.rows_response(f, req)
    ref = f.frame[f.frame.zscore > -10].sort_values(
        "zscore", ascending=False, kind="stable"
    )
    assert resp["rowCount"] == len(ref)
    assert len(resp["rowData"]) == 100
    assert [r["zscore"] for r in resp["rowData"]] == ref.zscore.iloc[100:200].tolist()
    first = dt.rows_response(f, {"startRow": 0, "endRow": 3})["rowData"][0]
    assert first["ts"].endswith("Z") and first["zscore"] is None  # NaN -> null
    assert set(first) == set(dt.TABLE_COLUMNS)  # the features, then the legs' book


def test_download_holds_exactly_what_the_filters_show(live):
    table, f = live
    req = {
        "startRow": 0,
        "endRow": 100,
        "sortModel": [{"colId": "corr", "sort": "asc"}],
        "filterModel": {
            "signal": num("notEqual", 0),
            "zscore": num("greaterThan", -1.8),
        },
    }
    out = dt.export_frame(f, table.sel, req)
    shown = dt.rows_response(f, {**req, "endRow": 10_000})
    assert len(out) == shown["rowCount"] > 0
    iso = dt._iso_col(out.ts.to_numpy()).tolist()
    assert iso == [r["ts"] for r in shown["rowData"]]
    assert "BTCUSDT_close" in out.columns and "vol_ETHUSDT" in out.columns
    from dashapp.components.data_downloads import table_file

    payload = table_file(table, req, "csv")
    back = pd.read_csv(io.BytesIO(base64.b64decode(payload["content"])))
    assert len(back) == len(out) and back.ts.tolist() == iso
    np.testing.assert_allclose(back.zscore, out.zscore, rtol=1e-9)
    assert payload["filename"].startswith("data_BTCUSDT-ETHUSDT_1s_2024")


def test_selection_validation(services):
    with pytest.raises(BadParam) as e:
        dt.make_table("live", "BTCUSDT", "BTCUSDT", "1s", 20, "ols", "raw", 2, None)
    assert e.value.param == "b"
    with pytest.raises(BadParam) as e:
        dt.make_table("live", "BTCUSDT", "ETHUSDT", "1s", 2, "ols", "raw", 2, None)
    assert e.value.param == "window"
    with pytest.raises(BadParam) as e:
        dt.make_table("nope", "BTCUSDT", "ETHUSDT", "1h", 20, "ols", "raw", 2, None)
    assert e.value.param == "dataset"
    with pytest.raises(BadParam) as e:
        dt.make_table("live", "BTCUSDT", "ETHUSDT", "1h", 20, "ols", "raw", 2, None)
    assert e.value.param == "timeframe"
    with pytest.raises(BadParam) as e:
        dt.make_table(
            "live", "BTCUSDT", "ETHUSDT", "1s", 20, "ols", "raw", "x", None
        )
    assert e.value.param == "entry"


def test_dataset_table_and_cache(services):
    table = dt.make_table(
        "m21", "ETHUSDT", "BTCUSDT", "1h", 24, "ols", "log", 2, None
    )
    f = dt.features_for(table)
    assert len(f) == 744 and f.adf_every == 24
    assert dt.features_for(table) is f  # paging never recomputes
    assert dt.Table.from_dict(table.as_dict()) == table
    assert f.frame.a_open.iloc[0] == 736.42 and f.frame.b_open.iloc[0] == 28923.63
    assert np.isfinite(f.frame.adf_pvalue.iloc[-1])


def test_page_callbacks_as_functions(services):
    pytest.importorskip("dash")
    import dash

    app = dash.Dash(
        __name__, use_pages=True, pages_folder=""
    )  # registry for register_page
    del app
    from dashapp.pages import data as page

    sel, status, cols = page.load_table(
        1, "m21", "BTCUSDT", "ETHUSDT", "1h", 24, "ols", "raw", 2, None
    )
    assert sel["sel"]["dataset"] == "m21" and "744 rows of 1h bars" in status.children
    assert (
        cols[1]["headerName"] == "Signal" and cols[11]["headerName"] == "BTCUSDT open"
    )
    resp = page.serve_rows(
        {"startRow": 0, "endRow": 50, "sortModel": [], "filterModel": {}}, sel
    )
    assert resp["rowCount"] == 744 and len(resp["rowData"]) == 50
    sel_none, err, _ = page.load_table(
        1, "live", "BTCUSDT", "ETHUSDT", "1s", 2, "ols", "raw", 2, None
    )
    assert sel_none is None and "window" in err.children


def _find(component, id_):
    """The component with ``id_`` in a layout tree (None if absent)."""
    if getattr(component, "id", None) == id_:
        return component
    kids = getattr(component, "children", None)
    for child in kids if isinstance(kids, (list, tuple)) else [kids]:
        if hasattr(child, "to_plotly_json"):
            hit = _find(child, id_)
            if hit is not None:
                return hit
    return None


def test_data_page_opens_on_the_dataset_of_its_url(services, tmp_path, monkeypatch):
    import dash

    from ingest.store.sqlite_trades import SqliteTradeStore

    empty = SqliteTradeStore(tmp_path / "none.db").start()  # the tick fields read the store
    monkeypatch.setattr(services, "store", empty, raising=False)

    del dash  # the registry exists after test_page_callbacks_as_functions's Dash()
    from dashapp import ids
    from dashapp.pages import data as page

    view = page.layout(dataset="m21", a="ETHUSDT", timeframe="1d")
    values = {k: _find(view, getattr(ids.Data, k)) for k in ("SOURCE", "A", "B", "TF")}
    assert values["SOURCE"].value == "m21"
    assert (values["A"].value, values["B"].value) == ("ETHUSDT", "BTCUSDT")
    assert values["TF"].value == "1d" and values["TF"].options[0] == "1h"
    assert not _find(view, ids.Data.STATUS).children

    live = page.layout()
    assert _find(live, ids.Data.SOURCE).value == "(live)"  # dataset_select.LIVE_VALUE
    assert _find(live, ids.Data.TF).value == "1s"

    gone = page.layout(dataset="nope<script>", w="5")
    assert _find(gone, ids.Data.SOURCE).value == "(live)"
    # under the source select, where no callback overwrites it (the status line is)
    notice = _find(gone, ids.Data.SOURCE + "-note").children
    assert "No dataset named 'nope<script>'" in notice and "m21" in notice
    assert _find(gone, ids.Data.WINDOW).value == 5
    bad = page.layout(w="x", reg="nope")
    assert _find(bad, ids.Data.WINDOW).value == 60
    assert "w='x' is not valid, using 60" in _find(bad, ids.Data.SOURCE + "-note").children


def test_ticks_download_over_a_time_range(services, tmp_path):
    from dashapp.components import data_downloads as dd
    from ingest.models import Trade
    from ingest.store.sqlite_trades import SqliteTradeStore

    ticks = load_trade_tape(SAMPLE_DIR / _TAPE.format("ETHUSDT"))
    store = SqliteTradeStore(tmp_path / "ticks.db").start()
    for t, i, p, q, m in zip(
        *(
            ticks[k].tolist()
            for k in ("time_ms", "trade_id", "price", "qty", "buyer_is_maker")
        ),
        strict=True,
    ):
        store.add_trade(Trade("ETHUSDT", i, t, p, q, m, t))
    assert store.flush()
    services.store = store
    try:
        payload = dd.ticks_file(
            "ETHUSDT", "2024-08-08 23:58:00", "2024-08-08T23:59:00Z", "csv"
        )
        got = pd.read_csv(io.BytesIO(base64.b64decode(payload["content"])))
        t0, t1 = 1723161480000, 1723161540000
        keep = (ticks["time_ms"] >= t0) & (ticks["time_ms"] < t1)
        assert len(got) == keep.sum() > 100
        np.testing.assert_array_equal(got.trade_id, ticks["trade_id"][keep])
        np.testing.assert_array_equal(got.price, ticks["price"][keep])
        assert payload["filename"].startswith("ticks_ETHUSDT_20240808T2358")
        # empty From/To: the last five minutes held, To exclusive after the last trade
        d = dd.tick_defaults("ETHUSDT")
        last = int(ticks["time_ms"].max())
        end = (last // 1000 + 1) * 1000
        assert pd.Timestamp(d["end"], tz="UTC").value // 10**6 == end
        assert pd.Timestamp(d["start"], tz="UTC").value // 10**6 == end - 300_000
        assert d["end_ph"].startswith("last held 2024-08-0")
        got = pd.read_csv(io.BytesIO(base64.b64decode(
            dd.ticks_file("ETHUSDT", None, "", "csv")["content"])))
        keep = ticks["time_ms"] >= end - 300_000
        np.testing.assert_array_equal(got.trade_id, ticks["trade_id"][keep])
        for start, end, param in [
            ("2024-08-08 23:59", "2024-08-08 23:58", "end"),
            ("yesterday-ish", "2024-08-08 23:58", "start"),
            ("2024-08-01", "2024-08-08", "end"),
        ]:
            with pytest.raises(BadParam) as e:
                dd.ticks_file("ETHUSDT", start, end, "csv")
            assert e.value.param == param
        with pytest.raises(BadParam) as e:
            dd.ticks_file("DOGEUSDT", "2024-08-08 23:58", "2024-08-08 23:59", "csv")
        assert e.value.param == "symbol"
    finally:
        store.close()
        del services.store


def test_bars_and_pair_downloads_of_a_dataset(services):
    from dashapp.components import data_downloads as dd

    sel = dt.make_table(
        "m21", "BTCUSDT", "ETHUSDT", "1h", 24, "ols", "raw", 2, None
    ).sel
    bars = dd.bars_file(sel, "csv")
    assert (
        bars["filename"]
        == "bars_BTCUSDT-ETHUSDT_1h_20210101T000000Z-20210131T230000Z.csv"
    )
    back = pd.read_csv(io.BytesIO(base64.b64decode(bars["content"])))
    assert back.symbol.value_counts().to_dict() == {"BTCUSDT": 744, "ETHUSDT": 744}
    pair = dd.pair_file(sel, "parquet")
    assert pair["filename"].startswith("pair_BTCUSDT-ETHUSDT_1h_2021") and pair[
        "filename"
    ].endswith(".parquet")
    frame = pd.read_parquet(io.BytesIO(base64.b64decode(pair["content"])))
    assert len(frame) == 744 and list(frame.columns)[:3] == ["ts", "price_a", "price_b"]


def test_source_choices_follow_the_dataset(services):
    from dashapp.components.data_downloads import source_choices

    live = source_choices("live", "ETHUSDT", "BTCUSDT", "1m", ("1s", "1m", "5m"))
    assert live == (
        ["BTCUSDT", "ETHUSDT"],
        "ETHUSDT",
        "BTCUSDT",
        ["1s", "1m", "5m"],
        "1m",
    )
    ds = source_choices("m21", "SOLUSDT", "BTCUSDT", "1s", ("1s", "1m", "5m"))
    assert ds == (
        ["BTCUSDT", "ETHUSDT"],
        "BTCUSDT",
        "ETHUSDT",
        ["1h", "4h", "1d"],
        "1h",
    )
    assert source_choices("gone", "A", "B", "1s", ("1s",)) is None
