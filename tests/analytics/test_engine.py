"""The live engine against its batch twins on the real tape.

The engine is fed trade by trade (merged across symbols in trade-time order, as the
feed delivers them) with a clock; its bars must equal ``bars_from_ticks`` and its
tracked pair series must equal ``pair_series(align_pair(...))`` recomputed from scratch,
whether the pair was registered before the first tick, in the middle, or at the end.
"""

from __future__ import annotations

import numpy as np
import pytest

from analytics.align import align_pair
from analytics.bars import bars_from_ticks
from analytics.engine import MarketEngine
from analytics.pair import pair_series
from analytics.registry import STATISTICS
from analytics.robust import refit_step

A, B = "BTCUSDT", "ETHUSDT"


def merged(sample_ticks):
    rows = []
    for sym, c in sample_ticks.items():
        for i in range(len(c["time_ms"])):
            rows.append(
                (int(c["time_ms"][i]), sym, int(c["trade_id"][i]), float(c["price"][i]),
                 float(c["qty"][i]), bool(c["buyer_is_maker"][i]))
            )
    rows.sort(key=lambda r: (r[0], r[1], r[2]))
    return rows


def feed(engine, rows, *, clock_every=50, register=None, register_at=None):
    snaps = {}
    for k, (t, sym, tid, p, q, m) in enumerate(rows):
        if register is not None and k == register_at:
            snaps["reg"] = engine.pair(*register)
        engine.on_trade(sym, t, tid, p, q, m)
        if k % clock_every == 0:
            engine.on_clock(t)  # the clock never runs ahead of trades still to come
    return snaps


def batch_expected(sample_ticks, tf, window, regression, prices, upto_ts, refit_step=None,
                   tf_ms=None):
    ba = bars_from_ticks(**sample_ticks[A], tf_ms=tf)
    bb = bars_from_ticks(**sample_ticks[B], tf_ms=tf)
    al = align_pair(ba.since(0), bb.since(0))
    keep = al.ts <= upto_ts
    return pair_series(al.ts[keep], al.a[keep], al.b[keep], window=window,
                       regression=regression, prices=prices, refit_step=refit_step,
                       tf_ms=tf if tf_ms is None else tf_ms)


@pytest.fixture(scope="module")
def rows(sample_ticks):
    return merged(sample_ticks)


def test_engine_bars_equal_batch(sample_ticks, rows):
    eng = MarketEngine([A, B])
    feed(eng, rows)
    end = rows[-1][0] + 10 * 60_000
    eng.on_clock(end)  # close everything
    for sym in (A, B):
        for tf in (1_000, 60_000, 300_000):
            live = eng.bars(sym, tf)
            batch = bars_from_ticks(**sample_ticks[sym], tf_ms=tf)
            for f in ("ts", "open", "high", "low", "close", "trades", "first_id", "last_id"):
                np.testing.assert_array_equal(getattr(live, f), getattr(batch, f), err_msg=f)
            np.testing.assert_allclose(live.volume, batch.volume, rtol=1e-12)


@pytest.mark.parametrize("regression", ["ols", "kalman", "huber", "theilsen"])
@pytest.mark.parametrize("register_at", [0, 15_000, None])
def test_tracked_pair_equals_batch(sample_ticks, rows, regression, register_at):
    eng = MarketEngine([A, B])
    sel = (A, B, 1_000, 30, regression, "log" if regression == "kalman" else "raw")
    if register_at is None:
        feed(eng, rows)
        eng.pair(*sel)
    else:
        feed(eng, rows, register=sel, register_at=register_at)
    eng.on_clock(rows[-1][0] + 60_000)
    snap = eng.pair(*sel)
    got = snap.series
    exp = batch_expected(sample_ticks, 1_000, 30, regression, sel[5], int(got.ts[-1]),
                         refit_step=snap.refit_step)
    np.testing.assert_array_equal(got.ts, exp.ts)
    np.testing.assert_array_equal(got.price_a, exp.price_a)
    for f in (fig.name for fig in STATISTICS):  # every declared statistic
        np.testing.assert_allclose(getattr(got, f), getattr(exp, f), rtol=1e-8, atol=1e-9,
                                   equal_nan=True, err_msg=f)
    assert snap.bar_seq >= len(got)


