"""The data page's table and its bar download carry the legs' top of book, on the REAL
futures captures (trades + bookTicker): equal to an independent pandas computation
from the raw frames, NaN before a leg's first quote."""

from __future__ import annotations

import base64
import io
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from analytics.registry import BAR_COLUMNS, BOOK_COLUMNS
from dashapp.components import data_table as dt
from dashapp.components.data_downloads import bars_file
from dashapp.facade import LiveMarketData
from dashapp.services import set_services
from tests.analytics.test_engine_book import events, pandas_served, quotes, run


@pytest.fixture(scope="module")
def fed():
    tape = events()
    t0 = min(e[3] for e in tape)
    tape = [e for e in tape if e[1] == "trade" or e[3] >= t0 + 30_000]  # book from 30 s in
    eng, _ = run(tape)
    eng.on_clock(max(e[3] for e in tape) + 600_000)
    set_services(LiveMarketData(SimpleNamespace(
        engine=eng, market="futures", ingestor=SimpleNamespace(rings=dict.fromkeys(eng.symbols)))))
    return tape, eng


def test_the_table_has_each_legs_book_as_of_the_bar_end(fed):
    tape, eng = fed
    table = dt.make_table("live", "BTCUSDT", "ETHUSDT", "1s", 20, "ols", "raw", 1.5, 50)
    frame = dt.features_for(table).frame
    assert tuple(frame.columns) == dt.TABLE_COLUMNS
    ts = frame["ts"].to_numpy()
    for leg, name in (("a", "BTCUSDT"), ("b", "ETHUSDT")):
        want = pandas_served(quotes(tape, name), ts, 1_000)
        for c in dt.LEG_BOOK:
            np.testing.assert_allclose(frame[f"{leg}_{c}"].to_numpy(), want[c].to_numpy(),
                                       rtol=1e-12, equal_nan=True, err_msg=f"{leg} {c}")
        first = quotes(tape, name)["times"][0]
        early = ts + 1_000 <= first
        assert early.sum() >= 20 and frame.loc[early, f"{leg}_bid"].isna().all()
    grid = {d["field"] for d in dt.column_defs("BTCUSDT", "ETHUSDT")}
    assert set(dt.BOOK_TABLE_COLUMNS) <= grid
    rows = dt.rows_response(dt.features_for(table), {"startRow": 0, "endRow": 5})["rowData"]
    assert rows[0]["a_bid"] is None  # NaN -> null, before the first quote


def test_the_bars_download_has_the_book_columns(fed):
    tape, _ = fed
    sel = dt.make_table("live", "BTCUSDT", "ETHUSDT", "1s", 20, "ols", "raw", 1.5, 50).sel
    payload = bars_file(sel, "csv")
    back = pd.read_csv(io.BytesIO(base64.b64decode(payload["content"])))
    assert tuple(back.columns) == ("symbol", *BAR_COLUMNS)
    eth = back[back.symbol == "ETHUSDT"]
    ts = ((pd.to_datetime(eth["ts"]) - pd.Timestamp(0, tz="UTC"))
          // pd.Timedelta(milliseconds=1)).to_numpy(np.int64)
    want = pandas_served(quotes(tape, "ETHUSDT"), ts, 1_000)
    for c in BOOK_COLUMNS:  # CSV keeps 10 significant digits
        np.testing.assert_allclose(eth[c].to_numpy(), want[c].to_numpy(), rtol=1e-9,
                                   equal_nan=True, err_msg=c)
