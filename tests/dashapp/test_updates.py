"""Payload builders: extendData tuples, Patch operations, card numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from analytics.bars import Bars, resample_bars
from dashapp import updates
from tests.dashapp.dash_fakes import synthetic_bars


def test_extend_tuple_shape():
    payload = updates.extend(
        [{"x": [1, 2], "y": [3.0, 4.0]}, {"x": [1, 2], "y": [5.0, None]}], [0, 3], 100
    )
    assert payload == ({"x": [[1, 2], [1, 2]], "y": [[3.0, 4.0], [5.0, None]]}, [0, 3], 100)
    with pytest.raises(ValueError):
        updates.extend([{"x": [1]}], [0, 1], 10)
    with pytest.raises(ValueError):
        updates.extend([{"x": [1]}, {"y": [1]}], [0, 1], 10)
    assert updates.move_marker(5.0, -1.5, 1) == ({"x": [[5.0]], "y": [[-1.5]]}, [1], 1)


def test_clean_nan_to_none():
    assert updates.clean(np.array([1.0, np.nan, np.inf])) == [1.0, None, None]
    assert updates.clean([1, 2]) == [1.0, 2.0]


def test_heatmap_patch_operations():
    ops = updates.heatmap_patch(np.array([[1.0, 0.25], [0.25, np.nan]])).to_plotly_json()[
        "operations"
    ]
    by_loc = {tuple(o["location"]): o for o in ops}
    assert by_loc[("data", 0, "z")]["operation"] == "Assign"
    assert by_loc[("data", 0, "z")]["params"]["value"] == [[1.0, 0.25], [0.25, None]]
    assert by_loc[("data", 0, "text")]["params"]["value"] == [["1.00", "0.25"], ["0.25", "–"]]


def test_symbol_stats_by_hand():
    b1s = synthetic_bars(180)["BTCUSDT"]  # 3 minutes
    cols = b1s.columns()
    first_two = Bars.from_columns({k: v[:120] for k, v in cols.items()}, tf_ms=1000)
    b1m = resample_bars(first_two, tf_ms=60_000)  # the third minute is still open
    last = float(b1s.close[-1]) * 1.001
    now = int(b1s.ts[-1]) + 1000
    st = updates.symbol_stats(b1m, b1s, last, 12.0, now)
    qv = float(b1s.quote_volume.sum())
    assert st.volume == pytest.approx(qv)
    assert st.vwap == pytest.approx(qv / float(b1s.volume.sum()))
    assert st.change_pct == pytest.approx((last / float(b1s.open[0]) - 1) * 100)
    in_last_minute = b1s.ts >= now - 60_000
    assert st.trades_per_min == b1s.trades[in_last_minute].sum()
    assert st.volume_per_min == pytest.approx(b1s.quote_volume[in_last_minute].sum())
    assert st.span_ms == now - int(b1s.ts[0])
    assert updates.liquid(st, None, None)
    assert not updates.liquid(st, st.trades_per_min + 1, None)
    assert not updates.liquid(st, None, st.volume_per_min * 2)
    assert updates.liquid(st, st.trades_per_min, st.volume_per_min)


def test_returns_correlation_matches_numpy():
    bars = synthetic_bars(400, ("BTCUSDT", "ETHUSDT", "SOLUSDT"))
    closes = {s: (b.ts, b.close) for s, b in bars.items()}
    closes["SOLUSDT"] = (bars["SOLUSDT"].ts[::2], bars["SOLUSDT"].close[::2])  # sparser
    syms, m, used = updates.returns_correlation(closes, 1_000)
    common = bars["SOLUSDT"].ts[::2]
    rets = [np.diff(np.log(bars[s].close[np.searchsorted(bars[s].ts, common)])) for s in syms]
    np.testing.assert_allclose(m, np.corrcoef(rets), atol=1e-12)
    assert used == len(common) - 1
    syms1, m1, _ = updates.returns_correlation({"A": closes["BTCUSDT"]}, 10)
    assert syms1 == ["A"] and np.isnan(m1).all()


def test_formatting():
    assert updates.format_price(61234.5) == "61,234.50"
    assert updates.format_price(0.00012345) == "0.00012345"
    assert updates.format_price(None) == "–"
    assert updates.format_money(2_270_000) == "2.27M"
    assert updates.format_span(189_000) == "3m09s"
    assert updates.format_span(86_400_000) == "24h"
    assert math.isnan(float("nan"))
