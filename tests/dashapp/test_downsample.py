"""Min-max downsampling, visible-range slicing and OHLC bucketing."""

from __future__ import annotations

import numpy as np
import pytest

from analytics.bars import resample_bars
from dashapp import downsample
from tests.dashapp.dash_fakes import synthetic_bars


def test_minmax_keeps_extremes_and_ends():
    rng = np.random.default_rng(3)
    y = rng.normal(size=86_400).cumsum()
    idx = downsample.minmax_indices(y, 2_000)
    assert len(idx) <= 2_000
    assert np.all(np.diff(idx) > 0)  # sorted, unique
    assert idx[0] == 0 and idx[-1] == len(y) - 1
    assert y[idx].max() == y.max() and y[idx].min() == y.min()
    # every bucket's extremes survive: a spike anywhere is kept
    y2 = y.copy()
    y2[12_345] = 1e6
    assert 12_345 in downsample.minmax_indices(y2, 2_000)


def test_minmax_short_series_untouched_and_nan_gaps():
    assert list(downsample.minmax_indices(np.arange(10.0), 100)) == list(range(10))
    y = np.arange(1000.0)
    y[100:400] = np.nan
    idx = downsample.minmax_indices(y, 50)
    assert np.isfinite(y[idx]).sum() >= len(idx) - 10  # an all-NaN bucket keeps one index
    with pytest.raises(ValueError, match="max_points"):
        downsample.minmax_indices(y, 3)


def test_minmax_multi_aligns_traces():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=50_000), rng.normal(size=50_000)
    idx = downsample.minmax_multi([a, b], 1_000)
    assert len(idx) <= 1_000
    assert a[idx].max() == a.max() and b[idx].min() == b.min()


def test_visible_slice_with_margin():
    ts = np.arange(0, 100_000, 1_000)
    sl = downsample.visible_slice(ts, (40_000, 50_000))
    assert ts[sl][0] <= 35_000 and ts[sl][-1] >= 55_000
    assert ts[sl][0] >= 33_000 and ts[sl][-1] <= 57_000
    assert downsample.visible_slice(ts, None) == slice(0, 100)
    assert downsample.visible_slice(ts, (50_000, 40_000)) == sl  # reversed range


def test_ohlc_buckets_equal_a_coarser_resample():
    bars = synthetic_bars(600)["BTCUSDT"]
    c = downsample.ohlc_buckets(
        bars.ts, bars.open, bars.high, bars.low, bars.close, bars.quote_volume, 10
    )
    coarse = resample_bars(bars, tf_ms=60_000)
    np.testing.assert_array_equal(c["ts"], coarse.ts)
    np.testing.assert_allclose(c["high"], coarse.high)
    np.testing.assert_allclose(c["low"], coarse.low)
    np.testing.assert_allclose(c["open"], coarse.open)
    np.testing.assert_allclose(c["close"], coarse.close)
    np.testing.assert_allclose(c["volume"], coarse.quote_volume)
    same = downsample.ohlc_buckets(
        bars.ts, bars.open, bars.high, bars.low, bars.close, bars.quote_volume, 1_000
    )
    assert len(same["ts"]) == 600
