"""IncrementalPair == pair_series row by row, for every regression and price mode."""

from __future__ import annotations

import math

import numpy as np
import pytest

from analytics.hedge import RobustParams
from analytics.kalman import KalmanParams
from analytics.live import IncrementalPair, PairPoint
from analytics.pair import PRICE_MODES, REGRESSIONS, pair_series, requirements
from analytics.registry import PAIR_FIGURES, STATISTICS
from tests.analytics.test_pair import aligned_1s

W = 30
STEP = {"ols": 1, "kalman": 1, "huber": 3, "theilsen": 7}  # robust refit schedule


@pytest.fixture(scope="module")
def tape(sample_ticks):
    return aligned_1s(sample_ticks)


def replay(pair: IncrementalPair, ts, a, b) -> list[PairPoint | None]:
    return [pair.update(t, x, y) for t, x, y in zip(ts, a, b, strict=True)]


#: (rel, abs) per statistic; ``None`` for abs: relative to the price level (``alpha =
#: mean A - beta mean B`` and ``spread = A - alpha - beta B`` are differences of large
#: numbers). Any other declared statistic: relative 1e-9 with a 1e-9 floor where ~0.
TOLERANCE = {
    "beta": (1e-9, 1e-12),
    "alpha": (0, None),
    "spread": (0, None),
    "zscore": (1e-9, 1e-9),
    "corr": (1e-9, 1e-12),
}


def assert_rows_equal(points, ps, a_scale):
    """Every bar: None exactly while beta is undefined, else the same row, for every
    column of the registry (carried inputs exactly, statistics to :data:`TOLERANCE`)."""
    for t, p in enumerate(points):
        if np.isnan(ps.beta[t]) and (p is None):
            continue
        assert p is not None, t
        assert p.n == t + 1
        for fig in PAIR_FIGURES:
            got, want = getattr(p, fig.name), getattr(ps, fig.name)[t]
            if fig.warmup is None:  # carried from the bar: exact
                assert got == want, (fig.name, t)
                continue
            rel, floor = TOLERANCE.get(fig.name, (1e-9, 1e-9))
            floor = 1e-9 * a_scale if floor is None else floor
            assert got == pytest.approx(want, rel=rel, abs=floor, nan_ok=True), (fig.name, t)


