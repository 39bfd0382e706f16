"""``/api/bars`` (JSON and CSV) gains the top-of-book columns, on the REAL futures
captures (trades + bookTicker of BTCUSDT and ETHUSDT) fed through a live engine:
after today's columns, ``null`` (JSON) / empty (CSV) before the first quote, equal to
an independent pandas computation from the raw frames, and a served row never changes
(a bar whose book second is still open waits)."""

from __future__ import annotations

import io
from types import SimpleNamespace

import flask
import numpy as np
import pandas as pd
import pytest

from analytics.engine import MarketEngine
from analytics.registry import BAR_COLUMNS, BOOK_COLUMNS
from dashapp import api
from dashapp.facade import LiveMarketData
from dashapp.services import set_services
from tests.analytics.test_engine_book import FILES, events, pandas_served, quotes, run


@pytest.fixture(scope="module")
def tape():
    return events()


def client_for(engine: MarketEngine):
    rt = SimpleNamespace(engine=engine, market="futures",  # the captures are perp
                         ingestor=SimpleNamespace(rings=dict.fromkeys(engine.symbols)))
    set_services(LiveMarketData(rt))
    app = flask.Flask(__name__)
    api.register(app)
    return app.test_client()


def frame_of(rows: list[dict]) -> pd.DataFrame:
    f = pd.DataFrame(rows)
    return f.astype({c: float for c in BOOK_COLUMNS})  # JSON null -> NaN


@pytest.mark.parametrize("tf,tf_text", [(1_000, "1s"), (60_000, "1m")])
def test_bars_carry_the_book_columns_equal_to_pandas(tape, tf, tf_text):
    t0 = min(e[3] for e in tape)
    tape = [e for e in tape if e[1] == "trade" or e[3] >= t0 + 70_000]  # book from 70 s in
    eng, _ = run(tape)
    eng.on_clock(max(e[3] for e in tape) + 600_000)
    client = client_for(eng)
    for name in FILES:
        rows = client.get(f"/api/bars?symbol={name}&timeframe={tf_text}").json
        assert tuple(rows[0]) == BAR_COLUMNS  # the book columns after today's
        got = frame_of(rows)
        ts = eng.bars(name, tf).ts
        assert len(got) == len(ts)
        want = pandas_served(quotes(tape, name), ts, tf)
        for c in BOOK_COLUMNS:
            np.testing.assert_allclose(got[c].to_numpy(), want[c].to_numpy(), rtol=1e-12,
                                       equal_nan=True, err_msg=c)
        first_quote = quotes(tape, name)["times"][0]
        early = ts + tf <= first_quote
        assert early.sum() >= (60 if tf == 1_000 else 1)
        assert all(rows[i][c] is None for i in np.flatnonzero(early) for c in BOOK_COLUMNS)
        # CSV: the same columns, empty cells where JSON has null
        csv = client.get(f"/api/bars?symbol={name}&timeframe={tf_text}&format=csv")
        table = pd.read_csv(io.BytesIO(csv.data))
        assert tuple(table.columns) == BAR_COLUMNS
        np.testing.assert_allclose(table["mid"].to_numpy(), got["mid"].to_numpy(), rtol=1e-9,
                                   equal_nan=True)


def test_a_served_row_never_changes_while_the_book_goes_on(tape):
    eng = MarketEngine(list(FILES))
    client = client_for(eng)
    seen: dict[str, dict] = {}
    step = len(tape) // 9
    for k in range(0, len(tape), step):
        run(tape[k : k + step], eng)
        for name in FILES:
            for row in client.get(f"/api/bars?symbol={name}&timeframe=1s").json:
                key = f"{name} {row['ts']}"
                assert seen.setdefault(key, row) == row, key  # never amended
            book = eng.book_bars(name, 1_000)
            bars = eng.bars(name, 1_000)
            served = len(client.get(f"/api/bars?symbol={name}&timeframe=1s").json)
            # every trade bar ending at or before the book's final mark, none after
            assert served == int(np.sum(bars.ts + 1_000 <= book.final_ms))
    assert len(seen) > 200


def test_an_instrument_without_book_data_serves_null_book_columns(tape):
    eng = MarketEngine(list(FILES))
    run([e for e in tape if e[1] == "trade"], eng)  # a --no-book run
    rows = client_for(eng).get("/api/bars?symbol=BTCUSDT&timeframe=1s").json
    assert len(rows) > 100
    assert all(r[c] is None for r in rows for c in BOOK_COLUMNS)
    assert all(r["close"] is not None for r in rows)
