"""Spread, rolling z-score and rolling log-return correlation against pandas."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analytics.hedge import rolling_ols
from analytics.spread import (
    log_returns,
    rolling_corr,
    rolling_corr_logret,
    rolling_zscore,
    spread,
)
from tests.analytics.test_pair import aligned_1s


@pytest.fixture(scope="module")
def tape(sample_ticks):
    return aligned_1s(sample_ticks)


def pandas_z(x, w):
    s = pd.Series(x)
    return ((s - s.rolling(w).mean()) / s.rolling(w).std()).to_numpy()


def test_spread_is_a_minus_alpha_minus_beta_b():
    a = np.array([10.0, 12.0, 14.0])
    b = np.array([1.0, 2.0, 3.0])
    np.testing.assert_array_equal(spread(a, b, 8.0, 2.0), [0.0, 0.0, 0.0])
    np.testing.assert_array_equal(spread(a, b, [1.0, 2.0, 3.0], [1.0, 1.0, 1.0]),
                                  [8.0, 8.0, 8.0])  # fmt: skip
    np.testing.assert_array_equal(spread(pd.Series(a), b, 0.0, 0.0), a)
    with pytest.raises(ValueError, match="beta must be a scalar or have the length"):
        spread(a, b, 0.0, [1.0, 2.0])
    with pytest.raises(ValueError, match="same length"):
        spread(a, b[:2], 0.0, 1.0)


@pytest.mark.parametrize("prices", ["raw", "log"])
@pytest.mark.parametrize("w", [30, 60, 300])
def test_rolling_zscore_of_the_rolling_spread_equals_pandas(tape, w, prices):
    a, b = tape["a"].to_numpy(), tape["b"].to_numpy()
    if prices == "log":
        a, b = np.log(a), np.log(b)
    fit = rolling_ols(a, b, window=w)
    s = spread(a, b, fit.alpha, fit.beta)  # each bar with its own trailing fit
    z = rolling_zscore(s, window=w)
    # z is O(1); the absolute floor covers z ~ 0 where relative error is meaningless
    np.testing.assert_allclose(z, pandas_z(s, w), rtol=1e-9, atol=1e-9, equal_nan=True)
    first = int(np.flatnonzero(~np.isnan(z))[0])
    assert first == 2 * w - 2  # 2w - 1 bars: w for the first spread, w spreads for z
    if w < len(a) // 2:
        assert np.isfinite(z[first:]).all()


def test_rolling_zscore_handles_nan_and_zero_std_without_inf():
    x = np.array([np.nan, np.nan, 1.0, 2.0, 3.0, 3.0, 3.0, 3.0, 5.0])
    z = rolling_zscore(x, window=3)
    ref = pandas_z(x, 3)
    ok = np.isfinite(ref)
    np.testing.assert_allclose(z[ok], ref[ok], rtol=1e-12)
    assert np.isnan(z[:4]).all()
    assert np.isnan(z[6]) and np.isnan(z[7])  # constant window: undefined, not +-inf
    assert not np.isinf(z).any()


@pytest.mark.parametrize("w", [30, 60, 300])
def test_rolling_corr_logret_equals_pandas(tape, w):
    c = rolling_corr_logret(tape["a"], tape["b"], window=w)
    ref = np.log(tape["a"]).diff().rolling(w).corr(np.log(tape["b"]).diff())
    np.testing.assert_allclose(c, ref, rtol=1e-9, atol=1e-12, equal_nan=True)
    assert int(np.flatnonzero(~np.isnan(c))[0]) == w  # w returns = w + 1 prices
    assert np.nanmax(np.abs(c)) <= 1.0


def test_corr_is_on_raw_log_returns_and_scale_free(tape):
    a, b = tape["a"].to_numpy(), tape["b"].to_numpy()
    c = rolling_corr_logret(a, b, window=60)
    np.testing.assert_allclose(rolling_corr_logret(a * 1_000, b / 7, window=60), c,
                               rtol=1e-9, atol=1e-12, equal_nan=True)  # fmt: skip
    r = log_returns(a)
    assert np.isnan(r[0]) and r[1] == pytest.approx(np.log(a[1] / a[0]), abs=1e-15)
    with pytest.raises(ValueError, match="positive"):
        log_returns([1.0, 0.0, 2.0])


def test_rolling_corr_undefined_on_flat_returns():
    x = np.array([0.0, 0.0, 0.0, 1.0, -1.0, 2.0])
    y = np.array([1.0, 2.0, 3.0, 4.0, 2.0, 5.0])
    c = rolling_corr(x, y, window=3)
    assert np.isnan(c[2])  # x constant over the window
    ref = pd.Series(x).rolling(3).corr(pd.Series(y))
    np.testing.assert_allclose(c[3:], ref[3:], rtol=1e-12)


def test_window_validation():
    with pytest.raises(ValueError, match="window must be >= 2"):
        rolling_zscore([1.0, 2.0, 3.0], window=1)
    with pytest.raises(ValueError, match="window must be an int"):
        rolling_corr_logret([1.0, 2.0, 3.0], [1.0, 2.0, 3.0], window="3")
