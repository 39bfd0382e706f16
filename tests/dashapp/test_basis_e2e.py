"""End to end (issue #16, Must show 1): ``python app.py --replay`` plays the bundled spot
AND perp tapes, each market in its own protocol; ``GET /api/basis?perp=perp:BTCUSDT&
spot=spot:BTCUSDT`` then equals the definition computed here independently from the tape
files (gzip + json + pandas, no project code): closes of 1 s buckets of trade time,
outer-joined and carried forward from the later first bar, ``basis_bps = 1e4 (perp -
spot) / spot``, its rolling mean/std (ddof=1) and z-score, and the lead-lag of the legs'
log returns (``corr(r_perp[t], r_spot[t+k])``)."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
import requests

from tests.ingest.test_two_markets import BUNDLED, trades_frame
from tests.test_app import free_port, start, wait_health

W = 30


def closes(t: pd.DataFrame) -> pd.Series:
    t = t.sort_values(["time_ms", "trade_id"])
    return t.groupby(t["time_ms"] // 1000 * 1000)["price"].last()


def expected_basis(tapes: dict[str, pd.DataFrame]) -> pd.DataFrame:
    perp = closes(tapes["perp"][tapes["perp"]["symbol"] == "BTCUSDT"])
    spot = closes(tapes["spot"][tapes["spot"]["symbol"] == "BTCUSDT"])
    df = pd.concat({"perp": perp, "spot": spot}, axis=1).sort_index().ffill()
    df = df[df.index >= max(perp.index[0], spot.index[0])]
    df["basis"] = df["perp"] - df["spot"]
    df["bps"] = 1e4 * df["basis"] / df["spot"]
    df["mean"] = df["bps"].rolling(W).mean()
    df["std"] = df["bps"].rolling(W).std(ddof=1)
    df["z"] = (df["bps"] - df["mean"]) / df["std"]
    return df


@pytest.mark.slow
def test_api_basis_on_a_two_market_replay_equals_the_definition(tmp_path):
    tapes = {m: pd.concat([trades_frame(p) for p in files]) for m, files in BUNDLED.items()}
    total = sum(len(t) for t in tapes.values())
    want = expected_basis(tapes)
    port, db = free_port(), tmp_path / "b.db"
    proc = start(["app.py", "--replay", "--replay-speed", "0", "--replay-once",
                  "--replay-keep-times", "--db", str(db), "--port", str(port)],
                 tmp_path / "app.log")
    base = f"http://127.0.0.1:{port}"
    query = {"perp": "perp:BTCUSDT", "spot": "spot:BTCUSDT", "timeframe": "1s",
             "window": str(W), "max_lag": "5"}
    try:
        wait_health(port, lambda h: h["store"]["rows"] >= total and h["store"]["pending"] == 0,
                    180, f"{total} rows", proc)
        deadline = time.monotonic() + 30
        while True:  # the last bucket of a stream closes once the feed is quiet
            r = requests.get(f"{base}/api/basis", params=query, timeout=60)
            assert r.status_code == 200, r.text
            got = r.json()
            if len(got["rows"]) >= len(want) - 1 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        rows = pd.DataFrame(got["rows"])
        assert len(rows) >= len(want) - 1 > 300, (len(rows), len(want))
        rows.index = [pd.Timestamp(t).value // 1_000_000 for t in rows["ts"]]
        w = want.loc[want.index <= rows.index.max()]
        assert list(rows.index) == list(w.index), "the grids differ"
        np.testing.assert_array_equal(rows["price_perp"], w["perp"])
        np.testing.assert_array_equal(rows["price_spot"], w["spot"])
        np.testing.assert_allclose(rows["basis"], w["basis"], atol=1e-9)
        np.testing.assert_allclose(rows["basis_bps"], w["bps"], rtol=1e-12, atol=1e-12)
        for col, ref in (("mean_bps", "mean"), ("std_bps", "std"), ("zscore", "z")):
            v = rows[col].to_numpy(dtype=float)
            assert np.isnan(v[: W - 1]).all(), col
            np.testing.assert_allclose(v[W - 1 :], w[ref].to_numpy()[W - 1 :], rtol=1e-8,
                                       atol=1e-10, err_msg=col)
        assert (rows["session"] == 0).all()
        rp, rs = np.log(w["perp"]).diff(), np.log(w["spot"]).diff()
        ll = got["leadlag"]
        assert ll["lags"] == list(range(-5, 6)) and ll["nobs"] == len(w)
        for k, c in zip(ll["lags"], ll["corr"], strict=True):
            assert c == pytest.approx(rp.corr(rs.shift(-k)), rel=1e-9, abs=1e-12), k
        # the same numbers as CSV
        csv = requests.get(f"{base}/api/basis", params={**query, "format": "csv"}, timeout=60)
        assert csv.status_code == 200 and csv.text.splitlines()[0] == ",".join(got["columns"])
        # the basis page and a cross-market pair answer on the same run
        assert requests.get(f"{base}/basis", timeout=30).status_code == 200
        pair = requests.get(f"{base}/api/pair", params={"a": "perp:BTCUSDT",
                                                        "b": "spot:BTCUSDT"}, timeout=60)
        assert pair.status_code == 200, pair.text
    finally:
        proc.terminate()
        proc.wait(30)
