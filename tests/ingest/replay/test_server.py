"""The Binance-protocol replay server, exercised over loopback with real clients.

websocket-client (what the app's feed uses) and the ``websockets`` sync client
connect to a real ReplayServer; nothing about the socket is mocked.
"""

from __future__ import annotations

import gzip
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
import websocket
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from ingest.feeds.binance import parse_frame
from ingest.feeds.binance_perp import BINANCE_PERP
from ingest.models import BadFrame, ControlReply, ServerShutdown, Trade
from ingest.replay import (
    FaultPlan,
    ReplayServer,
    canonical_stream,
    garbage_frames,
    parse_path,
)
from ingest.replay.tapes import Tape, TapeEvent, aggregate_trades, load_tape

REPO = Path(__file__).resolve().parents[3]
SPOT_ETH = (
    "binance-spot-ws-trade_ETHUSDT_2024-08-08T235415Z_2024-08-09T000505Z.jsonl.gz"
)
UM_BTC = "binance-um-ws-trade_BTCUSDT_2024-08-08T235416Z_2024-08-08T235959Z.jsonl.gz"
UM_ETH = "binance-um-ws-trade_ETHUSDT_2024-08-08T235416Z_2024-08-09T000000Z.jsonl.gz"
TIMEOUT = 15
LOADED_TIMEOUT = 60  # a read that waits on a whole loop pass of a busy machine

Factory = Callable[..., ReplayServer]


def ids(tape_or_events: Tape | list) -> list[tuple[str, int]]:
    return [(e.symbol, e.trade_id) for e in tape_or_events]


def trades_of(frames: list) -> list[Trade]:
    out = []
    for frame in frames:
        result = parse_frame(frame)
        assert isinstance(result, Trade), frame
        out.append(result)
    return out


def recv_n(ws: websocket.WebSocket, n: int) -> list[str]:
    return [ws.recv() for _ in range(n)]


def read_until_closed(
    url: str, limit: int | None = None
) -> tuple[list[str], int | None]:
    """All frames on one connection until the server closes it (or ``limit``)."""
    frames: list[str] = []
    with connect(url, open_timeout=TIMEOUT, compression=None) as ws:
        try:
            while limit is None or len(frames) < limit:
                frames.append(ws.recv(timeout=TIMEOUT))
        except ConnectionClosed as exc:
            return frames, exc.rcvd.code if exc.rcvd else None
    return frames, None


def request(ws: websocket.WebSocket, payload: object) -> dict:
    ws.send(orjson.dumps(payload).decode() if not isinstance(payload, str) else payload)
    while True:  # data frames may be interleaved; return the first control reply
        obj = orjson.loads(ws.recv())
        if "stream" not in obj and "e" not in obj:
            return obj


# ------------------------------------------------------------------ basics


def test_combined_stream_delivers_every_trade_once_in_order(
    make_server: Factory, spot_tape: Tape
) -> None:
    srv = make_server(spot_tape, speed=0)
    url = BINANCE_PERP.stream_url(["BTCUSDT", "ETHUSDT"], "trade", srv.ws_base)
    ws = websocket.create_connection(url, timeout=TIMEOUT)
    frames = recv_n(ws, len(spot_tape))
    ws.close()
    trades = trades_of(frames)
    assert [(t.symbol, t.trade_id) for t in trades] == ids(spot_tape)
    # the frames are byte-identical to what Binance sent (recorded line text)
    recorded = set()
    for path in spot_tape.source_files:
        with gzip.open(path, "rb") as fh:
            recorded.update(line.rstrip(b"\n").split(b" ", 1)[1] for line in fh)
    assert all(f.encode() in recorded for f in frames[:2000])
    status = srv.status()
    assert status["played"] == status["total"] == len(spot_tape)
    assert status["ended"] and not status["looped"]


def test_ws_path_sends_bare_events(make_server: Factory, small_tape: Tape) -> None:
    srv = make_server(small_tape, speed=0)
    ws = websocket.create_connection(f"{srv.ws_base}/ws/btcusdt@trade", timeout=TIMEOUT)
    want = [e for e in small_tape if e.symbol == "BTCUSDT"]
    frames = recv_n(ws, len(want))
    ws.close()
    assert all(orjson.loads(f)["e"] == "trade" for f in frames)
    assert [(t.symbol, t.trade_id) for t in trades_of(frames)] == ids(want)


