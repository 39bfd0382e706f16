"""Payload builders: extendData tuples, Patch operations, card numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest

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
    assert math.isnan(float("nan"))
