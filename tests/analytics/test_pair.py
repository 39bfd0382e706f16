"""Batch pair statistics: definitions, warm-up, direction, no look-ahead, validation.

Also home of :func:`aligned_1s`, the small helper the pair-statistics tests share to
turn the ``sample_ticks`` fixture (real Binance BTCUSDT/ETHUSDT spot tape) into aligned
1 s closes with pandas, independently of ``analytics.bars`` / ``analytics.align``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analytics.errors import InsufficientData
from analytics.hedge import RobustParams, ols_hedge, rolling_ols, rolling_robust
from analytics.kalman import KalmanParams, kalman_hedge
from analytics.pair import (
    PRICE_MODES,
    REGRESSIONS,
    adf_summary,
    pair_series,
    requirements,
    static_fit,
)
from analytics.registry import PAIR_COLUMNS, STATISTICS
from analytics.rolling import log_prices
from analytics.spread import rolling_zscore
from analytics.stationarity import adf_test, coint_test, half_life

W = 30
FAST_ROBUST = {"huber": 1, "theilsen": 1}  # refit every bar (the schedule: test_hedge)


def _closes_1s(cols: dict[str, np.ndarray]) -> pd.Series:
    """Last trade price per second of trade time, trades ordered by (T, trade id)."""
    df = pd.DataFrame(
        {"T": cols["time_ms"], "t": cols["trade_id"], "p": cols["price"]}
    ).sort_values(["T", "t"], kind="stable")
    return df.groupby(df["T"] // 1000)["p"].last()


def aligned_1s(sample_ticks: dict) -> pd.DataFrame:
    """BTCUSDT (a) and ETHUSDT (b) 1 s closes on the union of seconds, forward-filled,
    starting at the later first bar. Columns ``ts`` (ms), ``a``, ``b``."""
    a = _closes_1s(sample_ticks["BTCUSDT"])
    b = _closes_1s(sample_ticks["ETHUSDT"])
    df = pd.concat({"a": a, "b": b}, axis=1).sort_index().ffill()
    df = df.loc[max(a.index[0], b.index[0]) :]
    out = pd.DataFrame({"ts": df.index.to_numpy() * 1000, "a": df["a"], "b": df["b"]})
    return out.reset_index(drop=True)


@pytest.fixture(scope="module")
def tape(sample_ticks) -> pd.DataFrame:
    return aligned_1s(sample_ticks)


def test_tape_is_a_real_aligned_pair(tape):
    assert 600 < len(tape) < 700
    assert tape[["a", "b"]].notna().all().all()
    assert (np.diff(tape["ts"]) > 0).all()
    assert 61_000 < tape["a"].iloc[0] < 62_500 and 2_600 < tape["b"].iloc[0] < 2_750


def _first(x: np.ndarray) -> int:
    return int(np.flatnonzero(~np.isnan(x))[0])


def _run(tape, regression, prices="raw", window=W, **kw) -> object:
    kw.setdefault("refit_step", FAST_ROBUST.get(regression, 1))
    return pair_series(
        tape["ts"], tape["a"], tape["b"], window=window, regression=regression,
        prices=prices, **kw,
    )  # fmt: skip


# ------------------------------------------------------------------- requirements


def test_requirements_declare_bars_per_analytic():
    req = requirements(60, "ols")
    assert set(req) == {f.name for f in STATISTICS} | {"adf", "coint", "half_life"}
    assert {k: req[k] for k in ("alpha", "beta", "spread", "zscore", "corr", "adf", "coint",
                                "half_life")} == {
        "alpha": 60, "beta": 60, "spread": 60, "zscore": 119, "corr": 61,
        "adf": 20, "coint": 20, "half_life": 10,
    }  # fmt: skip
    k = requirements(60, "kalman")
    assert (k["beta"], k["spread"], k["zscore"], k["corr"]) == (2, 2, 61, 61)
    assert requirements(5, "huber")["zscore"] == 9


@pytest.mark.parametrize("regression", REGRESSIONS)
def test_each_column_starts_exactly_when_requirements_say(tape, regression):
    """Every declared statistic: NaN before its warm-up; from it on, always defined
    (``dense``) or, for a figure that may be undefined on a window (no half-life
    where the spread does not mean-revert), defined somewhere and never before."""
    ps = _run(tape, regression)
    req = requirements(W, regression)
    assert req["alpha"] == req["beta"]
    for fig in STATISTICS:
        x = getattr(ps, fig.name)
        if fig.dense:
            assert _first(x) == req[fig.name] - 1, fig.name
            assert not np.isnan(x[req[fig.name] - 1 :]).any(), fig.name
        else:
            assert _first(x) >= req[fig.name] - 1, fig.name


# -------------------------------------------------------------- definitions / oracles


@pytest.mark.parametrize("prices", PRICE_MODES)
def test_ols_pair_series_is_built_from_its_parts(tape, prices):
    ps = _run(tape, "ols", prices)
    a, b = tape["a"].to_numpy(), tape["b"].to_numpy()
    pa, pb = (np.log(a), np.log(b)) if prices == "log" else (a, b)
    fit = rolling_ols(pa, pb, window=W)  # np.log here, math.log inside: 1-ulp noise
    np.testing.assert_allclose(ps.beta, fit.beta, rtol=1e-9, equal_nan=True)
    spread = pa - fit.alpha - fit.beta * pb
    scale = np.abs(pa).max()
    np.testing.assert_allclose(
        ps.spread, spread, rtol=0, atol=1e-11 * scale, equal_nan=True
    )
    # z: pandas rolling mean/std (ddof=1) of that spread, each spread with its own beta
    s = pd.Series(ps.spread)
    z = (s - s.rolling(W).mean()) / s.rolling(W).std()
    np.testing.assert_allclose(ps.zscore, z, rtol=1e-9, atol=1e-9, equal_nan=True)
    # corr: pandas rolling corr of raw log returns, whatever the price mode
    c = np.log(tape["a"]).diff().rolling(W).corr(np.log(tape["b"]).diff())
    np.testing.assert_allclose(ps.corr, c, rtol=1e-9, atol=1e-12, equal_nan=True)
    np.testing.assert_array_equal(ps.price_a, a)
    np.testing.assert_array_equal(ps.ts, tape["ts"])


def test_raw_and_log_corr_are_identical(tape):
    raw, lg = _run(tape, "ols", "raw"), _run(tape, "ols", "log")
    np.testing.assert_array_equal(raw.corr, lg.corr)


@pytest.mark.parametrize("regression", ["huber", "theilsen", "kalman"])
def test_other_regressions_use_their_estimator(tape, regression):
    ps = _run(tape, regression, "log")
    la, lb = log_prices(tape["a"]), log_prices(tape["b"])
    if regression == "kalman":
        ref = kalman_hedge(la, lb, KalmanParams(), prices="log")
    else:
        ref = rolling_robust(la, lb, window=W, method=regression,
                             step=FAST_ROBUST[regression])  # fmt: skip
    np.testing.assert_allclose(ps.beta, ref.beta, rtol=1e-12, equal_nan=True)
    np.testing.assert_allclose(ps.alpha, ref.alpha, rtol=1e-12, equal_nan=True)
    np.testing.assert_allclose(
        ps.zscore, rolling_zscore(ps.spread, window=W), rtol=1e-12, equal_nan=True
    )


def test_to_frame_has_exactly_the_documented_columns(tape):
    df = _run(tape, "ols").to_frame()
    assert tuple(df.columns) == PAIR_COLUMNS
    assert PAIR_COLUMNS[:8] == (
        "ts", "price_a", "price_b", "alpha", "beta", "spread", "zscore", "corr",
    )  # fmt: skip  (declared columns are appended: these keep their places)
    assert len(df) == len(tape)
    assert df["zscore"].iloc[: 2 * W - 2].isna().all()
    assert df["zscore"].iloc[2 * W - 2 :].notna().all()


# ------------------------------------------------------------------ hedge direction


def test_hedge_direction_a_on_b_exact():
    """A = 2 B exactly: A regressed on B gives beta == 2 and a zero spread (B on A would
    give 0.5); the z-score of an identically zero spread is undefined (NaN), not inf."""
    rng = np.random.default_rng(3)
    b = 2_500 + np.cumsum(rng.normal(0, 1, 300))
    a = 2 * b
    ps = pair_series(np.arange(300), a, b, window=20)
    assert (ps.beta[19:] == 2.0).all()
    assert (ps.alpha[19:] == 0.0).all()
    assert (ps.spread[19:] == 0.0).all()
    assert np.isnan(ps.zscore).all()
    fit = static_fit(a, b)
    assert (fit.beta, fit.alpha, fit.r2) == (2.0, 0.0, 1.0)
    assert ols_hedge(b, a).beta == 0.5  # the other direction, for contrast


def test_hedge_direction_on_tape(tape):
    """Leg A (BTC ~61.7k) on leg B (ETH ~2.7k): beta ~ 23, spread A - alpha - beta B."""
    fit = static_fit(tape["a"], tape["b"])
    assert 10 < fit.beta < 40
    resid = tape["a"] - fit.alpha - fit.beta * tape["b"]
    assert abs(resid.mean()) < 1e-6 * tape["a"].mean()


# --------------------------------------------------------------------- look-ahead


@pytest.mark.parametrize("prices", PRICE_MODES)
@pytest.mark.parametrize("regression", REGRESSIONS)
def test_no_look_ahead(tape, regression, prices):
    """Rewriting every bar after t leaves every value at or before t bit-identical."""
    n = 200
    sub = tape.iloc[:n]
    t = 130
    base = _run(sub, regression, prices, window=20)
    rng = np.random.default_rng(1)
    a2, b2 = sub["a"].to_numpy().copy(), sub["b"].to_numpy().copy()
    a2[t + 1 :] *= rng.uniform(0.9, 1.1, n - t - 1)
    b2[t + 1 :] *= rng.uniform(0.9, 1.1, n - t - 1)
    alt = _run(pd.DataFrame({"ts": sub["ts"], "a": a2, "b": b2}), regression, prices,
               window=20)  # fmt: skip
    for col in ("alpha", "beta", "spread", "zscore", "corr"):
        x, y = getattr(base, col), getattr(alt, col)
        np.testing.assert_array_equal(x[: t + 1], y[: t + 1], err_msg=col)
        assert not np.array_equal(x[t + 1 :], y[t + 1 :], equal_nan=True), col


# ------------------------------------------------------------------ static / summary


def test_static_fit_and_adf_summary(tape):
    a, b = tape["a"].to_numpy(), tape["b"].to_numpy()
    la, lb = log_prices(a), log_prices(b)
    fit = static_fit(a, b, prices="log")
    assert fit == ols_hedge(la, lb)
    s = adf_summary(a, b, prices="log")
    assert s.fit == fit
    resid = la - fit.alpha - fit.beta * lb
    assert s.adf == adf_test(resid)
    assert s.coint == coint_test(la, lb)
    assert s.half_life == half_life(resid)


# ------------------------------------------------------------------------ validation


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"window": 2}, "window must be >= 3"),
        ({"window": 30.0}, "window must be an int"),
        ({"window": True}, "window must be an int"),
        ({"window": 30, "regression": "tls"}, "regression must be one of"),
        ({"window": 30, "prices": "pct"}, "prices must be one of"),
        ({"window": 30, "kalman": {"delta": 1e-4}}, "kalman must be KalmanParams"),
        ({"window": 30, "robust": None, "regression": "huber"}, "robust must be"),
        ({"window": 30, "refit_step": 0}, "refit_step must be >= 1"),
    ],
)
def test_bad_arguments_name_the_parameter(tape, kwargs, match):
    with pytest.raises(ValueError, match=match):
        pair_series(tape["ts"], tape["a"], tape["b"], **kwargs)


def test_bad_inputs(tape):
    ts, a, b = tape["ts"].to_numpy(), tape["a"].to_numpy(), tape["b"].to_numpy()
    with pytest.raises(ValueError, match="same length"):
        pair_series(ts, a, b[:-1], window=W)
    with pytest.raises(ValueError, match="ts must"):
        pair_series(ts[:-1], a, b, window=W)
    with pytest.raises(ValueError, match="strictly increasing"):
        pair_series(ts[::-1], a, b, window=W)
    bad = a.copy()
    bad[5] = np.nan
    with pytest.raises(ValueError, match=r"a must be finite; a\[5\]"):
        pair_series(ts, bad, b, window=W)
    with pytest.raises(ValueError, match="positive"):
        pair_series(ts, -a, b, window=W, prices="log")


def test_too_few_bars_is_insufficient_data(tape):
    with pytest.raises(InsufficientData) as exc:
        pair_series(tape["ts"][:10], tape["a"][:10], tape["b"][:10], window=W)
    assert (exc.value.needed, exc.value.have, exc.value.missing) == (30, 10, 20)
    # Kalman has a beta from bar 2 on, so 10 bars are enough for it
    ps = pair_series(tape["ts"][:10], tape["a"][:10], tape["b"][:10], window=W,
                     regression="kalman")  # fmt: skip
    assert np.isnan(ps.beta[0]) and not np.isnan(ps.beta[1:]).any()
    assert np.isnan(ps.zscore).all()


def test_robust_params_validation():
    with pytest.raises(ValueError, match="epsilon"):
        RobustParams(epsilon=0.5)
    with pytest.raises(TypeError):
        RobustParams(max_points=2)  # no subsampling any more: every point is used


@pytest.mark.parametrize("regression", ["huber", "theilsen"])
def test_robust_figures_do_not_depend_on_where_the_history_starts(tape, regression):
    """The series built from bars[k:] equals the full series at every common bar where
    it is defined, for several k; it is undefined only before its first scheduled refit
    (the schedule is anchored to bar time ``ts // tf``, not to the first bar)."""
    from analytics.robust import refit_step

    w = 60  # Theil-Sen step 5, Huber step 4
    step = refit_step(w, regression)
    assert step > 1
    full = pair_series(tape["ts"], tape["a"], tape["b"], window=w, regression=regression,
                       prices="log", tf_ms=1_000)  # fmt: skip
    for k in (1, 2, 3, 7, 50, 123):
        part = pair_series(tape["ts"][k:], tape["a"][k:], tape["b"][k:], window=w,
                           regression=regression, prices="log", tf_ms=1_000)  # fmt: skip
        for f in ("alpha", "beta", "spread"):
            got, ref = getattr(part, f), getattr(full, f)[k:]
            have = np.isfinite(got)
            np.testing.assert_array_equal(got[have], ref[have], err_msg=f"{f} k={k}")
        first = _first(part.beta)
        assert w - 1 <= first < w - 1 + step  # NaN only until the first refit
        zk = np.isfinite(part.zscore)
        np.testing.assert_allclose(part.zscore[zk], full.zscore[k:][zk], rtol=1e-9, atol=1e-9)
