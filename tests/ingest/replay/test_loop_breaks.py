"""A replay looped three times: every loop seam is a session break, end to end.

``python app.py --replay`` loops the recorded tape; at each seam prices snap back to
the tape's start. The ingest side marks a session break there (the seam's ids are
missing and cannot be back-filled); the analytics must then not act across it:

* no alert fires at a seam (a z-score, a price and a change rule created before the
  replay, evaluated live by the service's own thread);
* the backtest over the day takes no trade across a seam;
* ``/api/pair`` (JSON and CSV) marks each break: its ``session`` column steps at
  each seam's bucket, and ``/api/adf`` tests the last session only.

In-process (``Runtime`` as ``app.py`` builds it) at replay speed 60: three passes of
the ~11 min tape take ~35 s.
"""

from __future__ import annotations

import io
import time

import flask
import numpy as np
import pandas as pd
import pytest

from analytics.backtest import BacktestParams
from analytics.pair import requirements
from analytics.sessions import break_buckets
from dashapp import api, queries, trader_queries
from dashapp.facade import LiveMarketData
from dashapp.services import set_services
from ingest.config import parse_config
from ingest.runtime import Runtime

A, B = "BTCUSDT", "ETHUSDT"
W = 30
Z_RULE = {"metric": "zscore", "a": A, "b": B, "timeframe": "1s", "window": W,
          "regression": "ols", "prices": "raw", "op": "gt", "threshold": 2.5}


def wait_for(cond, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
def test_replay_looped_three_times_breaks_at_every_seam(tmp_path):
    cfg = parse_config(["--replay", "--market", "spot", "--replay-speed", "60",
                        "--db", str(tmp_path / "loop.db"), "--port", "8999"])
    rt = Runtime(cfg)
    tape = rt.replay.tape
    first_px = {s: next(ev for ev in tape.events if ev.symbol == s) for s in (A, B)}
    rules = [
        rt.alerts.create(Z_RULE),
        rt.alerts.create({**Z_RULE, "op": "lt", "threshold": -2.5}),
        # the seam jumps the price from the tape's end back to its start: a crossing of
        # any level in between if it were taken across the break
        rt.alerts.create({"metric": "change_pct", "symbol": A, "timeframe": "1s",
                          "window": 5, "op": "gt", "threshold": 0.05}),
        rt.alerts.create({"metric": "change_pct", "symbol": A, "timeframe": "1s",
                          "window": 5, "op": "lt", "threshold": -0.05}),
    ]
    rt.start()
    try:
        # three passes: two seams on each leg, marked as session breaks
        wait_for(lambda: all(len(rt.engine.breaks(s)) >= 2 for s in (A, B))
                 and rt.replay.status().get("passes", 0) >= 3, 90, "two seams per leg")
        seam_a = rt.engine.breaks(A)[:2]
        # let the third pass run a few minutes of tape past the second seam
        wait_for(lambda: int(rt.engine.bars(A, 1000).ts[-1]) > int(seam_a[1]) + 120_000,
                 60, "the third pass under way")
        breaks = rt.engine.pair_breaks(A, B)
        buckets = break_buckets(breaks, 1000)
        assert len(buckets) >= 2

        # -- alerts: nothing fires at a seam (within the window after it) --------------
        time.sleep(1.0)  # an evaluation after the last bars
        fired = rt.alerts.events()
        z_ids = {rules[0]["id"], rules[1]["id"]}
        assert len([e for e in fired if e.rule_id in z_ids]) >= 3, "the z rules must fire"
        horizon = requirements(W, "ols")["zscore"] * 1000
        for e in fired:
            for bk in buckets:
                assert not bk <= e.data_ts < bk + horizon, (
                    f"rule {e.rule_id} fired at {e.data_ts}, {e.data_ts - bk} ms after "
                    f"the seam at {bk}")
        # the price snapped back: tape start vs tape end differ by more than 0.05 %
        for s in (A,):
            bars = rt.engine.bars(s, 1000)
            i = int(np.searchsorted(bars.ts, buckets[0]))
            jump = abs(bars.close[i] / bars.close[i - 1] - 1)
            assert jump > 0.0005 or abs(first_px[s].price / bars.close[i - 1] - 1) > 0.0005

        # -- /api/pair marks each break -------------------------------------------------
        set_services(LiveMarketData(rt))
        app = flask.Flask(__name__)
        api.register(app)
        client = app.test_client()
        q = f"/api/pair?a={A}&b={B}&timeframe=1s&window={W}"
        rows = client.get(q).json
        ts = np.array([pd.Timestamp(r["ts"]).value // 1_000_000 for r in rows])
        session = np.array([r["session"] for r in rows])
        steps = ts[1:][np.diff(session) != 0]
        inside = buckets[(buckets > ts[0]) & (buckets <= ts[-1])]
        assert steps.tolist() == inside.tolist() and len(inside) >= 2
        z = np.array([np.nan if r["zscore"] is None else r["zscore"] for r in rows])
        for bk in inside:
            i = int(np.searchsorted(ts, bk))
            assert np.isnan(z[i:i + 2 * W - 2]).all(), "no z window spans a seam"
        csv = pd.read_csv(io.BytesIO(client.get(q + "&format=csv").data))
        assert list(csv.columns)[-1] == "session"
        assert csv["session"].tolist()[: len(session)] == session.tolist()  # live: grows
        adf = client.get(f"/api/adf?a={A}&b={B}&timeframe=1s&window={W}").json
        assert adf["breaks"] == inside.tolist()
        assert adf["since_ms"] == int(inside[-1])

        # -- the backtest takes no trade across a seam ----------------------------------
        result = trader_queries.backtest(A, B, 1000, W, "ols", "raw",
                                         BacktestParams(entry=1.5, exit=0.0))
        assert result.trades, "the backtest must trade for this test to mean anything"
        for tr in result.trades:
            end = tr.exit_ts if tr.exit_ts is not None else int(ts[-1])
            assert not any(tr.signal_ts < bk <= end for bk in inside), tr
        frame = queries.pair_frame(A, B, 1000, W, "ols", "raw")
        assert queries.frame_breaks(frame).tolist() == inside.tolist()
    finally:
        rt.stop()