@pytest.mark.parametrize(
    "path",
    [
        "/market/stream?streams=btcusdt@trade/ethusdt@trade",
        "/market/ws/btcusdt@trade/ethusdt@trade",
        "/ws/stream?streams=btcusdt@trade/ethusdt@trade",
    ],
)
def test_futures_market_paths(
    make_server: Factory, sample_dir: Path, path: str
) -> None:
    tape = load_tape([sample_dir / UM_BTC, sample_dir / UM_ETH])
    tape = Tape(tape.events[:1000])
    srv = make_server(tape, speed=0, profile="futures")
    with connect(srv.ws_base + path, open_timeout=TIMEOUT) as ws:
        frames = [ws.recv(timeout=TIMEOUT) for _ in range(len(tape))]
    combined = "stream" in path and "/ws/btc" not in path
    assert all(("stream" in orjson.loads(f)) is combined for f in frames)
    assert [(t.symbol, t.trade_id) for t in trades_of(frames)] == ids(tape)
    assert "X" in orjson.loads(frames[0]).get("data", orjson.loads(frames[0]))


def test_futures_public_path_carries_no_trades(make_server: Factory, sample_dir: Path) -> None:
    """Binance routes futures book data to ``/public`` and trades to ``/market``: a trade
    stream subscribed on ``/public`` is accepted but never delivered."""
    tape = Tape(load_tape(sample_dir / UM_BTC).events[:200])
    srv = make_server(tape, speed=0, profile="futures")
    with connect(srv.ws_base + "/public/stream?streams=btcusdt@trade", open_timeout=TIMEOUT) as ws:
        with pytest.raises(TimeoutError):
            ws.recv(timeout=1.5)


def test_futures_client_url_from_stream_url(
    make_server: Factory, sample_dir: Path
) -> None:
    """What the app builds for futures (base + /market) works against the server."""
    tape = Tape(load_tape(sample_dir / UM_BTC).events[:500])
    srv = make_server(tape, speed=0, profile="futures")
    url = BINANCE_PERP.stream_url(["BTCUSDT"], "aggTrade", srv.ws_base + "/market")
    ws = websocket.create_connection(url, timeout=TIMEOUT)
    aggs = trades_of(recv_n(ws, len(aggregate_trades(tape.events))))
    ws.close()
    assert [t.trade_id for t in aggs] == list(
        range(tape.first_id["BTCUSDT"], tape.first_id["BTCUSDT"] + len(aggs))
    )


def test_aggtrade_subscription_serves_derived_aggregates(
    make_server: Factory, small_tape: Tape
) -> None:
    srv = make_server(small_tape, speed=0)
    expected = aggregate_trades(small_tape.events)
    ws = websocket.create_connection(srv.url("aggTrade"), timeout=TIMEOUT)
    frames = recv_n(ws, len(expected))
    ws.close()
    assert [orjson.loads(f)["data"] for f in frames] == [a.data for a in expected]
    streams = {orjson.loads(f)["stream"] for f in frames}
    assert streams == {"btcusdt@aggTrade", "ethusdt@aggTrade"}
    assert sum(t.qty for t in trades_of(frames)) == pytest.approx(
        sum(float(e.data["q"]) for e in small_tape)
    )


def test_trade_and_aggtrade_on_one_connection(
    make_server: Factory, small_tape: Tape
) -> None:
    srv = make_server(small_tape, speed=0)
    aggs = aggregate_trades(small_tape.events)
    n_aggs = sum(1 for a in aggs if a.symbol == "ETHUSDT")
    n_trades = sum(1 for e in small_tape if e.symbol == "ETHUSDT")
    ws = websocket.create_connection(
        f"{srv.ws_base}/stream?streams=ethusdt@trade/ethusdt@aggTrade", timeout=TIMEOUT
    )
    frames = [orjson.loads(f) for f in recv_n(ws, n_aggs + n_trades)]
    ws.close()
    seen_trades: set[int] = set()
    for frame in frames:  # each aggregate arrives after all of its trades
        data = frame["data"]
        if frame["stream"] == "ethusdt@trade":
            seen_trades.add(data["t"])
        else:
            assert set(range(data["f"], data["l"] + 1)) <= seen_trades


