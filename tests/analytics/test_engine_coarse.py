"""Coarse bars the engine does not track (5 s, 10 s, 15 s, 30 s) are resampled from the
1 s series on request: every bucket served must be complete and final ("a published bar
is never amended"), none may be dropped, and a bucket whose start fell out of the day
held is not served half.
"""

from __future__ import annotations

import numpy as np
import pytest

from analytics.bars import BAR_FIELDS, Bars, bars_from_ticks
from analytics.engine import DAY_MS, MarketEngine
from tests.analytics.test_engine import A, B, merged

COMPARE = ("ts", "open", "high", "low", "close", "trades", "first_id", "last_id")


@pytest.fixture(scope="module")
def rows(sample_ticks):
    return merged(sample_ticks)


@pytest.mark.parametrize("tf", [5_000, 15_000, 30_000])
def test_coarse_bars_are_final_and_none_dropped(sample_ticks, rows, tf):
    """Polled during the feed, each served coarse bar equals the final batch bar of the
    same bucket, and the served bars are exactly the batch's buckets closed so far."""
    final = bars_from_ticks(**sample_ticks[A], tf_ms=tf)
    eng = MarketEngine([A, B])
    polls = 0
    for k, (t, sym, tid, p, q, m) in enumerate(rows):
        eng.on_trade(sym, t, tid, p, q, m)
        if k % 50 == 0:
            eng.on_clock(t)
        if k % 997 == 0 and k:
            got = eng.bars(A, tf)
            floor = eng._builders[A][1_000].floor
            closed = final.ts + tf <= floor  # buckets no later tick can change
            want = final.take(slice(0, int(closed.sum())))
            assert len(got) == len(want), (k, len(got), len(want))
            for f in COMPARE:
                np.testing.assert_array_equal(getattr(got, f), getattr(want, f), err_msg=f)
            polls += 1
    assert polls > 20


def test_coarse_bucket_cut_by_the_day_window_is_not_served():
    """When the 1 s day buffer has evicted the first seconds of a coarse bucket, that
    bucket is partial: it must not be served; the next, whole bucket is."""
    n = DAY_MS // 1_000 + 7  # 7 bars more than a day: 00:00:00-00:00:06 are evicted
    ts = np.arange(n, dtype=np.int64) * 1_000
    price = 100.0 + np.arange(n) % 13
    cols = {
        "ts": ts, "open": price, "high": price, "low": price, "close": price,
        "volume": np.ones(n), "quote_volume": price, "trades": np.ones(n, dtype=np.int64),
        "buy_volume": np.zeros(n), "first_id": np.arange(n, dtype=np.int64),
        "last_id": np.arange(n, dtype=np.int64),
    }
    eng = MarketEngine([A])
    eng.load_bars(A, Bars.from_columns({f: cols[f] for f in BAR_FIELDS}, tf_ms=1_000))
    eng.on_clock(int(ts[-1]) + 1_000)
    got = eng.bars(A, 15_000)
    # the held day starts at 7 s: the 0-15 s bucket would hold 8 of its 15 seconds
    assert int(got.ts[0]) == 15_000
    np.testing.assert_array_equal(got.trades, np.full(len(got), 15))
    assert int(got.ts[-1]) + 15_000 <= int(ts[-1]) + 1_000