@pytest.mark.parametrize("prices", PRICE_MODES)
@pytest.mark.parametrize("regression", REGRESSIONS)
def test_incremental_equals_batch_every_bar_on_the_tape(tape, regression, prices):
    ts, a, b = tape["ts"].to_numpy(), tape["a"].to_numpy(), tape["b"].to_numpy()
    ps = pair_series(ts, a, b, window=W, regression=regression, prices=prices,
                     refit_step=STEP[regression])  # fmt: skip
    live = IncrementalPair(W, regression, prices, refit_step=STEP[regression])
    points = replay(live, ts, a, b)
    first = requirements(W, regression)["beta"] - 1
    assert all(p is None for p in points[:first]) and points[first] is not None
    fit = -(-first // STEP[regression]) * STEP[regression]  # first scheduled refit
    assert all(math.isnan(p.beta) for p in points[first:fit])
    assert not math.isnan(points[fit].beta)
    scale = float(np.abs(np.log(a) if prices == "log" else a).max())
    assert_rows_equal(points, ps, scale)
    assert live.count == len(a) and live.last is points[-1]


def test_incremental_equals_batch_with_non_default_parameters(tape):
    ts, a, b = tape["ts"].to_numpy(), tape["a"].to_numpy(), tape["b"].to_numpy()
    kp = KalmanParams(delta=1e-6, obs_var=10.0, p0=10.0)
    ps = pair_series(ts, a, b, window=45, regression="kalman", prices="log", kalman=kp)
    live = IncrementalPair(45, "kalman", "log", kalman=kp)
    assert_rows_equal(replay(live, ts, a, b), ps, 12.0)
    rp = RobustParams(epsilon=1.2)
    for method in ("huber", "theilsen"):
        ps = pair_series(
            ts, a, b, window=40, regression=method, robust=rp, refit_step=11
        )
        live = IncrementalPair(40, method, robust=rp, refit_step=11)
        assert_rows_equal(replay(live, ts, a, b), ps, float(a.max()))


@pytest.mark.parametrize("regression", REGRESSIONS)
def test_flat_leg_gives_the_same_nans_in_both(regression):
    """B does not trade for 25 bars (forward-filled): beta is undefined on windows where
    B is constant, NaN spreads then blank the z-score for w bars, in batch and live."""
    rng = np.random.default_rng(5)
    b = 2_680.0 + np.cumsum(rng.normal(0, 0.5, 120))
    b[40:65] = b[40]
    a = 61_700.0 + 20 * (b - 2_680.0) + np.cumsum(rng.normal(0, 2.0, 120))
    ts = np.arange(120)
    ps = pair_series(ts, a, b, window=10, regression=regression, refit_step=1)
    points = replay(IncrementalPair(10, regression, refit_step=1), ts, a, b)
    assert_rows_equal(points, ps, float(a.max()))
    if regression != "kalman":
        assert np.isnan(ps.beta[49:65]).all() and np.isnan(ps.zscore[49:74]).all()
        assert not np.isnan(ps.zscore[75:]).any()


def test_live_zscore_uses_the_last_closed_bar(tape):
    ts, a, b = tape["ts"].to_numpy(), tape["a"].to_numpy(), tape["b"].to_numpy()
    for prices in PRICE_MODES:
        live = IncrementalPair(W, "ols", prices)
        assert live.live_zscore(a[0], b[0]) is None
        points = replay(live, ts[:200], a[:200], b[:200])
        last = points[-1]
        # at the closing prices of that bar it is that bar's z, exactly
        assert live.live_zscore(a[199], b[199]) == last.zscore
        # a tick later: same hedge and window statistics, new prices
        spreads = np.array([p.spread for p in points[-W:]])
        a_now, b_now = a[199] + 12.5, b[199] - 0.4
        f = math.log if prices == "log" else float
        s_now = f(a_now) - last.alpha - last.beta * f(b_now)
        z = (s_now - spreads.mean()) / spreads.std(ddof=1)
        assert live.live_zscore(a_now, b_now) == pytest.approx(z, rel=1e-9)
        mean, std = live.spread_stats()
        assert mean == pytest.approx(spreads.mean(), rel=1e-9, abs=1e-9)
        assert std == pytest.approx(spreads.std(ddof=1), rel=1e-9)
        assert live.count == 200  # a tick is not a bar


def test_live_zscore_is_none_until_z_exists(tape):
    ts, a, b = tape["ts"].to_numpy(), tape["a"].to_numpy(), tape["b"].to_numpy()
    live = IncrementalPair(W, "kalman")
    for i in range(W):  # Kalman z needs w + 1 bars
        live.update(ts[i], a[i], b[i])
        assert live.live_zscore(a[i], b[i]) is None
        assert all(map(math.isnan, live.spread_stats()))
    live.update(ts[W], a[W], b[W])
    assert live.live_zscore(a[W], b[W]) is not None


def test_needs_counts_down_to_zero(tape):
    ts, a, b = tape["ts"].to_numpy(), tape["a"].to_numpy(), tape["b"].to_numpy()
    live = IncrementalPair(10)
    req = requirements(10, "ols")
    assert live.needs() == {f.name: req[f.name] for f in STATISTICS}  # every statistic
    assert {k: live.needs()[k] for k in ("beta", "spread", "zscore", "corr")} == {
        "beta": 10, "spread": 10, "zscore": 19, "corr": 11}
    replay(live, ts[:12], a[:12], b[:12])
    assert {k: live.needs()[k] for k in ("beta", "spread", "zscore", "corr")} == {
        "beta": 0, "spread": 0, "zscore": 7, "corr": 0}
    assert live.needs() == {f.name: max(req[f.name] - 12, 0) for f in STATISTICS}
    replay(live, ts[12:], a[12:], b[12:])
    assert set(live.needs().values()) == {0}
    k = IncrementalPair(10, "kalman")
    assert k.needs()["beta"] == 2 and k.needs()["zscore"] == 11


@pytest.mark.parametrize("regression", REGRESSIONS)
def test_no_look_ahead_incremental(tape, regression):
    """Two engines fed the same first t bars agree on them, whatever comes next; and
    their values equal the batch run on bars 0..t only."""
    head = tape.iloc[:150]
    ts, a, b = head["ts"].to_numpy(), head["a"].to_numpy(), head["b"].to_numpy()
    t = 100
    x = replay(IncrementalPair(20, regression, refit_step=STEP[regression]), ts, a, b)
    a2, b2 = a.copy(), b.copy()
    a2[t + 1 :] *= 1.05
    b2[t + 1 :] *= 0.97
    y = replay(IncrementalPair(20, regression, refit_step=STEP[regression]), ts, a2, b2)
    assert x[: t + 1] == y[: t + 1]
    assert x[t + 1 :] != y[t + 1 :]
    k = t + 1
    head = pair_series(
        ts[:k], a[:k], b[:k], window=20, regression=regression,
        refit_step=STEP[regression],
    )  # fmt: skip
    assert_rows_equal(x[: t + 1], head, float(a.max()))


def test_state_is_bounded(tape):
    a, b = tape["a"].to_numpy(), tape["b"].to_numpy()
    live = IncrementalPair(10, "huber", refit_step=50)
    replay(live, range(len(a)), a, b)
    assert len(live._hedge._a) == 10
    twins = dict(live._twins)
    assert twins["zscore"].count == 10 and twins["corr"].count == 10
    assert all(getattr(t, "count", 0) <= 10 for t in twins.values())  # every declared twin


def test_validation():
    with pytest.raises(ValueError, match="window must be >= 3"):
        IncrementalPair(2)
    with pytest.raises(ValueError, match="regression must be one of"):
        IncrementalPair(10, "lasso")
    with pytest.raises(ValueError, match="prices must be one of"):
        IncrementalPair(10, prices="pct")
    live = IncrementalPair(10)
    live.update(1, 100.0, 10.0)
    with pytest.raises(ValueError, match="ts must increase"):
        live.update(1, 100.0, 10.0)
    with pytest.raises(ValueError, match="positive"):
        live.update(2, 0.0, 10.0)
    with pytest.raises(ValueError, match="positive"):
        live.update(2, math.nan, 10.0)


@pytest.mark.parametrize("prices", PRICE_MODES)
@pytest.mark.parametrize("regression", REGRESSIONS)
def test_warm_on_history_equals_updating_every_bar(tape, regression, prices):
    """warm(history) then live bars == update() on every bar, at every later step."""
    ts, a, b = tape["ts"].to_numpy(), tape["a"].to_numpy(), tape["b"].to_numpy()
    cut = len(ts) - 40
    full = IncrementalPair(W, regression, prices, refit_step=STEP[regression])
    replay(full, ts[:cut], a[:cut], b[:cut])
    warmed = IncrementalPair(W, regression, prices, refit_step=STEP[regression])
    warmed.warm(ts[:cut], a[:cut], b[:cut])
    assert warmed.spread_stats() == pytest.approx(full.spread_stats(), rel=1e-12)
    assert warmed.needs() == full.needs()
    for t, x, y in zip(ts[cut:], a[cut:], b[cut:], strict=True):
        p, q = full.update(t, x, y), warmed.update(t, x, y)
        assert q.beta == pytest.approx(p.beta, rel=1e-12)
        assert q.zscore == pytest.approx(p.zscore, rel=1e-9, abs=1e-12)
        assert q.corr == pytest.approx(p.corr, rel=1e-9, abs=1e-12)
        assert warmed.live_zscore(x * 1.0001, y) == pytest.approx(
            full.live_zscore(x * 1.0001, y), rel=1e-9)
        for fig in STATISTICS:  # and every other declared statistic
            rel, floor = TOLERANCE.get(fig.name, (1e-9, 1e-9))
            floor = 1e-9 * float(np.abs(a).max()) if floor is None else floor
            assert getattr(q, fig.name) == pytest.approx(
                getattr(p, fig.name), rel=rel, abs=floor, nan_ok=True), fig.name


def test_warm_needs_a_fresh_estimator(tape):
    ts, a, b = tape["ts"].to_numpy(), tape["a"].to_numpy(), tape["b"].to_numpy()
    live = IncrementalPair(W)
    live.update(ts[0], a[0], b[0])
    with pytest.raises(ValueError, match="fresh"):
        live.warm(ts[1:], a[1:], b[1:])


@pytest.mark.parametrize("prices", PRICE_MODES)
@pytest.mark.parametrize("regression", ["huber", "theilsen"])
def test_live_robust_on_the_bar_time_schedule_equals_batch_at_every_step(
    tape, regression, prices
):
    """IncrementalPair(tf_ms=1000) with the default schedule, stepped bar by bar, equals
    pair_series(tf_ms=1000) at every bar; warm() on any history then live bars too."""
    ts, a, b = tape["ts"].to_numpy(), tape["a"].to_numpy(), tape["b"].to_numpy()
    w = 60
    ps = pair_series(ts, a, b, window=w, regression=regression, prices=prices, tf_ms=1_000)
    live = IncrementalPair(w, regression, prices, tf_ms=1_000)
    assert live.refit_step > 1
    points = replay(live, ts, a, b)
    scale = float(np.abs(np.log(a) if prices == "log" else a).max())
    assert_rows_equal(points, ps, scale)
    for cut in (200, 333, 401):  # warm on a history, then live
        warmed = IncrementalPair(w, regression, prices, tf_ms=1_000)
        warmed.warm(ts[:cut], a[:cut], b[:cut])
        for t in range(cut, len(ts)):
            p = warmed.update(ts[t], a[t], b[t])
            assert p.beta == ps.beta[t] and p.alpha == ps.alpha[t], t
            assert p.zscore == pytest.approx(ps.zscore[t], rel=1e-9, abs=1e-9), t