def test_time_unit_microsecond(make_server: Factory, small_tape: Tape) -> None:
    srv = make_server(small_tape, speed=0)
    ws = websocket.create_connection(
        f"{srv.ws_base}/stream?streams=btcusdt@trade&timeUnit=MICROSECOND",
        timeout=TIMEOUT,
    )
    frame = orjson.loads(ws.recv())
    ws.close()
    first = next(e for e in small_tape if e.symbol == "BTCUSDT")
    assert frame["data"]["T"] == first.data["T"] * 1000
    assert frame["data"]["E"] == first.data["E"] * 1000
    trade = parse_frame(orjson.dumps(frame), time_unit_us=True)
    assert isinstance(trade, Trade) and trade.time_ms == first.time_ms


def test_unknown_path_and_bad_query_are_refused(
    make_server: Factory, small_tape: Tape
) -> None:
    srv = make_server(small_tape, speed=0)
    with pytest.raises(websocket.WebSocketBadStatusException) as info:
        websocket.create_connection(f"{srv.ws_base}/nope", timeout=TIMEOUT)
    assert info.value.status_code == 404
    with pytest.raises(InvalidStatus) as info2:
        connect(f"{srv.ws_base}/stream?streams=btcusdt@trade&timeUnit=NANO")
    assert info2.value.response.status_code == 400
    too_many = "/".join(f"s{i}usdt@trade" for i in range(1025))
    with pytest.raises(InvalidStatus):
        connect(f"{srv.ws_base}/stream?streams={too_many}")


def test_unknown_symbol_is_accepted_but_silent(
    make_server: Factory, small_tape: Tape
) -> None:
    srv = make_server(small_tape, speed=0)
    ws = websocket.create_connection(f"{srv.ws_base}/ws/solusdt@trade", timeout=TIMEOUT)
    assert request(ws, {"method": "LIST_SUBSCRIPTIONS", "id": 1}) == {
        "result": ["solusdt@trade"], "id": 1,
    }
    ws.close()
    assert srv.status()["played"] == 0  # at speed 0 nobody listens, so nothing played


def test_parse_path_and_canonical_names() -> None:
    assert parse_path("/ws/btcusdt@trade").streams == ("btcusdt@trade",)
    route = parse_path("/market/stream?streams=a@trade/b@aggTrade&timeUnit=microsecond")
    assert route.combined and route.micro and route.streams == ("a@trade", "b@aggTrade")
    assert not parse_path("/ws").combined and parse_path("/stream").streams == ()
    with pytest.raises(LookupError):
        parse_path("/api/v3/trades")
    assert canonical_stream("BTCUSDT@aggtrade") == "btcusdt@aggTrade"


# ------------------------------------------------------------- control messages


def test_subscribe_list_unsubscribe(make_server: Factory, small_tape: Tape) -> None:
    # loop: at speed 0 the socket buffers may take the whole tape before UNSUBSCRIBE
    srv = make_server(small_tape, speed=0, loop=True)
    ws = websocket.create_connection(f"{srv.ws_base}/ws", timeout=TIMEOUT)
    both = ["btcusdt@trade", "ethusdt@trade"]
    reply = request(ws, {"method": "SUBSCRIBE", "params": both, "id": 1})
    assert reply == {"result": None, "id": 1}
    assert request(ws, {"method": "LIST_SUBSCRIPTIONS", "id": "q2"}) == {
        "result": ["btcusdt@trade", "ethusdt@trade"], "id": "q2",
    }
    reply = request(ws, {"method": "UNSUBSCRIBE", "params": ["ethusdt@trade"], "id": 3})
    assert reply == {"result": None, "id": 3}
    # after the reply, only BTCUSDT trades arrive, and the ids continue without a gap
    rest = trades_of(recv_n(ws, 50))
    assert {t.symbol for t in rest} == {"BTCUSDT"}
    start = rest[0].trade_id
    assert [t.trade_id for t in rest] == list(range(start, start + 50))
    assert request(ws, {"method": "LIST_SUBSCRIPTIONS", "id": 4}) == {
        "result": ["btcusdt@trade"], "id": 4,
    }
    ws.close()


