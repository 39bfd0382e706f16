"""Two markets in one replay: tapes that know their market, one clock, one server.

The bundled spot and USDⓈ-M futures tapes of 2024-08-08 hold the same symbols
(BTCUSDT, ETHUSDT) with numerically different trade ids; a spot connection must see
only spot events and a futures one (``/market/...``) only futures events, both in the
recorded order, and REST must answer each market on its own endpoints and meter.
"""

from __future__ import annotations

import gzip
import shutil
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

import numpy as np
import orjson
import pytest
import websocket

from ingest.feeds.binance import parse_frame
from ingest.feeds.binance_perp import BINANCE_PERP
from ingest.feeds.binance_spot import BINANCE_SPOT
from ingest.models import Trade
from ingest.replay import FaultPlan, ReplayServer
from ingest.replay.tapes import Tape, default_sample_files, file_market, load_tape

TIMEOUT = 30


def recorded_lines(path: Path) -> list[tuple[int, bytes]]:
    """(receive ns, frame bytes) of every line of a capture, as written."""
    with gzip.open(path, "rb") as fh:
        out = []
        for line in fh:
            stamp, frame = line.rstrip(b"\n").split(b" ", 1)
            out.append((int(stamp), frame))
        return out


def get(base: str, path: str) -> tuple[int, object]:
    try:
        with urllib.request.urlopen(base + path, timeout=10) as r:
            return r.status, orjson.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, orjson.loads(e.read())


@pytest.fixture(scope="module")
def both_tape() -> Tape:
    """The default replay: spot + futures BTCUSDT/ETHUSDT over the common window."""
    return load_tape(default_sample_files())


# ------------------------------------------------------------------ tapes


def test_default_tape_holds_both_markets_with_every_recorded_trade(
    both_tape: Tape,
) -> None:
    assert both_tape.markets == ("perp", "spot")
    assert both_tape.symbols == (
        "perp:BTCUSDT", "perp:ETHUSDT", "spot:BTCUSDT", "spot:ETHUSDT"
    )
    # independent count: the lines of each file, keyed by the market its name shows
    expected: Counter[str] = Counter()
    first: dict[str, int] = {}
    for path in default_sample_files():
        market = {"spot": "spot", "um": "perp"}[path.name.split("-")[1]]
        symbol = path.name.split("_")[1]
        lines = recorded_lines(path)
        expected[f"{market}:{symbol}"] += len(lines)
        first[f"{market}:{symbol}"] = orjson.loads(lines[0][1])["data"]["t"]
    assert both_tape.counts == dict(expected)
    assert both_tape.first_id == first
    assert both_tape.missing_ids == dict.fromkeys(expected, 0)
    # the spot tapes are cut to the futures window: both end before 00:00:00.030
    assert both_tape.last_time_ms <= 1723161600029
    # ids of the same symbol on two markets are different sequences, never mixed
    spot_ids = {e.trade_id for e in both_tape if e.market == "spot" and e.symbol == "BTCUSDT"}
    perp_ids = {e.trade_id for e in both_tape if e.market == "perp" and e.symbol == "BTCUSDT"}
    assert len(spot_ids) == expected["spot:BTCUSDT"]
    assert len(perp_ids) == expected["perp:BTCUSDT"]


def test_default_tape_interleaves_markets_on_exchange_time(both_tape: Tape) -> None:
    keys = [e.time_ms for e in both_tape]
    assert keys == sorted(keys)  # trade tapes: one clock, Binance's T
    assert {e.market for e in both_tape.events[:200]} == {"spot", "perp"}


def test_one_market_default_files_keep_bare_names() -> None:
    spot = load_tape(default_sample_files("spot"))
    perp = load_tape(default_sample_files("perp"))
    assert spot.markets == ("spot",) and spot.symbols == ("BTCUSDT", "ETHUSDT")
    assert perp.markets == ("perp",) and perp.symbols == ("BTCUSDT", "ETHUSDT")
    assert perp.first_id["BTCUSDT"] == 5266583935


def test_market_from_file_name() -> None:
    assert file_market("binance-spot-ws-trade_BTCUSDT_2024.jsonl.gz") == "spot"
    assert file_market("binance-um-ws-trade_BTCUSDT_2024.jsonl.gz") == "perp"
    assert file_market("hftbacktest-rawcapture_spot_ETHUSDT_20240809_first3000.gz") == "spot"
    assert file_market("hftbacktest-rawcapture-trade-book_um_BTCUSDT_2024.gz") == "perp"
    assert file_market("BTCUSDT-trades-2024-01-01.csv") is None
    assert file_market("capture.gz") is None


