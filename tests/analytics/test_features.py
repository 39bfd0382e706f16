"""The data page's features against independent oracles: pandas for volatility, statsmodels
``adfuller`` for the fixed-lag ADF, a hand-worked example and the backtest for the signal,
and the pair series for everything else; all of it trailing."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from statsmodels.tsa.stattools import adfuller

from analytics.align import align_pair
from analytics.engine import MarketEngine
from analytics.features import (
    FEATURE_COLUMNS,
    adf_fixed_lag,
    default_adf_every,
    default_adf_lag,
    pair_features,
    pair_from_bars,
    rolling_adf,
    rolling_volatility,
    signal_positions,
)
from analytics.pair import pair_series
from analytics.timeframes import bars_per_day


@pytest.fixture
def rng():
    return np.random.default_rng(7)


@pytest.fixture(scope="module")
def bars(sample_bars_1s):
    return sample_bars_1s["BTCUSDT"], sample_bars_1s["ETHUSDT"]


def test_rolling_volatility_equals_pandas(bars):
    close = bars[0].close
    for w in (3, 20, 60):
        got = rolling_volatility(close, window=w, tf_ms=1000)
        r = np.log(pd.Series(close)).diff()
        # per-window std (pandas' running-sum .std() leaves ~1e-9 noise on flat windows)
        exact = r.rolling(w).apply(lambda x: np.std(x, ddof=1), raw=True)
        np.testing.assert_allclose(
            got,
            exact.to_numpy() * math.sqrt(365 * 86_400),
            rtol=1e-9,
            atol=1e-12,
            equal_nan=True,
        )
        fast = r.rolling(w).std().to_numpy() * math.sqrt(365 * 86_400)
        np.testing.assert_allclose(got, fast, rtol=1e-6, atol=1e-6, equal_nan=True)
        assert np.isnan(got[:w]).all() and np.isfinite(got[w:]).all()


@pytest.mark.parametrize("lag", [0, 1, 4, 12])
def test_fixed_lag_adf_equals_adfuller(lag, rng):
    walk = np.cumsum(rng.normal(size=300))
    ar = np.zeros(300)
    for t in range(1, 300):
        ar[t] = 0.7 * ar[t - 1] + rng.normal()
    for x in (walk, ar, walk[:60] * 1e-4 + 61_000.0):
        res = adfuller(x, maxlag=lag, autolag=None, regression="c", result_object=True)
        stat, p = adf_fixed_lag(x, lag)
        assert stat == pytest.approx(res.statistic, rel=1e-9, abs=1e-12)
        assert p == pytest.approx(res.pvalue, rel=1e-7, abs=1e-12)


def test_rolling_adf_schedule_hold_and_trailing(rng):
    s = np.cumsum(rng.normal(size=400)) * 0.1
    s[:30] = np.nan  # spread undefined during warm-up
    ts = np.arange(400, dtype=np.int64) * 1000
    pv, at = rolling_adf(s, ts, every=25, lookback=100, lag=3)
    computed = [i for i in range(24, 400, 25) if i - 99 >= 30]
    assert computed[0] == 149
    assert np.isnan(pv[:149]).all() and (at[:149] == -1).all()
    for i in computed:
        ref = adfuller(s[i - 99 : i + 1], maxlag=3, autolag=None, result_object=True)
        assert pv[i] == pytest.approx(ref.pvalue, rel=1e-7)
        held = slice(i, min(i + 25, 400))
        assert (pv[held] == pv[i]).all() and (at[held] == ts[i]).all()
    # trailing: changing spreads after bar t changes nothing at or before t
    s2 = s.copy()
    s2[300:] += 50.0
    pv2, at2 = rolling_adf(s2, ts, every=25, lookback=100, lag=3)
    np.testing.assert_array_equal(pv2[:300], pv[:300])
    np.testing.assert_array_equal(at2[:300], at[:300])


def test_defaults():
    assert default_adf_every(60, 1000) == 300  # at most 288 tests a day of 1 s bars
    assert default_adf_every(60, 60_000) == 60
    assert bars_per_day(1000) // default_adf_every(60, 1000) == 288
    assert (
        default_adf_lag(240) == 12
        and default_adf_lag(100) == 12
        and default_adf_lag(30) == 9
    )


def test_signal_hand_worked():
    z = [
        np.nan,
        0.5,
        2.1,
        1.0,
        0.1,
        -0.2,
        -1.0,
        -2.5,
        -3.0,
        -0.5,
        0.0,
        2.0,
        2.01,
        np.nan,
        0.0,
    ]
    assert signal_positions(z).tolist() == [
        0,
        0,
        -1,
        -1,
        -1,
        0,
        0,
        1,
        1,
        1,
        0,
        0,
        -1,
        -1,
        0,
    ]
    # exit at |z| < 0.5 instead of the zero crossing
    assert signal_positions([2.5, 0.6, 0.4], exit=0.5).tolist() == [-1, -1, 0]
    assert signal_positions([-2.5, -0.6, -0.4], exit=0.5).tolist() == [1, 1, 0]
    with pytest.raises(ValueError):
        signal_positions(z, entry=0)


def test_signal_agrees_with_the_backtest_entries(bars):
    from analytics.backtest import BacktestParams, run_backtest

    _, s = pair_from_bars(*bars, window=20)
    sig = signal_positions(s.zscore, entry=1.5)
    res = run_backtest(
        s.ts,
        s.price_a,
        s.price_b,
        s.beta,
        s.zscore,
        params=BacktestParams(entry=1.5, exit=0.0),
        tf_ms=1000,
    )
    entries = np.flatnonzero((sig != 0) & (np.r_[0, sig[:-1]] == 0))
    assert len(res.trades) >= 3
    assert [int(s.ts[i]) for i in entries] == [t.signal_ts for t in res.trades]
    assert [int(sig[i]) for i in entries] == [t.side for t in res.trades]


def test_pair_from_bars_equals_the_live_engine(bars, sample_bars_1s):
    eng = MarketEngine(["BTCUSDT", "ETHUSDT"])
    for sym, b in sample_bars_1s.items():
        eng.load_bars(sym, b)
    for reg in ("ols", "kalman", "theilsen"):
        snap = eng.pair("BTCUSDT", "ETHUSDT", 1000, 30, reg, "log")
        _, s = pair_from_bars(*bars, window=30, regression=reg, prices="log")
        for c in (
            "ts",
            "price_a",
            "price_b",
            "alpha",
            "beta",
            "spread",
            "zscore",
            "corr",
        ):
            np.testing.assert_array_equal(
                getattr(s, c), getattr(snap.series, c), err_msg=c
            )


def test_features_table(bars):
    a, b = bars
    aligned, s = pair_from_bars(a, b, window=20)
    f = pair_features(a, b, s, window=20, entry=2.0, adf_every=50)
    fr = f.frame
    assert tuple(fr.columns) == FEATURE_COLUMNS and len(fr) == len(aligned) > 600
    for c in ("beta", "alpha", "spread", "zscore", "corr"):
        np.testing.assert_array_equal(fr[c].to_numpy(), getattr(s, c))
    # OHLCV: the leg's own bar in the bucket, else NaN/0 with the carried close
    ref = a.to_frame()
    ref.index = ref.index.as_unit("ms").asi8
    has = aligned.a_has_bar
    idx = fr.ts.to_numpy()[has]
    np.testing.assert_array_equal(
        fr.a_open.to_numpy()[has], ref.loc[idx, "open"].to_numpy()
    )
    np.testing.assert_array_equal(
        fr.a_volume.to_numpy()[has], ref.loc[idx, "volume"].to_numpy()
    )
    assert (
        np.isnan(fr.a_high.to_numpy()[~has]).all()
        and (fr.a_volume.to_numpy()[~has] == 0).all()
    )
    np.testing.assert_array_equal(fr.a_close.to_numpy(), aligned.a)
    assert (~has).any() and (~aligned.b_has_bar).any()
    np.testing.assert_allclose(
        fr.vol_b, rolling_volatility(aligned.b, window=20, tf_ms=1000), equal_nan=True
    )
    np.testing.assert_array_equal(fr.signal, signal_positions(s.zscore, entry=2.0))
    assert f.adf_every == 50 and f.adf_lookback == 100 and f.adf_lag == 12
    first = np.flatnonzero(fr.adf_ts.to_numpy() >= 0)[0]
    i = first
    win = s.spread[i - 99 : i + 1]
    assert fr.adf_pvalue[i] == pytest.approx(
        adfuller(win, maxlag=12, autolag=None, result_object=True).pvalue, rel=1e-7
    )
    with pytest.raises(AttributeError):
        f.window = 3  # frozen


def test_features_are_trailing(bars):
    a, b = bars
    aligned = align_pair(a, b)
    n = len(aligned)
    cut = n - 100
    s_full = pair_series(aligned.ts, aligned.a, aligned.b, window=20)
    bumped = aligned.b.copy()
    bumped[cut:] *= 1.01
    s_bump = pair_series(aligned.ts, aligned.a, bumped, window=20)
    f1 = pair_features(a, b, s_full, window=20, adf_every=20).frame
    f2 = pair_features(a, b, s_bump, window=20, adf_every=20).frame
    cols = ["beta", "zscore", "vol_a", "vol_b", "adf_pvalue", "adf_ts", "signal"]
    pd.testing.assert_frame_equal(f1.iloc[:cut][cols], f2.iloc[:cut][cols])
