"""The pair panel's refresh plan: full draw, then live-only, extend on bar close, full on
zoom/alerts/periodic; collecting while too few bars; relayout parsing."""

from __future__ import annotations

import json
import threading
import time

import plotly
import pytest

from dashapp import selection
from dashapp.pages.pair import pairbuilds, pairlive, pairview
from tests.dashapp.dash_fakes import FakeServices


def size(obj) -> int:
    return len(json.dumps(obj, cls=plotly.utils.PlotlyJSONEncoder))


def step(svc, sel, drawn, trigger=None, view=None, adf=None):
    up = pairlive.refresh(svc, sel.to_store(), view, drawn, adf, trigger)
    return up, (up.drawn if up.drawn is not None else drawn)


def test_refresh_sequence_full_live_extend():
    svc = FakeServices(1_500)
    sel = selection.Selection("BTCUSDT", "ETHUSDT", window=60)
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
    sel = selection.Selection("BTCUSDT", "ETHUSDT", window=30)
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
    sel = selection.Selection("BTCUSDT", "ETHUSDT", window=30, mode="candles")
    svc.engine.pair(*sel.engine_args())
    _, drawn = step(svc, sel, None, "selection")
    svc.advance(1)
    up, _ = step(svc, sel, drawn)
    assert up.plan == "extend" and "price" in up.figures and "price" not in up.extend
    assert "candlestick" in [t["type"] for t in up.figures["price"]["data"]]


def test_collecting_until_enough_bars_then_builds():
    svc = FakeServices(20)
    sel = selection.Selection("BTCUSDT", "ETHUSDT", window=30)
    up, drawn = step(svc, sel, None, "selection")
    assert up.plan == "collecting" and up.adf_disabled is True
    assert up.collecting["beta"] == "collecting: 20 of 30 bars"
    assert up.collecting["z"] == "collecting: 20 of 59 bars"
    assert svc.engine.tracked_pairs() == []
    # drawn once for the pending selection, then nothing until a bar closes
    up, _ = step(svc, sel, drawn)
    assert up.plan == "collecting" and not up.figures and up.drawn is None
    svc.advance(15)
    up, _ = step(svc, sel, drawn)
    assert up.plan == "full" and len(svc.engine.tracked_pairs()) == 1
    assert up.collecting["beta"] is None and up.collecting["z"].startswith("collecting: ")


def test_switch_to_a_collecting_selection_replaces_every_number():
    """Issue 14.1: after a switch to a timeframe with too few bars, no chart or card
    keeps the previous selection's numbers; prices (one bar is enough) are drawn."""
    svc = FakeServices(1_500)
    one_s = selection.Selection("BTCUSDT", "ETHUSDT", window=60)
    up, drawn = step(svc, one_s, None, "selection")
    assert up.plan == "full"
    one_m = selection.Selection("BTCUSDT", "ETHUSDT", tf="1m", window=60)  # 25 bars < 60
    up, drawn = step(svc, one_m, drawn, "selection")
    assert up.plan == "collecting" and set(up.figures) == set(pairlive.GRAPHS)
    price_x = up.figures["price"]["data"][0]["x"]
    assert len(price_x) == 25  # the 1m bars there are, 60 s apart
    assert {b - a for a, b in zip(price_x, price_x[1:])} == {60_000}
    for chart in ("spread", "z", "corr", "beta"):
        fig = up.figures[chart]
        assert fig["data"] == [] and "collecting:" in fig["layout"]["annotations"][0]["text"]
    assert "of 119 bars" in up.figures["z"]["layout"]["annotations"][0]["text"]
    assert up.kpis == pairview.empty_kpis() and up.signal.z_side == "flat"
    assert up.live_z == "–" and drawn["sel"] == one_m.to_store()


