"""Incremental estimators == batch twins == pandas / two-pass oracles, at every step."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analytics.hedge import rolling_ols
from analytics.rolling import (
    RollingCorr,
    RollingMoments,
    RollingOLS,
    log_prices,
    window_moments,
)
from analytics.spread import rolling_corr, rolling_zscore
from tests.analytics.test_hedge import synthetic_day
from tests.analytics.test_pair import aligned_1s

RTOL = 1e-9


@pytest.fixture(scope="module")
def tape(sample_ticks):
    return aligned_1s(sample_ticks)


def feed_moments(x, w):
    r = RollingMoments(w)
    out = np.full((len(x), 2), np.nan)
    for i, v in enumerate(x):
        m = r.update(v)
        assert (m is None) == (i < w - 1)
        if m is not None:
            out[i] = m
    return out


def feed_ols(a, b, w):
    r = RollingOLS(w)
    out = np.full((len(a), 3), np.nan)
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        v = r.update(x, y)
        assert (v is None) == (i < w - 1)
        if v is not None:
            out[i] = v.beta, v.alpha, r.r2
    return out


def feed_corr(x, y, w):
    r = RollingCorr(w)
    out = np.full(len(x), np.nan)
    for i, (u, v) in enumerate(zip(x, y, strict=True)):
        c = r.update(u, v)
        assert (c is None) == (i < w - 1)
        if c is not None:
            out[i] = c
    return out


def batch_mean_std(x, w):
    m = window_moments(x, window=w)
    return m.mean_x, np.sqrt(m.cxx / (w - 1))


def two_pass(x, y, w):
    """Exact-ish oracle: per window, means first, then centred sums (numpy pairwise)."""
    xv = np.lib.stride_tricks.sliding_window_view(np.asarray(x, float), w)
    yv = np.lib.stride_tricks.sliding_window_view(np.asarray(y, float), w)
    mx, my = xv.mean(axis=1), yv.mean(axis=1)
    # an exactly constant window has exactly zero deviations (sum / w may round)
    mx = np.where((xv == xv[:, :1]).all(axis=1), xv[:, 0], mx)
    my = np.where((yv == yv[:, :1]).all(axis=1), yv[:, 0], my)
    dx, dy = xv - mx[:, None], yv - my[:, None]
    pad = np.full(w - 1, np.nan)
    return [np.concatenate((pad, v)) for v in
            (mx, my, (dx * dx).sum(1), (dy * dy).sum(1), (dx * dy).sum(1))]  # fmt: skip


# --------------------------------------------------------------------- batch kernel

# pandas is the oracle where it is accurate. Its rolling var is an online Welford with
# removals and its rolling cov/corr use E[xy] - E[x]E[y]: on 2-3 bar windows of raw BTC
# prices (variance ~1e-13 of price^2), of a spread after a jump, or of 1 s log returns
# they are off by up to 4e-8 (var), 1e-8 (std) and 1e-2 (corr of 2 points, which is
# exactly +-1), and over 86,400 updates pandas' std drifts by 5e-8. There the oracle is
# the per-window two-pass computation; pandas is checked for w >= 30.


@pytest.mark.parametrize("w", [2, 3, 30, 300])
def test_window_moments_equal_two_pass_and_pandas_on_the_tape(tape, w):
    a, b = tape["a"], tape["b"]
    m = window_moments(a, b, window=w)
    mx, my, cxx, cyy, cxy = two_pass(a, b, w)
    np.testing.assert_allclose(m.mean_x, mx, rtol=1e-14, equal_nan=True)
    np.testing.assert_allclose(m.mean_y, my, rtol=1e-14, equal_nan=True)
    np.testing.assert_allclose(m.cxx, cxx, rtol=RTOL, equal_nan=True)
    np.testing.assert_allclose(m.cyy, cyy, rtol=RTOL, equal_nan=True)
    scale = np.sqrt(cxx * cyy)  # |cxy| <= scale; cxy itself can be ~0
    assert np.nanmax(np.abs(m.cxy - cxy) / np.where(scale > 0, scale, 1.0)) <= RTOL
    if w >= 30:
        ra, rb = a.rolling(w), b.rolling(w)
        np.testing.assert_allclose(m.mean_x, ra.mean(), rtol=1e-14, equal_nan=True)
        np.testing.assert_allclose(m.cxx / (w - 1), ra.var(), rtol=RTOL, equal_nan=True)
        np.testing.assert_allclose(m.cyy / (w - 1), rb.var(), rtol=RTOL, equal_nan=True)


def test_window_moments_nan_and_constant_windows_follow_pandas():
    x = np.array([1.0, 2.0, np.nan, 4.0, 5.0, 6.0, 6.0, 6.0, 6.0, 7.0])
    m = window_moments(x, window=3)
    s = pd.Series(x).rolling(3)
    np.testing.assert_allclose(m.mean_x, s.mean(), rtol=1e-15, equal_nan=True)
    np.testing.assert_allclose(m.cxx / 2, s.var(), rtol=1e-12, equal_nan=True)
    assert m.cxx[7] == 0.0 and m.cxx[8] == 0.0  # exactly constant windows: exactly 0
    assert np.isnan(m.cxx[:5]).all() and not np.isnan(m.cxx[5:]).any()
    short = window_moments(x[:2], window=3)
    assert np.isnan(short.mean_x).all()


# ------------------------------------------------------------ incremental vs batch


@pytest.mark.parametrize("w", [2, 3, 30, 300])
def test_rolling_moments_equal_batch_two_pass_and_pandas_on_the_tape(tape, w):
    spread = tape["a"] - 23.0 * tape["b"]
    for x in (tape["a"].to_numpy(), log_prices(tape["b"]), spread.to_numpy()):
        inc = feed_moments(x, w)
        mean, std = batch_mean_std(x, w)
        close = dict(rtol=RTOL, equal_nan=True)
        np.testing.assert_allclose(inc[:, 0], mean, atol=1e-12, **close)
        np.testing.assert_allclose(inc[:, 1], std, **close)
        mx, _, cxx, _, _ = two_pass(x, x, w)
        np.testing.assert_allclose(inc[:, 0], mx, atol=1e-12, **close)
        np.testing.assert_allclose(inc[:, 1], np.sqrt(cxx / (w - 1)), **close)
    if w < 30:
        return  # pandas loses digits on 2-3 bar windows (see above)
    s = pd.Series(spread).rolling(w)
    inc = feed_moments(spread.to_numpy(), w)
    close = dict(rtol=RTOL, equal_nan=True)
    np.testing.assert_allclose(inc[:, 0], s.mean(), atol=1e-9, **close)
    np.testing.assert_allclose(inc[:, 1], s.std(), **close)


@pytest.mark.parametrize("prices", ["raw", "log"])
@pytest.mark.parametrize("w", [3, 30, 60, 300])
def test_rolling_ols_incremental_equals_batch_every_step(tape, w, prices):
    a, b = tape["a"].to_numpy(), tape["b"].to_numpy()
    if prices == "log":
        a, b = log_prices(a), log_prices(b)
    inc = feed_ols(a, b, w)
    fit = rolling_ols(a, b, window=w)
    np.testing.assert_allclose(inc[:, 0], fit.beta, rtol=RTOL, equal_nan=True)
    scale = np.abs(fit.alpha) + np.abs(fit.beta * b)
    assert np.nanmax(np.abs(inc[:, 1] - fit.alpha) / scale) <= RTOL
    np.testing.assert_allclose(inc[:, 2], fit.r2, rtol=RTOL, atol=1e-12, equal_nan=True)


@pytest.mark.parametrize("w", [2, 3, 30, 300])
def test_rolling_corr_equals_pandas_and_batch_on_log_returns(tape, w):
    ra, rb = np.log(tape["a"]).diff(), np.log(tape["b"]).diff()
    x, y = ra.to_numpy()[1:], rb.to_numpy()[1:]
    inc = feed_corr(x, y, w)
    # corr lives in [-1, 1]: an absolute 1e-12 floor for windows where it is ~0
    np.testing.assert_allclose(inc, rolling_corr(x, y, window=w), rtol=RTOL, atol=1e-12,
                               equal_nan=True)  # fmt: skip
    _, _, cxx, cyy, cxy = two_pass(x, y, w)
    with np.errstate(invalid="ignore", divide="ignore"):
        ref = np.where((cxx > 0) & (cyy > 0), cxy / np.sqrt(cxx * cyy), np.nan)
    np.testing.assert_allclose(inc, ref, rtol=RTOL, atol=1e-12, equal_nan=True)
    if w == 2:  # two points are always perfectly (anti-)correlated
        np.testing.assert_allclose(np.abs(inc[~np.isnan(inc)]), 1.0, rtol=1e-12)
    elif w >= 30:  # pandas loses digits on 2-3 bar windows (see above)
        pd_ref = ra.iloc[1:].rolling(w).corr(rb.iloc[1:])
        np.testing.assert_allclose(inc, pd_ref, rtol=RTOL, atol=1e-12, equal_nan=True)


def test_no_drift_over_a_day_of_updates():
    """86,400 add/remove steps far from the first price: the exact recomputes hold."""
    a, b = synthetic_day()
    w = 60
    r = RollingOLS(w)
    betas = np.array(
        [
            np.nan if (v := r.update(x, y)) is None else v.beta
            for x, y in zip(a.tolist(), b.tolist(), strict=True)
        ]
    )
    ref = rolling_ols(a, b, window=w).beta
    np.testing.assert_allclose(betas, ref, rtol=RTOL, equal_nan=True)
    m = feed_moments(a, w)
    _, std = batch_mean_std(a, w)
    np.testing.assert_allclose(m[:, 1], std, rtol=RTOL, equal_nan=True)
    for t in (w - 1, 37_708, len(a) - 1):  # where pandas has drifted by 5e-8
        assert m[t, 1] == pytest.approx(np.std(a[t - w + 1 : t + 1], ddof=1), rel=1e-12)


def test_degenerate_windows_match_the_batch():
    b = [1.0, 2.0, 3.0, 3.0, 3.0, 3.0, 4.0, 5.0]
    a = [2.0, 4.0, 6.0, 5.0, 5.0, 5.0, 5.0, 5.0]
    inc = feed_ols(a, b, 3)
    fit = rolling_ols(a, b, window=3)
    np.testing.assert_array_equal(inc[:, 0], fit.beta)
    m = feed_moments(a, 3)
    assert m[6, 1] == 0.0 and m[6, 0] == 5.0  # constant window: exactly 0, as pandas
    assert np.isnan(feed_corr(a, b, 3)[5])  # b constant over the window


def test_nan_inside_the_window_gives_nan_then_recovers():
    x = [1.0, 2.0, math.nan, 4.0, 5.0, 7.0, 11.0]
    inc = feed_moments(x, 3)
    ref = pd.Series(x).rolling(3)
    np.testing.assert_allclose(inc[:, 0], ref.mean(), rtol=1e-15, equal_nan=True)
    np.testing.assert_allclose(inc[:, 1], ref.std(), rtol=1e-12, equal_nan=True)
    z = rolling_zscore(x, window=3)
    assert np.isnan(z[:5]).all() and not np.isnan(z[5:]).any()


def test_state_is_bounded():
    r = RollingOLS(50)
    m = RollingMoments(50)
    for i in range(1_000):
        r.update(1.0 + i % 7, 2.0 + i % 5)
        m.update(float(i))
    assert len(r._sums._xs) == len(r._sums._ys) == 50 and r.count == 50
    assert len(m._sums._xs) == 50 and m.count == 50 and r.window == 50


def test_window_validation():
    for cls in (RollingMoments, RollingCorr):
        with pytest.raises(ValueError, match="window must be >= 2"):
            cls(1)
    with pytest.raises(ValueError, match="window must be >= 3"):
        RollingOLS(2)
    with pytest.raises(ValueError, match="window must be an int"):
        RollingOLS(10.5)


# ----------------------------------------------------------------------- hypothesis


def _walk(draw, n):
    """Exactly representable random walk: integer start and steps times 2^k (with zero
    steps, so constant windows occur)."""
    start = draw(st.integers(-10_000, 10_000))
    steps = draw(st.lists(st.integers(-3, 3), min_size=n, max_size=n))
    scale = draw(st.sampled_from([1.0, 0.5, 2.0**-10, 64.0]))
    return (start + np.cumsum(steps)) * scale


@st.composite
def walks(draw):
    n = draw(st.integers(3, 120))
    w = draw(st.integers(3, max(3, min(40, n))))
    b = _walk(draw, n)
    a = draw(st.integers(-3, 3)) * b + _walk(draw, n)
    return a, b, w


def _two_pass(a, b, t, w):
    aw, bw = a[t - w + 1 : t + 1], b[t - w + 1 : t + 1]
    da, db = aw - aw.mean(), bw - bw.mean()
    return aw, bw, da, db


@settings(max_examples=150, deadline=None)
@given(walks())
def test_hypothesis_incremental_equals_batch_and_two_pass(data):
    a, b, w = data
    inc_m = feed_moments(a, w)
    mean, std = batch_mean_std(a, w)
    inc_ols = feed_ols(a, b, w)
    fit = rolling_ols(a, b, window=w)
    inc_c = feed_corr(a, b, w)
    bat_c = rolling_corr(a, b, window=w)
    for t in range(w - 1, len(a)):
        aw, bw, da, db = _two_pass(a, b, t, w)
        tol_mean = 1e-12 * np.abs(aw).max()
        sd = math.sqrt(float(da @ da) / (w - 1))
        for got in (inc_m[t], (mean[t], std[t])):
            assert abs(got[0] - aw.mean()) <= RTOL * abs(aw.mean()) + tol_mean
            assert abs(got[1] - sd) <= RTOL * sd
        sbb, saa = float(db @ db), float(da @ da)
        if sbb == 0.0:
            assert np.isnan(inc_ols[t, 0]) and np.isnan(fit.beta[t])
            assert np.isnan(inc_c[t]) and np.isnan(bat_c[t])
            continue
        beta = float(db @ da) / sbb
        floor = 1e-12 * (math.sqrt(saa / sbb) + 1e-300)
        for got in (inc_ols[t, 0], fit.beta[t]):
            assert abs(got - beta) <= RTOL * abs(beta) + floor
        if saa == 0.0:
            assert np.isnan(inc_c[t]) and np.isnan(bat_c[t])
            continue
        corr = float(db @ da) / math.sqrt(sbb * saa)
        for got in (inc_c[t], bat_c[t]):
            assert abs(got - corr) <= RTOL * abs(corr) + 1e-12