def _copy_lines(src: Path, dst: Path, keep, limit: int = 200) -> Path:
    kept = []
    with gzip.open(src, "rb") as fh:
        for line in fh:
            if keep(line):
                kept.append(line)
            if len(kept) == limit:
                break
    with gzip.open(dst, "wb") as fh:
        fh.writelines(kept)
    return dst


def test_market_from_frames_when_the_name_does_not_show_it(
    tmp_path: Path, sample_dir: Path
) -> None:
    um = default_sample_files("perp")[0]
    spot = default_sample_files("spot")[0]
    # futures trades carry "X": perp whatever the default says
    perp_file = _copy_lines(um, tmp_path / "a.gz", lambda ln: True)
    assert load_tape(perp_file, default_market="spot").markets == ("perp",)
    # spot trades carry "M": spot even when the default is futures
    spot_file = _copy_lines(spot, tmp_path / "b.gz", lambda ln: True)
    assert load_tape(spot_file, default_market="futures").markets == ("spot",)
    # frames that show neither (futures trades without "X") take the default
    bare = tmp_path / "c.gz"
    with gzip.open(perp_file, "rb") as fh, gzip.open(bare, "wb") as out:
        for line in fh:
            stamp, frame = line.split(b" ", 1)
            obj = orjson.loads(frame)
            del obj["data"]["X"]
            out.write(stamp + b" " + orjson.dumps(obj) + b"\n")
    assert load_tape(bare).markets == ("spot",)
    assert load_tape(bare, default_market="futures").markets == ("perp",)
    assert load_tape(bare, default_market="perp").markets == ("perp",)
    # a futures bookTicker carries T; a spot one has no time at all
    book = sample_dir / "hftbacktest-rawcapture-trade-book_um_BTCUSDT_20240808_2354-2356.gz"
    um_book = _copy_lines(book, tmp_path / "d.gz", lambda ln: b"@bookTicker" in ln)
    assert load_tape(um_book, default_market="spot").markets == ("perp",)
    book = sample_dir / "hftbacktest-rawcapture-trade-book_spot_BTCUSDT_20240808_2354-2356.gz"
    spot_book = _copy_lines(book, tmp_path / "e.gz", lambda ln: b"@bookTicker" in ln)
    assert load_tape(spot_book, default_market="perp").markets == ("spot",)
    # the file name wins over the default for frames that do not show theirs
    named = tmp_path / "binance-um-ws-trade_BTCUSDT_x.jsonl.gz"
    shutil.copy(bare, named)
    assert load_tape(named).markets == ("perp",)
    with pytest.raises(ValueError, match="invalid market"):
        load_tape(bare, default_market="margin")


def test_our_futures_csv_and_usdm_dumps_are_perp(tmp_path: Path) -> None:
    um = load_tape(default_sample_files("perp")[0])
    rows = ["id,price,qty,quote_qty,time,is_buyer_maker"]
    for ev in um.events[:50]:
        d = ev.data
        rows.append(f"{d['t']},{d['p']},{d['q']},0,{d['T']},{str(d['m']).lower()}")
    dump = tmp_path / "BTCUSDT-trades-2024-08-08.csv"
    dump.write_text("\n".join(rows) + "\n")
    tape = load_tape(dump)
    assert tape.markets == ("perp",) and len(tape) == 50


# ------------------------------------------------------------------ one server


def _read_all(ws: websocket.WebSocket, n: int) -> list[str]:
    return [ws.recv() for _ in range(n)]


