"""Session breaks (a replay loop seam, an outage): no pair window spans one.

The real tape is looped the way the replay server loops it: a second copy shifted
forward in time, so at the seam prices snap back to the tape's start. The seam is a
break (``MarketEngine.mark_break`` at each leg's first trade of the copy). The oracle
is :func:`pair_series` run on each session's aligned points **separately** (sliced by
hand, not through the break-aware wrapper) and concatenated.
"""

from __future__ import annotations

import numpy as np
import pytest

from analytics.align import align_pair
from analytics.bars import bars_from_ticks
from analytics.engine import MarketEngine
from analytics.pair import pair_series, requirements
from analytics.registry import STATISTICS
from analytics.sessions import break_buckets, segment_starts, session_ids, union_breaks

A, B = "BTCUSDT", "ETHUSDT"
STATS = tuple(f.name for f in STATISTICS)  # every declared statistic


def looped_ticks(sample_ticks, copies: int = 2, gap_ms: int = 5_000):
    """The tape played ``copies`` times back to back, each copy ``gap_ms`` after the
    previous one ended; returns (ticks per symbol, breaks per symbol)."""
    t0 = min(int(c["time_ms"][0]) for c in sample_ticks.values())
    t1 = max(int(c["time_ms"][-1]) for c in sample_ticks.values())
    period = t1 - t0 + gap_ms
    out, breaks = {}, {}
    for sym, c in sample_ticks.items():
        n = len(c["time_ms"])
        id_span = int(c["trade_id"][-1] - c["trade_id"][0]) + 1
        cols = {k: np.concatenate([np.asarray(v)] * copies) for k, v in c.items()}
        shift = np.repeat(np.arange(copies, dtype=np.int64), n)
        cols["time_ms"] = cols["time_ms"] + shift * period
        cols["trade_id"] = cols["trade_id"] + shift * id_span
        out[sym] = cols
        breaks[sym] = [int(c["time_ms"][0]) + k * period for k in range(1, copies)]
    return out, breaks


def merged_rows(ticks):
    rows = []
    for sym, c in ticks.items():
        for i in range(len(c["time_ms"])):
            rows.append((int(c["time_ms"][i]), sym, int(c["trade_id"][i]),
                         float(c["price"][i]), float(c["qty"][i]),
                         bool(c["buyer_is_maker"][i])))
    rows.sort(key=lambda r: (r[0], r[1], r[2]))
    return rows


def per_session_oracle(ticks, breaks, tf, window, regression, prices, upto_ts, refit_step=1):
    """pair_series of each session's points on their own, concatenated (NaN where a
    session is shorter than the first hedge)."""
    ba = bars_from_ticks(**ticks[A], tf_ms=tf)
    bb = bars_from_ticks(**ticks[B], tf_ms=tf)
    al = align_pair(ba, bb)
    keep = al.ts <= upto_ts
    ts, a, b = al.ts[keep], al.a[keep], al.b[keep]
    bb_ = break_buckets(union_breaks(breaks[A], breaks[B]), tf)
    sid = np.searchsorted(bb_, ts, side="right")
    out = {f: np.full(len(ts), np.nan) for f in STATS}
    need = requirements(window, regression)["beta"]
    for s in np.unique(sid):
        idx = np.flatnonzero(sid == s)
        if len(idx) < need:
            continue
        seg = pair_series(ts[idx], a[idx], b[idx], window=window, regression=regression,
                          prices=prices, refit_step=refit_step, tf_ms=tf)
        for f in STATS:
            out[f][idx] = getattr(seg, f)
    return ts, a, al.b[keep], out


@pytest.fixture(scope="module")
def looped(sample_ticks):
    ticks, breaks = looped_ticks(sample_ticks)
    return ticks, breaks, merged_rows(ticks)


def feed(engine, rows, breaks, *, clock_every=50, register=None, register_at=None):
    pending = sorted((t, s) for s, ts in breaks.items() for t in ts)
    for k, (t, sym, tid, p, q, m) in enumerate(rows):
        if register is not None and k == register_at:
            engine.pair(*register)
        while pending and pending[0][0] <= t:  # the feed marks a break before its trade
            bt, bs = pending.pop(0)
            engine.mark_break(bs, bt, "replay loop")
        engine.on_trade(sym, t, tid, p, q, m)
        if k % clock_every == 0:
            engine.on_clock(t)


