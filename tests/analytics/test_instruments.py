"""Instrument syntax and a run's names (analytics/instruments.py)."""

from __future__ import annotations

import pytest

from analytics.instruments import (
    SYMBOL_RE,
    Instrument,
    InstrumentError,
    Universe,
    check_symbol,
    normalize_market,
    parse_instrument,
)

BTC_SPOT = Instrument("binance", "spot", "BTCUSDT")
BTC_PERP = Instrument("binance", "perp", "BTCUSDT")
ETH_PERP = Instrument("binance", "perp", "ETHUSDT")


@pytest.mark.parametrize(
    ("text", "default", "expected"),
    [
        ("BTCUSDT", "spot", BTC_SPOT),
        (" btcusdt ", "perp", BTC_PERP),
        ("perp:BTCUSDT", "spot", BTC_PERP),
        ("futures:btcusdt", "spot", BTC_PERP),
        ("SPOT:BTCUSDT", "perp", BTC_SPOT),
        ("binance:perp:ETHUSDT", "spot", ETH_PERP),
    ],
)
def test_parse_instrument(text, default, expected):
    assert parse_instrument(text, default) == expected


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("", "invalid symbol"),
        ("BTC-USDT", "invalid symbol"),
        ("options:BTCUSDT", "unknown market 'options'"),
        ("okx:perp:BTCUSDT", "unknown venue 'okx'"),
        ("a:b:c:d", "venue:market:SYMBOL"),
        (7, "must be text"),
    ],
)
def test_bad_instruments_say_why(text, needle):
    with pytest.raises(InstrumentError, match=needle):
        parse_instrument(text)


def test_key_label_and_contiguity():
    assert BTC_PERP.key == "perp:BTCUSDT" == str(BTC_PERP)
    assert BTC_PERP.label == "BTCUSDT · perp"
    assert Instrument("okx", "perp", "BTCUSDT").key == "okx:perp:BTCUSDT"
    assert BTC_SPOT.ids_contiguous
    assert not Instrument("okx", "perp", "BTCUSDT").ids_contiguous


def test_symbol_syntax_is_declared_once():
    assert check_symbol("ethusdt") == "ETHUSDT"
    assert SYMBOL_RE.match("1000PEPEUSDT")
    assert normalize_market("USDM") == "perp"


def test_one_market_universe_keeps_bare_names():
    u = Universe.parse(["BTCUSDT", "ETHUSDT"], "futures")
    assert u.names == ("BTCUSDT", "ETHUSDT")
    assert u.resolve("btcusdt") == BTC_PERP
    assert u.resolve("perp:ETHUSDT") == ETH_PERP
    assert u.name(ETH_PERP) == "ETHUSDT"
    with pytest.raises(InstrumentError, match="spot:BTCUSDT is not ingested here"):
        u.resolve("spot:BTCUSDT")


def test_same_symbol_on_two_markets_is_ambiguous_when_bare():
    u = Universe.parse(["spot:BTCUSDT", "perp:BTCUSDT", "perp:ETHUSDT"])
    assert u.names == ("spot:BTCUSDT", "perp:BTCUSDT", "ETHUSDT")
    assert u.markets == ("spot", "perp")
    with pytest.raises(InstrumentError, match="spot:BTCUSDT, perp:BTCUSDT"):
        u.resolve("BTCUSDT")
    assert u.resolve("perp:btcusdt") == BTC_PERP
    assert u.by_name("spot:BTCUSDT") == BTC_SPOT
    assert len(u) == 3 and BTC_SPOT in u
