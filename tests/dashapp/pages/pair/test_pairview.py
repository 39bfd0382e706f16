"""Pair panel data: URL parsing, never building on the refresh path, bands, payloads, KPIs."""

from __future__ import annotations

import numpy as np
import pytest

from dashapp import selection
from dashapp.api.params import BadParam
from dashapp.pages.pair import pairview
from tests.dashapp.dash_fakes import FakeServices

SYMS = ["BTCUSDT", "ETHUSDT", "SOLUSDT"]


def test_parse_query_valid_and_canonical_query():
    sel, notes = selection.parse_query(
        {"a": "ethusdt", "b": "BTCUSDT", "tf": "1m", "w": "30", "reg": "kalman", "prices": "log"},
        SYMS,
    )
    assert notes == []
    assert (sel.a, sel.b, sel.tf, sel.window, sel.regression, sel.prices) == (
        "ETHUSDT",
        "BTCUSDT",
        "1m",
        30,
        "kalman",
        "log",
    )
    assert sel.query() == (
        "?a=ETHUSDT&b=BTCUSDT&tf=1m&w=30&reg=kalman&prices=log&mode=overlay&k=2&entry=2"
    )
    assert selection.parse_query({}, SYMS) == (selection.Selection("BTCUSDT", "ETHUSDT"), [])


def test_parse_query_bad_values_fall_back_with_notes():
    sel, notes = selection.parse_query(
        {"a": "DOGEUSDT", "w": "2", "tf": "3m", "reg": "lasso", "prices": "sqrt"}, SYMS
    )
    assert sel == selection.Selection("BTCUSDT", "ETHUSDT")
    text = " | ".join(notes)
    assert "a: DOGEUSDT is not ingested" in text and "(using BTCUSDT)" in text
    assert "w: must be a whole number from 3 to 3600, got 2" in text
    assert "tf: '3m' is not one of 1s, 1m, 5m" in text
    assert "regression: 'lasso'" in text and "prices: 'sqrt'" in text
    sel, notes = selection.parse_query({"a": "ETHUSDT", "b": "ETHUSDT"}, SYMS)
    assert (sel.a, sel.b) == ("BTCUSDT", "ETHUSDT") and "both ETHUSDT" in notes[0]


@pytest.mark.parametrize(
    "values, param",
    [
        ({"a": "BTCUSDT", "b": "BTCUSDT"}, "b"),
        ({"a": "BTCUSDT", "b": "ETHUSDT", "w": "x"}, "w"),
        ({"a": "BTCUSDT", "b": "ETHUSDT", "k": "9"}, "k"),
        ({"a": "BTCUSDT", "b": "ETHUSDT", "entry": "abc"}, "entry"),
        ({"a": "BTCUSDT", "b": "ETHUSDT", "mode": "pie"}, "mode"),
        ({"a": None, "b": "ETHUSDT"}, "a"),
    ],
)
def test_validate_names_the_bad_control(values, param):
    with pytest.raises(BadParam) as err:
        selection.validate({"w": "60", "k": "2", "entry": "2", **values}, SYMS)
    assert err.value.param == param


def test_cached_snapshot_never_builds():
    svc = FakeServices(600)
    sel = selection.Selection("BTCUSDT", "ETHUSDT", window=30)
    assert pairview.cached_snapshot(svc, sel) is None
    assert svc.engine.tracked_pairs() == []
    svc.engine.pair(*sel.engine_args())
    assert pairview.cached_snapshot(svc, sel) is not None


def test_spread_bands_agree_with_the_zscore():
    svc = FakeServices(900)
    sel = selection.Selection("BTCUSDT", "ETHUSDT", window=40)
    s = svc.engine.pair(*sel.engine_args()).series
    mean, up, dn = pairview.spread_bands(np.asarray(s.spread), 40, 2.0)
    z = (np.asarray(s.spread) - mean) / ((up - mean) / 2.0)
    ok = np.isfinite(s.zscore)
    assert ok.sum() > 800
    np.testing.assert_allclose(z[ok], np.asarray(s.zscore)[ok], rtol=1e-6, atol=1e-6)


def test_full_figures_downsample_and_full_resolution_on_zoom():
    svc = FakeServices(5_000)
    sel = selection.Selection("BTCUSDT", "ETHUSDT", window=60)
    snap = svc.engine.pair(*sel.engine_args())
    figs = pairview.full_figures(snap, None, None, sel)
    assert set(figs) == {"price", "spread", "z", "corr", "beta"}
    assert len(figs["z"]["data"][0]["x"]) <= pairview.MAX_POINTS
    ts = np.asarray(snap.series.ts)
    lo, hi = float(ts[2_000]), float(ts[2_300])
    zoomed = pairview.full_figures(snap, None, None, sel, x_range=(lo, hi))
    xs = np.asarray(zoomed["z"]["data"][0]["x"])
    inside = xs[(xs >= lo) & (xs <= hi)]
    assert len(inside) == 301  # every bar of the visible range
    assert zoomed["beta"]["layout"]["xaxis"]["range"] == [lo, hi]