def test_sessions_helpers():
    ts = np.array([0, 1000, 2000, 3000, 4000, 5000], dtype=np.int64)
    # a break at 2500 ms: the 1 s bucket 2000 holds it, so bucket 2000 opens session 1
    assert session_ids(ts, [2500], 1000).tolist() == [0, 0, 1, 1, 1, 1]
    assert session_ids(ts, [2500]).tolist() == [0, 0, 0, 1, 1, 1]  # raw times
    assert segment_starts(ts, [2500, 4200], 1000).tolist() == [2, 4]
    assert segment_starts(ts, [-5, 99_999], 1000).tolist() == []  # outside the data
    assert union_breaks([5, 1], None, [1, 3]).tolist() == [1, 3, 5]


def test_pair_series_restarts_at_a_break(looped):
    ticks, breaks, _ = looped
    ts, a, b, exp = per_session_oracle(ticks, breaks, 1_000, 30, "ols", "raw", 2**62)
    got = pair_series(ts, a, b, window=30,
                      breaks=break_buckets(union_breaks(breaks[A], breaks[B]), 1_000))
    for f in STATS:
        np.testing.assert_allclose(getattr(got, f), exp[f], rtol=1e-9, atol=1e-12,
                                   equal_nan=True, err_msg=f)
    # the seam's own point and the window after it are undefined, as at the start
    s0 = int(segment_starts(ts, union_breaks(breaks[A], breaks[B]), 1_000)[0])
    assert np.isnan(got.zscore[s0:s0 + 2 * 30 - 2]).all()
    assert np.isnan(got.corr[s0:s0 + 30]).all()
    assert np.isfinite(got.zscore[s0:]).mean() > 0.5


def test_looped_tape_without_breaks_spikes_the_zscore(looped):
    """The reason for breaks: across the seam a window mixes the two loops."""
    ticks, breaks, _ = looped
    ts, a, b, exp = per_session_oracle(ticks, breaks, 1_000, 30, "ols", "raw", 2**62)
    plain = pair_series(ts, a, b, window=30)
    s0 = int(segment_starts(ts, union_breaks(breaks[A], breaks[B]), 1_000)[0])
    assert np.isfinite(plain.zscore[s0])  # the unbroken series has a z at the seam
    assert not np.isfinite(exp["zscore"][s0])


@pytest.mark.slow
@pytest.mark.parametrize("regression", ["ols", "kalman", "huber"])
@pytest.mark.parametrize("register_at", [0, 45_000, None])
def test_tracked_pair_restarts_at_a_break_like_batch(looped, regression, register_at):
    """History build and live agree at every bar, with a break in the middle."""
    ticks, breaks, rows = looped
    eng = MarketEngine([A, B])
    prices = "log" if regression == "kalman" else "raw"
    sel = (A, B, 1_000, 30, regression, prices)
    if register_at is None:
        feed(eng, rows, breaks)
    else:
        feed(eng, rows, breaks, register=sel, register_at=register_at)
    eng.on_clock(rows[-1][0] + 60_000)
    snap = eng.pair(*sel)
    got = snap.series
    ts, _a, _b, exp = per_session_oracle(ticks, breaks, 1_000, 30, regression, prices,
                                    int(got.ts[-1]), refit_step=snap.refit_step)
    np.testing.assert_array_equal(got.ts, ts)
    for f in STATS:
        np.testing.assert_allclose(getattr(got, f), exp[f], rtol=1e-8, atol=1e-9,
                                   equal_nan=True, err_msg=f)
    seam = break_buckets(union_breaks(breaks[A], breaks[B]), 1_000)
    assert snap.breaks.tolist() == seam.tolist()


