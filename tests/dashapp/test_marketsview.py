"""Markets refresh: cards, flash, sparklines extend on bar close, heatmap patch, filter."""

from __future__ import annotations

import json

import plotly
from dash import Patch

from dashapp import marketsview
from tests.dashapp.dash_fakes import FakeServices

SYMS = ("BTCUSDT", "ETHUSDT", "SOLUSDT")


def test_first_refresh_then_small_updates():
    svc = FakeServices(900, SYMS)
    up = marketsview.refresh(svc, "1s", None, None, None)
    assert set(up.stats) == set(SYMS) and up.hidden == []
    assert all(up.sparks[s][0] == "figure" for s in SYMS)
    assert len(up.sparks["BTCUSDT"][1]["data"][0]["x"]) == marketsview.SPARK_BARS
    assert up.heatmap["data"][0]["x"] == sorted(SYMS)
    state = json.loads(json.dumps(up.state))  # the browser store round trip

    again = marketsview.refresh(svc, "1s", None, None, state)
    assert all(v is None for v in again.sparks.values()) and again.heatmap is None

    svc.advance(1, drift=1e-3)
    moved = marketsview.refresh(svc, "1s", None, None, json.loads(json.dumps(again.state)))
    kind, payload = moved.sparks["BTCUSDT"]
    assert kind == "extend" and payload[1] == [0] and payload[2] == marketsview.SPARK_BARS
    assert len(payload[0]["x"][0]) == 1
    assert isinstance(moved.heatmap, Patch)
    assert moved.price_class["BTCUSDT"].startswith("sym-price flash-up-")
    size = len(
        json.dumps([moved.sparks, moved.heatmap, moved.state], cls=plotly.utils.PlotlyJSONEncoder)
    )
    assert size < 5_000


def test_flash_toggles_and_points_down():
    svc = FakeServices(300)
    s0 = marketsview.refresh(svc, "1s", None, None, None).state
    svc.advance(1, drift=-1e-3)
    up1 = marketsview.refresh(svc, "1s", None, None, s0)
    svc.advance(1, drift=-1e-3)
    up2 = marketsview.refresh(svc, "1s", None, None, up1.state)
    c1, c2 = up1.price_class["ETHUSDT"], up2.price_class["ETHUSDT"]
    assert "flash-down" in c1 and "flash-down" in c2 and c1 != c2  # re-triggers the animation


def test_timeframe_change_redraws_and_filter_hides():
    svc = FakeServices(900, SYMS)
    s0 = marketsview.refresh(svc, "1s", None, None, None).state
    up = marketsview.refresh(svc, "1m", None, None, s0)
    assert all(up.sparks[s][0] == "figure" for s in SYMS)
    assert "1m bars" in up.heatmap_note and up.heatmap is not None
    tpm = up.stats["BTCUSDT"].trades_per_min
    hidden = marketsview.refresh(svc, "1m", tpm * 100, None, up.state)
    assert hidden.hidden == sorted(SYMS) and hidden.sparks == {}
    assert hidden.heatmap is not None  # the shown set changed: whole figure
