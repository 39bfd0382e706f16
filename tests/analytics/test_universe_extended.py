"""``Universe.extended``: instruments join a run and no name already given changes."""

from __future__ import annotations

from analytics.instruments import Instrument, Universe


def _i(market: str, symbol: str) -> Instrument:
    return Instrument("binance", market, symbol)


def test_extended_keeps_every_old_name_and_names_new_ones_unambiguously() -> None:
    run = Universe([_i("perp", "BTCUSDT"), _i("perp", "ETHUSDT")], "perp")
    more = run.extended([_i("perp", "SOLUSDT"), _i("spot", "BTCUSDT"),
                         _i("spot", "XRPUSDT"), _i("perp", "XRPUSDT"),
                         _i("perp", "ETHUSDT")])  # already in: ignored
    # old names unchanged (a fresh Universe would rename BTCUSDT to perp:BTCUSDT)
    assert more.names[:2] == run.names == ("BTCUSDT", "ETHUSDT")
    assert Universe(more.instruments, "perp").name(_i("perp", "BTCUSDT")) == "perp:BTCUSDT"
    # new: bare while its symbol is unique in the run, else the key
    assert more.names[2:] == ("SOLUSDT", "spot:BTCUSDT", "spot:XRPUSDT", "perp:XRPUSDT")
    assert len(set(more.names)) == len(more) == 6
    for inst in more:  # names resolve back, both ways
        assert more.by_name(more.name(inst)) == inst
    assert more.resolve("BTCUSDT") == _i("perp", "BTCUSDT")
    assert more.resolve("spot:BTCUSDT") == _i("spot", "BTCUSDT")
    assert more.markets == ("perp", "spot") and more.default_market == "perp"


def test_extended_with_nothing_new_is_the_same_universe() -> None:
    run = Universe([_i("spot", "BTCUSDT")], "spot")
    assert run.extended([]) is run and run.extended([_i("spot", "BTCUSDT")]) is run