def test_properties_and_errors(make_server: Factory, small_tape: Tape) -> None:
    srv = make_server(small_tape, speed=0)
    ws = websocket.create_connection(f"{srv.ws_base}/stream", timeout=TIMEOUT)
    assert request(ws, {"method": "GET_PROPERTY", "params": ["combined"], "id": 1}) == {
        "result": True, "id": 1,
    }
    reply = request(
        ws, {"method": "SET_PROPERTY", "params": ["combined", False], "id": 2}
    )
    assert reply == {"result": None, "id": 2}
    reply = request(ws, {"method": "GET_PROPERTY", "params": ["combined"], "id": 3})
    assert reply == {"result": False, "id": 3}
    too_many = [f"s{i}usdt@trade" for i in range(1025)]
    errors = [
        ("{not json", 3),
        ({"method": "SET_PROPERTY", "params": ["colour", True], "id": 4}, 0),
        ({"method": "SET_PROPERTY", "params": ["combined", "yes"], "id": 5}, 1),
        ({"method": "SUBSCRIBE", "params": "btcusdt@trade", "id": 6}, 2),
        ({"method": "FLY", "id": 7}, 2),
        ({"params": [], "id": 8}, 2),
        ({"method": "SUBSCRIBE", "params": [], "id": [1]}, 2),
        ({"method": "SUBSCRIBE", "params": too_many, "id": 9}, 2),
    ]
    for payload, code in errors:
        reply = request(ws, payload)
        parsed = parse_frame(orjson.dumps(reply))
        assert isinstance(parsed, ControlReply) and parsed.error_code == code, reply
    # combined=false now: data arrives as bare events
    reply = request(ws, {"method": "SUBSCRIBE", "params": ["btcusdt@trade"], "id": 10})
    assert reply == {"result": None, "id": 10}
    frame = orjson.loads(ws.recv())
    assert frame["e"] == "trade" and "stream" not in frame
    ws.close()


def test_rate_limit_closes_with_1008(make_server: Factory, small_tape: Tape) -> None:
    srv = make_server(small_tape, speed=0, rate_limit=5)
    with connect(f"{srv.ws_base}/ws", open_timeout=TIMEOUT) as ws:
        with pytest.raises(ConnectionClosed) as info:
            for i in range(20):
                ws.send(f'{{"method":"LIST_SUBSCRIPTIONS","id":{i}}}')
            while True:
                ws.recv(timeout=TIMEOUT)
    assert info.value.rcvd is not None and info.value.rcvd.code == 1008


def test_client_not_answering_pings_is_dropped(
    make_server: Factory, small_tape: Tape
) -> None:
    srv = make_server(
        small_tape, speed=0, ping_interval=0.2, ping_timeout=0.3, close_timeout=0.5
    )
    # websocket-client only answers pings inside recv(); never calling it = no pongs
    silent = websocket.create_connection(f"{srv.ws_base}/ws", timeout=TIMEOUT)
    # the websockets client answers pings from its background thread
    with connect(f"{srv.ws_base}/ws", open_timeout=TIMEOUT) as alive:
        deadline = time.monotonic() + TIMEOUT
        while srv.status()["clients"] > 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert srv.status()["clients"] == 1
        alive.send(orjson.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 1}).decode())
        assert orjson.loads(alive.recv(timeout=TIMEOUT)) == {"result": [], "id": 1}
    silent.close()


# -------------------------------------------------------------- shared clock


def test_late_client_joins_the_shared_clock(
    make_server: Factory, small_tape: Tape
) -> None:
    # Paced (84 s of market time at 80x): at speed 0 the kernel's socket buffers
    # could swallow the whole small tape before the second client connects.
    srv = make_server(small_tape, speed=80)
    url = srv.url("trade")
    first = websocket.create_connection(url, timeout=TIMEOUT)
    head = recv_n(first, 100)
    results: dict[str, list[str]] = {}

    def reader(name: str, ws: websocket.WebSocket, count: int) -> None:
        results[name] = recv_n(ws, count)

    second = websocket.create_connection(url, timeout=TIMEOUT)
    # both now read concurrently until the tape ends
    t1 = threading.Thread(target=reader, args=("a", first, len(small_tape) - 100))
    t1.start()
    late = [second.recv()]
    late_first = parse_frame(late[0])
    assert isinstance(late_first, Trade)
    pos = ids(small_tape).index((late_first.symbol, late_first.trade_id))
    t2 = threading.Thread(target=reader, args=("b", second, len(small_tape) - pos - 1))
    t2.start()
    t1.join(TIMEOUT)
    t2.join(TIMEOUT)
    a = trades_of(head + results["a"])
    b = trades_of(late + results["b"])
    assert [(t.symbol, t.trade_id) for t in a] == ids(small_tape)
    assert pos >= 100
    assert [(t.symbol, t.trade_id) for t in b] == ids(small_tape)[pos:]
    first.close()
    second.close()


