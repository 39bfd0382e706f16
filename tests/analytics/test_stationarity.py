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
from analytics.stationarity import (
    ADF_MAX_LAG,
    ADF_MIN_OBS,
    AdfResult,
    adf_test,
    coint_test,
    default_maxlag,
    half_life,
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
