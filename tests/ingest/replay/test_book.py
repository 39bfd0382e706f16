"""Best bid/ask (``@bookTicker``) in the replay: loaded from raw captures, played in
order with the trades on the shared clock, and the tape clock that times spot book
updates (spot bookTicker frames carry no time).

Checked against the recorded lines of the bundled 2-minute raw captures
(``sample_data/hftbacktest-rawcapture-trade-book_*``), read independently here.
"""

from __future__ import annotations

import functools
import gzip
import statistics
import time
from pathlib import Path

import numpy as np
import orjson
import pytest
import websocket

from ingest.feeds.binance_perp import BINANCE_PERP
from ingest.feeds.binance_spot import BINANCE_SPOT
from ingest.replay import FaultPlan, ReplayServer
from ingest.replay.loop import shift_event
from ingest.replay.tapes import Tape, book_sample_files, load_tape, shift_times

TIMEOUT = 30
SPOT_BTC, SPOT_ETH, UM_BTC, UM_ETH = book_sample_files()


@functools.cache
def tape_of(path: Path) -> Tape:
    """Each capture loaded once per session (a Tape is immutable)."""
    return load_tape(path)


def lines_of(path: Path) -> list[tuple[int, bytes]]:
    with gzip.open(path, "rb") as fh:
        return [
            (int(stamp), frame)
            for stamp, frame in (ln.rstrip(b"\n").split(b" ", 1) for ln in fh)
        ]


def streams_of(path: Path) -> list[str]:
    return [orjson.loads(frame)["stream"] for _, frame in lines_of(path)]


# ------------------------------------------------------------------ loading


@pytest.mark.parametrize("path", book_sample_files(), ids=lambda p: p.name[34:46])
def test_raw_capture_loads_every_trade_and_book_update_in_recorded_order(
    path: Path,
) -> None:
    tape = tape_of(path)
    lines = lines_of(path)
    n_book = sum(b"@bookTicker" in frame for _, frame in lines)
    n_trade = sum(b"@trade" in frame for _, frame in lines)
    assert n_book > 9000 and n_trade > 2000
    (name,) = tape.symbols
    assert tape.book_counts == {name: n_book} and tape.counts == {name: n_trade}
    assert tape.missing_ids == {name: 0}
    # one file plays exactly in its recorded order, each event its recorded object
    assert [ev.recv_ns for ev in tape] == [recv for recv, _ in lines]
    for ev, (_, frame) in zip(tape, lines, strict=True):
        stream = f"{ev.symbol.lower()}@{ev.kind}"
        assert orjson.dumps({"stream": stream, "data": ev.data}) == frame
    books = [ev for ev in tape if ev.kind == "bookTicker"]
    assert all(ev.trade_id == ev.data["u"] for ev in books)
    ids = [ev.trade_id for ev in books]
    assert ids == sorted(ids)  # u increases (not contiguously)


def test_book_times_futures_by_T_spot_by_receive_time_in_exchange_frame() -> None:
    um = tape_of(UM_BTC)
    for ev in um:
        if ev.kind == "bookTicker":
            assert ev.market == "perp" and ev.time_ms == ev.data["T"]
    spot = tape_of(SPOT_BTC)
    lines = lines_of(SPOT_BTC)
    # independent: median of E - receive over the file's frames that carry E
    offsets = [
        orjson.loads(f)["data"]["E"] * 1_000_000 - r
        for r, f in lines if b'"E":' in f
    ]
    offset_ns = int(np.median(np.array(offsets, dtype=np.int64)))
    assert 1_200 < offset_ns / 1e6 < 1_350  # the 2024 host ran ~1.27 s behind Binance
    assert spot.clock_offset_ms == round(statistics.median(offsets) / 1e6)
    for ev in spot:
        if ev.kind == "bookTicker":
            assert ev.market == "spot" and "T" not in ev.data
            assert ev.time_ms == (ev.recv_ns + offset_ns) // 1_000_000


def test_depth_frames_and_the_snapshot_are_skipped_and_counted(tmp_path: Path) -> None:
    lines = [
        b'1723161253937085768 {"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate",'
        b'"E":1723161255208,"s":"BTCUSDT","U":1,"u":2,"b":[],"a":[]}}',
        b'1723161254087891268 {"stream":"btcusdt@bookTicker","data":{"u":50093239212,'
        b'"s":"BTCUSDT","b":"61837.63000000","B":"3.78826000","a":"61837.64000000",'
        b'"A":"1.54698000"}}',
        b'1723161254100000000 {"lastUpdateId":35346513512,"bids":[["1","2"]],"asks":[]}',
    ]
    path = tmp_path / "rawcapture_spot_BTCUSDT.gz"
    with gzip.open(path, "wb") as fh:
        fh.write(b"\n".join(lines) + b"\n")
    tape = load_tape(path)
    assert len(tape) == 1 and tape.skipped == {"depthUpdate": 1, "snapshot": 1}
    assert tape.book_counts == {"BTCUSDT": 1} and tape.symbols == ()
    bad = tmp_path / "bad_spot.gz"
    with gzip.open(bad, "wb") as fh:
        fh.write(lines[1].replace(b'"61837.63000000"', b'"abc"') + b"\n")
    with pytest.raises(ValueError, match=r"line 1: bookTicker 'b'"):
        load_tape(bad)


