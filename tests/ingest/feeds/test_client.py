"""The real websocket-client feed against the real local Binance-protocol server.

No fake socket anywhere: ``ReplayServer`` serves the recorded tape over loopback and
``TradeFeed`` + ``Ingestor`` + ``SqliteTradeStore`` ingest it exactly as in production.
"""

from __future__ import annotations

import numpy as np
import pytest

from analytics.engine import MarketEngine
from ingest.feeds.binance_spot import BINANCE_SPOT
from ingest.feeds.client import TradeFeed, backoff_delay
from ingest.pipeline import Ingestor
from ingest.replay import FaultPlan, ReplayServer
from ingest.store.sqlite_trades import SqliteTradeStore
from tests.waiting import wait_for

SYMBOLS = ["BTCUSDT", "ETHUSDT"]


def source_ids(tape) -> dict[str, set[int]]:
    out: dict[str, set[int]] = {s: set() for s in tape.symbols}
    for ev in tape.events:
        out[ev.symbol].add(ev.trade_id)
    return out



class Rig:
    """Replay server -> TradeFeed -> Ingestor (ring, engine) -> SqliteTradeStore."""

    def __init__(self, tape, db, *, faults=None, watchdog_s=30.0, speed=0.0):
        self.server = ReplayServer(tape, speed=speed, faults=faults, rate_limit=None).start()
        self.store = SqliteTradeStore(db).start()
        self.ingestor = Ingestor(SYMBOLS, self.store, MarketEngine(SYMBOLS))
        self.ingestor.restore()
        url = BINANCE_SPOT.stream_url(SYMBOLS, "trade", self.server.ws_base)
        self.feed = TradeFeed(
            url,
            self.ingestor.on_trade,
            protocol=BINANCE_SPOT,
            on_gap=self.ingestor.on_gap,
            last_ids=self.store.last_trade_ids(),
            watchdog_s=watchdog_s,
            backoff_base_s=0.2,
        )
        self.feed.start()

    def close(self):
        self.feed.stop()
        self.server.stop()
        self.store.close()


def test_backoff_is_jittered_exponential_and_capped():
    assert backoff_delay(0, base=1, cap=60, rng=lambda: 0.0) == 0.5
    assert backoff_delay(3, base=1, cap=60, rng=lambda: 1.0) == 8.0
    assert backoff_delay(30, base=1, cap=60, rng=lambda: 0.5) == 45.0


def test_full_tape_stored_exactly_once(spot_tape, tmp_path):
    rig = Rig(spot_tape, tmp_path / "m.db")
    try:
        wait_for(lambda: rig.feed.status().trades == len(spot_tape), 60, "all trades")
        assert rig.store.flush(10)
        expected = source_ids(spot_tape)
        for sym in SYMBOLS:
            ids = rig.store.trade_ids(sym)
            assert len(ids) == len(expected[sym])
            assert set(ids.tolist()) == expected[sym]
            assert rig.ingestor.rings[sym].seq == len(expected[sym])
        st = rig.feed.status()
        assert (st.gaps, st.duplicates, st.bad_frames, st.reconnects) == (0, 0, 0, 0)
        assert rig.store.count_trades() == len(spot_tape)
        assert rig.store.read_gaps() == []
    finally:
        rig.close()


