"""ADF, Engle-Granger cointegration, half-life: statsmodels parity and known truth."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import statsmodels.api as sm
from statsmodels.tsa.stattools import adfuller, coint

from analytics.errors import AnalyticsError, InsufficientData
from analytics.hedge import ols_hedge
from analytics.live import IncrementalPair
from analytics.pair import pair_series, requirements
from analytics.stationarity import (
    ADF_MAX_LAG,
    ADF_MIN_OBS,
    AdfResult,
    RollingHalfLife,
    adf_test,
    coint_test,
    default_maxlag,
    half_life,
    rolling_half_life,
)
from tests.analytics.test_hedge import cointegrated_pair
from tests.analytics.test_pair import aligned_1s


@pytest.fixture(scope="module")
def tape(sample_ticks):
    return aligned_1s(sample_ticks)


def independent_walks(seed: int = 11, n: int = 2_000):
    rng = np.random.default_rng(seed)
    return np.cumsum(rng.normal(size=n)) + 100.0, np.cumsum(rng.normal(size=n)) + 100.0


@pytest.fixture
def no_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # in particular statsmodels' FutureWarning
        yield


def _same_adf(ours: AdfResult, ref) -> None:
    assert ours.stat == ref.statistic and ours.pvalue == ref.pvalue
    assert ours.usedlag == ref.lags and ours.nobs == ref.nobs
    assert ours.critical_values == {k: float(v) for k, v in ref.critical_values.items()}
    assert ours.icbest == ref.icbest


@pytest.mark.parametrize(
    ("kwargs", "maxlag"),
    [
        ({}, None),
        ({"maxlag": 3, "autolag": None}, 3),
        ({"regression": "ct", "autolag": "BIC"}, None),
    ],
)
def test_adf_equals_adfuller_with_the_same_arguments(tape, kwargs, maxlag, no_warnings):
    a, b = tape["a"].to_numpy(), tape["b"].to_numpy()
    fit = ols_hedge(a, b)
    x = a - fit.alpha - fit.beta * b
    ours = adf_test(x, **kwargs)
    regression = kwargs.get("regression", "c")
    lag = default_maxlag(len(x), regression) if maxlag is None else maxlag
    autolag = kwargs.get("autolag", "AIC")
    ref = adfuller(
        x, maxlag=lag, regression=regression, autolag=autolag, result_object=True
    )
    _same_adf(ours, ref)
    assert ours.maxlag == lag and ours.regression == regression


def test_default_maxlag_is_schwert_capped():
    assert default_maxlag(100) == 12
    assert default_maxlag(650) == ADF_MAX_LAG == 12  # Schwert would be 20
    assert default_maxlag(86_400) == 12  # Schwert would be 65: 25 s of autolag
    assert default_maxlag(20) == 8  # statsmodels' feasibility bound n // 2 - 2
    assert default_maxlag(20, "n") == 9
    assert default_maxlag(30) == math.ceil(12 * 0.3**0.25) == 9


def test_coint_equals_statsmodels(tape, no_warnings):
    a, b = np.log(tape["a"].to_numpy()), np.log(tape["b"].to_numpy())
    ours = coint_test(a, b)
    ref = coint(a, b, maxlag=default_maxlag(len(a), "n"), autolag="aic")
    assert ours.stat == ref.coint_t and ours.pvalue == ref.pvalue
    assert list(ours.critical_values.values()) == list(ref.critical_values)
    assert list(ours.critical_values) == ["1%", "5%", "10%"]
    ours = coint_test(a, b, maxlag=2, autolag=None)
    ref = coint(a, b, maxlag=2, autolag=None)
    assert (ours.stat, ours.pvalue) == (ref.coint_t, ref.pvalue)


def test_known_truth_cointegrated_pair(no_warnings):
    a, b = cointegrated_pair()
    res = coint_test(a, b)
    assert res.pvalue < 0.01
    fit = ols_hedge(a, b)
    assert adf_test(a - fit.alpha - fit.beta * b).pvalue < 0.01


def test_independent_random_walks_are_not_cointegrated(no_warnings):
    x, y = independent_walks()
    fit = ols_hedge(y, x)
    # the unit root of the residual is not rejected
    assert adf_test(y - fit.alpha - fit.beta * x).pvalue > 0.05
    assert coint_test(y, x).pvalue > 0.05
    assert adf_test(x).pvalue > 0.05


def test_half_life_of_a_known_ar1():
    rng = np.random.default_rng(7)
    phi = 0.9
    s = np.zeros(5_000)
    for i in range(1, len(s)):
        s[i] = 0.5 + phi * s[i - 1] + rng.normal()
    hl = half_life(s)
    res = sm.OLS(s[1:], sm.add_constant(s[:-1])).fit()
    assert hl.phi == pytest.approx(res.params[1], rel=1e-10)
    assert hl.const == pytest.approx(res.params[0], rel=1e-9)
    assert hl.bars == pytest.approx(-math.log(2) / math.log(hl.phi), rel=1e-15)
    assert hl.bars == pytest.approx(-math.log(2) / math.log(phi), rel=0.1)  # ~6.6 bars
    assert hl.mean_reverting and hl.nobs == len(s) - 1


def test_half_life_is_infinite_when_not_mean_reverting():
    x, _ = independent_walks()
    trend = np.arange(100.0) ** 1.5  # explosive-looking: phi >= 1
    assert half_life(trend).bars == math.inf and not half_life(trend).mean_reverting
    hl = half_life(x)  # a random walk: phi ~ 1, either side
    assert hl.bars > 100 or hl.bars == math.inf
    flip = np.tile([1.0, -1.0], 20) + np.linspace(0, 0.1, 40)  # phi < 0
    assert half_life(flip).bars == math.inf and half_life(flip).phi < 0


def test_too_short_or_constant_inputs():
    with pytest.raises(InsufficientData) as exc:
        adf_test(np.arange(10.0))
    assert exc.value.needed == ADF_MIN_OBS and exc.value.have == 10
    with pytest.raises(AnalyticsError, match="constant"):
        adf_test(np.full(50, 3.0))
    with pytest.raises(InsufficientData):
        coint_test(np.arange(10.0), np.arange(10.0) ** 2)
    with pytest.raises(AnalyticsError, match="constant"):
        coint_test(np.arange(50.0), np.full(50, 1.0))
    with pytest.raises(InsufficientData):
        half_life([1.0, 2.0, 3.0])
    with pytest.raises(AnalyticsError, match="constant"):
        half_life(np.ones(30))
    with pytest.raises(ValueError, match="maxlag must be <="):
        adf_test(np.random.default_rng(0).normal(size=30), maxlag=20)
    with pytest.raises(ValueError, match="regression must be one of"):
        adf_test(np.arange(30.0), regression="x")
    with pytest.raises(ValueError, match="autolag must be one of"):
        adf_test(np.arange(30.0), autolag="HQIC")


# ------------------------------------------------------------------ rolling half-life


def statsmodels_rolling_half_life(s: np.ndarray, w: int) -> np.ndarray:
    """The definition, one statsmodels OLS per bar: ``ds_u = a + b s_{u-1}`` over the
    last ``w`` changes, ``hl = -ln 2 / ln(1 + b)`` for ``-1 < b < 0``, else NaN."""
    out = np.full(len(s), np.nan)
    for t in range(w, len(s)):
        lag, cur = s[t - w : t], s[t - w + 1 : t + 1]
        if not (np.isfinite(lag).all() and np.isfinite(cur).all()) or np.ptp(lag) == 0:
            continue
        b = sm.OLS(cur - lag, sm.add_constant(lag)).fit().params[1]
        if -1.0 < b < 0.0:
            out[t] = -math.log(2.0) / math.log(1.0 + b)
    return out


@pytest.mark.parametrize("regression,prices", [("ols", "raw"), ("kalman", "log")])
def test_rolling_half_life_equals_statsmodels_every_bar_on_the_tape(tape, regression, prices):
    """On the real tape's pair spread: the batch column, the twin stepped bar by bar and
    the pair's live column equal one statsmodels OLS per window, at every bar."""
    w = 30
    ts, a, b = tape["ts"].to_numpy(), tape["a"].to_numpy(), tape["b"].to_numpy()
    ps = pair_series(ts, a, b, window=w, regression=regression, prices=prices)
    ref = statsmodels_rolling_half_life(ps.spread, w)
    assert np.isfinite(ref).sum() > 300 and np.isnan(ref[w:]).any()  # both cases occur
    np.testing.assert_allclose(rolling_half_life(ps.spread, window=w), ref, rtol=1e-8,
                               equal_nan=True)  # fmt: skip
    np.testing.assert_allclose(ps.halflife, ref, rtol=1e-8, equal_nan=True)
    twin = RollingHalfLife(w)
    first = int(np.flatnonzero(np.isfinite(ps.spread))[0])
    stepped = [math.nan] * first + [twin.update(x) for x in ps.spread[first:]]
    np.testing.assert_allclose(stepped, ref, rtol=1e-8, equal_nan=True)
    assert twin.count == w  # bounded state
    live = IncrementalPair(w, regression, prices)
    points = [live.update(t, x, y) for t, x, y in zip(ts, a, b, strict=True)]
    got = [math.nan if p is None else p.halflife for p in points]
    np.testing.assert_allclose(got, ref, rtol=1e-8, equal_nan=True)
    need = requirements(w, regression)["halflife"]
    assert np.isnan(ps.halflife[: need - 1]).all()


