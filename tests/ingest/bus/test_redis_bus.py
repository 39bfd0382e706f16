"""The Redis Streams bus against a real redis-server (started per test, on a free port):

* publish -> follow round trip: every trade of every instrument, in order, exact
  floats; bars, gaps, breaks, clocks and feed health arrive as sent;
* a clock event waits for the trades the publisher had accepted before it;
* the server killed and restarted mid-stream (its data gone): the publisher keeps and
  resends, the follower resumes, reads what the restart lost from the store: every
  trade once, in order;
* ``MAXLEN ~`` trimmed what a late follower wanted: read from the store, nothing skipped;
* bad ``--bus`` values and a bus that does not answer are clear errors.
"""

from __future__ import annotations

import time

import pytest

from ingest.bus import BusUnavailable, check_bus_url, open_follower, open_publisher, probe
from ingest.bus.follow import BusFeed, IdRanges
from ingest.bus.interface import (
    BarClosed,
    BusError,
    ClockAdvanced,
    FeedHealth,
    GapSeen,
    SessionBreak,
    TradeBatch,
)
from tests.ingest.bus.helpers import FakeStore, RecordingIngestor, spot, trade, wait_for
from tests.servers import free_port

SYMS = ("BTCUSDT", "ETHUSDT")


def _publisher(url: str, **kw):
    return open_publisher(url, resolve=spot, **kw).start()


def _follower(url: str, **kw):
    kw.setdefault("start_back_ms", 10**12)  # from the start of every stream
    return open_follower(url, **kw)


def _drain(feed: BusFeed, pred, timeout: float = 10.0) -> None:
    """Read and apply events until ``pred()`` (transport errors retried)."""
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "follower did not get there in time"
        try:
            feed.apply(feed.follower.read(100))
        except BusError:
            time.sleep(0.05)


def test_round_trip_per_instrument_in_order(redis_server):
    pub = _publisher(redis_server.url(), health=lambda: {"connected": True, "messages": 7})
    fol = _follower(redis_server.url())
    sent = {s: [] for s in SYMS}
    try:
        for i in range(1, 2_501):  # interleaved, as a combined stream delivers them
            for s in SYMS:
                t = trade(s, i)
                sent[s].append(t)
                pub.trade(t)
            if i % 500 == 0:
                pub.bar("BTCUSDT", (i, 1.0, 2.0, 0.5, 1.5, 3.0, 4.5, 7, i - 6, i))
                pub.clock(i * 1000)
        pub.gap("ETHUSDT", 3_000, 3_009, 123)
        pub.session_break("ETHUSDT", 1_800_000_000_000, "ids 3000..3009 missing")
        assert pub.flush(10)
        got = {s: [] for s in SYMS}
        kinds: dict[type, list] = {}
        deadline = time.monotonic() + 10
        while sum(map(len, got.values())) < 5_000 or FeedHealth not in kinds:
            assert time.monotonic() < deadline, {s: len(v) for s, v in got.items()}
            for ev in fol.read(200):
                kinds.setdefault(type(ev), []).append(ev)
                if isinstance(ev, TradeBatch):
                    got[ev.instrument.symbol].extend(ev.trades)
        for s in SYMS:
            assert got[s] == sent[s]  # same ids, times, prices (exact), sides, order
        assert [b.row[0] for b in kinds[BarClosed]] == [500, 1000, 1500, 2000, 2500]
        assert [c.close_ms for c in kinds[ClockAdvanced]] == [500_000, 1_000_000, 1_500_000,
                                                              2_000_000, 2_500_000]
        # each clock names the last live id of each instrument sent before it
        assert kinds[ClockAdvanced][0].watermarks == {"spot:BTCUSDT": 500, "spot:ETHUSDT": 500}
        assert kinds[GapSeen] == [GapSeen(spot("ETHUSDT"), 3_000, 3_009, 123)]
        assert kinds[SessionBreak] == [
            SessionBreak(spot("ETHUSDT"), 1_800_000_000_000, "ids 3000..3009 missing")]
        assert kinds[FeedHealth][0].health == {"connected": True, "messages": 7}
        st = pub.status()
        assert st["published"] == 5_000 and st["connected"] and st["error"] is None
        assert fol.lag_ms() is not None and fol.lag_ms() < 10_000
    finally:
        pub.close()
        fol.close()


def test_clock_waits_for_the_trades_accepted_before_it(redis_server):
    """A clock is applied when the follower has every live trade it covers."""
    ing = RecordingIngestor()
    feed = BusFeed(ing, _follower(redis_server.url()), FakeStore().fetch,
                   name_of=lambda i: i.symbol, resolve=spot)
    btc, eth = spot("BTCUSDT"), spot("ETHUSDT")
    feed.apply([TradeBatch(btc, tuple(trade("BTCUSDT", i) for i in (1, 2))),
                ClockAdvanced(5_000, {"spot:BTCUSDT": 3, "spot:ETHUSDT": 1})])
    assert ing.clocks == []  # BTC 3 and ETH 1 not seen yet
    feed.apply([TradeBatch(eth, (trade("ETHUSDT", 1),), prev_id=None)])
    assert ing.clocks == []
    # the clock is applied right after BTC 3, before BTC 4 (a trade of after the clock)
    feed.apply([TradeBatch(btc, tuple(trade("BTCUSDT", i) for i in (3, 4)), prev_id=2)])
    assert ing.clocks == [5_000]
    assert ing.ids("BTCUSDT") == [1, 2, 3, 4]