@pytest.mark.slow
def test_spot_and_perp_clients_each_get_only_their_market_in_recorded_order(
    both_tape: Tape,
) -> None:
    tape = Tape(both_tape.events[:6000], source_files=both_tape.source_files)
    want = {m: [(e.symbol, e.trade_id) for e in tape if e.market == m]
            for m in ("spot", "perp")}
    assert len(want["spot"]) > 1000 and len(want["perp"]) > 1000
    # 1 s of silence before the first event: the second client subscribes in time
    with ReplayServer(tape, speed=0, rate_limit=None,
                      faults=FaultPlan(silence=(0, 1.0))) as srv:
        symbols = ["BTCUSDT", "ETHUSDT"]
        # as the runtime does: the replay is a bare host, the market adds its path
        spot_url = BINANCE_SPOT.stream_url(
            symbols, "trade", srv.ws_base + BINANCE_SPOT.ws_path_prefix
        )
        perp_url = BINANCE_PERP.stream_url(
            symbols, "trade", srv.ws_base + BINANCE_PERP.ws_path_prefix
        )
        assert "/market/stream?" in perp_url and "/market" not in spot_url
        spot = websocket.create_connection(spot_url, timeout=TIMEOUT)
        perp = websocket.create_connection(perp_url, timeout=TIMEOUT)
        got_perp = _read_all(perp, len(want["perp"]))
        got_spot = _read_all(spot, len(want["spot"]))
        spot.settimeout(0.5)
        with pytest.raises(websocket.WebSocketTimeoutException):
            spot.recv()  # nothing more: no perp event leaked to the spot connection
        spot.close()
        perp.close()
        status = srv.status()
    for market, frames in (("spot", got_spot), ("perp", got_perp)):
        trades = [parse_frame(f) for f in frames]
        assert all(isinstance(t, Trade) for t in trades)
        assert [(t.symbol, t.trade_id) for t in trades] == want[market]
    # byte for byte the recorded frames of that market's files
    recorded = {
        f for p in default_sample_files() for _, f in recorded_lines(p)
    }
    assert all(f.encode() in recorded for f in got_spot + got_perp)
    assert "X" in orjson.loads(got_perp[0])["data"]
    assert "M" in orjson.loads(got_spot[0])["data"]
    markets = status["markets"]
    assert markets["spot"]["played"] == len(want["spot"])
    assert markets["perp"]["played"] == len(want["perp"])
    assert markets["perp"]["ws_prefix"] == "/market" and markets["spot"]["ws_prefix"] == ""
    assert markets["spot"]["names"] == ["spot:BTCUSDT", "spot:ETHUSDT"]


def test_server_urls_per_market(both_tape: Tape) -> None:
    with ReplayServer(both_tape, speed=0, rest=False) as srv:
        assert srv.markets == ("perp", "spot")
        assert srv.url("trade", market="perp").startswith(f"{srv.ws_base}/market/stream?")
        assert srv.url("trade", market="spot").startswith(f"{srv.ws_base}/stream?")
        with pytest.raises(ValueError, match="market="):
            srv.url("trade")
        assert "perp:btcusdt@aggTrade" in srv.streams
        assert "spot:ethusdt@trade" in srv.streams


