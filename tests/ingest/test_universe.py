"""Symbol universes (ingest/universe.py): selector syntax, resolution against OUR replay
server's exchangeInfo / 24 h ticker (checked against a pandas ranking of the tape's
quote volumes), the refresher picking up a late listing, unreachable REST named."""

from __future__ import annotations

import socket
import threading
import time

import pandas as pd
import pytest
import websocket

from analytics.instruments import Instrument
from ingest.replay import ReplayServer
from ingest.replay.tapes import default_sample_files, load_tape
from ingest.replay.wide import wide_tape
from ingest.universe import (
    Selector,
    UniverseRefresher,
    UniverseSpec,
    UniverseUnavailable,
    fetch_listings,
    parse_universe_spec,
    resolve_universe,
)


def perp(sym: str) -> Instrument:
    return Instrument("binance", "perp", sym)


def spot(sym: str) -> Instrument:
    return Instrument("binance", "spot", sym)


@pytest.mark.parametrize(
    "items,market,instruments,selectors",
    [
        (["top:50"], "futures", (), (Selector("perp", "top", 50),)),
        (["all"], "spot", (), (Selector("spot", "all", None),)),
        (["perp:all", "spot:top:20"], "perp", (),
         (Selector("perp", "all", None), Selector("spot", "top", 20))),
        (["perp:top:50", "spot:BTCUSDT"], "spot", ("spot:BTCUSDT",),
         (Selector("perp", "top", 50),)),
        (["btcusdt", " ETHUSDT ", "futures:TOP:5", "top:5"], "perp", ("BTCUSDT", "ETHUSDT"),
         (Selector("perp", "top", 5),)),
        (["BTCUSDT", "BTCUSDT", ""], "perp", ("BTCUSDT",), ()),
    ],
)
def test_parse_good_items(items, market, instruments, selectors):
    spec = parse_universe_spec(items, market)
    assert spec.instruments == instruments and spec.selectors == selectors
    assert spec.dynamic == bool(selectors)


@pytest.mark.parametrize("item", ["top:0", "top:x", "top:-3", "perp:top", "top",
                                  "bogus:all", "spot:top:1:2", "BTC/USDT", "perp:"])
def test_parse_bad_items_name_the_item(item):
    with pytest.raises(ValueError) as exc:
        parse_universe_spec(["BTCUSDT", item], "perp")
    assert repr(item) in str(exc.value)


def test_parse_needs_something():
    with pytest.raises(ValueError, match="at least one"):
        parse_universe_spec([" ", ""], "perp")


def _quote_volumes(tape, market: str) -> pd.Series:
    """Independent: Σ price × qty per symbol over the tape's trades (floats)."""
    df = pd.DataFrame([(ev.symbol, float(ev.data["p"]) * float(ev.data["q"]))
                       for ev in tape.events if ev.market == market],
                      columns=["symbol", "quote"])
    return df.groupby("symbol")["quote"].sum()


@pytest.fixture(scope="module")
def wide_srv():
    tape = wide_tape(40, market="perp", seed=3)
    with ReplayServer(tape, speed=0, rate_limit=None, profile="futures") as srv:
        yield srv


def test_top_n_equals_a_pandas_ranking_of_the_tapes_quote_volume(wide_srv):
    vols = _quote_volumes(wide_srv.tape, "perp")
    ranked = vols.reset_index().sort_values(["quote", "symbol"], ascending=[False, True])
    expected = [perp(s) for s in ranked["symbol"].head(12)]
    spec = parse_universe_spec(["top:12"], "futures")
    got = resolve_universe(spec, {"perp": wide_srv.rest_base})
    assert list(got) == expected
    listings = fetch_listings(wide_srv.rest_base, "perp")
    assert [x.quote_volume for x in listings] == pytest.approx(
        [vols[x.symbol] for x in listings], abs=0.01)


