"""The pair panel's refresh plan: full draw, then live-only, extend on bar close, full on
zoom/alerts/periodic; collecting while too few bars; relayout parsing."""

from __future__ import annotations

import json

import plotly
import pytest

from dashapp import pairlive, pairview
from tests.dashapp.dash_fakes import FakeServices


def size(obj) -> int:
    return len(json.dumps(obj, cls=plotly.utils.PlotlyJSONEncoder))


def step(svc, sel, drawn, trigger=None, view=None, adf=None):
    up = pairlive.refresh(svc, sel.to_store(), view, drawn, adf, trigger)
    return up, (up.drawn if up.drawn is not None else drawn)


def test_refresh_sequence_full_live_extend():
    svc = FakeServices(1_500)
    sel = pairview.Selection("BTCUSDT", "ETHUSDT", window=60)
    svc.engine.pair(*sel.engine_args())  # what the selection callback does

    up, drawn = step(svc, sel, None, "selection")
    assert up.plan == "full" and set(up.figures) == set(pairlive.GRAPHS)
    assert up.kpis["beta"] is not None and up.signal.side in ("flat", "long_spread", "short_spread")
    assert drawn["seq"] == 1_500

    # a trade moves the live z, no bar closed: only the marker and the KPI text
    last = svc.ingestor.rings["BTCUSDT"].last()
    svc.ingestor.rings["BTCUSDT"].append(last.time_ms + 100, 7, last.price * 1.002, 0.01, False)
    up, drawn2 = step(svc, sel, drawn)
    assert up.plan == "live" and not up.figures and set(up.extend) == {"z"}
    assert up.kpis is None and up.live_z not in (None, "–")
    assert size(up.extend) < 300

    # nothing new at all: nothing but the KPI text
    up, _ = step(svc, sel, drawn2)
    assert up.plan == "live" and not up.extend and up.drawn is None

    svc.advance(2)
    up, drawn3 = step(svc, sel, drawn2)
    assert up.plan == "extend" and not up.figures
    assert set(up.extend) == {"price", "spread", "z", "corr", "beta"}
    assert len(up.extend["z"][0]["x"][0]) == 2
    assert drawn3["seq"] == 1_502 and drawn3["since_full"] == 2
    assert up.kpis is not None and up.signal is not None


def test_full_redraw_on_zoom_alerts_and_periodically(monkeypatch):
    svc = FakeServices(800)
    sel = pairview.Selection("BTCUSDT", "ETHUSDT", window=30)
    svc.engine.pair(*sel.engine_args())
    _, drawn = step(svc, sel, None, "selection")
    view = {"range": [float(svc.now_ms - 200_000), float(svc.now_ms - 100_000)]}
    up, drawn = step(svc, sel, drawn, "view", view)
    assert up.plan == "full" and drawn["view"] == view["range"]
    xs = up.figures["z"]["data"][0]["x"]
    assert min(xs) >= view["range"][0] - 60_000  # sliced to the zoom (+ margin)

    svc.alerts.lines = [("zscore", 2.5)]
    up, drawn = step(svc, sel, drawn, None, view)
    assert up.plan == "full"
    assert 2.5 in [s["y0"] for s in up.figures["z"]["layout"]["shapes"]]

    monkeypatch.setattr(pairview, "REDRAW_EVERY", 3)
    svc.advance(2)
    up, drawn = step(svc, sel, drawn, None, view)
    assert up.plan == "extend"
    svc.advance(2)
    up, drawn = step(svc, sel, drawn, None, view)
    assert up.plan == "full" and drawn["since_full"] == 0


def test_candles_redraw_price_on_bar_close():
    svc = FakeServices(600)
    sel = pairview.Selection("BTCUSDT", "ETHUSDT", window=30, mode="candles")
    svc.engine.pair(*sel.engine_args())
    _, drawn = step(svc, sel, None, "selection")
    svc.advance(1)
    up, _ = step(svc, sel, drawn)
    assert up.plan == "extend" and "price" in up.figures and "price" not in up.extend
    assert "candlestick" in [t["type"] for t in up.figures["price"]["data"]]


def test_collecting_until_enough_bars_then_builds():
    svc = FakeServices(20)
    sel = pairview.Selection("BTCUSDT", "ETHUSDT", window=30)
    up, _ = step(svc, sel, None, "selection")
    assert up.plan == "none" and up.adf_disabled is True
    assert up.collecting["beta"] == "collecting: 20 of 30 bars"
    assert up.collecting["z"] == "collecting: 20 of 59 bars"
    assert svc.engine.tracked_pairs() == []
    svc.advance(15)
    up, _ = step(svc, sel, None)
    assert up.plan == "full" and len(svc.engine.tracked_pairs()) == 1
    assert up.collecting["beta"] is None and up.collecting["z"].startswith("collecting: ")


def test_robust_pair_not_built_on_the_refresh_path():
    svc = FakeServices(30 + pairlive.CHEAP_BUILD_EXTRA_BARS + 1)
    for reg in ("theilsen", "huber", "kalman"):
        sel = pairview.Selection("BTCUSDT", "ETHUSDT", window=30, regression=reg)
        up, _ = step(svc, sel, None)
        assert svc.engine.tracked_pairs() == []
        assert "not tracked" in up.collecting["z"]
    # OLS is vectorised: cheap for any history
    up, _ = step(svc, pairview.Selection("BTCUSDT", "ETHUSDT", window=30), None)
    assert up.plan == "full" and len(svc.engine.tracked_pairs()) == 1


@pytest.mark.parametrize(
    "relayout, expected",
    [
        (
            {"xaxis.range[0]": "2024-08-09 00:00:10", "xaxis.range[1]": "2024-08-09 00:00:20.5"},
            ("range", (1_723_161_610_000.0, 1_723_161_620_500.0)),
        ),
        ({"xaxis2.range": [1.0, 2.0]}, ("range", (1.0, 2.0))),
        ({"xaxis.autorange": True}, ("auto", None)),
        ({"autosize": True}, None),
        ({"yaxis.range[0]": 1, "yaxis.range[1]": 2}, None),
        (None, None),
    ],
)
def test_x_range_from_relayout(relayout, expected):
    assert pairlive.x_range_from_relayout(relayout) == expected
