"""Screener: p-values equal statsmodels ``coint`` on the same aligned series, the other
columns equal their definitions, ranking and not-enough-data rows."""

from __future__ import annotations

import numpy as np
import pytest
from statsmodels.tsa.stattools import coint

from analytics.align import align_pair
from analytics.bars import Bars
from analytics.pair import pair_series
from analytics.screener import screen_pair, screen_pairs
from analytics.stationarity import default_maxlag, half_life


def synthetic_bars(close: np.ndarray, *, start_ms: int = 1_700_000_000_000,
                   tf_ms: int = 1000, trades: int = 5, skip: np.ndarray | None = None) -> Bars:
    n = len(close)
    keep = np.ones(n, bool) if skip is None else ~skip
    ts = start_ms + np.arange(n, dtype=np.int64) * tf_ms
    c = np.asarray(close, float)
    cols = dict(ts=ts, open=c, high=c, low=c, close=c, volume=np.ones(n),
                quote_volume=c, trades=np.full(n, trades, np.int64), buy_volume=np.ones(n) / 2,
                first_id=np.arange(n, dtype=np.int64) * trades,
                last_id=np.arange(n, dtype=np.int64) * trades + trades - 1)
    return Bars.from_columns({k: v[keep] for k, v in cols.items()}, tf_ms=tf_ms)


@pytest.fixture(scope="module")
def universe() -> dict[str, Bars]:
    rng = np.random.default_rng(7)
    n = 600
    x = 100 + np.cumsum(rng.normal(0, 0.5, n))
    coint_y = 3 + 1.5 * x + rng.normal(0, 0.5, n)           # cointegrated with X
    walk = 200 + np.cumsum(rng.normal(0, 0.5, n))           # independent random walk
    gaps = rng.random(n) < 0.2                               # Y misses 20% of buckets
    gaps[0] = False
    return {"XXX": synthetic_bars(x, trades=6), "YYY": synthetic_bars(coint_y, skip=gaps),
            "WWW": synthetic_bars(walk, trades=2)}


def test_pvalues_equal_statsmodels_coint_on_the_aligned_series(universe, sample_bars_1s):
    bars = {**universe}
    res = screen_pairs(bars, window=30)
    assert len(res.rows) == 3
    for row in res.rows:
        al = align_pair(bars[row.a], bars[row.b])
        maxlag = default_maxlag(len(al), "n")
        ref = coint(al.a, al.b, trend="c", maxlag=maxlag, autolag="aic")
        assert row.coint_pvalue == pytest.approx(ref[1], rel=1e-12)
        assert row.coint_stat == pytest.approx(ref[0], rel=1e-12)
    real = screen_pairs(sample_bars_1s, window=60, prices="log")
    (row,) = real.rows
    al = align_pair(sample_bars_1s["BTCUSDT"], sample_bars_1s["ETHUSDT"])
    ref = coint(np.log(al.a), np.log(al.b), maxlag=default_maxlag(len(al), "n"), autolag="aic")
    assert row.coint_pvalue == pytest.approx(ref[1], rel=1e-12)


def test_known_truth_ranks_the_cointegrated_pair_first(universe):
    res = screen_pairs(universe, window=30)
    top = res.rows[0]
    assert {top.a, top.b} == {"XXX", "YYY"}
    assert top.coint_pvalue < 0.01
    assert all(r.coint_pvalue > 0.05 for r in res.rows[1:])
    assert [r.coint_pvalue for r in res.rows] == sorted(r.coint_pvalue for r in res.rows)


def test_columns_follow_their_definitions(universe):
    row = screen_pair("XXX", "YYY", universe["XXX"], universe["YYY"], window=30)
    al = align_pair(universe["XXX"], universe["YYY"])
    ps = pair_series(al.ts, al.a, al.b, window=30)
    hl = half_life(ps.spread[np.isfinite(ps.spread)])
    assert row.half_life_bars == pytest.approx(hl.bars)
    assert row.zscore == pytest.approx(ps.zscore[-1]) and row.abs_z == pytest.approx(abs(ps.zscore[-1]))
    assert row.corr == pytest.approx(ps.corr[-1]) and row.beta == pytest.approx(ps.beta[-1])
    # 600 buckets of 1 s = 10 min; X trades 6 per bar, Y 5 per bar on 80% of bars.
    y_trades = universe["YYY"].trades.sum()
    assert row.trades_per_min_a == pytest.approx(6 * 600 / 10)
    assert row.trades_per_min_b == pytest.approx(y_trades / 10)
    assert row.liquidity == pytest.approx(min(row.trades_per_min_a, row.trades_per_min_b))
    assert row.n_bars == 600 and row.error is None


def test_too_little_data_is_a_row_saying_so(universe):
    short = {s: Bars.from_columns({k: v[b.ts < 1_700_000_050_000]
                                   for k, v in b.columns().items()}, tf_ms=1000)
             for s, b in universe.items()}
    res = screen_pairs(short, window=30)
    assert all(r.error == "collecting: 50 of 59 bars" for r in res.rows)
    assert all(r.coint_pvalue is None for r in res.rows)


def test_constant_leg_and_bad_input():
    flat = synthetic_bars(np.full(200, 5.0))
    walk = synthetic_bars(100 + np.cumsum(np.random.default_rng(1).normal(0, 1, 200)))
    row = screen_pair("F", "W", flat, walk, window=20)
    assert row.error is not None and row.coint_pvalue is None
    with pytest.raises(ValueError, match="two symbols"):
        screen_pairs({"W": walk}, window=20)
    with pytest.raises(ValueError, match="timeframe"):
        screen_pairs({"W": walk, "X": synthetic_bars(np.arange(1, 50.0), tf_ms=60_000,
                                                        start_ms=1_699_999_980_000)},
                     window=20)