def test_abrupt_disconnect_does_not_hurt_others(
    make_server: Factory, small_tape: Tape
) -> None:
    srv = make_server(small_tape, speed=80)
    rude = websocket.create_connection(srv.url(), timeout=TIMEOUT)
    good = websocket.create_connection(srv.url(), timeout=TIMEOUT)
    first = parse_frame(good.recv())
    recv_n(rude, 10)
    rude.sock.close()  # no close frame, just a dead TCP socket
    assert isinstance(first, Trade)
    pos = ids(small_tape).index((first.symbol, first.trade_id))
    rest = trades_of(recv_n(good, len(small_tape) - pos - 1))
    assert [(t.symbol, t.trade_id) for t in rest] == ids(small_tape)[pos + 1 :]
    good.close()


def test_paced_playback_at_speed(make_server: Factory, small_tape: Tape) -> None:
    tape = Tape(small_tape.events[:400])  # ~8 s of market time, at 200x about 40 ms
    srv = make_server(tape, speed=200)
    frames, _ = read_until_closed(srv.url(), limit=len(tape))
    assert [(t.symbol, t.trade_id) for t in trades_of(frames)] == ids(tape)


# -------------------------------------------------------------------- loop


def test_loop_shifts_ids_and_times_monotonic(
    make_server: Factory, small_tape: Tape
) -> None:
    """End to end: three passes of trades and their aggregates on ONE connection.

    One client for both streams: at speed 0 the looping player fills a connection's
    buffers as fast as it drains them, so a second client used to wait for the server
    to let go of a first one (its close handshake behind megabytes of frames, then a
    send on the closing socket held until the TCP close): past the 15 s read timeout
    on a loaded machine. The shifting itself is checked as a pure function in
    test_loop.py.
    """
    tape = Tape(small_tape.events[:300])
    srv = make_server(tape, speed=0, loop=True)
    names = "/".join(
        f"{s.lower()}@{kind}" for s in tape.symbols for kind in ("trade", "aggTrade")
    )
    ws = websocket.create_connection(
        f"{srv.ws_base}/stream?streams={names}", timeout=LOADED_TIMEOUT
    )
    trade_frames: list[str] = []
    agg_frames: list[str] = []
    while len(trade_frames) < 3 * len(tape):
        frame = ws.recv()
        is_trade = orjson.loads(frame)["stream"].endswith("@trade")
        (trade_frames if is_trade else agg_frames).append(frame)
    ws.close()
    trades, aggs = trades_of(trade_frames), trades_of(agg_frames)
    aggs_per_pass = len(aggregate_trades(tape.events))
    assert len(aggs) > aggs_per_pass  # the aggregates cross a seam too
    for symbol in tape.symbols:
        span = tape.last_id[symbol] - tape.first_id[symbol] + 1
        got = [t for t in trades if t.symbol == symbol]
        start = tape.first_id[symbol]
        assert [t.trade_id for t in got] == list(
            range(start, start + 3 * tape.counts[symbol])
        )
        assert span == tape.counts[symbol]
        times = [t.time_ms for t in got]
        assert times == sorted(times)
        boundary = tape.counts[symbol]
        assert times[boundary] - times[boundary - 1] >= 1000  # strictly later pass
        assert got[boundary].time_ms == got[0].time_ms + tape.duration_ms + 1000
        agg_ids = [t.trade_id for t in aggs if t.symbol == symbol]
        assert agg_ids == list(range(agg_ids[0], agg_ids[0] + len(agg_ids)))
    status = srv.status()
    assert status["passes"] >= 3 and status["looped"]


# ------------------------------------------------------------------- faults


