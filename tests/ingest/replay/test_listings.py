"""The replay exchange's exchangeInfo and 24 h ticker (ingest/replay/listings.py via
rest.py): Binance's shapes, weights and errors, figures equal to an independent pandas
computation over the tape's trades, late listings appearing with the clock."""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from decimal import Decimal

import orjson
import pandas as pd
import pytest
import websocket

from ingest.replay import ReplayServer
from ingest.replay.tapes import default_sample_files, load_tape
from ingest.replay.wide import wide_tape


def get(base: str, path: str) -> tuple[int, dict, object]:
    try:
        with urllib.request.urlopen(base + path, timeout=10) as r:
            return r.status, dict(r.headers), orjson.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), orjson.loads(e.read())


def _trades(tape, market: str) -> pd.DataFrame:
    rows = [(ev.symbol, Decimal(ev.data["p"]), Decimal(ev.data["q"]), ev.trade_id,
             ev.time_ms) for ev in tape.events
            if ev.market == market and ev.kind != "bookTicker"]
    df = pd.DataFrame(rows, columns=["symbol", "p", "q", "id", "t"])
    df["pq"] = df["p"] * df["q"]
    return df


@pytest.fixture(scope="module")
def both_srv():
    tape = load_tape(default_sample_files())  # spot + perp, BTCUSDT + ETHUSDT
    with ReplayServer(tape, speed=0, rate_limit=None) as srv:
        yield srv


def test_futures_exchange_info_shape_and_filters(both_srv):
    status, headers, info = get(both_srv.rest_base, "/fapi/v1/exchangeInfo")
    assert status == 200
    assert info["timezone"] == "UTC" and isinstance(info["serverTime"], int)
    assert info["rateLimits"][0] == {"rateLimitType": "REQUEST_WEIGHT",
                                     "interval": "MINUTE", "intervalNum": 1, "limit": 2400}
    by = {s["symbol"]: s for s in info["symbols"]}
    assert sorted(by) == ["BTCUSDT", "ETHUSDT"]
    btc = by["BTCUSDT"]
    assert (btc["pair"], btc["contractType"], btc["status"]) == (
        "BTCUSDT", "PERPETUAL", "TRADING")
    assert (btc["baseAsset"], btc["quoteAsset"]) == ("BTC", "USDT")
    filters = {f["filterType"]: f for f in btc["filters"]}
    # the recording's finest decimals: BTCUSDT perp prices step 0.1, quantities 0.001
    assert filters["PRICE_FILTER"]["tickSize"] == "0.1"
    assert filters["LOT_SIZE"]["stepSize"] == "0.001"
    assert (btc["pricePrecision"], btc["quantityPrecision"]) == (1, 3)
    assert btc["onboardDate"] < both_srv.tape.first_time_ms


def test_spot_exchange_info_is_the_spot_market_only(both_srv):
    status, headers, info = get(both_srv.rest_base, "/api/v3/exchangeInfo")
    assert status == 200
    eth = {s["symbol"]: s for s in info["symbols"]}["ETHUSDT"]
    assert "contractType" not in eth and eth["permissionSets"] == [["SPOT"]]
    assert {f["filterType"]: f["tickSize"] for f in eth["filters"]
            if "tickSize" in f} == {"PRICE_FILTER": "0.01000000"}


@pytest.mark.parametrize("market,path", [("perp", "/fapi/v1/ticker/24hr"),
                                         ("spot", "/api/v3/ticker/24hr")])
def test_ticker_figures_equal_pandas_over_the_tape(both_srv, market, path):
    df = _trades(both_srv.tape, market)
    status, _, rows = get(both_srv.rest_base, path)
    assert status == 200
    assert [r["symbol"] for r in rows] == ["BTCUSDT", "ETHUSDT"]
    for row in rows:
        g = df[df["symbol"] == row["symbol"]]
        places = 8 if market == "spot" else 2
        assert Decimal(row["quoteVolume"]) == round(sum(g["pq"]), places)
        assert Decimal(row["volume"]) == sum(g["q"])
        assert row["count"] == len(g)
        assert (row["firstId"], row["lastId"]) == (g["id"].min(), g["id"].max())
        assert (row["openTime"], row["closeTime"]) == (g["t"].iloc[0], g["t"].iloc[-1])
        assert Decimal(row["highPrice"]) == g["p"].max()
        assert Decimal(row["lowPrice"]) == g["p"].min()
        assert Decimal(row["lastPrice"]) == g["p"].iloc[-1]
        change = g["p"].iloc[-1] - g["p"].iloc[0]
        assert Decimal(row["priceChange"]) == change
        assert float(row["priceChangePercent"]) == pytest.approx(
            float(change / g["p"].iloc[0] * 100), abs=0.0005)
    assert get(both_srv.rest_base, path + "?symbol=ETHUSDT")[2] == rows[1]