def test_all_equals_the_tapes_instruments_and_explicit_come_first(wide_srv):
    spec = parse_universe_spec(["SOLUSDT", "perp:all"], "perp")
    got = resolve_universe(spec, {"futures": wide_srv.rest_base})
    assert got[0] == perp("SOLUSDT")
    assert sorted(got) == sorted(perp(s) for s in wide_srv.tape.symbols)
    assert len(got) == len(set(got)) == 40
    assert list(got[1:]) == sorted(perp(s) for s in wide_srv.tape.symbols if s != "SOLUSDT")


def test_two_markets_resolve_each_against_its_own_rest():
    tape = load_tape(default_sample_files())
    with ReplayServer(tape, speed=0, rate_limit=None) as srv:
        base = srv.rest_base
        spec = parse_universe_spec(["spot:all", "perp:top:1"], "perp")
        got = resolve_universe(spec, {"spot": base, "perp": base})
        top_perp = _quote_volumes(tape, "perp").idxmax()
        assert got == (spot("BTCUSDT"), spot("ETHUSDT"), perp(top_perp))


def test_unreachable_rest_names_the_url():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    with pytest.raises(UniverseUnavailable, match=f"{base}/fapi/v1/exchangeInfo"):
        resolve_universe(parse_universe_spec(["top:3"], "perp"), {"perp": base},
                         timeout=2)


def test_an_answer_that_is_not_binances_names_the_url(wide_srv):
    base = wide_srv.rest_base + "/nope"
    with pytest.raises(UniverseUnavailable, match=r"/nope/api/v3/exchangeInfo: HTTP 404"):
        fetch_listings(base, "spot")


def test_refresher_keeps_the_universe_when_rest_fails():
    spec = UniverseSpec((), (Selector("perp", "all", None),), "perp")
    added: list = []
    ref = UniverseRefresher(spec, {"perp": "http://127.0.0.1:9"}, added.extend,
                            known=[perp("BTCUSDT")], timeout=1)
    assert ref.refresh_once() == [] and added == []
    st = ref.status()
    assert "http://127.0.0.1:9/fapi/v1/exchangeInfo" in st["last_error"]
    assert st["instruments"] == 1 and st["last_ok_ms"] is None
    assert 1.0 <= ref._delay_s() <= 30.0  # a jittered retry, not a day


def test_refresher_picks_up_a_late_listing():
    tape = wide_tape(10, late_listings=2, seed=1)
    late = sorted(s for (_, s), h in tape.listings.items() if h.get("listed_ms"))
    last_listing = max(h["listed_ms"] for h in tape.listings.values() if h.get("listed_ms"))
    with ReplayServer(tape, speed=0, rate_limit=None, profile="futures") as srv:
        spec = parse_universe_spec(["all"], "futures")
        known = resolve_universe(spec, {"perp": srv.rest_base})
        assert len(known) == 8 and not {perp(s) for s in late} & set(known)
        got: list[list[Instrument]] = []
        ref = UniverseRefresher(spec, {"perp": srv.rest_base}, got.append,
                                interval_s=0.2, known=known)
        ref.start()
        ws = websocket.create_connection(
            srv.url("trade").split("?")[0] + "?streams=btcusdt@trade", timeout=10)
        reader = threading.Thread(target=_drain, args=(ws,), daemon=True)
        reader.start()
        try:
            deadline = time.monotonic() + 60
            while srv.tape_clock_ms() < last_listing and time.monotonic() < deadline:
                time.sleep(0.05)
            deadline = time.monotonic() + 10
            while ref.status()["added"] < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            ref.stop()
            ws.close()
        assert sorted(i.symbol for batch in got for i in batch) == late
        assert all(len(batch) >= 1 for batch in got)  # on_new only with new ones
        st = ref.status()
        assert st["added"] == 2 and st["instruments"] == 10 and st["last_error"] is None
        assert ref.refresh_once() == []  # nothing new: no call


def _drain(ws) -> None:
    while True:
        try:
            ws.recv()
        except Exception:
            return
