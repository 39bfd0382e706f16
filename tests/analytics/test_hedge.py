"""Hedge ratios against statsmodels / scikit-learn on the real tape and on known truth.

Tolerances. Relative 1e-9 everywhere, with two documented absolute floors:

* ``beta`` can sit near 0 on a window where A and B are uncorrelated; its rounding error
  does not shrink with it but scales like ``sd(A) / sd(B)`` of the window, so the floor
  is ``1e-12 * sd(A) / sd(B)`` (about 1e-12 of a typical beta on the tape);
* ``alpha = mean A - beta * mean B`` is a difference of two large numbers (61,700 minus
  23 x 2,680), so its error is relative to ``|alpha| + |beta * mean B|``, not to
  ``alpha``.

The statsmodels oracle is fitted on the window centred by its first value
(``A - A_0`` on ``B - B_0``), an exact reparametrisation (same beta, alpha shifted by
``A_0 - beta B_0``): statsmodels solves with a pseudo-inverse, and on uncentred log
prices (condition number ~1e6) its own error reaches 1e-9. For raw prices we also check
the plain uncentred call.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import statsmodels.api as sm
from sklearn.linear_model import HuberRegressor, TheilSenRegressor

from analytics.errors import AnalyticsError, InsufficientData
from analytics.hedge import (
    HedgeFit,
    RobustParams,
    huber_hedge,
    ols_hedge,
    rolling_ols,
    rolling_robust,
    subsample_tail,
    theilsen_hedge,
)
from analytics.rolling import RollingOLS
from tests.analytics.test_pair import aligned_1s


def cointegrated_pair(seed: int = 7, n: int = 2_000) -> tuple[np.ndarray, np.ndarray]:
    """Known truth: B a random walk, A = 3 + 1.5 B + AR(1) noise (phi 0.5, sd 0.5)."""
    rng = np.random.default_rng(seed)
    b = 100.0 + np.cumsum(rng.normal(0.0, 1.0, n))
    e = rng.normal(0.0, 0.5, n)
    u = np.zeros(n)
    for i in range(1, n):
        u[i] = 0.5 * u[i - 1] + e[i]
    return 3.0 + 1.5 * b + u, b


def synthetic_day(n: int = 86_400, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """A day of 1 s random-walk prices scaled like BTC (~61.7k) and ETH (~2.68k)."""
    rng = np.random.default_rng(seed)
    b = 2_680.0 * np.exp(np.cumsum(rng.normal(0, 1.2e-4, n)))
    a = 61_700.0 * np.exp(0.8 * np.log(b / 2_680.0) + np.cumsum(rng.normal(0, 8e-5, n)))
    return a, b


@pytest.fixture(scope="module")
def tape(sample_ticks):
    return aligned_1s(sample_ticks)


def _legs(tape, prices: str) -> tuple[np.ndarray, np.ndarray]:
    a, b = tape["a"].to_numpy(), tape["b"].to_numpy()
    return (np.log(a), np.log(b)) if prices == "log" else (a, b)


def sm_window_fit(a: np.ndarray, b: np.ndarray, *, centred: bool = True):
    """statsmodels OLS of a on b with a constant -> (beta, alpha, r2)."""
    a0, b0 = (a[0], b[0]) if centred else (0.0, 0.0)
    res = sm.OLS(a - a0, sm.add_constant(b - b0, has_constant="add")).fit()
    beta = res.params[1]
    return beta, res.params[0] + a0 - beta * b0, res.rsquared


def assert_fit_close(beta, alpha, ref_beta, ref_alpha, a_win, b_win, rtol=1e-9):
    beta_floor = 1e-12 * a_win.std() / b_win.std()
    assert abs(beta - ref_beta) <= rtol * abs(ref_beta) + beta_floor, (beta, ref_beta)
    alpha_scale = abs(ref_alpha) + abs(ref_beta * b_win.mean())
    assert abs(alpha - ref_alpha) <= rtol * alpha_scale, (alpha, ref_alpha)


# ------------------------------------------------------------------------ static OLS


@pytest.mark.parametrize("prices", ["raw", "log"])
def test_ols_hedge_matches_statsmodels(tape, prices):
    a, b = _legs(tape, prices)
    fit = ols_hedge(a, b)
    beta, alpha, r2 = sm_window_fit(a, b)
    assert isinstance(fit, HedgeFit) and fit.method == "ols" and fit.n == len(a)
    assert_fit_close(fit.beta, fit.alpha, beta, alpha, a, b, rtol=1e-12)
    assert fit.r2 == pytest.approx(r2, rel=1e-12)


def test_ols_hedge_direction_exact():
    """A = 2 B: regressing A on B gives exactly 2 and a zero spread."""
    b = np.array([2_680.5, 2_681.25, 2_679.0, 2_690.75, 2_700.0])
    fit = ols_hedge(2 * b, b)
    assert (fit.beta, fit.alpha, fit.r2) == (2.0, 0.0, 1.0)
    assert (2 * b - fit.alpha - fit.beta * b == 0).all()
    roll = rolling_ols(2 * b, b, window=3)
    assert (roll.beta[2:] == 2.0).all() and (roll.alpha[2:] == 0.0).all()
    inc = RollingOLS(3)
    assert [inc.update(2 * x, x) for x in b][2:] == [(2.0, 0.0)] * 3


# ----------------------------------------------------------------------- rolling OLS


@pytest.mark.parametrize("prices", ["raw", "log"])
@pytest.mark.parametrize("window", [30, 60, 300])
def test_rolling_ols_matches_statsmodels_on_every_window(tape, window, prices):
    a, b = _legs(tape, prices)
    fit = rolling_ols(a, b, window=window)
    assert np.isnan(fit.beta[: window - 1]).all()
    assert np.isnan(fit.alpha[: window - 1]).all()
    for t in range(window - 1, len(a)):
        aw, bw = a[t - window + 1 : t + 1], b[t - window + 1 : t + 1]
        beta, alpha, r2 = sm_window_fit(aw, bw)
        assert_fit_close(fit.beta[t], fit.alpha[t], beta, alpha, aw, bw)
        assert fit.r2[t] == pytest.approx(r2, rel=1e-9, abs=1e-12)
        if prices == "raw":  # the plain statsmodels call is accurate enough here
            beta_u, alpha_u, _ = sm_window_fit(aw, bw, centred=False)
            assert_fit_close(fit.beta[t], fit.alpha[t], beta_u, alpha_u, aw, bw)


@pytest.mark.parametrize("window", [60, 3_600])
def test_rolling_ols_exact_over_a_synthetic_day(window):
    """86,400 bars whose level drifts far from the first price: block centring holds."""
    a, b = synthetic_day()
    fit = rolling_ols(a, b, window=window)
    for t in np.linspace(window - 1, len(a) - 1, 40).astype(int):
        aw, bw = a[t - window + 1 : t + 1], b[t - window + 1 : t + 1]
        beta, alpha, _ = sm_window_fit(aw, bw)
        assert_fit_close(fit.beta[t], fit.alpha[t], beta, alpha, aw, bw)


def test_rolling_ols_degenerate_windows():
    b = np.array([1.0, 2.0, 3.0, 3.0, 3.0, 3.0, 4.0, 5.0])
    a = np.array([2.0, 4.0, 6.0, 5.0, 5.0, 5.0, 5.0, 5.0])
    fit = rolling_ols(a, b, window=3)
    # windows ending at 4, 5 have constant b: beta undefined
    assert np.isnan(fit.beta[4]) and np.isnan(fit.beta[5]) and np.isnan(fit.alpha[5])
    # windows ending at 6, 7 have constant a: beta 0, alpha = a, r2 undefined
    assert fit.beta[7] == 0.0 and fit.alpha[7] == 5.0 and np.isnan(fit.r2[7])
    assert fit.beta[2] == 2.0


def test_rolling_ols_is_trailing():
    a, b = synthetic_day(5_000)
    base = rolling_ols(a, b, window=100)
    for t in (99, 1_234, 4_000):
        a2, b2 = a.copy(), b.copy()
        a2[t + 1 :] *= 1.07
        b2[t + 1 :] += 50.0
        alt = rolling_ols(a2, b2, window=100)
        np.testing.assert_array_equal(base.beta[: t + 1], alt.beta[: t + 1])
        np.testing.assert_array_equal(base.alpha[: t + 1], alt.alpha[: t + 1])


# -------------------------------------------------------------------- robust oracles


def _standardised(a, b):
    return (b - b.mean()) / b.std(), (a - a.mean()) / a.std()


def sk_huber(a, b, p: RobustParams = RobustParams()):
    x, y = _standardised(a, b)
    est = HuberRegressor(epsilon=p.epsilon, alpha=p.huber_alpha, max_iter=p.max_iter,
                         tol=p.tol).fit(x[:, None], y)  # fmt: skip
    beta = est.coef_[0] * a.std() / b.std()
    return beta, a.mean() + a.std() * est.intercept_ - beta * b.mean()


def sk_theilsen(a, b, p: RobustParams = RobustParams()):
    k = math.ceil(len(a) / p.max_points)
    a, b = a[::-1][::k][::-1], b[::-1][::k][::-1]  # every k-th bar back from the last
    x, y = _standardised(a, b)
    est = TheilSenRegressor(max_subpopulation=p.max_subpopulation,
                            random_state=p.random_state).fit(x[:, None], y)  # fmt: skip
    beta = est.coef_[0] * a.std() / b.std()
    return beta, a.mean() + a.std() * est.intercept_ - beta * b.mean()


@pytest.mark.parametrize("prices", ["raw", "log"])
@pytest.mark.parametrize(
    ("method", "oracle"), [("huber", sk_huber), ("theilsen", sk_theilsen)]
)
def test_rolling_robust_equals_the_sklearn_call_on_each_window(
    tape, method, oracle, prices
):
    a, b = _legs(tape, prices)
    w, step = 120, 25  # w > max_points: Theil-Sen sees every 2nd bar, the last included
    fit = rolling_robust(a, b, window=w, method=method, step=step)
    for t in range(w - 1, len(a), step):
        aw, bw = a[t - w + 1 : t + 1], b[t - w + 1 : t + 1]
        beta, alpha = oracle(aw, bw)
        assert_fit_close(fit.beta[t], fit.alpha[t], beta, alpha, aw, bw, rtol=1e-12)
        # held (not refitted) until the next refit
        held = slice(t, min(t + step, len(a)))
        assert (fit.beta[held] == fit.beta[t]).all()


def test_theilsen_subsamples_long_windows_evenly_keeping_the_last_bar(tape):
    a, b = _legs(tape, "raw")
    p = RobustParams(max_points=50)
    fit = theilsen_hedge(a[:301], b[:301], max_points=50)
    assert fit.n == 43  # k = ceil(301 / 50) = 7 -> bars 300, 293, ..., 6
    beta, alpha = sk_theilsen(a[:301], b[:301], p)
    assert_fit_close(fit.beta, fit.alpha, beta, alpha, a[:301], b[:301], rtol=1e-12)
    idx = subsample_tail(301, 50)
    assert idx[-1] == 300 and idx[0] == 6 and len(idx) == 43
    assert (np.diff(idx) == 7).all()
    idx = subsample_tail(1_000, 100)
    assert idx[-1] == 999 and len(idx) == 100 and (np.diff(idx) == 10).all()
    assert (subsample_tail(30, 100) == np.arange(30)).all()


def test_static_robust_fits_equal_the_sklearn_call(tape):
    a, b = _legs(tape, "raw")
    h = huber_hedge(a, b, epsilon=1.5)
    beta, alpha = sk_huber(a, b, RobustParams(epsilon=1.5))
    assert_fit_close(h.beta, h.alpha, beta, alpha, a, b, rtol=1e-12)
    assert h.method == "huber" and h.n == len(a) and 0 < h.r2 < 1


def test_robust_step_holds_fits_without_look_ahead(tape):
    a, b = _legs(tape, "raw")
    every = rolling_robust(a[:200], b[:200], window=40, method="huber", step=1)
    held = rolling_robust(a[:200], b[:200], window=40, method="huber", step=9)
    for t in range(39, 200):
        t_fit = 39 + (t - 39) // 9 * 9  # last refit at or before t
        assert held.beta[t] == every.beta[t_fit]


# ------------------------------------------------------------------------ known truth


@pytest.mark.parametrize("fitter", [ols_hedge, huber_hedge, theilsen_hedge])
def test_known_truth_beta_recovered(fitter):
    a, b = cointegrated_pair()
    fit = fitter(a, b)
    assert fit.beta == pytest.approx(1.5, abs=0.01)
    assert fit.alpha == pytest.approx(3.0, abs=1.0)


def test_huber_resists_outliers_where_ols_does_not():
    a, b = cointegrated_pair(n=500)
    a = a.copy()
    a[::25] += 200.0  # 4 % bad prints
    assert abs(ols_hedge(a, b).beta - 1.5) > 0.05
    assert huber_hedge(a, b).beta == pytest.approx(1.5, abs=0.02)
    assert theilsen_hedge(a, b).beta == pytest.approx(1.5, abs=0.02)


# ------------------------------------------------------------------------ validation


def test_validation_messages():
    a, b = cointegrated_pair(n=50)
    with pytest.raises(ValueError, match="same length"):
        ols_hedge(a, b[:-1])
    bad = a.copy()
    bad[3] = np.inf
    with pytest.raises(ValueError, match=r"a must be finite; a\[3\] = inf"):
        rolling_ols(bad, b, window=5)
    with pytest.raises(ValueError, match="1-D"):
        ols_hedge(np.c_[a, a], b)
    with pytest.raises(ValueError, match="window must be >= 3"):
        rolling_ols(a, b, window=2)
    with pytest.raises(ValueError, match="window must be an int"):
        rolling_ols(a, b, window=5.0)
    with pytest.raises(InsufficientData, match="needs 60 bars, has 50"):
        rolling_ols(a, b, window=60)
    with pytest.raises(InsufficientData):
        ols_hedge(a[:2], b[:2])
    with pytest.raises(AnalyticsError, match="b is constant"):
        ols_hedge(a, np.full(50, 7.0))
    with pytest.raises(AnalyticsError, match="b is constant"):
        huber_hedge(a, np.full(50, 7.0))
    with pytest.raises(ValueError, match="method must be one of"):
        rolling_robust(a, b, window=10, method="lad")
    with pytest.raises(ValueError, match="step must be >= 1"):
        rolling_robust(a, b, window=10, step=0)