def test_live_zscore_uses_last_closed_window(sample_ticks, rows):
    eng = MarketEngine([A, B])
    feed(eng, rows)
    eng.on_clock(rows[-1][0] + 60_000)
    snap = eng.pair(A, B, 1_000, 30, "ols", "raw")
    s = snap.series
    # At the last bar's own closes the live z equals the bar z.
    z = snap.live_zscore(float(s.price_a[-1]), float(s.price_b[-1]))
    assert z == pytest.approx(float(s.zscore[-1]), rel=1e-9, abs=1e-9)
    # It moves with the price of A, in the direction of the spread.
    assert snap.live_zscore(float(s.price_a[-1]) + 10, float(s.price_b[-1])) > z


def test_robust_refit_schedule_is_the_selection_s_own(sample_ticks, rows):
    """refit_step comes from (window, method) only and the series equals the batch
    build on the same bars with that schedule anchored to bar time."""
    eng = MarketEngine([A, B])
    feed(eng, rows)
    snap = eng.pair(A, B, 1_000, 60, "theilsen", "raw")
    assert snap.refit_step == refit_step(60, "theilsen") == 5
    exp = batch_expected(sample_ticks, 1_000, 60, "theilsen", "raw", int(snap.series.ts[-1]),
                         refit_step=snap.refit_step, tf_ms=1_000)  # fmt: skip
    np.testing.assert_allclose(snap.series.beta, exp.beta, rtol=1e-12, equal_nan=True)
    beta, slot = snap.series.beta, snap.series.ts // 1_000 // 5
    changed = np.isfinite(beta[:-1]) & (beta[1:] != beta[:-1])
    assert changed.sum() > 50
    assert (slot[1:][changed] != slot[:-1][changed]).all()  # only on a new 5 s slot


def test_engine_rejects_bad_selection():
    eng = MarketEngine([A, B])
    with pytest.raises(ValueError):
        eng.pair(A, A, 1_000, 30)
    with pytest.raises(ValueError):
        eng.pair(A, B, 1_000, 30, regression="lasso")
    with pytest.raises(KeyError):
        eng.pair(A, "DOGEUSDT", 1_000, 30)


@pytest.mark.parametrize("regression", ["huber", "theilsen"])
def test_robust_figures_do_not_depend_on_when_the_pair_was_opened(rows, regression):
    """A pair opened before the tape and one opened after it give identical robust
    figures at every bar: the refit schedule is anchored to bar time, not to how much
    history was there at the first request (issue 13.4: z differed by up to 3.66)."""
    sel = (A, B, 1_000, 20, regression, "log")
    before = MarketEngine([A, B])
    feed(before, rows, register=sel, register_at=0)
    after = MarketEngine([A, B])
    feed(after, rows)
    end = rows[-1][0] + 60_000
    for eng in (before, after):
        eng.on_clock(end)
    x, y = before.pair(*sel), after.pair(*sel)
    assert x.refit_step == y.refit_step
    np.testing.assert_array_equal(x.series.ts, y.series.ts)
    assert np.isfinite(x.series.zscore).sum() > 500
    for f in ("alpha", "beta", "spread"):
        np.testing.assert_allclose(getattr(x.series, f), getattr(y.series, f),
                                   rtol=1e-12, atol=0, equal_nan=True, err_msg=f)  # fmt: skip
    np.testing.assert_allclose(x.series.zscore, y.series.zscore, rtol=1e-9, atol=1e-9,
                               equal_nan=True)  # fmt: skip


def test_final_ms_is_the_lowest_floor_over_every_symbol():
    """A symbol that traded in a later bucket has closed its earlier ones, a quiet one
    still holds its open bucket: only buckets below both are final market-wide (the
    market screen's window end, #19)."""
    t0 = 1_723_161_600_000
    eng = MarketEngine([A, B])
    assert eng.final_ms(1_000) is None
    eng.on_trade(A, t0 + 100, 1, 100.0, 1.0, False)
    eng.on_trade(B, t0 + 200, 1, 50.0, 1.0, False)
    eng.on_trade(A, t0 + 3_100, 2, 101.0, 1.0, False)  # closes A's bucket t0
    assert len(eng.bars(A, 1_000)) == 1 and len(eng.bars(B, 1_000)) == 0
    assert eng.final_ms(1_000) == t0  # B's bucket t0 is still open
    eng.on_clock(t0 + 2_000)  # B's bucket t0 closes; A's open bar t0 + 3 s stays
    assert len(eng.bars(B, 1_000)) == 1
    assert eng.final_ms(1_000) == t0 + 2_000  # B: the clock's frontier; A: t0 + 3 s
    assert eng.final_ms(60_000) == t0  # the open minute of both
    assert eng.final_ms(120_000) == t0  # a multiple: floored at the finest builder