def test_drop_then_reconnect_continues_without_loss(
    make_server: Factory, small_tape: Tape
) -> None:
    srv = make_server(small_tape, speed=0, faults=FaultPlan(drop_after=700))
    first, code = read_until_closed(srv.url())
    assert code == 1000 and len(first) == 700
    second, _ = read_until_closed(srv.url(), limit=len(small_tape) - 700)
    got = [(t.symbol, t.trade_id) for t in trades_of(first + second)]
    assert got == ids(small_tape)
    assert [f["fault"] for f in srv.status()["faults_fired"]] == ["drop"]


def test_skip_leaves_exactly_that_gap(make_server: Factory, small_tape: Tape) -> None:
    srv = make_server(small_tape, speed=0, faults=FaultPlan(skip=(100, 50)))
    frames, _ = read_until_closed(srv.url(), limit=len(small_tape) - 50)
    got = [(t.symbol, t.trade_id) for t in trades_of(frames)]
    want = ids(small_tape)
    assert got == want[:100] + want[150:]
    skipped = want[100:150]
    ranges = srv.status()["skipped_ids"]
    for symbol in {s for s, _ in skipped}:
        sym_ids = [i for s, i in skipped if s == symbol]
        assert ranges[symbol] == [min(sym_ids), max(sym_ids)]
        assert sym_ids == list(range(min(sym_ids), max(sym_ids) + 1))


def test_skip_makes_a_gap_in_aggtrade_ids_too(
    make_server: Factory, small_tape: Tape
) -> None:
    srv = make_server(small_tape, speed=0, faults=FaultPlan(skip=(100, 50)))
    aggs = aggregate_trades(small_tape.events)
    skipped_trades = set(ids(small_tape)[100:150])

    def touches_skip(a: TapeEvent) -> bool:
        trade_ids = range(a.data["f"], a.data["l"] + 1)
        return any((a.symbol, t) in skipped_trades for t in trade_ids)

    hit = [a for a in aggs if touches_skip(a)]
    frames, _ = read_until_closed(srv.url("aggTrade"), limit=len(aggs) - len(hit))
    got = trades_of(frames)
    assert [(t.symbol, t.trade_id) for t in got] == [
        (a.symbol, a.trade_id) for a in aggs if a not in hit
    ]
    ranges = srv.status()["skipped_agg_ids"]
    for symbol in {a.symbol for a in hit}:
        lost = [a.trade_id for a in hit if a.symbol == symbol]
        assert lost == list(range(lost[0], lost[-1] + 1))  # one contiguous gap
        assert ranges[symbol] == [lost[0], lost[-1]]


@pytest.mark.parametrize("path", ["/stream?streams=btcusdt@trade/ethusdt@trade",
                                  "/ws/btcusdt@trade/ethusdt@trade"])
def test_garbage_frames_then_trades_continue(
    make_server: Factory, small_tape: Tape, path: str
) -> None:
    srv = make_server(small_tape, speed=0, faults=FaultPlan(garbage=(100, 12)))
    frames, _ = read_until_closed(srv.ws_base + path, limit=len(small_tape) + 12)
    good = trades_of(frames[:100] + frames[112:])
    for frame in frames[100:112]:
        with pytest.raises(BadFrame):
            parse_frame(frame)
    assert [(t.symbol, t.trade_id) for t in good] == ids(small_tape)
    assert srv.status()["garbage_sent"] == 12


def test_garbage_generator_never_yields_a_trade(small_tape: Tape) -> None:
    aggs = aggregate_trades(small_tape.events[:50])
    for ev in (small_tape.events[0], aggs[0]):
        for combined in (True, False):
            frames = garbage_frames(ev.data, f"{ev.symbol.lower()}@{ev.kind}", 40,
                                    combined=combined)
            assert len(set(frames)) >= 12
            for frame in frames:
                frame.decode("utf-8")  # text frames must stay valid UTF-8
                with pytest.raises(BadFrame):
                    parse_frame(frame)