@pytest.mark.slow
def test_rest_serves_each_market_on_its_own_endpoints(both_tape: Tape) -> None:
    tape = Tape(both_tape.events[:4000], source_files=both_tape.source_files)
    spot_btc = [e for e in tape if e.market == "spot" and e.symbol == "BTCUSDT"]
    perp_btc = [e for e in tape if e.market == "perp" and e.symbol == "BTCUSDT"]
    with ReplayServer(tape, speed=0, rate_limit=None,
                      faults=FaultPlan(silence=(0, 0.5))) as srv:
        # play the whole tape to a client of each market
        for proto in (BINANCE_SPOT, BINANCE_PERP):
            ws = websocket.create_connection(
                proto.stream_url(["BTCUSDT", "ETHUSDT"], "trade",
                                 srv.ws_base + proto.ws_path_prefix),
                timeout=TIMEOUT,
            )
            if proto is BINANCE_SPOT:
                spot_ws = ws
            else:
                perp_ws = ws
        n_perp = sum(e.market == "perp" for e in tape)
        _read_all(perp_ws, n_perp)
        _read_all(spot_ws, len(tape) - n_perp)
        spot_ws.close()
        perp_ws.close()
        base = srv.rest_base
        assert base is not None
        status, rows = get(base, f"/api/v3/historicalTrades?symbol=BTCUSDT"
                                 f"&fromId={spot_btc[0].trade_id}&limit=20")
        assert status == 200
        assert [r["id"] for r in rows] == [e.trade_id for e in spot_btc[:20]]
        assert [r["price"] for r in rows] == [e.data["p"] for e in spot_btc[:20]]
        status, rows = get(base, f"/fapi/v1/historicalTrades?symbol=BTCUSDT"
                                 f"&fromId={perp_btc[0].trade_id}&limit=20")
        assert status == 200
        assert [r["id"] for r in rows] == [e.trade_id for e in perp_btc[:20]]
        assert [r["qty"] for r in rows] == [e.data["q"] for e in perp_btc[:20]]
        assert all(r["isBestMatch"] for r in rows)
        # perp ids are not spot ids: the spot endpoint has nothing from there on
        status, rows = get(base, f"/api/v3/historicalTrades?symbol=BTCUSDT"
                                 f"&fromId={perp_btc[0].trade_id}")
        assert status == 200 and rows == []
        # latest trades per market end at that market's last played trade
        _, rows = get(base, "/fapi/v1/trades?symbol=BTCUSDT&limit=5")
        assert [r["id"] for r in rows] == [e.trade_id for e in perp_btc[-5:]]
        _, rows = get(base, "/api/v3/trades?symbol=BTCUSDT&limit=5")
        assert [r["id"] for r in rows] == [e.trade_id for e in spot_btc[-5:]]
        # aggregates are derived per market: f..l inside that market's trade ids
        _, aggs = get(base, "/fapi/v1/aggTrades?symbol=BTCUSDT&limit=1000")
        perp_ids = {e.trade_id for e in perp_btc}
        assert aggs and all(a["f"] in perp_ids and a["l"] in perp_ids for a in aggs)
        q = sum(np.float64(a["q"]) for a in aggs)
        covered = [e for e in perp_btc if aggs[0]["f"] <= e.trade_id <= aggs[-1]["l"]]
        assert q == pytest.approx(sum(np.float64(e.data["q"]) for e in covered))
        markets = srv.status()["markets"]
    assert markets["spot"]["rest"]["weight_limit"] == 6000
    assert markets["perp"]["rest"]["weight_limit"] == 2400
    assert markets["perp"]["rest"]["paths"] == [
        "/fapi/v1/aggTrades", "/fapi/v1/historicalTrades", "/fapi/v1/trades"
    ]


def test_rest_meters_each_market_with_its_own_limit(both_tape: Tape) -> None:
    with ReplayServer(both_tape, speed=0, rate_limit=None) as srv:
        base = srv.rest_base
        assert base is not None
        # futures historicalTrades weighs 200 against 2,400 a minute: the 13th is 429
        codes = [get(base, "/fapi/v1/historicalTrades?symbol=BTCUSDT")[0]
                 for _ in range(13)]
        assert codes[:12] == [200] * 12 and codes[12] == 429
        # the spot host's meter is its own
        assert get(base, "/api/v3/historicalTrades?symbol=BTCUSDT")[0] == 200
        # a symbol the market does not hold
        status, body = get(base, "/api/v3/historicalTrades?symbol=SOLUSDT")
        assert status == 400 and body["code"] == -1121


def test_one_market_tape_answers_on_every_path(small_tape: Tape) -> None:
    # the old contract: profile= and paths do not matter for a one-market tape
    with ReplayServer(small_tape, speed=0, rate_limit=None, profile="futures") as srv:
        ws = websocket.create_connection(
            BINANCE_PERP.stream_url(["BTCUSDT", "ETHUSDT"], "trade",
                                    srv.ws_base + BINANCE_PERP.ws_path_prefix),
            timeout=TIMEOUT,
        )
        first = [parse_frame(ws.recv()) for _ in range(10)]
        ws.close()
        assert [(t.symbol, t.trade_id) for t in first] == [
            (e.symbol, e.trade_id) for e in small_tape.events[:10]
        ]
        assert srv.status()["markets"]["spot"]["ws_prefix"] == ""
        assert get(srv.rest_base or "", "/api/v3/trades?symbol=BTCUSDT&limit=1")[0] == 200


