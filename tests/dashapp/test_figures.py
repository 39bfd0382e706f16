"""Figure builders: trace order (the extendData contract), hover, uirevision, lines."""

from __future__ import annotations

import math

import numpy as np

from dashapp import figures

TS = 1_723_161_600_000 + np.arange(50) * 1000


def test_zscore_figure_traces_lines_and_live_marker():
    z = np.linspace(-3, 3, 50)
    z[:5] = np.nan
    fig = figures.zscore_figure(
        TS,
        z,
        entry=2.0,
        uirevision="k1",
        live=(TS[-1] + 300.0, 1.25),
        alert_lines=[("zscore", 2.5)],
    )
    assert [t["name"] for t in fig["data"]] == ["z (bar close)", "live z (tick)"]
    assert figures.Z_TRACES == {"z": 0, "live": 1}
    z_trace, live = fig["data"]
    assert z_trace["x"] == TS.tolist()  # epoch ms ints: extendable plain arrays
    assert z_trace["y"][:5] == [None] * 5 and math.isclose(z_trace["y"][-1], 3.0)
    assert live["y"] == [1.25]
    ys = sorted(s["y0"] for s in fig["layout"]["shapes"])
    assert ys == [-2.0, 0.0, 2.0, 2.5]
    assert "alert zscore 2.5" in [a["text"] for a in fig["layout"]["annotations"]]
    assert fig["layout"]["uirevision"] == "k1"
    assert fig["layout"]["xaxis"]["type"] == "date"
    assert "%{y:.4f}" in z_trace["hovertemplate"]
    assert fig["layout"]["xaxis"]["hoverformat"] == "%Y-%m-%d %H:%M:%S UTC"
    assert fig["layout"]["hovermode"] == "x unified"


def test_spread_figure_band_traces():
    s = np.sin(np.arange(50.0))
    fig = figures.spread_figure(TS, s, s * 0, s * 0 + 1, s * 0 - 1, k=2.5, uirevision="u")
    assert [t["name"] for t in fig["data"]] == ["spread", "rolling mean", "+2.5σ", "−2.5σ"]
    assert list(figures.SPREAD_TRACES.values()) == [0, 1, 2, 3]


def test_values_rounded_to_display_precision():
    y = figures._y(np.array([61234.56789, 61000.0, np.nan]))
    assert y == [61234.57, 61000.0, None]
    assert figures._y(np.array([0.000123456789])) == [0.0001234568]
    assert figures._y(np.array([np.nan, np.nan])) == [None, None]


def test_candles_figure_rows_and_volume():
    c = {
        "ts": TS,
        "open": np.ones(50),
        "high": np.ones(50) * 2,
        "low": np.zeros(50),
        "close": np.ones(50),
        "volume": np.ones(50),
    }
    fig = figures.candles_figure([("BTCUSDT", c), ("ETHUSDT", c)], uirevision="u")
    types = [t["type"] for t in fig["data"]]
    assert types.count("candlestick") == 2 and types.count("bar") == 2
    assert fig["layout"]["xaxis"]["rangeslider"]["visible"] is False
    # one shared time axis, one y axis per panel
    assert [t.get("yaxis") for t in fig["data"]] == ["y", "y3", "y2", "y3"]
    assert {"yaxis", "yaxis2", "yaxis3"} <= set(fig["layout"])


def test_overlay_and_heatmap():
    fig = figures.overlay_figure(
        TS, np.full(50, 100.0), np.full(50, 101.0), a="A", b="B", uirevision="u"
    )
    assert [t["name"] for t in fig["data"]] == ["A (=100)", "B (=100)"]
    m = np.array([[1.0, 0.5], [0.5, np.nan]])
    h = figures.correlation_heatmap(["A", "B"], m, title="t")
    assert h["data"][0]["zmin"] == -1 and h["data"][0]["zmax"] == 1
    assert h["data"][0]["text"][1][1] == "–" and h["data"][0]["z"][1][1] is None


def _empty_builders():
    e = np.array([], dtype=float)
    t = np.array([], dtype=np.int64)
    yield "line", figures.line_figure(t, e, name="ρ", uirevision="r", hlines=(0.0,))
    yield "z", figures.zscore_figure(t, e, entry=2.0, uirevision="r")
    yield "spread", figures.spread_figure(t, e, e, e, e, k=2.0, uirevision="r")
    yield "overlay", figures.overlay_figure(t, e, e, a="A", b="B", uirevision="r")
    cols = {c: e for c in ("open", "high", "low", "close", "volume")}
    yield "candles", figures.candles_figure([("A", {"ts": t, **cols})], uirevision="r")
    import plotly.graph_objects as go

    from dashapp.components import backtest_view

    yield "backtest", backtest_view._layout(go.Figure(), height=300, uirevision="r", title="E")


def test_empty_charts_hide_their_axes_instead_of_showing_2000_2001():
    """plotly.js draws an empty date axis as 2000-2001: every builder hides it and says
    there is no data; a figure with points keeps its axes."""
    for name, fig in _empty_builders():
        fig = fig if isinstance(fig, dict) else fig.to_plotly_json()
        axes = [v for k, v in fig["layout"].items() if k.startswith(("xaxis", "yaxis"))]
        assert axes and all(ax.get("visible") is False for ax in axes), name
        texts = [a["text"] for a in fig["layout"].get("annotations", [])]
        assert any("no " in t for t in texts), (name, texts)
    full = figures.line_figure(np.array([1, 2]), np.array([1.0, 2.0]), name="b", uirevision="r")
    assert full["layout"]["xaxis"].get("visible", True) is True
    zoomed = figures.apply_x_range(
        figures.line_figure(np.array([], dtype=np.int64), np.array([]), name="b", uirevision="r"),
        (1.0, 2.0),
    )
    assert zoomed["layout"]["xaxis"]["visible"] is True  # a zoom without bars keeps its axis


def test_mark_breaks_draws_a_line_and_breaks_every_line_trace():
    from dashapp.figures import BREAK_SHAPE_NAME, line_figure, mark_breaks

    ts = np.array([0, 1000, 2000, 5000, 6000], dtype=np.int64)
    fig = line_figure(ts, np.array([1.0, 2.0, 3.0, 9.0, 9.5]), name="ρ", uirevision="r")
    mark_breaks(fig, [5000, 99_000])
    tr = fig["data"][0]
    # a None point at the break: plotly draws no segment from 3.0 to 9.0
    assert tr["x"] == [0, 1000, 2000, 5000, 5000, 6000]
    assert tr["y"] == [1.0, 2.0, 3.0, None, 9.0, 9.5]
    lines = [s for s in fig["layout"]["shapes"] if s.get("name") == BREAK_SHAPE_NAME]
    assert [s["x0"] for s in lines] == [5000, 99_000]
    assert mark_breaks(fig := line_figure(ts, ts * 1.0, name="b", uirevision="r"), []) is fig
    assert fig["data"][0]["x"] == ts.tolist()