def test_silence_sends_and_answers_nothing(
    make_server: Factory, small_tape: Tape
) -> None:
    srv = make_server(small_tape, speed=0, faults=FaultPlan(silence=(100, 1.5)))
    with connect(srv.url(), open_timeout=TIMEOUT) as ws:
        frames = [ws.recv(timeout=TIMEOUT) for _ in range(100)]
        ws.send(orjson.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 1}).decode())
        with pytest.raises(TimeoutError):
            ws.recv(timeout=1.0)  # nothing at all during the silence
        rest = [ws.recv(timeout=TIMEOUT) for _ in range(len(small_tape) - 100 + 1)]
    replies = [f for f in rest if '"result"' in f]
    assert replies == ['{"result":["btcusdt@trade","ethusdt@trade"],"id":1}']
    trades = trades_of(frames + [f for f in rest if f not in replies])
    assert [(t.symbol, t.trade_id) for t in trades] == ids(small_tape)
    assert srv.status()["faults_fired"][0]["fault"] == "silence"


@pytest.mark.parametrize("combined", [True, False])
def test_server_shutdown_then_close(
    make_server: Factory, small_tape: Tape, combined: bool
) -> None:
    srv = make_server(small_tape, speed=0, faults=FaultPlan(shutdown_after=100))
    url = srv.url(combined=combined)
    frames, code = read_until_closed(url)
    assert len(frames) == 101 and code == 1001
    notice = orjson.loads(frames[-1])
    assert ("stream" in notice) is combined
    if combined:
        assert notice["stream"] == "!serverShutdown"
    assert isinstance(parse_frame(frames[-1]), ServerShutdown)
    assert len(trades_of(frames[:100])) == 100
    # reconnecting at speed 0 continues exactly where the tape stopped
    rest, _ = read_until_closed(url, limit=len(small_tape) - 100)
    got = [(t.symbol, t.trade_id) for t in trades_of(frames[:100] + rest)]
    assert got == ids(small_tape)


def test_combined_fault_plan(make_server: Factory, small_tape: Tape) -> None:
    plan = FaultPlan(skip=(50, 10), garbage=(200, 5), drop_after=400)
    srv = make_server(small_tape, speed=0, faults=plan)
    frames, code = read_until_closed(srv.url())
    assert code == 1000 and len(frames) == 400 - 10 + 5
    good = []
    for frame in frames:
        try:
            good.append(parse_frame(frame))
        except BadFrame:
            continue
    want = ids(small_tape)
    assert [(t.symbol, t.trade_id) for t in good] == want[:50] + want[60:400]
    fired = [f["fault"] for f in srv.status()["faults_fired"]]
    assert fired == ["skip", "garbage", "drop"]


# ---------------------------------------------------------------------- CLI


def test_cli_starts_prints_url_and_serves(sample_dir: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    tape = sample_dir / SPOT_ETH
    proc = subprocess.Popen(
        [sys.executable, "-m", "ingest.replay", str(tape), "--port", "0",
         "--speed", "0", "--loop", "--garbage", "5", "2"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        base = line.split()[0]
        assert base.startswith("ws://127.0.0.1:") and "ETHUSDT" in line
        ws = websocket.create_connection(f"{base}/ws/ethusdt@trade", timeout=TIMEOUT)
        frames = recv_n(ws, 8)
        ws.close()
        first_ids = [orjson.loads(f)["t"] for f in frames[:5]]
        assert first_ids == list(range(1520538925, 1520538930))
        for frame in frames[5:7]:
            with pytest.raises(BadFrame):
                parse_frame(frame)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert proc.returncode == 0


def test_the_pre_encoded_tape_costs_its_own_size_in_memory(small_tape: Tape) -> None:
    """Every event is kept pre-encoded: an orjson result would keep its ~4 KB write
    buffer each (134 MB for the bundled tape), so the player keeps exact copies."""
    import tracemalloc

    from ingest.replay import exact_bytes
    from ingest.replay.frames import encode_event

    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        items = [encode_event(ev) for ev in small_tape.events]  # what start() keeps
        held = tracemalloc.get_traced_memory()[0] - before
        assert len(items) > 1000
        json_bytes = sum(len(i.bare) + len(i.wrapped) for i in items)
        # two bytes objects, a stream name and a small record per event, nothing like 4 KB
        assert held < json_bytes + 600 * len(items), (held, json_bytes, len(items))
        raw = orjson.dumps(small_tape.events[0].data)
        assert exact_bytes(raw) == raw
    finally:
        tracemalloc.stop()
