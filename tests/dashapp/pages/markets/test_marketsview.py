"""Markets refresh: cards, flash, sparklines extend on bar close, heatmap patch, filter."""

from __future__ import annotations

import json

import plotly
from dash import Patch

from dashapp.pages.markets import marketsview
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


def test_heatmap_from_few_bars_is_greyed_with_its_n():
    """Issue 14.10: 900 s of 1 s bars are 15 1 m and 3 5 m bars: a 5 m matrix from 2
    returns (and a 1 m one from 14) must say n and be greyed, not show a bold rho."""
    svc = FakeServices(900, SYMS)
    up = marketsview.refresh(svc, "5m", None, None, None)
    trace = up.heatmap["data"][0]
    assert "n = 2 returns" in up.heatmap_note and "too few" in up.heatmap_note
    assert {c for _, c in trace["colorscale"]} == {marketsview.HEATMAP_GREY}
    assert trace["showscale"] is False and "n = 2 returns" in trace["hovertemplate"]
    one_m = marketsview.refresh(svc, "1m", None, None, up.state)
    assert "n = 14 returns" in one_m.heatmap_note and "too few" in one_m.heatmap_note
    # 1 s: hundreds of returns, in colour, n in the note and the hover
    full = marketsview.refresh(svc, "1s", None, None, one_m.state)
    tr = full.heatmap["data"][0]
    assert "too few" not in full.heatmap_note and "n = 600 returns" in full.heatmap_note
    assert tr["colorscale"] != [[0.0, marketsview.HEATMAP_GREY], [1.0, marketsview.HEATMAP_GREY]]
    assert "n = 600 returns" in tr["hovertemplate"]


def test_heatmap_crossing_the_minimum_sends_a_whole_figure_not_a_patch():
    svc = FakeServices(60 * marketsview.HEATMAP_MIN_RETURNS, SYMS)  # 30 1 m bars: n = 29
    up = marketsview.refresh(svc, "1m", None, None, None)
    assert up.state["heat_ok"] is False and "n = 29 returns" in up.heatmap_note
    svc.advance(61)  # one more 1 m bar closes: n reaches the minimum
    up2 = marketsview.refresh(svc, "1m", None, None, json.loads(json.dumps(up.state)))
    assert up2.state["heat_ok"] is True
    assert not isinstance(up2.heatmap, Patch)
    assert up2.heatmap["data"][0].get("showscale") is not False


# -- top of book (#17): quote line of each card, spread filter -----------------------
def _last_quotes() -> dict:
    """The last @bookTicker frame of each committed spot raw capture (real quotes)."""
    import gzip

    from tests.analytics.conftest import SAMPLE_DIR

    out = {}
    for sym in ("BTCUSDT", "ETHUSDT"):
        path = SAMPLE_DIR / f"hftbacktest-rawcapture-trade-book_spot_{sym}_20240808_2354-2356.gz"
        with gzip.open(path, "rt") as fh:
            frames = [json.loads(line.split(" ", 1)[1])["data"] for line in fh
                      if "@bookTicker" in line]
        out[sym] = {k: float(frames[-1][k]) for k in ("b", "B", "a", "A")}
    return out


def test_cards_show_the_latest_quote_and_the_spread_filter_hides_wide_ones():
    from dashapp.components.symbol_card import quote_values

    svc = FakeServices(300, SYMS)
    quotes = _last_quotes()
    for sym, q in quotes.items():
        svc.set_quote(sym, q["b"], q["a"], q["B"], q["A"])
    up = marketsview.refresh(svc, "1s", None, None, None)
    assert up.hidden == [] and up.quotes["SOLUSDT"] is None
    for sym, q in quotes.items():
        mid = (q["b"] + q["a"]) / 2
        spread = 1e4 * (q["a"] - q["b"]) / mid  # independent: the definition
        shown = quote_values(up.quotes[sym])
        assert shown["sprd"] == f"{spread:,.2f} bps"
        assert shown["imb"] == f"{q['B'] / (q['B'] + q['A']):.2f}"
        assert shown["bid"] == f"{q['b']:,.2f}" and shown["ask"] == f"{q['a']:,.2f}"
    assert quote_values(None) == {"bid": "–", "ask": "–", "sprd": "–", "imb": "–"}
    spreads = {s: 1e4 * (q["a"] - q["b"]) / ((q["a"] + q["b"]) / 2) for s, q in quotes.items()}
    cut = (spreads["BTCUSDT"] + spreads["ETHUSDT"]) / 2 if spreads["BTCUSDT"] != spreads[
        "ETHUSDT"] else spreads["BTCUSDT"]
    wide = [s for s, v in spreads.items() if v > cut]
    up = marketsview.refresh(svc, "1s", None, None, None, max_spread_bps=cut)
    assert up.hidden == wide  # no quote (SOLUSDT) is not judged: it stays shown
    svc.set_quote("SOLUSDT", 150.0, 151.5)  # 100 bps
    up = marketsview.refresh(svc, "1s", None, None, None, max_spread_bps=50)
    assert up.hidden == ["SOLUSDT"]


def test_spread_threshold_from_the_url():
    from dashapp.pages.markets.marketsview import max_spread_arg

    assert max_spread_arg("2.5") == 2.5 and max_spread_arg(" 0 ") == 0.0
    assert max_spread_arg(None) is None and max_spread_arg("") is None
    assert max_spread_arg("abc") is None and max_spread_arg("-1") is None
    assert max_spread_arg("inf") is None
