"""Kalman hedge: numpy matrix filter as oracle, known truth, no look-ahead."""

from __future__ import annotations

import math

import numpy as np
import pytest

from analytics.errors import InsufficientData
from analytics.kalman import BPS, KalmanHedge, KalmanParams, kalman_hedge
from analytics.rolling import log_prices
from tests.analytics.test_hedge import cointegrated_pair
from tests.analytics.test_pair import aligned_1s


@pytest.fixture(scope="module")
def tape(sample_ticks):
    return aligned_1s(sample_ticks)


def reference_filter(a, b, params: KalmanParams, prices: str):
    """Textbook Kalman filter with numpy matrices (the model of analytics.kalman).

    Coordinates: basis points from the first bar (relative for raw prices, difference
    for log prices); state [beta, alpha] random walk with Q = delta/(1-delta) I;
    observation y = [x, 1] state + v, R = obs_var; prior 0, P0 = p0 I.
    """
    a, b = np.asarray(a, float), np.asarray(b, float)
    sa, sb = (a[0], b[0]) if prices == "raw" else (1.0, 1.0)
    y = 1e4 * (a - a[0]) / sa
    x = 1e4 * (b - b[0]) / sb
    Q = params.delta / (1 - params.delta) * np.eye(2)
    R = params.obs_var
    state = np.zeros(2)
    P = params.p0 * np.eye(2)
    out = np.empty((len(a), 4))
    for t in range(len(a)):
        P = P + Q  # predict (random walk: state mean unchanged)
        H = np.array([[x[t], 1.0]])
        e = y[t] - (H @ state)[0]
        S = (H @ P @ H.T)[0, 0] + R
        K = P @ H.T / S
        state = state + K[:, 0] * e
        P = (np.eye(2) - K @ H) @ P
        out[t] = state[0], state[1], e, S
    beta = out[:, 0] * sa / sb
    alpha = a[0] - beta * b[0] + out[:, 1] * sa / 1e4
    return beta, alpha, out[:, 2] * sa / 1e4, out[:, 3] * (sa / 1e4) ** 2


def _close(x, ref, scale, rtol=1e-9):
    """Relative to ``scale`` elementwise (alpha is a difference of large terms)."""
    err = np.abs(np.asarray(x) - ref)
    assert (err <= rtol * scale).all(), float(np.max(err / scale))


# p0 / obs_var stays <= 1e5: with a prior far more diffuse than the noise, the first
# covariance update P - P H'H P / S cancels ~log10(p0 / R) digits in any form (the
# textbook (I - K H) P included), so two correct filters then agree only to ~1e-16 p0/R.
PARAMS = [
    KalmanParams(),
    KalmanParams(delta=1e-2, obs_var=0.1, p0=1e4),
    KalmanParams(delta=1e-7, obs_var=50.0, p0=1.0),
]


@pytest.mark.parametrize("params", PARAMS)
@pytest.mark.parametrize("prices", ["raw", "log"])
def test_batch_and_incremental_equal_the_numpy_reference_on_the_tape(
    tape, prices, params
):
    a, b = tape["a"].to_numpy(), tape["b"].to_numpy()
    if prices == "log":
        a, b = log_prices(a), log_prices(b)
    beta, alpha, innov, svar = reference_filter(a, b, params, prices)
    fit = kalman_hedge(a, b, params, prices=prices)
    assert np.isnan(fit.beta[0]) and np.isnan(fit.alpha[0])
    _close(fit.beta[1:], beta[1:], np.abs(beta[1:]) + 1e-12 * a.std() / b.std())
    _close(fit.alpha[1:], alpha[1:], np.abs(alpha[1:]) + np.abs(beta[1:] * b[1:]))
    _close(fit.innovation_var, svar, svar)
    _close(fit.innovation, innov, np.abs(innov) + np.sqrt(svar) * 1e-6)

    kf = KalmanHedge(params, prices=prices)
    inc = [kf.update(x, y) for x, y in zip(a, b, strict=True)]
    assert inc[0] is None
    np.testing.assert_array_equal([v.beta for v in inc[1:]], fit.beta[1:])
    np.testing.assert_array_equal([v.alpha for v in inc[1:]], fit.alpha[1:])
    assert kf.innovation == fit.innovation[-1]
    assert kf.innovation_var == fit.innovation_var[-1]
    assert kf.count == len(a)


def test_state_and_covariance_are_exposed_in_filter_coordinates(tape):
    a, b = tape["a"].to_numpy()[:50], tape["b"].to_numpy()[:50]
    kf = KalmanHedge()
    for x, y in zip(a, b, strict=True):
        kf.update(x, y)
    beta_n, alpha_n = kf.state
    assert kf.value.beta == pytest.approx(beta_n * a[0] / b[0], rel=1e-15)
    alpha = a[0] - kf.value.beta * b[0] + alpha_n * a[0] / BPS
    assert kf.value.alpha == pytest.approx(alpha)
    (p11, p12), (p21, p22) = kf.P
    assert p12 == p21 and p11 > 0 and p22 > 0 and p11 * p22 > p12 * p12  # PD


