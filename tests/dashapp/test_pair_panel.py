"""Pair panel widgets: ADF reading in words, KPI cards, refresh outputs order."""

from __future__ import annotations

import json

import plotly
from dash import no_update

from analytics.signals import signal_summary
from dashapp.components import pair_panel
from dashapp.pages.pair import pairlive
from dashapp.selection import Selection

REPORT = {
    "a": "BTCUSDT",
    "b": "ETHUSDT",
    "timeframe": "1s",
    "window": 60,
    "regression": "ols",
    "prices": "raw",
    "stat": -3.4,
    "pvalue": 0.012,
    "usedlag": 2,
    "nobs": 900,
    "critical_values": {"1%": -3.44, "5%": -2.87, "10%": -2.57},
    "coint_stat": -3.1,
    "coint_pvalue": 0.09,
    "halflife": 12.5,
    "key": Selection("BTCUSDT", "ETHUSDT").key,
}


def text(component) -> str:
    return json.dumps(component, cls=plotly.utils.PlotlyJSONEncoder, ensure_ascii=False)


def test_adf_reading_in_words():
    t = text(pair_panel.adf_card(REPORT))
    assert "p-value 0.0120" in t and "stationary at the 5% level" in t
    assert "not cointegrated at 5%" in t and "12.5 bars" in t
    for p, words in (
        (0.001, "strong evidence"),
        (0.07, "weak evidence"),
        (0.4, "cannot reject a unit root"),
    ):
        assert words in text(pair_panel.adf_card({**REPORT, "pvalue": p}))
    assert "ADF not possible" in text(pair_panel.adf_card(None, "ADF not possible yet: x"))
    assert "not run yet" in text(pair_panel.adf_card(None))


def test_kpi_row_shows_last_adf_of_this_selection_only():
    k = {"beta": 15.2, "alpha": 20_000.0, "r2": 0.44, "half_life": 3.4, "corr": 0.5}
    sel = Selection("BTCUSDT", "ETHUSDT")
    assert "p=0.012" in text(pair_panel.kpi_row(k, sel, REPORT))
    other = Selection("BTCUSDT", "ETHUSDT", window=90)
    assert "p=0.012" not in text(pair_panel.kpi_row(k, other, REPORT))
    assert "∞" in text(pair_panel.kpi_row({**k, "half_life": float("inf")}, sel, None))


def test_kpi_row_has_a_card_per_declared_kpi_figure_in_slot_order():
    """The strip iterates the registry: every figure with a KPI slot has its card (its
    label, its value in its format) and today's cards keep their order."""
    from analytics.registry import KPI_FIGURES

    k = {f.name: 0.25 for f in KPI_FIGURES} | {"r2": 0.44, "half_life": 3.4}
    row = pair_panel.kpi_row(k, Selection("BTCUSDT", "ETHUSDT"), None)
    labels = [c.children.children.children[0].children for c in row.children]
    assert len(labels) == len(KPI_FIGURES) + 3
    for fig in KPI_FIGURES:
        assert fig.display.label in labels
        assert format(0.25, fig.display.fmt) in text(row)
    fixed = ["β hedge", "α", "R² (window)", "half-life", "corr ρ", "last ADF"]
    assert [lab for lab in labels if lab in fixed] == fixed


def test_signal_card_and_refresh_outputs_order():
    card = text(
        pair_panel.signal_card(
            signal_summary(2.5, window=60, coint_pvalue=0.01, corr=0.9, half_life_bars=10.0)
        )
    )
    assert "SHORT SPREAD" in card and "premise holds" in card
    up = pairlive.PanelUpdate(live_z="+1.20", live_tone=None, extend={"z": ("e", [1], 1)})
    out = pair_panel.refresh_outputs(
        up, Selection("BTCUSDT", "ETHUSDT").to_store(), None, ["price", "z"]
    )
    graphs = list(pairlive.GRAPHS)
    assert set(out["figure"]) == set(graphs) and set(out["extend"]) == {"from", "z"}
    assert all(v is no_update for v in out["figure"].values())
    assert out["extend"]["z"] == ("e", [1], 1)
    assert out["live_z"] == "+1.20" and out["kpi"] is no_update
    assert out["collecting"] == [no_update, no_update] and out["adf_disabled"] is no_update
    assert out["status"] is no_update
