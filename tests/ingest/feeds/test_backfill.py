"""Gap back-fill from REST, for real: ReplayServer (WebSocket + REST on loopback) ->
TradeFeed -> Ingestor -> SqliteTradeStore, with the Backfiller worker fetching the gaps.

Every test ends with the store holding every trade of the tape exactly once (or, for
the unreachable REST, with the gap still reported and the error visible).
"""

from __future__ import annotations

import threading
import time
import urllib.request

import numpy as np
import orjson
import pytest

from analytics.bars import bars_from_ticks
from analytics.engine import MarketEngine
from ingest.feeds.backfill import Backfiller, RateLimited, http_get
from ingest.feeds.binance_spot import BINANCE_SPOT
from ingest.feeds.client import TradeFeed
from ingest.pipeline import Ingestor
from ingest.replay import FaultPlan, ReplayServer
from ingest.replay.tapes import Tape
from ingest.store.sqlite_trades import SqliteTradeStore
from tests.waiting import wait_for

SYMBOLS = ["BTCUSDT", "ETHUSDT"]


def source_ids(tape) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {s: [] for s in tape.symbols}
    for ev in tape.events:
        out[ev.symbol].append(ev.trade_id)
    return {s: sorted(v) for s, v in out.items()}



class Rig:
    """Replay (WS + REST) -> feed -> ingestor -> store, with REST back-fill."""

    def __init__(
        self,
        tape,
        db,
        *,
        speed=0.0,
        faults=None,
        loop=False,
        rest_base=None,
        server_kwargs=None,
        **backfill_kwargs,
    ):
        self.server = ReplayServer(
            tape,
            speed=speed,
            faults=faults,
            loop=loop,
            rate_limit=None,
            **(server_kwargs or {}),
        ).start()
        self.store = SqliteTradeStore(db).start()
        self.ingestor = Ingestor(SYMBOLS, self.store, MarketEngine(SYMBOLS))
        self.ingestor.restore()
        backfill_kwargs.setdefault("backoff_base_s", 0.05)
        backfill_kwargs.setdefault("backoff_cap_s", 0.5)
        self.backfill = Backfiller(
            protocol=BINANCE_SPOT,
            stream="trade",
            base_url=rest_base or self.server.rest_base,
            deliver=self.ingestor.on_backfill,
            on_filled=self.store.mark_gap_filled,
            **backfill_kwargs,
        )
        self.backfill.start()
        url = BINANCE_SPOT.stream_url(SYMBOLS, "trade", self.server.ws_base)
        self.feed = TradeFeed(
            url,
            self.ingestor.on_trade,
            protocol=BINANCE_SPOT,
            on_gap=self.on_gap,
            last_ids=self.store.last_trade_ids(),
            backoff_base_s=0.1,
            backoff_cap_s=0.5,
        )
        self.feed.start()

    def on_gap(self, symbol, first, last):
        self.ingestor.on_gap(symbol, first, last)
        self.backfill.submit(symbol, first, last)

    def close(self):
        self.feed.stop()
        self.backfill.stop()
        self.server.stop()
        self.store.close()


@pytest.fixture
def rig_factory():
    rigs: list[Rig] = []

    def make(*args, **kwargs) -> Rig:
        rigs.append(Rig(*args, **kwargs))
        return rigs[-1]

    yield make
    for rig in rigs:
        rig.close()


def assert_exactly_once(store: SqliteTradeStore, tape: Tape) -> None:
    assert store.flush(10)
    for sym, ids in source_ids(tape).items():
        got = store.trade_ids(sym)
        assert len(got) == len(np.unique(got)), f"{sym}: duplicates"
        assert got.tolist() == ids, (
            f"{sym}: {len(set(ids) - set(got.tolist()))} missing"
        )


def assert_bars_match_ticks(store: SqliteTradeStore) -> None:
    """Stored 1 s bars (live + rebuilt after back-fill) == a batch build of the ticks."""
    for sym in SYMBOLS:
        t = store.read_trades(sym)
        batch = bars_from_ticks(
            t.time_ms, t.trade_id, t.price, t.qty, t.buyer_is_maker, tf_ms=1000
        )
        stored = store.read_bars(sym)
        both, bi, si = np.intersect1d(batch.ts, stored.ts, return_indices=True)
        assert len(both) >= len(stored.ts) - 1 and len(both) > 10
        for field in ("open", "high", "low", "close", "trades", "first_id", "last_id"):
            np.testing.assert_array_equal(
                getattr(batch, field)[bi], getattr(stored, field)[si], err_msg=field
            )
        np.testing.assert_allclose(batch.volume[bi], stored.volume[si], rtol=1e-9)