def test_restart_of_the_bus_mid_stream_loses_nothing_and_doubles_nothing(redis_server):
    store = FakeStore()
    pub = _publisher(redis_server.url())
    ing = RecordingIngestor()
    feed = BusFeed(ing, _follower(redis_server.url()), store.fetch,
                   name_of=lambda i: i.symbol, resolve=spot)

    def publish(lo: int, hi: int) -> None:
        for i in range(lo, hi + 1):
            for s in SYMS:
                t = trade(s, i)
                store.add(t)  # the ingest side stores what it publishes
                pub.trade(t)

    try:
        publish(1, 200)
        assert pub.flush(10)
        _drain(feed, lambda: all(len(ing.ids(s)) == 200 for s in SYMS))
        publish(201, 400)  # sent, never read: the restart below loses them
        assert pub.flush(10)
        redis_server.kill()
        publish(401, 600)  # the bus is down: kept and retried by the publisher
        wait_for(lambda: pub.status()["send_errors"] > 0, 10, "a failed send")
        assert not pub.status()["connected"] and pub.status()["error"]
        with pytest.raises(BusError):
            feed.follower.read(50)
        redis_server.start()  # same port, empty
        assert pub.flush(15)
        assert pub.status()["connected"]
        _drain(feed, lambda: all(len(ing.ids(s)) >= 600 for s in SYMS), timeout=15)
        for s in SYMS:
            assert ing.ids(s) == list(range(1, 601)), s
        assert feed.filled_from_store == 400  # 201..400 of both, from the store
        assert feed.missed == 0
        assert feed.follower.status()["reconnects"] >= 1
    finally:
        pub.close()
        feed.follower.close()


def test_trimmed_entries_are_read_from_the_store(redis_server):
    """``MAXLEN ~ 5``: Redis drops whole 100-entry nodes; a follower that starts late
    reads what is left and takes the rest from the store."""
    store = FakeStore()
    pub = _publisher(redis_server.url(), trades_maxlen=5)
    try:
        for i in range(1, 601):  # one entry per trade: flush after each
            t = trade("BTCUSDT", i)
            store.add(t)
            pub.trade(t)
            assert pub.flush(5)
        ing = RecordingIngestor()
        fol = _follower(redis_server.url())
        fol.connect()
        held = fol._client.xlen("pairs:v1:trades:spot:BTCUSDT")
        assert held < 600, "nothing was trimmed: the test proves nothing"
        print(f"MAXLEN ~ 5 left {held} of 600 entries")
        feed = BusFeed(ing, fol, store.fetch, name_of=lambda i: i.symbol, resolve=spot)
        ing_first = ing  # the follower had seen up to id 0
        feed.last_live["spot:BTCUSDT"] = 0
        _drain(feed, lambda: len(ing_first.ids("BTCUSDT")) >= 600)
        assert ing.ids("BTCUSDT") == list(range(1, 601))
        assert feed.filled_from_store == 600 - held
        assert feed.missed == 0 and store.reads >= 1
        fol.close()
    finally:
        pub.close()


def test_a_follower_drops_trades_it_already_holds():
    """A publisher's resent drain (Redis applied it, the reply was lost) and a
    back-fill of ids the follower has: each id once."""
    ing = RecordingIngestor()
    feed = BusFeed(ing, None, FakeStore().fetch, name_of=lambda i: i.symbol, resolve=spot)
    btc = spot("BTCUSDT")
    batch = TradeBatch(btc, tuple(trade("BTCUSDT", i) for i in (1, 2, 3)))
    feed.apply([batch, batch])
    feed.apply([TradeBatch(btc, (trade("BTCUSDT", 2), trade("BTCUSDT", 0)), backfill=True)])
    assert ing.ids("BTCUSDT") == [1, 2, 3]
    assert [t.trade_id for t in ing.backfilled["BTCUSDT"]] == [0]
    assert feed.duplicates == 4


def test_id_ranges():
    r = IdRanges()
    for i in (5, 6, 7, 10, 2, 8, 9, 1, 20):
        r.add(i)
    assert (r.los, r.his) == ([1, 5, 20], [2, 10, 20])
    r.add_range(3, 4)
    assert (r.los, r.his) == ([1, 20], [10, 20])
    assert 0 not in r and 1 in r and 10 in r and 11 not in r and 20 in r


def test_bad_bus_urls_and_a_bus_that_does_not_answer():
    for bad in ("http://127.0.0.1:6379", "redis://", "redis://h:0x/0", "redis://h:6379/x"):
        with pytest.raises(BusUnavailable):
            check_bus_url(bad)
    assert check_bus_url("redis://127.0.0.1:6379/2") == "redis://127.0.0.1:6379/2"
    url = f"redis://127.0.0.1:{free_port()}/0"
    with pytest.raises(BusUnavailable, match="cannot reach the bus at .*redis-server"):
        probe(url)
    with pytest.raises(BusUnavailable, match="cannot reach the bus"):
        open_publisher(url, resolve=spot).start()


def test_bus_flag_is_checked_at_parse_time(capsys):
    from ingest.config import parse_config

    assert parse_config(["--bus", "redis://127.0.0.1:6390/1"]).bus == "redis://127.0.0.1:6390/1"
    assert parse_config([]).bus is None
    with pytest.raises(SystemExit) as exc:
        parse_config(["--bus", "kafka://broker:9092"])
    assert exc.value.code == 2
    assert "--bus: 'kafka://broker:9092': use redis://HOST:PORT/N" in capsys.readouterr().err