@pytest.mark.parametrize("query,code", [("?symbol=NOPEUSDT", -1121),
                                        ("?symbol=btcusdt", -1100)])
def test_bad_symbol_gets_binance_errors(both_srv, query, code):
    for path in ("/fapi/v1/ticker/24hr", "/api/v3/exchangeInfo"):
        status, _, body = get(both_srv.rest_base, path + query)
        assert status == 400 and body["code"] == code


def test_futures_only_tape_lists_nothing_on_spot_paths():
    tape = load_tape(default_sample_files("perp"))
    with ReplayServer(tape, speed=0, rate_limit=None, profile="futures") as srv:
        assert get(srv.rest_base, "/api/v3/exchangeInfo")[2]["symbols"] == []
        assert get(srv.rest_base, "/api/v3/ticker/24hr")[2] == []
        assert len(get(srv.rest_base, "/fapi/v1/ticker/24hr")[2]) == 2


def test_listing_weights_are_binances():
    """exchangeInfo 1 futures / 20 spot; ticker/24hr all 40 / 80, one symbol 1 / 2
    (X-MBX-USED-WEIGHT-1M is the window's running total)."""
    tape = load_tape(default_sample_files())
    paths = ["exchangeInfo", "ticker/24hr?symbol=BTCUSDT", "ticker/24hr"]
    with ReplayServer(tape, speed=0, rate_limit=None) as srv:
        used = [get(srv.rest_base, f"/fapi/v1/{p}")[1]["X-MBX-USED-WEIGHT-1M"]
                for p in paths]
        assert used == ["1", "2", "42"]
        used = [get(srv.rest_base, f"/api/v3/{p}")[1]["X-MBX-USED-WEIGHT-1M"]
                for p in paths]
        assert used == ["20", "22", "102"]


def test_listing_requests_over_the_limit_get_429():
    tape = load_tape(default_sample_files("perp"))
    with ReplayServer(tape, speed=0, rate_limit=None, profile="futures",
                      rest_weight_limit=100) as srv:
        codes = [get(srv.rest_base, "/fapi/v1/ticker/24hr")[0] for _ in range(3)]
        assert codes == [200, 200, 429]  # 40 + 40, then 120 > 100


def test_a_late_listing_appears_once_the_clock_reaches_it():
    tape = wide_tape(8, late_listings=1)
    late = [s for (_, s), h in tape.listings.items() if h.get("listed_ms")][0]
    listed_ms = tape.listings[("perp", late)]["listed_ms"]
    with ReplayServer(tape, speed=0, rate_limit=None, profile="futures") as srv:
        symbols = {s["symbol"] for s in get(srv.rest_base, "/fapi/v1/exchangeInfo")[2]["symbols"]}
        assert late not in symbols and len(symbols) == 7
        assert get(srv.rest_base, f"/fapi/v1/ticker/24hr?symbol={late}")[2]["code"] == -1121
        # a client reading the head's trades moves the shared clock past the listing
        ws = websocket.create_connection(srv.url("trade").split("?")[0]
                                         + "?streams=btcusdt@trade", timeout=10)
        stop = threading.Event()

        def read() -> None:
            while not stop.is_set():
                try:
                    ws.recv()
                except Exception:
                    return

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        try:
            deadline = time.monotonic() + 60
            while srv.tape_clock_ms() < listed_ms and time.monotonic() < deadline:
                time.sleep(0.05)
            assert srv.tape_clock_ms() >= listed_ms
            info = get(srv.rest_base, "/fapi/v1/exchangeInfo")[2]
            entry = {s["symbol"]: s for s in info["symbols"]}[late]
            assert entry["onboardDate"] == listed_ms
            assert get(srv.rest_base, f"/fapi/v1/ticker/24hr?symbol={late}")[0] == 200
        finally:
            stop.set()
            ws.close()
