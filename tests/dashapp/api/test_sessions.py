"""``/api/pair`` and ``/api/adf`` say where the session breaks are; the backtest and the
features respect them. The engine is restored the way a restart does it: the stored
breaks are marked first, then the day's 1 s bars are loaded (the real tape played
twice, the second copy after a loop seam)."""

from __future__ import annotations

import io
from types import SimpleNamespace

import flask
import numpy as np
import pandas as pd
import pytest

from analytics.backtest import BacktestParams
from analytics.bars import bars_from_ticks
from analytics.engine import MarketEngine
from analytics.sessions import break_buckets, union_breaks
from dashapp import api, queries, trader_queries
from dashapp.facade import LiveMarketData
from dashapp.services import set_services
from tests.analytics.conftest import sample_ticks  # noqa: F401 (fixture)
from tests.analytics.test_breaks import A, B, looped_ticks

Q = f"/api/pair?a={A}&b={B}&timeframe=1s&window=20"


@pytest.fixture(scope="module")
def restored(sample_ticks):
    ticks, breaks = looped_ticks(sample_ticks)
    eng = MarketEngine([A, B])
    for s in (A, B):
        for t in breaks[s]:
            eng.mark_break(s, t, "replay loop")  # stored breaks first ...
        eng.load_bars(s, bars_from_ticks(**ticks[s], tf_ms=1000))  # ... then the bars
    return eng, break_buckets(union_breaks(breaks[A], breaks[B]), 1000)


@pytest.fixture
def client(restored):
    eng, _ = restored
    set_services(LiveMarketData(
        SimpleNamespace(engine=eng, ingestor=SimpleNamespace(rings=dict.fromkeys((A, B))))
    ))
    app = flask.Flask(__name__)
    api.register(app)
    return app.test_client()


def _ms(iso: list[str]) -> np.ndarray:
    return np.array([pd.Timestamp(t).value // 1_000_000 for t in iso], dtype=np.int64)


def test_api_pair_marks_each_break_in_json_and_csv(client, restored):
    _, buckets = restored
    rows = client.get(Q).json
    assert list(rows[0])[:8] == ["ts", "price_a", "price_b", "alpha", "beta", "spread",
                                 "zscore", "corr"]  # the columns before, unchanged
    ts, session = _ms([r["ts"] for r in rows]), np.array([r["session"] for r in rows])
    assert session[0] == 0
    assert ts[1:][np.diff(session) != 0].tolist() == buckets.tolist()
    csv = pd.read_csv(io.BytesIO(client.get(Q + "&format=csv").data))
    assert csv.columns[-1] == "session" and csv["session"].tolist() == session.tolist()
    # a cut keeps the absolute session numbers (the same for the same URL)
    cut = client.get(Q + "&limit=50").json
    assert [r["session"] for r in cut] == session[-50:].tolist()


def test_api_adf_tests_the_last_session_only(client, restored):
    _, buckets = restored
    adf = client.get(Q.replace("/api/pair", "/api/adf")).json
    assert adf["breaks"] == buckets.tolist()
    assert adf["since_ms"] == int(buckets[-1])
    rows = client.get(Q + f"&start={int(buckets[-1])}").json
    finite = sum(r["spread"] is not None for r in rows)
    assert adf["nobs"] + adf["usedlag"] + 1 == finite


def test_backtest_takes_no_trade_across_a_break(client, restored):
    _, buckets = restored
    r = trader_queries.backtest(A, B, 1000, 20, "ols", "raw",
                                BacktestParams(entry=1.0, exit=0.0))
    assert len(r.trades) >= 4
    for tr in r.trades:
        end = tr.exit_ts if tr.exit_ts is not None else int(r.ts[-1])
        assert not any(tr.signal_ts < b <= end for b in buckets), tr
    frame = queries.pair_frame(A, B, 1000, 20, "ols", "raw")
    assert queries.frame_breaks(frame).tolist() == buckets.tolist()