def test_rolling_half_life_of_a_known_ar1():
    rng = np.random.default_rng(3)
    phi, w = 0.8, 400
    s = np.zeros(4_000)
    for i in range(1, len(s)):
        s[i] = phi * s[i - 1] + rng.normal()
    hl = rolling_half_life(s, window=w)
    assert np.isnan(hl[:w]).all() and np.isfinite(hl[w:]).all()
    truth = -math.log(2.0) / math.log(phi)  # 3.1 bars
    assert np.median(hl[w:]) == pytest.approx(truth, rel=0.1)
    # the last window alone is the static half-life of its w + 1 spreads
    assert hl[-1] == pytest.approx(half_life(s[-w - 1 :]).bars, rel=1e-9)


def test_rolling_half_life_is_nan_where_undefined():
    trend = np.arange(60.0) ** 1.5  # b > 0: not mean-reverting
    assert np.isnan(rolling_half_life(trend, window=10)).all()
    flip = np.tile([1.0, -1.0], 20)  # b = -2: an overshoot, ln(1 + b) undefined
    assert np.isnan(rolling_half_life(flip, window=10)).all()
    flat = np.r_[np.full(20, 5.0), np.arange(10.0)]  # constant lagged spread
    hl = rolling_half_life(flat, window=10)
    assert np.isnan(hl[:21]).all()
    gap = np.sin(np.arange(50.0))
    gap[25] = np.nan  # a window holding a NaN gives NaN
    hl = rolling_half_life(gap, window=5)
    assert np.isnan(hl[25:31]).all() and np.isfinite(hl[31:]).any()
    twin = RollingHalfLife(10)
    assert all(math.isnan(twin.update(x)) for x in trend)
    with pytest.raises(ValueError, match="window must be >= 3"):
        rolling_half_life(trend, window=2)