def test_break_marked_late_rebuilds_the_tracked_pair(looped):
    """A break marked after the pair already took points past it: the engine drops the
    tracker and the next request rebuilds the series with the break."""
    ticks, breaks, rows = looped
    eng = MarketEngine([A, B])
    sel = (A, B, 1_000, 20, "ols", "raw")
    eng.pair(*sel)
    feed(eng, rows, {A: [], B: []})
    eng.on_clock(rows[-1][0] + 60_000)
    before = eng.pair(*sel).series
    seam = int(breaks[A][0])
    eng.mark_break(A, seam, "outage found late")
    after = eng.pair(*sel).series
    s0 = int(np.searchsorted(after.ts, seam - seam % 1_000))
    assert np.isfinite(before.zscore[s0]) and np.isnan(after.zscore[s0])
    assert eng.breaks(A).tolist() == [seam] and eng.breaks(B).tolist() == []
    assert eng.pair_breaks(A, B).tolist() == [seam]


def test_live_zscore_is_undefined_after_an_unclosed_break(looped):
    ticks, breaks, rows = looped
    eng = MarketEngine([A, B])
    seam = int(min(breaks[A][0], breaks[B][0]))
    first = [r for r in rows if r[0] < seam]
    feed(eng, first, {A: [], B: []})
    eng.on_clock(first[-1][0])
    snap = eng.pair(A, B, 1_000, 30, "ols", "raw")
    pa, pb = float(snap.series.price_a[-1]), float(snap.series.price_b[-1])
    assert snap.live_zscore(pa, pb, at_ms=seam) is not None
    eng.mark_break(A, seam, "replay loop")
    snap = eng.pair(A, B, 1_000, 30, "ols", "raw")
    assert snap.live_zscore(pa, pb, at_ms=seam) is None
    assert snap.live_zscore(pa, pb, at_ms=seam - 1) is not None


def _looped_bars(looped, tf=1_000):
    ticks, breaks, _ = looped
    bars = {s: bars_from_ticks(**ticks[s], tf_ms=tf) for s in (A, B)}
    seam = int(break_buckets(union_breaks(breaks[A], breaks[B]), tf)[0])
    return bars, breaks, seam


def test_lead_lag_and_screener_use_the_last_session_only(looped):
    from analytics.leadlag import lead_lag_matrix
    from analytics.screener import screen_pairs

    bars, breaks, seam = _looped_bars(looped)
    after = {s: b.since(seam) for s, b in bars.items()}  # cut by hand: the oracle
    got = lead_lag_matrix(bars, max_lag=5, breaks=breaks)
    want = lead_lag_matrix(after, max_lag=5)
    np.testing.assert_array_equal(got.peak_lag, want.peak_lag)
    np.testing.assert_allclose(got.peak_corr, want.peak_corr, equal_nan=True)
    assert got.nobs[0, 1] == want.nobs[0, 1] < lead_lag_matrix(bars, max_lag=5).nobs[0, 1]
    row = screen_pairs(bars, window=30, breaks=breaks).rows[0]
    ref = screen_pairs(after, window=30).rows[0]
    assert row.n_bars == ref.n_bars and row.coint_pvalue == pytest.approx(ref.coint_pvalue)
    assert row.zscore == pytest.approx(ref.zscore)


def test_features_restart_volatility_and_signal_at_a_break(looped):
    from analytics.features import pair_features

    bars, breaks, seam = _looped_bars(looped)
    al = align_pair(bars[A], bars[B])
    bb = break_buckets(union_breaks(breaks[A], breaks[B]), 1_000)
    ps = pair_series(al.ts, al.a, al.b, window=30, breaks=bb)
    f = pair_features(bars[A], bars[B], ps, window=30, entry=0.5, breaks=bb).frame
    # the legs' first trades after the seam fall in two buckets: two break buckets,
    # a one-bar session between them; the last session starts at the second
    s0 = int(np.searchsorted(al.ts, bb[-1]))
    assert np.isnan(f["vol_a"].to_numpy()[s0:s0 + 30]).all()  # no return spans it
    assert np.isfinite(f["vol_a"].to_numpy()[s0 + 30])
    plain = pair_features(bars[A], bars[B], ps, window=30, entry=0.5).frame
    assert np.isfinite(plain["vol_a"].to_numpy()[s0])
    # a position open at the seam is not carried into the new session
    assert (f["signal"].to_numpy()[s0:s0 + 2 * 30 - 2] == 0).all()