def test_skip_and_drop_at_speed_are_backfilled_exactly(
    rig_factory, spot_tape, tmp_path
):
    """At speed 100 the shared clock keeps playing while the feed reconnects after the
    drop, so it misses trades; plus 250 skipped ids. REST back-fill recovers them all,
    the gaps are marked filled, and the stored bars equal a batch build of the ticks."""
    rig = rig_factory(
        spot_tape,
        tmp_path / "m.db",
        speed=100.0,
        faults=FaultPlan(drop_after=5_000, skip=(12_000, 250)),
    )
    wait_for(
        lambda: (
            rig.server.ended
            and rig.backfill.idle
            and rig.feed.status().trades + rig.backfill.filled == len(spot_tape)
        ),
        90,
        "tape played and gaps back-filled",
    )
    st, bf = rig.feed.status(), rig.backfill.status()
    assert st.reconnects >= 1
    # > 250: the shared clock ran on while the feed reconnected, so ids were missed
    # beyond the 250 skipped ones
    assert bf.filled == st.gaps > 250, "every detected missing id was recovered"
    assert bf.missing == 0 and bf.ranges == () and bf.error is None
    assert_exactly_once(rig.store, spot_tape)
    gaps = rig.store.read_gaps()
    assert len(gaps) == len(st.gap_ranges) and all(g.filled_ms for g in gaps)
    assert_bars_match_ticks(rig.store)
    counts = {s: rig.ingestor.ticks_held(s) for s in SYMBOLS}
    assert counts == {s: len(v) for s, v in source_ids(spot_tape).items()}


def test_rate_limit_429_is_honoured(rig_factory, spot_tape, tmp_path):
    """A tiny weight budget (4 requests a second) and 100-row pages: the back-fill is
    answered 429 with Retry-After, waits, and still fills every id."""
    rig = rig_factory(
        spot_tape,
        tmp_path / "m.db",
        faults=FaultPlan(skip=(1_000, 1_200)),
        server_kwargs={"rest_weight_limit": 100, "rest_window_s": 1.0},
        page_limit=100,
    )
    wait_for(
        lambda: rig.server.ended and rig.backfill.idle and rig.backfill.filled == 1_200,
        90,
        "1,200 ids back-filled",
    )
    bf = rig.backfill.status()
    assert bf.rate_limited >= 2 and rig.server.rest.rate_limited >= 2
    assert rig.server.rest.banned == 0, "waited Retry-After instead of hammering"
    assert bf.pages >= 12
    assert_exactly_once(rig.store, spot_tape)


def test_unreachable_rest_keeps_the_gap_reported_and_retries(small_tape, tmp_path):
    store = SqliteTradeStore(tmp_path / "m.db").start()
    ing = Ingestor(SYMBOLS, store, MarketEngine(SYMBOLS))
    bf = Backfiller(
        protocol=BINANCE_SPOT,
        stream="trade",
        base_url="http://127.0.0.1:9",
        deliver=ing.on_backfill,
        on_filled=store.mark_gap_filled,
        backoff_base_s=0.02,
        backoff_cap_s=0.1,
    )
    bf.start()
    try:
        bf.submit("BTCUSDT", 100, 199)
        wait_for(lambda: bf.status().errors >= 3, 10, "retries")
        s = bf.status()
        assert s.missing == 100 and s.filled == 0
        assert s.ranges[0].first_id == 100 and s.ranges[0].last_id == 199
        assert "refused" in (s.error or "").lower()
        assert bf.is_alive()
    finally:
        bf.stop()
        store.close()


def test_backfill_resumes_when_rest_comes_back(small_tape, tmp_path):
    """Fetch failures then success: the same ids are fetched once, nothing doubled."""
    with ReplayServer(small_tape, speed=0, rate_limit=None) as srv:
        srv.position = len(small_tape)  # everything is history on the "exchange"
        fails = {"n": 3}

        def flaky(url, timeout_s):
            if fails["n"]:
                fails["n"] -= 1
                raise OSError("simulated outage")
            return http_get(url.replace("http://down", srv.rest_base), timeout_s)

        got: list = []
        bf = Backfiller(
            protocol=BINANCE_SPOT,
            stream="trade",
            base_url="http://down",
            deliver=lambda s, ts: got.extend(ts),
            fetch=flaky,
            backoff_base_s=0.02,
            backoff_cap_s=0.05,
            page_limit=300,
        )
        bf.start()
        try:
            first = small_tape.first_id["BTCUSDT"]
            bf.submit("BTCUSDT", first + 10, first + 1_009)
            wait_for(lambda: bf.idle, 20, "back-fill done")
            ids = [t.trade_id for t in got]
            assert ids == list(range(first + 10, first + 1_010))
            assert bf.status().errors == 3 and bf.status().error is None
        finally:
            bf.stop()