def test_first_bar_only_pins_the_intercept():
    kf = KalmanHedge()
    assert kf.update(61_000.0, 2_600.0) is None
    assert kf.state == (0.0, 0.0)  # y = x = 0 at the reference bar: no innovation
    # beta untouched: its variance is the prior plus one step of random walk
    assert kf.P[0][0] == pytest.approx(100.0 + KalmanParams().trans_var)
    assert kf.update(61_010.0, 2_601.0) is not None


def test_known_truth_static_relationship():
    """A = 3 + 1.5 B + AR(1) noise: a near-static filter (delta 1e-8, R ~ the noise
    variance of ~38 bp) recovers beta within 0.01 over the whole second half."""
    a, b = cointegrated_pair()
    fit = kalman_hedge(a, b, KalmanParams(delta=1e-8, obs_var=1e3))
    assert np.abs(fit.beta[1_000:] - 1.5).max() < 0.01
    assert np.abs(fit.alpha[1_000:] - 3.0).max() < 1.0
    # the default (fast-adapting) filter still centres on the truth
    default = kalman_hedge(a, b)
    assert abs(np.median(default.beta[1_000:]) - 1.5) < 0.01


@pytest.mark.parametrize("prices", ["raw", "log"])
def test_no_look_ahead(tape, prices):
    a, b = tape["a"].to_numpy(), tape["b"].to_numpy()
    if prices == "log":
        a, b = np.log(a), np.log(b)
    base = kalman_hedge(a, b, prices=prices)
    t = 300
    a2, b2 = a.copy(), b.copy()
    a2[t + 1 :] = a2[t + 1 :][::-1]
    b2[t + 1 :] *= 1.01
    alt = kalman_hedge(a2, b2, prices=prices)
    np.testing.assert_array_equal(base.beta[: t + 1], alt.beta[: t + 1])
    np.testing.assert_array_equal(base.alpha[: t + 1], alt.alpha[: t + 1])
    assert not np.array_equal(base.beta[t + 1 :], alt.beta[t + 1 :])


def test_raw_and_log_coordinates_nearly_agree(tape):
    """Relative changes and log changes are the same to first order: same z-scale."""
    a, b = tape["a"].to_numpy(), tape["b"].to_numpy()
    raw = kalman_hedge(a, b, prices="raw")
    lg = kalman_hedge(np.log(a), np.log(b), prices="log")
    elasticity_raw = raw.beta[1:] * b[1:] / a[1:]
    assert np.abs(elasticity_raw - lg.beta[1:]).max() < 0.05


def test_validation():
    with pytest.raises(ValueError, match="delta must be in"):
        KalmanParams(delta=1.0)
    with pytest.raises(ValueError, match="obs_var"):
        KalmanParams(obs_var=0.0)
    with pytest.raises(ValueError, match="p0"):
        KalmanParams(p0=math.inf)
    with pytest.raises(ValueError, match="prices must be one of"):
        KalmanHedge(prices="pct")
    with pytest.raises(ValueError, match="raw prices must be positive"):
        KalmanHedge().update(-1.0, 2.0)
    with pytest.raises(ValueError, match="finite"):
        KalmanHedge().update(math.nan, 2.0)
    with pytest.raises(ValueError, match="same length"):
        kalman_hedge([1.0, 2.0, 3.0], [1.0, 2.0])
    with pytest.raises(InsufficientData):
        kalman_hedge([1.0], [1.0])


def test_absorb_equals_update_bitwise():
    """KalmanHedge.absorb(history) leaves exactly the state of update() on each bar."""
    from analytics.kalman import KalmanHedge

    rng = np.random.default_rng(7)
    b = 2_680 * np.exp(np.cumsum(rng.normal(0, 1e-4, 3_000)))
    a = 23 * b + rng.normal(0, 5, 3_000)
    for prices in ("raw", "log"):
        pa, pb = (np.log(a), np.log(b)) if prices == "log" else (a, b)
        one, many = KalmanHedge(prices=prices), KalmanHedge(prices=prices)
        for x, y in zip(pa[:2_000], pb[:2_000]):
            one.update(x, y)
        many.absorb(pa[:1_000], pb[:1_000])
        many.absorb(pa[1_000:2_000], pb[1_000:2_000])
        assert many.count == one.count and many.state == one.state and many.P == one.P
        assert many.value == one.value
        assert many.update(pa[2_000], pb[2_000]) == one.update(pa[2_000], pb[2_000])
