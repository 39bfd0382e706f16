"""Hedge ratios against statsmodels / scipy on the real tape and on known truth.

Robust fits: Theil-Sen against ``scipy.stats.theilslopes(method="joint")`` on every
window; Huber against an independent scipy.optimize minimiser of the same objective,
plus the objective itself (profiled over the scale in closed form) at perturbations.

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

import numpy as np
import pytest
import statsmodels.api as sm

from analytics.errors import AnalyticsError, InsufficientData
from analytics.hedge import (
    HedgeFit,
    huber_hedge,
    ols_hedge,
    rolling_ols,
    rolling_robust,
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


def test_static_robust_fits_equal_their_references(tape):
    """Static fits over the whole tape: Theil-Sen == scipy theilslopes, Huber == the
    reference minimiser of its objective (helpers further down)."""
    from scipy.stats import theilslopes

    a, b = _legs(tape, "raw")
    ts = theilsen_hedge(a, b)
    ref = theilslopes(a, b, method="joint")
    assert_fit_close(ts.beta, ts.alpha, ref.slope, ref.intercept, a, b, rtol=1e-12)
    assert ts.method == "theilsen" and ts.n == len(a) and 0 < ts.r2 < 1
    h = huber_hedge(a, b, epsilon=1.5)
    beta, alpha, _ = _huber_reference(a, b, eps=1.5)
    assert abs(h.beta - beta) <= 1e-7 * a.std() / b.std()
    assert h.method == "huber" and h.n == len(a) and 0 < h.r2 < 1


def test_robust_step_holds_fits_without_look_ahead(tape):
    a, b = _legs(tape, "raw")
    every = rolling_robust(a[:200], b[:200], window=40, method="huber", step=1)
    held = rolling_robust(a[:200], b[:200], window=40, method="huber", step=9)
    assert np.isnan(held.beta[:45]).all()  # first refit: the first multiple of 9 >= 39
    for t in range(45, 200):
        t_fit = t // 9 * 9  # last refit at or before t
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


# ------------------------------------------- robust fits are the estimators they name


def _tied_share(x: np.ndarray) -> float:
    """Share of point pairs of a window with equal x (carried-forward closes)."""
    eq = (x[:, None] == x[None, :])[np.triu_indices(len(x), 1)]
    return float(eq.mean())


@pytest.mark.parametrize("prices", ["raw", "log"])
@pytest.mark.parametrize("window", [20, 60])
def test_theilsen_is_the_textbook_median_of_pairwise_slopes_on_every_window(
    tape, window, prices
):
    """Every window of the tape == scipy ``theilslopes(method="joint")`` to 1e-12
    (slope: median of pairwise slopes over pairs with distinct x; intercept: median of
    y - slope x), including windows where most pairs have tied x."""
    from scipy.stats import theilslopes

    a, b = _legs(tape, prices)
    # and the same tape with leg B quoted every 30 s only (carried forward): windows
    # where most point pairs have tied x, or all (B constant: NaN)
    a = np.concatenate([a, a])
    b = np.concatenate([b, b[np.arange(len(b)) // 30 * 30]])
    fit = rolling_robust(a, b, window=window, method="theilsen", step=1)
    most_tied = 0.0
    for t in range(window - 1, len(a)):
        aw, bw = a[t - window + 1 : t + 1], b[t - window + 1 : t + 1]
        if np.all(bw == bw[0]):
            assert np.isnan(fit.beta[t]) and np.isnan(fit.alpha[t]), t
            continue
        most_tied = max(most_tied, _tied_share(bw))
        ref = theilslopes(aw, bw, method="joint")
        assert fit.beta[t] == pytest.approx(ref.slope, rel=1e-12, abs=1e-300), t
        scale = abs(ref.intercept) + abs(ref.slope * bw.mean())
        assert abs(fit.alpha[t] - ref.intercept) <= 1e-12 * scale, t
    assert most_tied > 0.45  # heavily tied windows are in the test


def _huber_objective(y, x, alpha, beta, sigma, eps=1.35):
    """Huber's concomitant-scale objective (the methodology's L), plain numpy."""
    r = y - alpha - beta * x
    ar = np.abs(r)
    out = ar > eps * sigma
    return len(y) * sigma + np.sum(np.where(out, 2 * eps * ar - sigma * eps**2,
                                            r * r / sigma))  # fmt: skip


def _huber_reference(y, x, eps=1.35):
    """Independent minimiser of the same objective: scipy L-BFGS-B with its analytic
    gradient on the standardised window, from OLS and a MAD scale, to the tolerance
    floor; mapped back (the objective is affine-equivariant)."""
    from scipy.optimize import minimize

    mx, sx, my, sy = x.mean(), x.std(), y.mean(), y.std()
    xs, ys = (x - mx) / sx, (y - my) / sy
    b0 = float(np.polyfit(xs, ys, 1)[0])
    s0 = float(np.median(np.abs(ys - b0 * xs))) / 0.6745 or 1.0

    def fun(p):
        al, be, s = p
        r = ys - al - be * xs
        u = r / s
        inl = np.abs(u) <= eps
        psi = np.where(inl, u, eps * np.sign(u))
        val = _huber_objective(ys, xs, al, be, s, eps)
        g = [-2 * psi.sum(), -2 * (psi * xs).sum(),
             len(ys) - np.sum(u[inl] ** 2) - (~inl).sum() * eps**2]  # fmt: skip
        return val, np.array(g)

    res = minimize(fun, [0.0, b0, s0], jac=True, method="L-BFGS-B",
                   bounds=[(None, None), (None, None), (1e-12, None)],
                   options={"ftol": 0.0, "gtol": 1e-14, "maxiter": 20_000})  # fmt: skip
    al, be, s = res.x
    beta = be * sy / sx
    return beta, my + sy * al - beta * mx, s * sy


def _profile(y, x, alpha, beta, eps=1.35):
    """min over sigma > 0 of the objective at (alpha, beta), in closed form: with the
    k largest |r| beyond eps sigma, dL/dsigma = 0 gives
    sigma_k^2 = (sum of the other r^2) / (n - k eps^2); L is convex in sigma, so its
    minimum is the least L over these candidates."""
    r = y - alpha - beta * x
    ar = np.sort(np.abs(r))
    n = len(ar)
    ssq = np.concatenate([[0.0], np.cumsum(ar * ar)])  # ssq[j] = sum of the j smallest
    k = np.arange(n)
    denom = n - k * eps**2
    keep = (denom > 0) & (ssq[n - k] > 0)
    sig = np.sqrt(ssq[n - k][keep] / denom[keep])[:, None]
    a_ = np.abs(r)[None, :]
    q = np.where(a_ > eps * sig, 2 * eps * a_ - sig * eps**2, a_ * a_ / sig)
    return float((n * sig[:, 0] + q.sum(axis=1)).min())


@pytest.mark.parametrize(
    "stride", [pytest.param(1, marks=pytest.mark.slow, id="every-window"), 16]
)
@pytest.mark.parametrize("prices", ["log", "raw"])
def test_huber_reaches_the_minimum_of_its_objective_on_every_window(tape, prices, stride):
    """w = 20 on 1 s prices (windows of a few distinct prices, where sklearn's L-BFGS
    stalled): every fit equals the reference minimiser, and its objective (profiled
    over the scale) is not lowered by the reference nor by any small perturbation.
    Every window (slow: the reference optimiser takes ~0.1 s a window), or 1 in 16."""
    a, b = _legs(tape, prices)
    w = 20
    fit = rolling_robust(a, b, window=w, method="huber", step=1)
    checked = 0
    for t in range(w - 1, len(a), stride):
        aw, bw = a[t - w + 1 : t + 1], b[t - w + 1 : t + 1]
        if np.all(bw == bw[0]):
            assert np.isnan(fit.beta[t]), t
            continue
        beta, alpha = fit.beta[t], fit.alpha[t]
        ref_beta, ref_alpha, _ = _huber_reference(aw, bw)
        slope_scale = aw.std() / bw.std()
        assert abs(beta - ref_beta) <= 1e-7 * slope_scale, (t, beta, ref_beta)
        best = _profile(aw, bw, alpha, beta)
        # 1e-9: alpha of log prices (~11) is stored to ~1e-15 absolute while the
        # residuals are ~1e-5, so L itself is known to ~1e-10 relative
        assert best <= _profile(aw, bw, ref_alpha, ref_beta) * (1 + 1e-9), t
        ha, hb = 1e-3 * aw.std(), 1e-3 * slope_scale  # beta turns about mean B
        for da, db in ((1, 0), (-1, 0), (0, 1), (0, -1), (1, 1), (-1, -1)):
            pert = _profile(aw, bw, alpha + da * ha - db * hb * bw.mean(), beta + db * hb)
            assert best <= pert * (1 + 1e-9), (t, da, db)
        checked += 1
    assert checked > 500 // stride


def test_theilsen_of_long_windows_is_the_same_textbook_estimator():
    """Windows above the matrix size (w = 1,500 and 3,600, 1 s prices with carried
    closes) go through the bounded-memory bracketed selection: still scipy's value."""
    from scipy.stats import theilslopes

    a, b = synthetic_day(8_000)
    a, b = np.round(a, 2), np.round(b, 2)
    b = b[np.arange(len(b)) // 3 * 3]  # B quoted every 3 s: a third of pairs tied
    for w in (1_500, 3_600):
        fit = rolling_robust(np.log(a), np.log(b), window=w, method="theilsen", step=2_000)
        for t in np.flatnonzero(np.diff(np.nan_to_num(fit.beta), prepend=0.0) != 0.0):
            aw, bw = np.log(a[t - w + 1 : t + 1]), np.log(b[t - w + 1 : t + 1])
            ref = theilslopes(aw, bw, method="joint")
            assert fit.beta[t] == pytest.approx(ref.slope, rel=1e-12), (w, t)
            assert fit.alpha[t] == pytest.approx(ref.intercept, rel=1e-12), (w, t)


def test_bracketed_theilsen_recovers_when_its_bracket_misses(monkeypatch):
    """With no margin the sample's bracket misses the middle slopes; the counts catch
    it and the selection widens: the value is still exact."""
    from scipy.stats import theilslopes

    import analytics.robust as robust

    monkeypatch.setattr(robust, "BRACKET_MARGIN_SD", 0.0)
    monkeypatch.setattr(robust, "BRACKET_MARGIN_MIN", 0)
    rng = np.random.default_rng(3)
    x = np.round(rng.normal(0.0, 1.0, 1_200), 1)  # heavy ties
    y = 0.7 * x + rng.standard_t(2, 1_200)
    assert robust._theilsen_slope_bracketed(y, x) == theilslopes(y, x, method="joint").slope