def test_faults_drop_skip_garbage_and_40s_silence(spot_tape, tmp_path):
    """Drop mid-stream, skip 250 ids, 1,000 malformed frames, 40 s of silence.

    The feed must reconnect after the drop and after the watchdog (30 s) sees the
    silence, report the skipped ids as one gap with the exact range, count every bad
    frame, and lose or duplicate nothing else.
    """
    faults = FaultPlan(drop_after=5_000, skip=(10_000, 250), garbage=(15_000, 1_000),
                       silence=(20_000, 40.0))
    rig = Rig(spot_tape, tmp_path / "m.db", faults=faults, watchdog_s=30.0)
    try:
        wait_for(lambda: rig.feed.status().trades == len(spot_tape) - 250, 120, "all trades")
        assert rig.store.flush(10)
        # {symbol: [first, last]}: the skipped events of the interleaved tape, per symbol
        skipped = {s: tuple(r) for s, r in rig.server.status()["skipped_ids"].items()}
        assert sum(last - first + 1 for first, last in skipped.values()) == 250
        st = rig.feed.status()
        assert st.reconnects >= 2  # the drop and the watchdog
        assert st.bad_frames == 1_000
        assert st.gaps == 250
        # exactly one gap per affected symbol, with the exact range, in status and store
        assert {g.symbol: (g.first_id, g.last_id) for g in st.gap_ranges} == skipped
        assert len(st.gap_ranges) == len(skipped)
        stored = rig.store.read_gaps()
        assert {g.symbol: (g.first_id, g.last_id) for g in stored} == skipped
        expected = source_ids(spot_tape)
        for sym, (first, last) in skipped.items():
            expected[sym] -= set(range(first, last + 1))
        for s in SYMBOLS:
            ids = rig.store.trade_ids(s)
            assert len(ids) == len(np.unique(ids)), "no duplicate rows"
            assert set(ids.tolist()) == expected[s], "nothing else lost"
        assert "silent" in (st.error or "") or st.reconnects >= 2
    finally:
        rig.close()


def test_restart_resumes_ids_and_refills_rings(small_tape, tmp_path):
    """A second ingest on the same DB de-duplicates the replayed tape and refills rings."""
    db = tmp_path / "m.db"
    rig = Rig(small_tape, db)
    try:
        wait_for(lambda: rig.feed.status().trades == len(small_tape), 30, "first pass")
    finally:
        rig.close()
    rig2 = Rig(small_tape, db)  # plays the same tape again from the start
    try:
        for sym in SYMBOLS:
            assert len(rig2.ingestor.rings[sym]) > 0, "ring refilled from the DB"
        wait_for(lambda: rig2.feed.status().duplicates == len(small_tape), 30, "duplicates")
        assert rig2.store.flush(10)
        assert rig2.store.count_trades() == len(small_tape)
        assert rig2.feed.status().trades == 0
    finally:
        rig2.close()


@pytest.mark.parametrize("path", ["/ws", "/stream"])
def test_unreachable_feed_reports_error_and_retries(tmp_path, path):
    store = SqliteTradeStore(tmp_path / "m.db").start()
    ing = Ingestor(SYMBOLS, store, MarketEngine(SYMBOLS))
    feed = TradeFeed(f"ws://127.0.0.1:9{path}", ing.on_trade, backoff_base_s=0.05,
                     backoff_cap_s=0.2, protocol=BINANCE_SPOT)
    feed.start()
    try:
        wait_for(lambda: feed.status().reconnects >= 3, 20, "retries")
        st = feed.status()
        assert not st.connected
        assert st.error and "refused" in st.error.lower()
    finally:
        feed.stop()
        store.close()


def test_abort_shuts_down_but_leaves_the_close_to_the_feed_thread():
    """Closing the socket from the stopping thread raced the feed thread's wake-up
    (epoll drops a closed descriptor's pending EOF): stop() then waited 5 s."""
    import socket as _socket
    import types

    from ingest.feeds.client import _abort

    a, b = _socket.socketpair()
    closed = []
    ws = types.SimpleNamespace(
        sock=types.SimpleNamespace(sock=a), keep_running=True, close=lambda: closed.append(1)
    )
    try:
        _abort(ws)
        assert a.fileno() != -1 and not closed  # not closed here...
        assert ws.keep_running is False
        assert a.recv(1) == b""  # ...but shut down: a select() on it wakes with EOF
    finally:
        a.close()
        b.close()
    never_connected = types.SimpleNamespace(sock=None, close=lambda: closed.append(2))
    _abort(never_connected)
    assert closed == [2]