def test_418_ban_waits_retry_after():
    calls: list[float] = []

    def banned_then_ok(url, timeout_s):
        calls.append(time.monotonic())
        if len(calls) == 1:
            raise RateLimited(418, 0.3)
        return orjson.dumps(
            [
                {
                    "id": 5,
                    "price": "1.5",
                    "qty": "2",
                    "quoteQty": "3",
                    "time": 1000,
                    "isBuyerMaker": True,
                    "isBestMatch": True,
                }
            ]
        )

    got: list = []
    bf = Backfiller(
        protocol=BINANCE_SPOT,
        stream="trade",
        base_url=None,
        deliver=lambda s, ts: got.extend(ts),
        fetch=banned_then_ok,
    )
    bf.start()
    try:
        bf.submit("BTCUSDT", 5, 5)
        wait_for(lambda: bf.idle, 5, "filled")
        assert calls[1] - calls[0] >= 0.29 and bf.status().rate_limited == 1
        assert [t.trade_id for t in got] == [5]
    finally:
        bf.stop()


def test_server_without_the_ids_is_reported_unrecoverable():
    """A REST answer that starts after the asked id: retried, then reported, never
    marked filled."""
    filled: list = []

    def later_ids(url, timeout_s):
        return orjson.dumps(
            [
                {
                    "id": i,
                    "price": "1",
                    "qty": "1",
                    "quoteQty": "1",
                    "time": 1000 + i,
                    "isBuyerMaker": False,
                    "isBestMatch": True,
                }
                for i in range(20, 25)
            ]
        )

    got: list = []
    bf = Backfiller(
        protocol=BINANCE_SPOT,
        stream="trade",
        base_url=None,
        deliver=lambda s, ts: got.extend(ts),
        fetch=later_ids,
        on_filled=lambda *a: filled.append(a),
        backoff_base_s=0.01,
        backoff_cap_s=0.02,
    )
    bf.start()
    try:
        bf.submit("BTCUSDT", 10, 24)
        wait_for(lambda: bf.idle, 5, "given up on the hole")
        s = bf.status()
        assert [t.trade_id for t in got] == list(range(20, 25))
        assert s.missing == 10 and [(g.first_id, g.last_id) for g in s.ranges] == [
            (10, 19)
        ]
        assert filled == []
    finally:
        bf.stop()


def test_loop_with_max_lifetime_reconnects_and_backfills(
    rig_factory, small_tape, tmp_path
):
    """The 24-hour close, compressed: every connection lives 0.4 s, the looped tape
    plays at speed 40 on one clock. Each reconnect leaves a gap; REST back-fill closes
    it, across loop passes (ids shifted by the tape's span)."""
    rig = rig_factory(
        small_tape,
        tmp_path / "m.db",
        speed=40.0,
        loop=True,
        server_kwargs={"max_lifetime_s": 0.4},
    )
    span = {s: small_tape.last_id[s] - small_tape.first_id[s] + 1 for s in SYMBOLS}
    target = {s: small_tape.last_id[s] + span[s] for s in SYMBOLS}  # end of pass 2
    wait_for(
        lambda: (
            all(rig.feed.last_ids.get(s, 0) >= target[s] for s in SYMBOLS)
            and rig.backfill.idle
        ),
        90,
        "two passes",
    )
    assert rig.server.lifetime_closes >= 3 and rig.feed.status().reconnects >= 3
    assert rig.server.passes >= 2
    assert rig.backfill.filled > 0 and rig.backfill.status().missing == 0
    assert rig.store.flush(10)
    for s in SYMBOLS:
        ids = rig.store.trade_ids(s)
        ids = ids[ids <= target[s]]
        expected = np.arange(small_tape.first_id[s], target[s] + 1)
        np.testing.assert_array_equal(ids, expected)


def test_rest_is_served_while_the_socket_streams(small_tape):
    """REST requests from another thread during playback never disturb the stream."""
    with ReplayServer(small_tape, speed=0, rate_limit=None) as srv:
        stop = threading.Event()
        errors: list = []

        def hammer():
            first = small_tape.first_id["ETHUSDT"]
            while not stop.is_set():
                try:
                    urllib.request.urlopen(
                        f"{srv.rest_base}/api/v3/historicalTrades?symbol=ETHUSDT"
                        f"&fromId={first}&limit=1000",
                        timeout=5,
                    ).read()
                except OSError as exc:
                    errors.append(exc)

        th = threading.Thread(target=hammer)
        th.start()
        import websocket

        ws = websocket.create_connection(srv.url("trade"), timeout=10)
        try:
            n = sum(1 for _ in range(len(small_tape)) if ws.recv())
        finally:
            ws.close()
            stop.set()
            th.join()
        assert n == len(small_tape) and errors == []