# ------------------------------------------------------------------ playback


def _frames(ws: websocket.WebSocket, n: int) -> list[bytes]:
    return [ws.recv().encode() for _ in range(n)]


def test_book_and_trades_play_byte_for_byte_in_recorded_order() -> None:
    tape = tape_of(UM_ETH)
    head = Tape(tape.events[:5000], source_files=tape.source_files)
    recorded = [frame for _, frame in lines_of(UM_ETH)[:5000]]
    with ReplayServer(head, speed=0, rate_limit=None, rest=False) as srv:
        # the root path (old layout) serves trades and book on one connection
        url = srv.ws_base + "/stream?streams=ethusdt@trade/ethusdt@bookTicker"
        ws = websocket.create_connection(url, timeout=TIMEOUT)
        got = _frames(ws, len(recorded))
        ws.close()
    assert got == recorded


def test_book_through_subscribe_bare_frames() -> None:
    tape = tape_of(SPOT_BTC)
    head = Tape(tape.events[:3000], source_files=tape.source_files)
    recorded = [orjson.loads(f)["data"] for _, f in lines_of(SPOT_BTC)[:3000]
                if b"@bookTicker" in f]
    with ReplayServer(head, speed=0, rate_limit=None, rest=False) as srv:
        ws = websocket.create_connection(f"{srv.ws_base}/ws", timeout=TIMEOUT)
        ws.send(orjson.dumps(
            {"method": "SUBSCRIBE", "params": ["BTCUSDT@bookticker"], "id": 7}
        ).decode())
        assert orjson.loads(ws.recv()) == {"result": None, "id": 7}
        got = [orjson.loads(ws.recv()) for _ in range(len(recorded))]
        ws.close()
    assert got == recorded and "e" not in got[0]  # spot bookTicker: no e, no time


@pytest.mark.slow
def test_two_markets_with_book_each_client_gets_its_recorded_lines() -> None:
    tape = load_tape(book_sample_files())
    assert tape.markets == ("perp", "spot")
    assert set(tape.book_counts) == {
        "spot:BTCUSDT", "spot:ETHUSDT", "perp:BTCUSDT", "perp:ETHUSDT"
    }
    want_spot = [f for _, f in lines_of(SPOT_BTC)]
    want_perp = [f for _, f in lines_of(UM_BTC)]
    # perp: trades under /market, the book under /public (Binance's base URL split)
    is_book = [orjson.loads(f)["stream"].endswith("@bookTicker") for f in want_perp]
    want_market = [f for f, b in zip(want_perp, is_book) if not b]
    want_public = [f for f, b in zip(want_perp, is_book) if b]
    with ReplayServer(tape, speed=0, rate_limit=None, rest=False,
                      faults=FaultPlan(silence=(0, 1.0))) as srv:
        path = "/stream?streams=btcusdt@trade/btcusdt@bookTicker"
        spot = websocket.create_connection(
            srv.ws_base + BINANCE_SPOT.ws_path_prefix + path, timeout=TIMEOUT
        )
        perp = websocket.create_connection(
            srv.ws_base + BINANCE_PERP.ws_path_prefix + path, timeout=TIMEOUT
        )
        public = websocket.create_connection(
            srv.ws_base + BINANCE_PERP.book_path_prefix + path, timeout=TIMEOUT
        )
        got_perp = _frames(perp, len(want_market))
        got_public = _frames(public, len(want_public))
        got_spot = _frames(spot, len(want_spot))
        for ws in (spot, perp, public):
            ws.close()
        markets = srv.status()["markets"]
    assert got_spot == want_spot
    assert got_perp == want_market and got_public == want_public
    assert markets["spot"]["book_events"] == 9776 + 9231
    assert markets["perp"]["book_events"] == 22431 + 19708


