"""Markets page callbacks' payloads: the grid refresh, pre-filters as column filters,
two rows -> a pair link, the heatmap over top N / a watchlist (computed once per bar)."""

from __future__ import annotations

import gzip
import json

from dash import Patch

from dashapp.board import board_cache
from dashapp.pages.markets import marketsview
from tests.dashapp.dash_fakes import FakeServices

SYMS = ("BTCUSDT", "ETHUSDT", "SOLUSDT")


def _last_quotes() -> dict:
    """The last @bookTicker frame of each committed spot raw capture (real quotes)."""
    from tests.analytics.conftest import SAMPLE_DIR

    out = {}
    for sym in ("BTCUSDT", "ETHUSDT"):
        path = SAMPLE_DIR / f"hftbacktest-rawcapture-trade-book_spot_{sym}_20240808_2354-2356.gz"
        with gzip.open(path, "rt") as fh:
            frames = [json.loads(line.split(" ", 1)[1])["data"] for line in fh
                      if "@bookTicker" in line]
        out[sym] = {k: float(frames[-1][k]) for k in ("b", "B", "a", "A")}
    return out


def test_first_refresh_is_the_whole_board_then_sparklines_of_visible_rows():
    svc = FakeServices(900, SYMS)
    quotes = _last_quotes()
    for sym, q in quotes.items():
        svc.set_quote(sym, q["b"], q["a"], q["B"], q["A"])
    msg = marketsview.board_refresh(svc, None, "1s")
    assert msg["full"] and msg["tf"] == "1s" and msg["spark"] == {}
    rows = {r["name"]: r for r in msg["rows"]}
    for sym, q in quotes.items():  # the quoted spread, by its definition
        spread = 1e4 * (q["a"] - q["b"]) / ((q["a"] + q["b"]) / 2)
        assert rows[sym]["spread_bps"] == round(spread, 2)
    assert rows["SOLUSDT"]["spread_bps"] is None  # no quote: blank, not judged
    client = {"v": msg["v"], "tf": "1s", "vis": {"ETHUSDT": None}}
    again = marketsview.board_refresh(svc, client, "1s")
    assert again["set"] == {} and list(again["spark"]) == ["ETHUSDT"]
    # another timeframe: the visible lines are redrawn whole
    other = marketsview.board_refresh(svc, {**client, "vis": {"ETHUSDT": again["spark"][
        "ETHUSDT"][0]}}, "1m")
    assert other["tf"] == "1m" and other["spark"]["ETHUSDT"][1] == 1
    assert marketsview.board_refresh(svc, "forged", "nope")["tf"] == "1s"


def test_prefilters_thresholds_and_the_rule_the_grid_applies():
    f = marketsview.prefilters("100", 5000, "2.5")
    assert f == {"min_trades": 100.0, "min_volume": 5000.0, "max_spread": 2.5}
    assert marketsview.prefilters(None, "", "abc") == dict.fromkeys(f)  # all off
    assert marketsview.prefilters("0", "-3", "inf") == dict.fromkeys(f)
    svc = FakeServices(900, SYMS)
    quotes = _last_quotes()
    for sym, q in quotes.items():
        svc.set_quote(sym, q["b"], q["a"], q["B"], q["A"])
    rows = marketsview.board_refresh(svc, None, "1s")["rows"]
    spreads = {r["name"]: r["spread_bps"] for r in rows if r["spread_bps"] is not None}
    cut = sum(spreads.values()) / len(spreads)  # between BTCUSDT's and ETHUSDT's
    kept = [r["name"] for r in rows
            if marketsview.passes_prefilters(r, marketsview.prefilters(None, None, cut))]
    # the wider quote is hidden; SOLUSDT has no quote: not judged, shown
    assert kept == [n for n in SYMS if n not in spreads or spreads[n] <= cut]
    assert "SOLUSDT" in kept and len(kept) == 2
    tpm = sorted(r["trades_per_min"] for r in rows)
    busy = marketsview.prefilters(tpm[1], None, None)
    assert [r["trades_per_min"] >= tpm[1] for r in rows] == [
        marketsview.passes_prefilters(r, busy) for r in rows]


