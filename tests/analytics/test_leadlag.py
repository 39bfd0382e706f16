"""Lead-lag: pandas oracle at every lag, a known-truth shifted series, the matrix."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analytics.align import align_pair
from analytics.errors import InsufficientData
from analytics.leadlag import cross_correlation, lead_lag_matrix
from tests.analytics.test_screener import synthetic_bars


def test_equals_pandas_corr_of_shifted_returns(sample_bars_1s):
    al = align_pair(sample_bars_1s["BTCUSDT"], sample_bars_1s["ETHUSDT"])
    ll = cross_correlation(al.a, al.b, max_lag=8)
    ra = pd.Series(np.log(al.a)).diff()
    rb = pd.Series(np.log(al.b)).diff()
    expected = [ra.corr(rb.shift(-k)) for k in range(-8, 9)]
    assert ll.lags.tolist() == list(range(-8, 9))
    np.testing.assert_allclose(ll.corr, expected, rtol=1e-10)
    assert ll.peak_lag == int(ll.lags[np.nanargmax(np.abs(ll.corr))])


@pytest.mark.parametrize("shift", [3, -3])
def test_known_truth_b_is_a_shifted(shift):
    rng = np.random.default_rng(7)
    n = 2000
    ra = rng.normal(0, 1e-3, n + 10)
    # B's return at t is A's return at t - shift, plus noise: A leads B by `shift` bars.
    rb = np.roll(ra, shift) + rng.normal(0, 3e-4, n + 10)
    a = 100 * np.exp(np.cumsum(ra[10:]))
    b = 50 * np.exp(np.cumsum(rb[10:]))
    ll = cross_correlation(a, b, max_lag=6)
    assert ll.peak_lag == shift
    assert ll.peak_corr > 0.9
    # Swapping the legs flips the sign.
    assert cross_correlation(b, a, max_lag=6).peak_lag == -shift


def test_matrix_is_antisymmetric_with_the_right_leader():
    rng = np.random.default_rng(3)
    n = 1500
    r = rng.normal(0, 1e-3, n + 5)
    lead = 100 * np.exp(np.cumsum(r[5:]))
    follow = 80 * np.exp(np.cumsum(np.roll(r, 2)[5:] + rng.normal(0, 2e-4, n)))
    other = 10 * np.exp(np.cumsum(rng.normal(0, 1e-3, n)))
    bars = {"LEAD": synthetic_bars(lead), "FOLL": synthetic_bars(follow),
            "OTHR": synthetic_bars(other)}
    m = lead_lag_matrix(bars, max_lag=5)
    assert m.symbols == ("LEAD", "FOLL", "OTHR")
    assert m.peak_lag[0, 1] == 2 and m.peak_lag[1, 0] == -2
    assert np.isnan(np.diag(m.peak_lag)).all()
    off = ~np.eye(3, dtype=bool)
    np.testing.assert_array_equal(m.peak_lag[off], -m.peak_lag.T[off])
    assert m.nobs[0, 1] == n


def test_too_short_and_bad_lags():
    with pytest.raises(InsufficientData):
        cross_correlation(np.arange(1, 20.0), np.arange(1, 20.0), max_lag=5)
    with pytest.raises(ValueError, match="max_lag"):
        cross_correlation(np.arange(1, 100.0), np.arange(1, 100.0), max_lag=0)
    with pytest.raises(ValueError, match="same length"):
        cross_correlation(np.arange(1, 100.0), np.arange(1, 90.0), max_lag=2)
    flat = cross_correlation(np.full(100, 3.0), np.arange(1, 101.0), max_lag=2)
    assert flat.peak_lag is None and np.isnan(flat.corr).all()
