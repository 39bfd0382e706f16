"""price_stats vs pandas computations on the real tape's bars (and its ticks)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from analytics.bars import Bar, Bars, resample_bars
from analytics.errors import InsufficientData
from analytics.pricestats import MIN_BARS_VOL, PriceStats, price_stats

REL = 1e-12


def pandas_stats(bars: Bars, now_ms: int, lookback_ms: int) -> dict:
    """Oracle on to_frame(): window by DatetimeIndex, pandas reductions."""
    df = bars.to_frame()
    now = pd.Timestamp(now_ms, unit="ms", tz="UTC")
    start = now - pd.Timedelta(milliseconds=lookback_ms)
    w = df[(df.index >= start) & (df.index < now)]
    minutes = (now - w.index[0]) / pd.Timedelta(minutes=1)
    return {
        "last": w["close"].iloc[-1],
        "change_pct": (w["close"].iloc[-1] / w["open"].iloc[0] - 1) * 100,
        "high": w["high"].max(),
        "low": w["low"].min(),
        "vwap": w["quote_volume"].sum() / w["volume"].sum(),
        "realized_vol": np.log(w["close"]).diff().std()
        * math.sqrt(pd.Timedelta(days=365) / pd.Timedelta(milliseconds=bars.tf_ms)),
        "volume": w["volume"].sum(),
        "quote_volume": w["quote_volume"].sum(),
        "trades": int(w["trades"].sum()),
        "trades_per_min": w["trades"].sum() / minutes,
        "taker_buy_share": w["buy_volume"].sum() / w["volume"].sum(),
        "n_bars": len(w),
        "start_ms": int(bars.ts[np.searchsorted(bars.ts, now_ms - lookback_ms)]),
    }


def assert_matches(got: PriceStats, want: dict) -> None:
    for key, value in want.items():
        assert getattr(got, key) == pytest.approx(value, rel=REL, nan_ok=True), key


@pytest.mark.parametrize("symbol", ["BTCUSDT", "ETHUSDT"])
@pytest.mark.parametrize("tf_ms", [1_000, 60_000])
def test_price_stats_whole_tape(sample_bars_1s, symbol, tf_ms):
    bars = resample_bars(sample_bars_1s[symbol], tf_ms=tf_ms)
    got = price_stats(bars)
    now = int(bars.ts[-1]) + tf_ms
    assert got.end_ms == now and got.n_bars == len(bars)  # < 1 day: all of it
    assert_matches(got, pandas_stats(bars, now, 86_400_000))
    assert 0 < got.realized_vol < 5 and 0 < got.taker_buy_share < 1


@pytest.mark.parametrize(("back_ms", "lookback_ms"), [(0, 120_000), (95_500, 60_000),
                                                     (300_000, 3_000), (0, 1_000)])
def test_price_stats_window(sample_bars_1s, back_ms, lookback_ms):
    bars = sample_bars_1s["BTCUSDT"]
    now = int(bars.ts[-1]) + 1_000 - back_ms
    got = price_stats(bars, now_ms=now, lookback_ms=lookback_ms)
    want = pandas_stats(bars, now, lookback_ms)
    assert_matches(got, want)
    assert got.end_ms == now
    assert got.n_bars <= lookback_ms // 1_000


def test_price_stats_against_ticks(sample_ticks, sample_bars_1s):
    """Bar sums over the window equal the tick-level figures for the same span."""
    cols, bars = sample_ticks["ETHUSDT"], sample_bars_1s["ETHUSDT"]
    now, lookback = int(bars.ts[-1]) - 60_000, 120_000
    got = price_stats(bars, now_ms=now, lookback_ms=lookback)
    t = cols["time_ms"]
    m = (t >= now - lookback) & (t < now)
    px, q = cols["price"][m], cols["qty"][m]
    assert got.trades == m.sum()
    assert (got.high, got.low, got.last) == (px.max(), px.min(), px[-1])
    assert got.change_pct == pytest.approx((px[-1] / px[0] - 1) * 100, rel=REL)
    assert got.vwap == pytest.approx((px * q).sum() / q.sum(), rel=REL)
    buys = q[~cols["buyer_is_maker"][m]].sum()
    assert got.taker_buy_share == pytest.approx(buys / q.sum(), rel=REL)


def test_price_stats_few_bars():
    def bars_of(closes):
        rows = [Bar(i * 1_000, c, c + 1, c - 1, c, 2.0, 2.0 * c, 3, 1.0, i, i)
                for i, c in enumerate(closes)]
        return Bars.from_rows(rows, 1_000)

    with pytest.raises(InsufficientData) as err:
        price_stats(Bars.empty(1_000))
    assert (err.value.needed, err.value.have) == (1, 0)
    with pytest.raises(InsufficientData):
        price_stats(bars_of([1.0, 2.0]), now_ms=0)  # window ends before the first bar
    with pytest.raises(InsufficientData):
        price_stats(bars_of([1.0, 2.0]), now_ms=10**7, lookback_ms=1_000)  # after all

    one = price_stats(bars_of([100.0]))
    assert (one.last, one.n_bars, one.trades, one.change_pct) == (100.0, 1, 3, 0.0)
    assert math.isnan(one.realized_vol) and one.trades_per_min == 180.0
    assert (one.vwap, one.taker_buy_share) == (100.0, 0.5)
    assert (one.high, one.low) == (101.0, 99.0)
    assert math.isnan(price_stats(bars_of([100.0, 101.0])).realized_vol)
    closes = [100.0, 101.0, 99.0]
    three = price_stats(bars_of(closes))
    assert MIN_BARS_VOL == 3 and three.n_bars == 3
    want = np.std(np.diff(np.log(closes)), ddof=1) * math.sqrt(365 * 86_400)
    assert three.realized_vol == pytest.approx(want, rel=REL)
    with pytest.raises(ValueError, match="lookback_ms"):
        price_stats(bars_of(closes), lookback_ms=0)
    with pytest.raises(AttributeError):
        three.last = 1.0  # frozen
