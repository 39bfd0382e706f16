"""The replay server's Binance REST endpoints: same trades as its socket, Binance's
errors, rate limiting, loop passes."""

from __future__ import annotations

import urllib.error
import urllib.request

import orjson
import pytest
import websocket

from ingest.feeds.binance import parse_frame, parse_rest_trades
from ingest.replay import ReplayServer
from ingest.replay.tapes import Tape


def get(srv: ReplayServer, path: str) -> tuple[int, dict, object]:
    try:
        with urllib.request.urlopen(srv.rest_base + path, timeout=10) as r:
            return r.status, dict(r.headers), orjson.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), orjson.loads(e.read())


def ws_trades(srv: ReplayServer, kind: str, n: int) -> list:
    ws = websocket.create_connection(srv.url(kind), timeout=10)
    try:
        return [parse_frame(ws.recv()) for _ in range(n)]
    finally:
        ws.close()


@pytest.mark.parametrize(
    ("kind", "path"),
    [("trade", "/api/v3/historicalTrades"), ("aggTrade", "/api/v3/aggTrades")],
)
def test_rest_rows_equal_the_socket_events(small_tape: Tape, kind: str, path: str):
    with ReplayServer(small_tape, speed=0, rate_limit=None) as srv:
        live = [t for t in ws_trades(srv, kind, 600) if t.symbol == "BTCUSDT"]
        first = live[0].trade_id
        status, headers, _ = get(srv, f"{path}?symbol=BTCUSDT&fromId={first}&limit=50")
        assert status == 200 and int(headers["X-MBX-USED-WEIGHT-1M"]) > 0
        _, _, rows = get(srv, f"{path}?symbol=BTCUSDT&fromId={first}&limit=50")
        rest = parse_rest_trades(orjson.dumps(rows), "BTCUSDT", kind)
        assert len(rest) == 50
        by_id = {t.trade_id: t for t in live}
        for t in rest:
            w = by_id[t.trade_id]
            assert (t.time_ms, t.price, t.qty, t.buyer_is_maker) == (
                w.time_ms,
                w.price,
                w.qty,
                w.buyer_is_maker,
            )


def test_only_what_was_played_is_served(small_tape: Tape):
    with ReplayServer(small_tape, speed=0, rate_limit=None) as srv:
        first = small_tape.first_id["ETHUSDT"]
        q = f"/api/v3/historicalTrades?symbol=ETHUSDT&fromId={first}&limit=1000"
        assert get(srv, q)[2] == []  # nothing played yet
        srv.position = 1000  # the player has processed 1,000 events
        rows = get(srv, q)[2]
        played = [
            ev.trade_id for ev in small_tape.events[:1000] if ev.symbol == "ETHUSDT"
        ]
        assert [r["id"] for r in rows] == played
        latest = get(srv, "/api/v3/trades?symbol=ETHUSDT&limit=5")[2]
        assert [r["id"] for r in latest] == played[-5:]


def test_loop_passes_shift_ids_and_times(small_tape: Tape):
    with ReplayServer(small_tape, speed=0, loop=True, rate_limit=None) as srv:
        n = len(small_tape)
        srv.position = n + 500  # the second pass is under way
        sym = "BTCUSDT"
        span = small_tape.last_id[sym] - small_tape.first_id[sym] + 1
        last = small_tape.last_id[sym]
        rows = get(srv, f"/api/v3/historicalTrades?symbol={sym}&fromId={last}&limit=20")[2]
        ids = [r["id"] for r in rows]
        assert ids == list(range(last, last + len(ids))) and len(ids) > 1
        first_ev = next(ev for ev in small_tape.events if ev.symbol == sym)
        second = next(r for r in rows if r["id"] == first_ev.trade_id + span)
        assert second["time"] == first_ev.time_ms + srv.time_shift_ms


@pytest.mark.parametrize(
    ("query", "code", "word"),
    [
        ("fromId=1&limit=5", -1102, "symbol"),
        ("symbol=btc'--&fromId=1", -1100, "symbol"),
        ("symbol=BTCUSDT&fromId=abc", -1100, "fromId"),
        ("symbol=BTCUSDT&fromId=-1", -1100, "fromId"),
        ("symbol=BTCUSDT&fromId=99999999999999999999", -1100, "fromId"),
        ("symbol=BTCUSDT&limit=0", -1130, "limit"),
        ("symbol=BTCUSDT&limit=1001", -1130, "limit"),
        ("symbol=BTCUSDT&limit=1e3", -1100, "limit"),
        ("symbol=DOGEUSDT&fromId=1", -1121, "symbol"),
    ],
)
def test_bad_parameters_answer_binance_errors(small_tape, query, code, word):
    with ReplayServer(small_tape, speed=0, rate_limit=None) as srv:
        status, _, body = get(srv, f"/api/v3/historicalTrades?{query}")
        assert status == 400 and body["code"] == code
        assert word.lower() in body["msg"].lower()


def test_unknown_endpoint_404_and_rest_can_be_off(small_tape):
    with ReplayServer(small_tape, speed=0, rate_limit=None) as srv:
        assert get(srv, "/api/v3/depth?symbol=BTCUSDT")[0] == 404
        assert srv.status()["rest"]["bad_requests"] == 0
    with ReplayServer(small_tape, speed=0, rate_limit=None, rest=False) as srv:
        assert srv.rest_base is None and srv.status()["rest"] is None


def test_weight_limit_429_then_418(small_tape):
    with ReplayServer(
        small_tape, speed=0, rate_limit=None, rest_weight_limit=50, rest_window_s=30
    ) as srv:
        q = "/api/v3/historicalTrades?symbol=BTCUSDT&fromId=1&limit=1"
        assert [get(srv, q)[0] for _ in range(2)] == [200, 200]
        status, headers, body = get(srv, q)
        assert status == 429 and body["code"] == -1003
        assert 1 <= int(headers["Retry-After"]) <= 30
        statuses = [get(srv, q)[0] for _ in range(6)]
        assert statuses[-1] == 418, "kept hammering while limited: banned"