def test_two_selected_rows_open_their_pair():
    rows = [{"name": "spot:BTCUSDT"}, {"name": "perp:BTCUSDT"}]
    # A and B by name, whatever order the grid lists them in (it re-sorts as it updates)
    assert marketsview.pair_link(rows) == "/pair?a=perp%3ABTCUSDT&b=spot%3ABTCUSDT"
    assert marketsview.pair_link(rows[::-1]) == marketsview.pair_link(rows)
    assert marketsview.pair_link(rows[:1]) is None
    assert marketsview.pair_link([*rows, {"name": "X"}]) is None
    assert marketsview.pair_link("forged") is None


def test_heatmap_over_the_top_n_by_volume_computed_once_per_bar():
    svc = FakeServices(900, SYMS)
    names = [r["name"] for r in sorted(board_cache(svc).current().rows.values(),
                                       key=lambda r: -r["volume"])]
    fig, note, state = marketsview.heatmap_refresh(svc, "top:10", None, "1s", None)
    assert fig["data"][0]["x"] == sorted(names) and "n = 600 returns" in note
    computed = marketsview.CORRELATIONS.computed
    # another tab, same set and bar: the cached matrix, a whole figure for that tab
    fig2, _, _ = marketsview.heatmap_refresh(svc, "top:10", None, "1s", None)
    assert marketsview.CORRELATIONS.computed == computed and fig2 == fig
    same = marketsview.heatmap_refresh(svc, "top:10", None, "1s", state)
    assert same[0] is None and same[1] is None  # nothing closed: nothing sent
    svc.advance(1, drift=1e-3)
    patch, _, _ = marketsview.heatmap_refresh(svc, "top:10", None, "1s",
                                              json.loads(json.dumps(state)))
    assert isinstance(patch, Patch) and marketsview.CORRELATIONS.computed == computed + 1


def test_heatmap_of_selected_rows_and_too_few_selected():
    svc = FakeServices(900, SYMS)
    sel = [{"name": "SOLUSDT"}, {"name": "BTCUSDT"}]
    fig, note, _ = marketsview.heatmap_refresh(svc, "selected", sel, "1s", None)
    assert fig["data"][0]["x"] == ["BTCUSDT", "SOLUSDT"]
    fig, note, state = marketsview.heatmap_refresh(svc, "selected", sel[:1], "1s", None)
    assert "at least two" in note and state == {}


def test_heatmap_from_few_bars_is_greyed_with_its_n():
    """Issue 14.10: 900 s of 1 s bars are 3 5 m bars: a matrix from 2 returns must say n
    and be greyed, not show a bold rho."""
    svc = FakeServices(900, SYMS)
    fig, note, _ = marketsview.heatmap_refresh(svc, "top:10", None, "5m", None)
    trace = fig["data"][0]
    assert "n = 2 returns" in note and "too few" in note
    assert {c for _, c in trace["colorscale"]} == {marketsview.HEATMAP_GREY}
    assert trace["showscale"] is False and "n = 2 returns" in trace["hovertemplate"]


def test_heatmap_crossing_the_minimum_sends_a_whole_figure_not_a_patch():
    svc = FakeServices(60 * marketsview.HEATMAP_MIN_RETURNS, SYMS)  # 30 1 m bars: n = 29
    _, note, state = marketsview.heatmap_refresh(svc, "top:10", None, "1m", None)
    assert state["heat_ok"] is False and "n = 29 returns" in note
    svc.advance(61)  # one more 1 m bar closes: n reaches the minimum
    fig, _, state2 = marketsview.heatmap_refresh(svc, "top:10", None, "1m",
                                                 json.loads(json.dumps(state)))
    assert state2["heat_ok"] is True and not isinstance(fig, Patch)
    assert fig["data"][0].get("showscale") is not False


def test_spread_threshold_from_the_url():
    from dashapp.pages.markets.marketsview import max_spread_arg

    assert max_spread_arg("2.5") == 2.5 and max_spread_arg(" 0 ") == 0.0
    assert max_spread_arg(None) is None and max_spread_arg("") is None
    assert max_spread_arg("abc") is None and max_spread_arg("-1") is None
    assert max_spread_arg("inf") is None
