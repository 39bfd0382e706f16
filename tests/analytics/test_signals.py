"""Signal summary rules: direction from z, premise checks, withholding."""

from __future__ import annotations

import math

import pytest

from analytics.signals import signal_summary

GOOD = dict(window=60, coint_pvalue=0.01, corr=0.8, half_life_bars=20.0)


def test_short_spread_when_z_above_entry_and_premise_holds():
    s = signal_summary(2.5, **GOOD)
    assert s.side == "short_spread" and s.z_side == "short_spread"
    assert s.premise == "holds" and s.confirmed
    assert s.label == "SHORT SPREAD"
    assert "above the +2.00 entry" in s.reasons[0]
    assert "sell A" in s.reasons[0]


def test_long_spread_when_z_below_minus_entry():
    s = signal_summary(-3.0, **GOOD)
    assert s.side == "long_spread"
    assert "buy A" in s.reasons[0]


def test_flat_inside_band_and_at_the_threshold():
    assert signal_summary(1.0, **GOOD).side == "flat"
    assert signal_summary(2.0, **GOOD).side == "flat"  # strict: z > entry
    assert signal_summary(-2.0, **GOOD).side == "flat"
    assert signal_summary(2.01, **GOOD).side == "short_spread"


def test_custom_entry():
    assert signal_summary(1.6, entry=1.5, **GOOD).side == "short_spread"


@pytest.mark.parametrize(
    "override, phrase",
    [
        ({"coint_pvalue": 0.4}, "no evidence of cointegration"),
        ({"corr": 0.1}, "legs move independently"),
        ({"half_life_bars": 500.0}, "reversion too slow"),
        ({"half_life_bars": math.inf}, "no mean reversion"),
    ],
)
def test_failed_premise_withholds_the_direction(override, phrase):
    s = signal_summary(3.0, **{**GOOD, **override})
    assert s.z_side == "short_spread"
    assert s.side == "flat" and s.premise == "fails" and not s.confirmed
    assert any(phrase in r for r in s.reasons)
    assert "withheld" in s.reasons[-1]


def test_unknown_premise_keeps_direction_unconfirmed():
    s = signal_summary(-2.5, window=60)
    assert s.side == "long_spread" and s.premise == "unknown"
    assert s.label == "LONG SPREAD (unconfirmed)"
    assert any("not tested yet" in r for r in s.reasons)


def test_engle_granger_preferred_over_adf():
    s = signal_summary(
        0.0, window=60, coint_pvalue=0.5, adf_pvalue=0.001, corr=0.9, half_life_bars=5.0
    )
    assert s.premise == "fails"
    assert any(r.startswith("Engle-Granger p = 0.500") for r in s.reasons)
    s2 = signal_summary(0.0, window=60, adf_pvalue=0.001, corr=0.9, half_life_bars=5.0)
    assert s2.premise == "holds" and any(r.startswith("ADF p = 0.001") for r in s2.reasons)


def test_missing_z_is_flat():
    for z in (None, math.nan):
        s = signal_summary(z, **GOOD)
        assert s.side == "flat" and "not defined" in s.reasons[0]


def test_half_life_at_window_passes():
    assert signal_summary(0.0, **{**GOOD, "half_life_bars": 60.0}).premise == "holds"


@pytest.mark.parametrize(
    "kw",
    [{"entry": 0}, {"window": 1}, {"alpha": 1.5}],
)
def test_bad_parameters(kw):
    with pytest.raises(ValueError):
        signal_summary(1.0, **{**GOOD, **kw})


def test_result_is_frozen():
    s = signal_summary(1.0, **GOOD)
    with pytest.raises(AttributeError):
        s.side = "long_spread"  # type: ignore[misc]


def _printed_comparison(reason: str) -> bool:
    """Does the comparison printed in ``reason`` hold for the printed numbers?"""
    import re

    m = re.search(r"([-\d.,]+) (bars )?(<|≥|>|≤) (window )?([-\d.,]+)", reason)
    assert m, reason
    x, op, y = float(m[1].replace(",", "")), m[3], float(m[5].replace(",", ""))
    return {"<": x < y, "≥": x >= y, ">": x > y, "≤": x <= y}[op]


@pytest.mark.parametrize(
    "kw",
    [
        dict(corr=0.497),
        dict(corr=0.4999),
        dict(corr=0.5),
        dict(corr=0.504),
        dict(coint_pvalue=0.0499),
        dict(coint_pvalue=0.0501),
        dict(coint_pvalue=0.05),
        dict(half_life_bars=60.04),
        dict(half_life_bars=59.96),
    ],
)
def test_printed_numbers_agree_with_the_comparison(kw):
    """rho = 0.497 must not read "return correlation 0.50 < 0.50"."""
    s = signal_summary(1.0, **{**GOOD, **kw})
    compared = [r for r in s.reasons if any(op in r for op in (" < ", " ≥ ", " > ", " ≤ "))]
    assert len(compared) == 3
    for reason in compared:
        assert _printed_comparison(reason), reason
