"""The basis (analytics/basis.py) against pandas/statsmodels on the REAL recorded spot and
USDⓈ-M perp BTCUSDT tapes of the same minutes (sample_data/, 2024-08-08 23:54-23:59)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

from analytics.bars import Bars, bars_from_ticks
from analytics.basis import BASIS_COLUMNS, basis_series
from tests.analytics.conftest import SAMPLE_DIR, load_trade_tape

PERP_TAPE = "binance-um-ws-trade_BTCUSDT_2024-08-08T235416Z_2024-08-08T235959Z.jsonl.gz"
SPOT_TAPE = "binance-spot-ws-trade_BTCUSDT_2024-08-08T235415Z_2024-08-09T000505Z.jsonl.gz"
W = 30


@pytest.fixture(scope="module")
def ticks():
    return {"perp": load_trade_tape(SAMPLE_DIR / PERP_TAPE),
            "spot": load_trade_tape(SAMPLE_DIR / SPOT_TAPE)}


@pytest.fixture(scope="module")
def bars(ticks) -> dict[str, Bars]:
    return {m: bars_from_ticks(**cols, tf_ms=1000) for m, cols in ticks.items()}


def pandas_closes(cols) -> pd.Series:
    """Close of each 1 s bucket by pandas: the last trade in (T, id) order."""
    df = pd.DataFrame({"T": cols["time_ms"], "id": cols["trade_id"], "p": cols["price"]})
    df = df.sort_values(["T", "id"])
    df["ts"] = df["T"] // 1000 * 1000
    return df.groupby("ts")["p"].last()


def pandas_basis(ticks, w: int) -> pd.DataFrame:
    perp, spot = pandas_closes(ticks["perp"]), pandas_closes(ticks["spot"])
    df = pd.concat({"perp": perp, "spot": spot}, axis=1).sort_index().ffill()
    df = df[df.index >= max(perp.index[0], spot.index[0])]
    df["basis"] = df["perp"] - df["spot"]
    df["bps"] = 1e4 * (df["perp"] - df["spot"]) / df["spot"]
    r = df["bps"].rolling(w)
    df["mean"], df["std"] = r.mean(), r.std(ddof=1)
    df["z"] = (df["bps"] - df["mean"]) / df["std"]
    return df


def test_series_equals_pandas_on_the_real_tapes(ticks, bars):
    got = basis_series(bars["perp"], bars["spot"], window=W)
    want = pandas_basis(ticks, W)
    assert len(got) == len(want) > 300  # ~5.7 min of 1 s bars
    np.testing.assert_array_equal(got.ts, want.index.to_numpy())
    np.testing.assert_array_equal(got.price_perp, want["perp"])
    np.testing.assert_array_equal(got.price_spot, want["spot"])
    np.testing.assert_allclose(got.basis, want["basis"], rtol=0, atol=1e-9)
    np.testing.assert_allclose(got.basis_bps, want["bps"], rtol=1e-12, atol=1e-9)
    for col, ref in (("mean_bps", "mean"), ("std_bps", "std"), ("zscore", "z")):
        arr = getattr(got, col)
        assert np.isnan(arr[: W - 1]).all() and np.isfinite(arr[W - 1 :]).all(), col
        np.testing.assert_allclose(arr[W - 1 :], want[ref].to_numpy()[W - 1 :],
                                   rtol=1e-8, atol=1e-8, err_msg=col)
    # the real basis: perp traded ~6 bps under spot on these minutes
    assert -20 < np.nanmedian(got.basis_bps) < 0
    assert list(got.frame().columns) == list(BASIS_COLUMNS)
    assert (got.session == 0).all()


def test_rolling_half_life_equals_statsmodels_ar1_fits(ticks, bars):
    got = basis_series(bars["perp"], bars["spot"], window=W)
    bps = pandas_basis(ticks, W)["bps"].to_numpy()
    assert np.isnan(got.halflife[:W]).all()
    checked = 0
    for t in range(W, len(bps), 17):
        s = bps[t - W : t + 1]  # w changes need w + 1 levels
        fit = sm.OLS(np.diff(s), sm.add_constant(s[:-1])).fit()
        b = fit.params[1]
        want = -math.log(2) / math.log1p(b) if -1 < b < 0 else math.nan
        if math.isnan(want):
            assert math.isnan(got.halflife[t])
        else:
            assert got.halflife[t] == pytest.approx(want, rel=1e-7)
            checked += 1
    assert checked > 5


def test_leadlag_equals_pandas_shifted_correlations(ticks, bars):
    got = basis_series(bars["perp"], bars["spot"], window=W, max_lag=5).leadlag
    df = pandas_basis(ticks, W)
    rp, rs = np.log(df["perp"]).diff(), np.log(df["spot"]).diff()
    want = {k: rp.corr(rs.shift(-k)) for k in range(-5, 6)}
    assert got.lags == tuple(range(-5, 6))
    for k, c in zip(got.lags, got.corr, strict=True):
        assert c == pytest.approx(want[k], rel=1e-9, abs=1e-12), k
    best = max(want, key=lambda k: (abs(want[k]), -abs(k), -k))
    assert got.peak_lag == best
    assert got.peak_corr == pytest.approx(want[best], rel=1e-9)
    assert got.leader == ("perp" if best > 0 else "spot" if best < 0 else "together")
    assert got.nobs == len(df)


def test_windows_restart_at_a_session_break(ticks, bars):
    whole = basis_series(bars["perp"], bars["spot"], window=W)
    brk = int(whole.ts[150]) + 10  # inside bucket 150: that bucket opens session 1
    got = basis_series(bars["perp"], bars["spot"], window=W, breaks_spot=[brk])
    assert (got.session[:150] == 0).all() and (got.session[150:] == 1).all()
    np.testing.assert_array_equal(got.zscore[:150], whole.zscore[:150])
    assert np.isnan(got.zscore[150 : 150 + W - 1]).all()
    # after the break, the same as a series that starts there
    tail = pandas_basis(ticks, W).iloc[150:]
    z = (tail["bps"] - tail["bps"].rolling(W).mean()) / tail["bps"].rolling(W).std()
    np.testing.assert_allclose(got.zscore[150 + W - 1 :], z.to_numpy()[W - 1 :], rtol=1e-8)
    assert got.leadlag.nobs == len(whole) - 150  # lead-lag on the last session only


def test_cut_rows_equal_the_whole(bars):
    whole = basis_series(bars["perp"], bars["spot"], window=W)
    cut = basis_series(bars["perp"], bars["spot"], window=W, max_bars=200)
    n = len(cut)
    assert n == 200
    np.testing.assert_array_equal(cut.basis_bps, whole.basis_bps[-n:])
    # a trailing window needs only its own rows: equal once the cut holds a full window
    np.testing.assert_allclose(cut.zscore[W - 1 :], whole.zscore[-n + W - 1 :], rtol=1e-9)


def test_too_little_data_is_undefined_not_an_error(bars):
    perp = bars["perp"].take(slice(0, 8))
    spot = bars["spot"].take(slice(0, 8))
    got = basis_series(perp, spot, window=W)
    assert np.isnan(got.zscore).all() and got.leadlag.peak_lag is None
    assert got.leadlag.leader == "undefined" and got.leadlag.needed == 10 + 20 + 1
    with pytest.raises(ValueError):
        basis_series(perp, spot, window=1)


def test_screener_offers_the_same_asset_on_two_markets_first():
    """Real spot + perp BTCUSDT and ETHUSDT: the two basis pairs lead the ranking, each
    group keeps the p-value order, and the rows' p-values are statsmodels' coint."""
    from statsmodels.tsa.stattools import coint

    from analytics.align import align_pair
    from analytics.screener import same_asset, screen_pairs
    from analytics.stationarity import default_maxlag

    tapes = {
        "perp:BTCUSDT": PERP_TAPE, "spot:BTCUSDT": SPOT_TAPE,
        "perp:ETHUSDT": "binance-um-ws-trade_ETHUSDT_2024-08-08T235416Z_2024-08-09T000000Z"
                        ".jsonl.gz",
        "spot:ETHUSDT": "binance-spot-ws-trade_ETHUSDT_2024-08-08T235415Z_2024-08-09T000505Z"
                        ".jsonl.gz",
    }
    bars = {n: bars_from_ticks(**load_trade_tape(SAMPLE_DIR / f), tf_ms=1000)
            for n, f in sorted(tapes.items())}
    res = screen_pairs(bars, window=30)
    pairs = [(r.a, r.b) for r in res.rows]
    assert len(pairs) == 6
    assert set(pairs[:2]) == {("perp:BTCUSDT", "spot:BTCUSDT"), ("perp:ETHUSDT", "spot:ETHUSDT")}
    assert [r.same_asset for r in res.rows] == [True, True, False, False, False, False]
    for group in (res.rows[:2], res.rows[2:]):
        p = [r.coint_pvalue for r in group]
        assert p == sorted(p)
    r = res.rows[0]
    al = align_pair(bars[r.a], bars[r.b])
    want = coint(al.a, al.b, maxlag=default_maxlag(len(al)), autolag="AIC")[1]
    assert r.coint_pvalue == pytest.approx(want, rel=1e-9)
    assert same_asset("perp:BTCUSDT", "spot:BTCUSDT")
    assert not same_asset("BTCUSDT", "ETHUSDT") and not same_asset("perp:BTCUSDT", "spot:ETHUSDT")