@pytest.mark.slow
def test_cli_without_files_serves_both_markets() -> None:
    import os
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[3]
    proc = subprocess.Popen(
        [sys.executable, "-m", "ingest.replay", "--port", "0", "--speed", "0"],
        cwd=repo, env=dict(os.environ, PYTHONPATH=str(repo)),
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        assert "markets=perp,spot" in line, line
        urls = [w for w in line.replace(";", " ").split() if w.startswith("ws://")]
        perp_url = next(u for u in urls if "/market/stream?" in u)
        spot_url = next(u for u in urls if "/stream?" in u and "/market/" not in u)
        perp = websocket.create_connection(perp_url, timeout=TIMEOUT)
        spot = websocket.create_connection(spot_url, timeout=TIMEOUT)
        perp_data = [orjson.loads(perp.recv())["data"] for _ in range(20)]
        spot_data = [orjson.loads(spot.recv())["data"] for _ in range(20)]
        perp.close()
        spot.close()
        assert all("X" in d and "M" not in d for d in perp_data)
        assert all("M" in d and "X" not in d for d in spot_data)
    finally:
        proc.terminate()
        proc.wait(10)


def test_wait_markets_holds_the_player_until_each_market_has_a_client(
    both_tape: Tape,
) -> None:
    tape = Tape(both_tape.events[:3000], source_files=both_tape.source_files)
    n_spot = sum(e.market == "spot" for e in tape)
    with ReplayServer(tape, speed=0, rate_limit=None, rest=False,
                      wait_markets=("spot", "futures", "margin")) as srv:
        assert srv.wait_markets == {"spot", "perp"}
        spot = websocket.create_connection(srv.url("trade", market="spot"), timeout=TIMEOUT)
        time.sleep(0.5)
        assert srv.status()["played"] == 0  # the perp feed is not there yet
        perp = websocket.create_connection(srv.url("trade", market="perp"), timeout=TIMEOUT)
        got_spot = [parse_frame(spot.recv()) for _ in range(n_spot)]
        got_perp = [parse_frame(perp.recv()) for _ in range(len(tape) - n_spot)]
        spot.close()
        perp.close()
    assert [t.trade_id for t in got_spot] == [e.trade_id for e in tape if e.market == "spot"]
    assert [t.trade_id for t in got_perp] == [e.trade_id for e in tape if e.market == "perp"]


def test_each_market_keeps_its_own_message_rate_limit(both_tape: Tape) -> None:
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    with ReplayServer(both_tape, speed=0, rest=False) as srv:
        assert srv.rate_limits == {"spot": 5.0, "perp": 10.0}
        ask = orjson.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 1}).decode()
        # 8 requests in well under a second: within futures' 10/s, over spot's 5/s
        with connect(f"{srv.ws_base}/market/ws", open_timeout=TIMEOUT) as perp:
            for _ in range(8):
                perp.send(ask)
                assert orjson.loads(perp.recv(timeout=TIMEOUT)) == {"result": [], "id": 1}
        with connect(f"{srv.ws_base}/ws", open_timeout=TIMEOUT) as spot:
            with pytest.raises(ConnectionClosed) as closed:
                for _ in range(8):
                    spot.send(ask)
                    spot.recv(timeout=TIMEOUT)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008


def test_loop_passes_move_each_markets_ids_by_its_own_span(both_tape: Tape) -> None:
    tape = Tape(both_tape.events[:2000], source_files=both_tape.source_files)
    spot_ev = [e for e in tape if e.market == "spot"]
    perp_ev = [e for e in tape if e.market == "perp"]
    seam = 1_000
    with ReplayServer(tape, speed=0, rate_limit=None, rest=False, loop=True,
                      loop_seam_ids=seam, wait_markets=("spot", "perp")) as srv:
        spot = websocket.create_connection(srv.url("trade", market="spot"), timeout=TIMEOUT)
        perp = websocket.create_connection(srv.url("trade", market="perp"), timeout=TIMEOUT)
        got_spot = [parse_frame(spot.recv()) for _ in range(2 * len(spot_ev))]
        got_perp = [parse_frame(perp.recv()) for _ in range(2 * len(perp_ev))]
        spot.close()
        perp.close()
    for events, got in ((spot_ev, got_spot), (perp_ev, got_perp)):
        span = {s: max(e.trade_id for e in events if e.symbol == s)
                - min(e.trade_id for e in events if e.symbol == s) + 1 + seam
                for s in {e.symbol for e in events}}
        want = [(e.symbol, e.trade_id) for e in events]
        want += [(e.symbol, e.trade_id + span[e.symbol]) for e in events]
        assert [(t.symbol, t.trade_id) for t in got] == want
        shift = tape.duration_ms + 1000
        assert got[len(events)].time_ms == events[0].time_ms + shift