def test_loop_pass_moves_book_update_ids_and_times() -> None:
    tape = tape_of(UM_BTC)
    book = next(ev for ev in tape if ev.kind == "bookTicker")
    moved = shift_event(book.data, 2, time_shift_ms=1000, id_span=77, sub_span=0)
    assert moved["u"] == book.data["u"] + 154
    assert moved["T"] == book.data["T"] + 2000 and moved["E"] == book.data["E"] + 2000
    assert (moved["b"], moved["a"]) == (book.data["b"], book.data["a"])
    spot = next(ev for ev in tape_of(SPOT_BTC) if ev.kind == "bookTicker")
    moved = shift_event(spot.data, 1, time_shift_ms=1000, id_span=5, sub_span=0)
    assert moved == {**spot.data, "u": spot.data["u"] + 5}  # no time to move


def test_looped_book_ids_keep_increasing() -> None:
    tape = tape_of(SPOT_ETH)
    head = Tape(tape.events[:400], source_files=tape.source_files)
    books = [ev.trade_id for ev in head if ev.kind == "bookTicker"]
    with ReplayServer(head, speed=0, rate_limit=None, rest=False, loop=True) as srv:
        ws = websocket.create_connection(
            f"{srv.ws_base}/ws/ethusdt@bookTicker", timeout=TIMEOUT
        )
        got = [orjson.loads(ws.recv())["u"] for _ in range(2 * len(books) + 3)]
        ws.close()
    span = max(books) - min(books) + 1
    assert got[: len(books)] == books
    assert got[len(books): 2 * len(books)] == [u + span for u in books]
    assert all(b > a for a, b in zip(got, got[1:]))


# ------------------------------------------------------------------ tape clock


def test_tape_clock_before_the_first_subscription_is_the_first_event() -> None:
    tape = tape_of(UM_BTC)
    with ReplayServer(tape, speed=1, rest=False) as srv:
        first = tape.events[0].recv_ns // 1_000_000 + tape.clock_offset_ms
        assert srv.tape_clock_ms() == first
        assert srv.status()["tape_clock_ms"] == first


def test_tape_clock_is_monotone_and_in_exchange_time() -> None:
    """At speed 20 a client reads trades and book updates; after each frame the tape
    clock is at least that frame's receive time + the tape's offset (the player has
    reached it), at most where the schedule puts "now" (first event + wall time since
    before the first subscription × speed), never backwards; and that frame of
    reference is Binance's: receive time + offset lands on the frames' own ``E``."""
    tape = tape_of(UM_BTC)
    head = Tape(tape.events[:3000], source_files=tape.source_files)
    offset = head.clock_offset_ms
    recv_of = {(ev.kind, ev.trade_id): ev.recv_ns for ev in head}
    speed = 20.0
    first_ms = head.events[0].recv_ns // 1_000_000 + offset
    clocks: list[int] = []
    ahead: list[float] = []
    vs_e: list[int] = []
    late: list[float] = []
    with ReplayServer(head, speed=speed, rate_limit=None, rest=False) as srv:
        started = time.monotonic()
        ws = websocket.create_connection(
            srv.ws_base + "/stream?streams=btcusdt@trade/btcusdt@bookTicker",
            timeout=TIMEOUT,
        )
        for _ in range(len(head)):
            data = orjson.loads(ws.recv())["data"]
            now = srv.tape_clock_ms()
            schedule_ms = first_ms + (time.monotonic() - started) * speed * 1000
            kind = "trade" if data["e"] == "trade" else "bookTicker"
            key = data["t"] if kind == "trade" else data["u"]
            frame_ms = recv_of[(kind, key)] // 1_000_000 + offset
            clocks.append(now)
            ahead.append(now - frame_ms)
            late.append(schedule_ms - now)
            vs_e.append(frame_ms - data["E"])
        ws.close()
        time.sleep(0.2)
        end = srv.tape_clock_ms()
    assert all(b >= a for a, b in zip(clocks, clocks[1:]))
    assert min(ahead) >= 0  # never behind a frame the player has sent
    assert min(late) >= -2  # never ahead of the schedule (ms rounding)
    # in Binance's frame: within ~0.1 s of the frames' own E (the 1.27 s host error gone)
    assert abs(float(np.median(vs_e))) < 100
    last = head.events[-1].recv_ns // 1_000_000 + offset
    assert end == max(clocks[-1], last)


def test_tape_clock_follows_shifted_times() -> None:
    """``app.py --replay`` shifts T/E to start now: the clock moves with them."""
    tape = tape_of(SPOT_ETH)
    moved = shift_times(tape, 10_000_000)
    assert moved.clock_offset_ms == tape.clock_offset_ms + 10_000_000
    with ReplayServer(moved, speed=0, rest=False) as srv:
        assert srv.tape_clock_ms() == (
            tape.events[0].recv_ns // 1_000_000 + tape.clock_offset_ms + 10_000_000
        )