def test_bar_close_payloads_are_the_new_points():
    svc = FakeServices(600)
    sel = selection.Selection("BTCUSDT", "ETHUSDT", window=30)
    snap = svc.engine.pair(*sel.engine_args())
    drawn_ts = int(snap.series.ts[-1])
    svc.advance(3)
    snap = svc.engine.pair(*sel.engine_args())
    p = pairview.bar_close_payloads(snap, drawn_ts, sel, live=(1.0, 0.5))
    upd, idx, maxp = p["z"]
    assert idx == [0, 1] and maxp == {
        "x": [pairview.MAX_BROWSER_POINTS, 1],
        "y": [pairview.MAX_BROWSER_POINTS, 1],
    }
    assert upd["x"][0] == snap.series.ts[-3:].tolist()
    np.testing.assert_allclose(upd["y"][0], snap.series.zscore[-3:])
    assert upd["x"][1] == [1.0] and upd["y"][1] == [0.5]
    s_upd, s_idx, _ = p["spread"]
    mean, _, _ = pairview.spread_bands(np.asarray(snap.series.spread), 30, sel.k)
    np.testing.assert_allclose(s_upd["y"][1], mean[-3:])
    assert s_idx == [0, 1, 2, 3]
    assert set(p) == {"spread", "z", "corr", "beta", "price"}
    assert pairview.bar_close_payloads(snap, int(snap.series.ts[-1]), sel) == {}


def test_bar_kpis_r2_is_squared_correlation_for_ols():
    svc = FakeServices(800)
    sel = selection.Selection("BTCUSDT", "ETHUSDT", window=50)
    snap = svc.engine.pair(*sel.engine_args())
    k = pairview.bar_kpis(snap, sel)
    pa, pb = snap.series.price_a[-50:], snap.series.price_b[-50:]
    assert k["r2"] == pytest.approx(np.corrcoef(pa, pb)[0, 1] ** 2, rel=1e-6)
    assert k["beta"] == pytest.approx(snap.series.beta[-1])
    assert k["half_life"] > 0


def test_collecting_messages_until_ready():
    svc = FakeServices(70)
    sel = selection.Selection("BTCUSDT", "ETHUSDT", window=60)
    snap = svc.engine.pair(*sel.engine_args())
    c = pairview.collecting(snap, sel)
    assert c["beta"] is None and c["corr"] is None and c["spread"] is None
    assert c["z"] == "collecting: 70 of 119 bars"
    assert c["adf"] is None


def test_alert_rule_prefill():
    sel = selection.Selection("BTCUSDT", "ETHUSDT", "1m", 90, "huber", "log", entry=2.5)
    assert selection.alert_rule(sel) == {
        "metric": "zscore",
        "a": "BTCUSDT",
        "b": "ETHUSDT",
        "timeframe": "1m",
        "window": 90,
        "regression": "huber",
        "prices": "log",
        "source": "trade",
        "op": "crosses_above",
        "threshold": 2.5,
    }


GOOD = {"a": "BTCUSDT", "b": "ETHUSDT", "tf": "1s", "w": "60", "reg": "ols",
        "prices": "raw", "mode": "overlay", "k": "2", "entry": "2"}


@pytest.mark.parametrize(
    "name, raw, words",
    [
        ("w", "5000", "whole number from 3 to 3600, got 5000"),
        ("w", "2", "whole number from 3 to 3600, got 2"),
        ("w", "3.5", "whole number from 3 to 3600, got 3.5"),
        ("w", "", "is required"),
        ("w", None, "is required"),
        ("entry", "-1", "number from 0.5 to 5, got -1"),
        ("entry", "0", "number from 0.5 to 5, got 0"),
        ("k", "-2", "number from 0.5 to 5, got -2"),
        ("k", "0", "number from 0.5 to 5, got 0"),
        ("k", "", "is required"),
    ],
)
def test_bad_controls_are_errors_never_silent_defaults(name, raw, words):
    """Issue 14.2: a blank window or k = 0 must not quietly become the default."""
    with pytest.raises(BadParam) as err:
        selection.validate({**GOOD, name: raw}, SYMS)
    assert err.value.param == name and words in str(err.value)
    assert selection.CONTROL_LABELS[name] in ("Window (bars)", "Entry |z|", "Bands k σ")


def test_url_carries_every_control_and_the_dataset():
    """Issue 14.10: mode, k and entry survive a reload (and 14.4: the dataset)."""
    sel, notes = selection.parse_query(
        {"mode": "candles", "k": "3", "entry": "1.5", "w": "25", "dataset": "ignored-here"},
        SYMS,
    )
    assert notes == [] and (sel.mode, sel.k, sel.entry, sel.window) == ("candles", 3.0, 1.5, 25)
    q = selection.Selection("BTCUSDT", "ETHUSDT", mode="candles", k=2.5, entry=1.5, dataset="d1")
    assert q.query().endswith("&mode=candles&k=2.5&entry=1.5&dataset=d1")
    back, notes = selection.parse_query(
        dict(x.split("=") for x in q.query()[1:].split("&")), SYMS, dataset="d1"
    )
    assert back == q and notes == []


@pytest.mark.parametrize(
    "data",
    [
        "x", 5, [], {"a": "BTCUSDT"}, {"a": "BTCUSDT", "b": "BTCUSDT"},
        {"a": "BTCUSDT", "b": "ETHUSDT", "window": "60"},
        {"a": "BTCUSDT", "b": "ETHUSDT", "window": True},
        {"a": "BTCUSDT", "b": "ETHUSDT", "k": float("nan")},
        {"a": "BTCUSDT", "b": "ETHUSDT", "tf": "9y"},
        {"a": "BTCUSDT", "b": "ETHUSDT", "regression": "lasso"},
        {"a": "BTCUSDT", "b": "ETHUSDT", "dataset": ["x"]},
        {"a": "BTCUSDT", "b": "ETHUSDT", "evil": 1},
    ],
)
def test_forged_selection_store_is_refused(data):
    """Issue 13.9: the store comes from the browser; a forged one is no selection."""
    assert selection.Selection.from_store(data) is None