def test_robust_pair_builds_in_a_thread_never_on_the_refresh_path():
    svc = FakeServices(30 + pairlive.CHEAP_BUILD_EXTRA_BARS + 1)
    builds = pairbuilds.Builds()
    gate = threading.Event()
    real_pair = svc.engine.pair

    def slow_pair(*args):
        gate.wait(10)
        return real_pair(*args)

    svc.engine.pair = slow_pair
    sel = selection.Selection("BTCUSDT", "ETHUSDT", window=30, regression="huber")
    up = pairlive.refresh(svc, sel.to_store(), None, None, None, "selection", builds)
    assert up.plan == "building" and not up.figures and up.kpis is None
    assert up.status.startswith("building Huber fit · BTCUSDT / ETHUSDT") and "stale" in up.status
    # superseded: the next choice starts its own build at once
    other = selection.Selection("BTCUSDT", "ETHUSDT", window=30, regression="theilsen")
    up2 = pairlive.refresh(svc, other.to_store(), None, None, None, "selection", builds)
    assert "Theil-Sen" in up2.status
    gate.set()
    deadline = time.monotonic() + 20
    while len(svc.engine.tracked_pairs()) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    up = pairlive.refresh(svc, other.to_store(), None, None, None, None, builds)
    assert up.plan == "full" and up.status == ""
    # OLS is vectorised: cheap for any history, built on the spot
    up, _ = step(svc, selection.Selection("BTCUSDT", "ETHUSDT", window=30), None)
    assert up.plan == "full"


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
        # forged by a client: never a 500 (issue 13.9)
        ({"xaxis.range[0]": "garbage", "xaxis.range[1]": 1}, None),
        ([1, 2], None),
        ("xaxis", None),
        ({"xaxis.range": [True, 2]}, None),
        ({"xaxis.range": [{}, 2]}, None),
        ({"xaxis.range": [float("nan"), 1.0]}, None),
    ],
)
def test_x_range_from_relayout(relayout, expected):
    assert pairlive.x_range_from_relayout(relayout) == expected


def test_failed_build_is_reported_and_not_respun_every_refresh():
    svc = FakeServices(30 + pairlive.CHEAP_BUILD_EXTRA_BARS + 1)
    builds = pairbuilds.Builds()
    calls = []

    def broken(*args):
        calls.append(args)
        raise ValueError("disk on fire")

    svc.engine.pair = broken
    sel = selection.Selection("BTCUSDT", "ETHUSDT", window=30, regression="huber")
    pairlive.refresh(svc, sel.to_store(), None, None, None, "selection", builds)
    deadline = time.monotonic() + 10
    while builds.live_state(sel.engine_args()).running and time.monotonic() < deadline:
        time.sleep(0.01)
    for _ in range(5):
        up = pairlive.refresh(svc, sel.to_store(), None, None, None, None, builds)
    assert "could not build: disk on fire" in up.status and not up.status.startswith("building")
    assert len(calls) == 1


def test_dataset_selection_is_built_in_a_thread_and_drawn_without_live_z(monkeypatch):
    """Issue 14.4: a dataset source draws the pair of the dataset's bars (the same
    ``pair_from_bars`` as the API), once, with no live tick marker."""
    from types import SimpleNamespace

    from analytics.features import pair_from_bars
    from dashapp import queries
    from tests.dashapp.dash_fakes import synthetic_bars

    bars = synthetic_bars(400)
    info = SimpleNamespace(rows={"BTCUSDT": 400, "ETHUSDT": 400})
    monkeypatch.setattr(queries, "dataset_info", lambda name: info)
    monkeypatch.setattr(queries, "dataset_bars", lambda name, sym, tf_ms=None: bars[sym])
    svc = FakeServices(50)
    builds = pairbuilds.Builds()
    sel = selection.Selection("BTCUSDT", "ETHUSDT", window=30, dataset="jan")
    up = pairlive.refresh(svc, sel.to_store(), None, None, None, "selection", builds)
    assert up.plan == "building" and "dataset jan" in up.status
    deadline = time.monotonic() + 20
    while up.plan == "building" and time.monotonic() < deadline:
        time.sleep(0.02)
        up = pairlive.refresh(svc, sel.to_store(), None, None, None, None, builds)
    assert up.plan == "full" and up.live_z == "–"
    z = up.figures["z"]["data"]
    assert z[1]["x"] == []  # no live marker
    _, oracle = pair_from_bars(bars["BTCUSDT"], bars["ETHUSDT"], window=30)
    assert z[0]["x"] == oracle.ts.tolist()
    assert up.kpis["beta"] == pytest.approx(float(oracle.beta[-1]))
    # drawn: nothing more to send until the selection or the view changes
    again = pairlive.refresh(svc, sel.to_store(), None, up.drawn, None, None, builds)
    assert again.plan != "full" and not again.figures
