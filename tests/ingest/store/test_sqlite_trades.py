"""SqliteTradeStore: round trips, duplicates, bars, gaps, flush/close, readers in other
threads and processes, a locked database, and a writer killed with SIGKILL."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from ingest.models import Trade
from ingest.store import Gap
from ingest.store.sqlite_trades import SqliteTradeStore

ROOT = Path(__file__).resolve().parents[3]
T0 = 1_700_000_000_000


def make_trades(
    symbol: str, n: int, *, first_id: int = 1, seed: int = 0
) -> list[Trade]:
    rng = np.random.default_rng(seed)
    prices = 37_000 * np.exp(np.cumsum(rng.normal(0, 1e-4, n)))
    qtys = rng.exponential(0.01, n)
    times = T0 + np.cumsum(rng.integers(0, 40, n))
    makers = rng.random(n) < 0.5
    return [
        Trade(symbol, first_id + k, int(times[k]), float(prices[k]), float(qtys[k]),
              bool(makers[k]), int(times[k]) + 3)
        for k in range(n)
    ]


def wait_for(predicate, timeout: float = 10.0) -> bool:
    """Poll instead of sleeping a fixed time: no timing assumptions in assertions."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def run_child(code: str, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )


@pytest.fixture
def store(tmp_path):
    s = SqliteTradeStore(tmp_path / "db" / "ticks.db").start()
    yield s
    s.close()


# ---------------------------------------------------------------------- trades
def test_creates_parent_dirs_schema_and_wal(tmp_path):
    path = tmp_path / "a" / "b" / "ticks.db"
    with SqliteTradeStore(path) as s:
        assert s.path == path and path.exists()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
    tables = {r[0] for r in rows}
    assert {"trades", "bars_1s", "book_bars", "gaps", "meta"} <= tables
    version = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'")
    assert version.fetchone() == ("3",)  # v2: rows keyed by instrument; v3: book_bars
    assert conn.execute("PRAGMA user_version").fetchone() == (3,)
    conn.close()


def test_trade_round_trip_is_exact(store):
    btc = make_trades("BTCUSDT", 2_500, seed=1)
    eth = make_trades("ETHUSDT", 700, first_id=10**9, seed=2)
    for t in btc[:1000] + eth + btc[1000:]:
        store.add_trade(t)
    assert store.flush()
    assert (store.pending, store.rows_written, store.duplicates_ignored) == (0, 3200, 0)
    assert store.last_commit_ms is not None and store.last_error is None
    cols = store.read_trades("BTCUSDT")
    assert len(cols) == 2500
    np.testing.assert_array_equal(cols.trade_id, [t.trade_id for t in btc])
    np.testing.assert_array_equal(cols.time_ms, [t.time_ms for t in btc])
    np.testing.assert_array_equal(cols.price, [t.price for t in btc])  # exact floats
    np.testing.assert_array_equal(cols.qty, [t.qty for t in btc])
    np.testing.assert_array_equal(cols.buyer_is_maker, [t.buyer_is_maker for t in btc])
    assert cols.time_ms.dtype == np.int64 and cols.buyer_is_maker.dtype == np.bool_
    assert store.count_trades() == 3200 and store.count_trades("ETHUSDT") == 700
    assert store.count_trades("NOPE") == 0
    assert store.symbols() == ["BTCUSDT", "ETHUSDT"]
    assert store.last_trade_ids() == {"BTCUSDT": 2500, "ETHUSDT": 10**9 + 699}
    np.testing.assert_array_equal(store.trade_ids("ETHUSDT"), [t.trade_id for t in eth])
    recent = store.read_recent_trades("BTCUSDT", 10)
    np.testing.assert_array_equal(recent.trade_id, np.arange(2491, 2501))
    assert len(store.read_recent_trades("BTCUSDT", 10**6)) == 2500
    after = store.read_trades_after_id("BTCUSDT", 2490)
    np.testing.assert_array_equal(after.trade_id, np.arange(2491, 2501))
    np.testing.assert_array_equal(after.price, [t.price for t in btc[2490:]])
    after = store.read_trades_after_id("BTCUSDT", -1, limit=3)
    np.testing.assert_array_equal(after.trade_id, [1, 2, 3])
    assert len(store.read_trades_after_id("BTCUSDT", 2500)) == 0
    assert len(store.read_trades("NOPE")) == 0
    assert len(store.read_recent_trades("NOPE", 5)) == 0


def test_empty_store_reads(store):
    assert store.symbols() == [] and store.last_trade_ids() == {}
    assert store.count_trades() == 0 and store.read_gaps() == []
    assert len(store.trade_ids("X")) == 0 and len(store.read_bars("X")) == 0
    assert len(store.read_trades("X", T0, T0 + 10)) == 0


def test_a_reader_thread_that_ends_leaves_no_open_connection(store):
    """The web server reads in a thread per request: each such thread's connection
    must close with it, not pile up for the life of the process."""
    import gc

    for t in make_trades("BTCUSDT", 10):
        store.add_trade(t)
    assert store.flush()
    assert store.count_trades() == 10
    assert len(store._readers) == 1  # this thread's, kept while it lives
    counts, conns = [], []

    def read() -> None:
        counts.append(store.count_trades())
        conns.append(store._reader())

    for _ in range(50):
        th = threading.Thread(target=read)
        th.start()
        th.join()
    gc.collect()
    assert counts == [10] * 50
    assert len(store._readers) == 1  # every request thread's reader went with it
    with pytest.raises(sqlite3.ProgrammingError):  # closed, not just forgotten
        conns[0].execute("SELECT 1")
    store.close()
    assert len(store._readers) == 0


def test_read_trades_time_range_matches_a_mask(store):
    """Ids with holes (gaps) and runs of equal times, against a plain numpy filter."""
    rng = np.random.default_rng(5)
    ids = np.cumsum(rng.integers(1, 4, 3000)) + 500
    times = T0 + np.cumsum(rng.integers(0, 3, 3000))
    for i, t in zip(ids.tolist(), times.tolist(), strict=True):
        store.add_trade(Trade("SOLUSDT", i, t, 1.0, 1.0, False, t))
    assert store.flush()
    bounds = [None, T0 - 5, int(times[0]), int(times[-1]), int(times[-1]) + 1]
    bounds += rng.integers(times[0] - 3, times[-1] + 3, 40).tolist()
    for start in bounds:
        for end in rng.choice(np.array(bounds, dtype=object), 6).tolist():
            mask = np.ones(len(ids), bool)
            if start is not None:
                mask &= times >= start
            if end is not None:
                mask &= times < end
            got = store.read_trades("SOLUSDT", start, end)
            np.testing.assert_array_equal(got.trade_id, ids[mask])
            np.testing.assert_array_equal(got.time_ms, times[mask])
    got = store.read_trades("SOLUSDT", int(times[100]), None, limit=7)
    np.testing.assert_array_equal(got.trade_id, ids[times >= times[100]][:7])


def test_duplicates_are_ignored_and_counted(store):
    trades = make_trades("BTCUSDT", 50)
    for t in trades + trades[:10]:  # duplicates inside one batch
        store.add_trade(t)
    assert store.flush()
    assert (store.rows_written, store.duplicates_ignored) == (50, 10)
    changed = Trade("BTCUSDT", 5, 1, 1.0, 1.0, True, 1)  # same key, other values
    for t in [*trades[40:], changed]:  # duplicates across batches
        store.add_trade(t)
    assert store.flush()
    assert (store.rows_written, store.duplicates_ignored) == (50, 21)
    assert store.count_trades() == 50
    assert store.read_trades("BTCUSDT").price[4] == trades[4].price  # first one kept


def test_malformed_row_is_rejected_alone(store):
    good = make_trades("BTCUSDT", 20)
    bad = Trade("BTCUSDT", 999, T0, {"not": "a number"}, 1.0, True, T0)  # cannot bind
    for t in good[:10] + [bad] + good[10:]:
        store.add_trade(t)
    assert store.flush()
    assert (store.rows_written, store.rows_rejected) == (20, 1)
    assert store.duplicates_ignored == 0
    assert store.count_trades() == 20 and store.last_error is None


# ---------------------------------------------------------------------- bars, gaps
def bar(ts: int, close: float, *, first_id=1, last_id=5) -> tuple:
    return (ts, close - 1, close + 1, close - 2, close, 3.5, 3.5 * close, 5, 1.25,
            first_id, last_id)


def test_bars_round_trip_and_replace(store):
    for k in range(100):
        store.add_bar("BTCUSDT", bar(T0 + 1000 * k, 100.0 + k))
    store.add_bar("ETHUSDT", bar(T0, 7.0))
    store.add_bar("BTCUSDT", bar(T0 + 5000, 999.0, last_id=9))  # re-closed, late data
    store.add_bar("BTCUSDT", (T0 + 100_000, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0, 0.0,
                              None, None))  # an empty bar
    numpy_row = tuple(np.float64(v) if isinstance(v, float) else np.int64(v)
                      for v in bar(T0 + 101_000, 5.0))
    store.add_bar("BTCUSDT", numpy_row)  # numpy scalars, as a bar builder may give
    assert store.flush()
    bars = store.read_bars("BTCUSDT")
    assert len(bars) == 102
    np.testing.assert_array_equal(bars.ts[:100], T0 + 1000 * np.arange(100))
    expected_close = 100.0 + np.arange(100)
    expected_close[5] = 999.0
    np.testing.assert_array_equal(bars.close[:100], expected_close)
    assert bars.last_id[5] == 9 and bars.high[5] == 1000.0
    assert (bars.trades[100], bars.first_id[100], bars.last_id[100]) == (0, -1, -1)
    assert bars.close[101] == 5.0 and bars.quote_volume[101] == 17.5
    assert bars.ts.dtype == np.int64 and bars.close.dtype == np.float64
    assert bars.trades.dtype == np.int64
    window = store.read_bars("BTCUSDT", T0 + 10_000, T0 + 20_000)  # end exclusive
    np.testing.assert_array_equal(window.ts, T0 + 1000 * np.arange(10, 20))
    assert len(store.read_bars("ETHUSDT")) == 1 and len(store.read_bars("X")) == 0


def test_add_bar_checks_width(store):
    with pytest.raises(ValueError, match="11 fields"):
        store.add_bar("BTCUSDT", (T0, 1.0))


def test_gaps_round_trip(store):
    store.add_gap("BTCUSDT", 101, 150, T0)
    store.add_gap("ETHUSDT", 7, 7, T0 + 1)
    store.mark_gap_filled("BTCUSDT", 101, T0 + 500)  # same batch as the insert
    store.add_gap("BTCUSDT", 300, 310, T0 + 2)
    assert store.flush()
    assert store.read_gaps() == [
        Gap("BTCUSDT", 101, 150, T0, T0 + 500),
        Gap("BTCUSDT", 300, 310, T0 + 2, None),
        Gap("ETHUSDT", 7, 7, T0 + 1, None),
    ]
    assert [g.missing for g in store.read_gaps()] == [50, 11, 1]
    store.add_gap("BTCUSDT", 300, 320, T0 + 9)  # detected again, wider
    store.mark_gap_filled("ETHUSDT", 7, T0 + 600)
    store.mark_gap_filled("ETHUSDT", 12345, T0 + 600)  # unknown gap: no-op
    assert store.flush()
    assert store.read_gaps("BTCUSDT")[1] == Gap("BTCUSDT", 300, 320, T0 + 2, None)
    assert store.read_gaps("ETHUSDT") == [Gap("ETHUSDT", 7, 7, T0 + 1, T0 + 600)]


# ---------------------------------------------------------------------- batching
def test_nothing_is_written_before_flush_with_a_long_interval(tmp_path):
    with SqliteTradeStore(tmp_path / "t.db", flush_interval_s=3600, batch_size=10**6) as s:
        s.start()
        for t in make_trades("BTCUSDT", 30):
            s.add_trade(t)
        assert wait_for(lambda: s.pending == 30)
        assert s.count_trades() == 0 and s.commits == 0
        assert s.flush()
        assert (s.count_trades(), s.pending, s.commits) == (30, 0, 1)
        assert s.flush()  # nothing pending: still True, no empty commit
        assert s.commits == 1


def test_batch_size_triggers_a_commit(tmp_path):
    with SqliteTradeStore(tmp_path / "t.db", flush_interval_s=3600, batch_size=10) as s:
        s.start()
        for t in make_trades("BTCUSDT", 25):
            s.add_trade(t)
        assert wait_for(lambda: s.count_trades() == 20)
        assert s.commits == 2 and s.pending == 5


def test_flush_interval_triggers_a_commit(tmp_path):
    with SqliteTradeStore(tmp_path / "t.db", flush_interval_s=0.05, batch_size=10**6) as s:
        s.start()
        s.add_trade(make_trades("BTCUSDT", 1)[0])
        assert wait_for(lambda: s.count_trades() == 1)


def test_one_commit_holds_every_table(tmp_path):
    with SqliteTradeStore(tmp_path / "t.db", flush_interval_s=3600, batch_size=10**6) as s:
        s.start()
        for t in make_trades("BTCUSDT", 5):
            s.add_trade(t)
        s.add_bar("BTCUSDT", bar(T0, 1.0))
        s.add_gap("BTCUSDT", 6, 9, T0)
        assert s.flush() and s.commits == 1


def test_flush_without_a_writer(tmp_path):
    s = SqliteTradeStore(tmp_path / "t.db")
    assert s.flush()  # nothing pending
    s.add_trade(make_trades("BTCUSDT", 1)[0])
    assert s.pending == 1 and not s.flush(timeout=0.01)
    s.start()
    assert s.flush() and s.count_trades() == 1
    s.close()


def test_close_flushes_and_reopen_sees_everything(tmp_path):
    path = tmp_path / "t.db"
    s = SqliteTradeStore(path, flush_interval_s=3600, batch_size=10**6).start()
    trades = make_trades("BTCUSDT", 1234)
    for t in trades:
        s.add_trade(t)
    s.add_bar("BTCUSDT", bar(T0, 1.0))
    assert s.close()
    assert s.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        s.add_trade(trades[0])
    with SqliteTradeStore(path) as again:
        assert again.count_trades() == 1234 and len(again.read_bars("BTCUSDT")) == 1
        np.testing.assert_array_equal(again.read_trades("BTCUSDT").price,
                                      [t.price for t in trades])


def test_enqueue_from_many_threads(store):
    def produce(symbol: str) -> None:
        for t in make_trades(symbol, 2000):
            store.add_trade(t)

    threads = [threading.Thread(target=produce, args=(f"S{k}USDT",)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.flush()
    assert store.count_trades() == 8000 and store.rows_written == 8000


def test_reads_from_other_threads_use_their_own_connection(store):
    for t in make_trades("BTCUSDT", 100):
        store.add_trade(t)
    assert store.flush()
    results: list[int] = []
    threads = [threading.Thread(target=lambda: results.append(store.count_trades()))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [100] * 4


# ---------------------------------------------------------------------- readonly
def test_readonly_store(tmp_path):
    with pytest.raises(FileNotFoundError):
        SqliteTradeStore(tmp_path / "missing.db", readonly=True)
    path = tmp_path / "t.db"
    SqliteTradeStore(path).close()
    ro = SqliteTradeStore(path, readonly=True)
    assert ro.readonly
    with SqliteTradeStore(path) as rw:
        assert not rw.readonly
    assert ro.start() is ro  # no writer
    with pytest.raises(RuntimeError, match="readonly"):
        ro.add_trade(make_trades("BTCUSDT", 1)[0])
    assert ro.flush() and ro.count_trades() == 0
    ro.close()


def test_readonly_store_reads_while_a_writer_thread_writes(tmp_path):
    path = tmp_path / "t.db"
    writer = SqliteTradeStore(path, flush_interval_s=0.01, batch_size=100).start()
    reader = SqliteTradeStore(path, readonly=True)
    trades = make_trades("BTCUSDT", 5000)
    seen: list[int] = []

    def produce() -> None:
        for k, t in enumerate(trades):
            writer.add_trade(t)
            if k % 500 == 0:
                writer.flush()

    thread = threading.Thread(target=produce)
    thread.start()
    while thread.is_alive():
        seen.append(reader.count_trades())
        ids = reader.trade_ids("BTCUSDT")
        assert np.array_equal(ids, np.arange(1, len(ids) + 1))  # committed prefixes
    thread.join()
    assert writer.flush()
    assert reader.count_trades() == 5000
    assert seen == sorted(seen)
    writer.close()
    reader.close()


WRITER_CHILD = """
    import sys
    from ingest.models import Trade
    from ingest.store.sqlite_trades import SqliteTradeStore
    s = SqliteTradeStore(sys.argv[1], flush_interval_s=0.01, batch_size=200).start()
    for k in range(1, 20_001):
        t = Trade("BTCUSDT", k, 1_700_000_000_000 + k, 1.0 + k, 0.5, k % 2 == 0, 0)
        s.add_trade(t)
        if k % 1000 == 0:
            s.flush()
            print(k, flush=True)
    s.close()
"""


def test_readonly_store_reads_while_another_process_writes(tmp_path):
    path = tmp_path / "t.db"
    SqliteTradeStore(path).close()
    reader = SqliteTradeStore(path, readonly=True)
    child = run_child(WRITER_CHILD, str(path))
    seen: list[int] = []
    while child.poll() is None:
        seen.append(reader.count_trades())
        recent = reader.read_recent_trades("BTCUSDT", 50)
        if len(recent):
            np.testing.assert_array_equal(np.diff(recent.trade_id), 1)
            np.testing.assert_array_equal(recent.price, 1.0 + recent.trade_id)
    out, err = child.communicate(timeout=30)
    assert child.returncode == 0, err
    assert out.split()[-1] == "20000"
    assert seen == sorted(seen)
    assert reader.count_trades() == 20_000
    assert reader.last_trade_ids() == {"BTCUSDT": 20_000}
    reader.close()


# ---------------------------------------------------------------------- failures
def test_writer_survives_a_locked_database(tmp_path, caplog):
    path = tmp_path / "t.db"
    s = SqliteTradeStore(path, busy_timeout_ms=20).start()
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        first = make_trades("BTCUSDT", 300)
        for t in first:
            s.add_trade(t)
        assert not s.flush(timeout=0.2)
        assert wait_for(lambda: s.last_error is not None)
        assert "locked" in s.last_error and s.last_error_ms is not None
        second = make_trades("BTCUSDT", 300, first_id=301)
        for t in second:  # enqueues keep working during the outage
            s.add_trade(t)
        assert s.pending >= 600 and s.commits == 0
        time.sleep(1.0)  # hold the lock ~1 s: several retries fail
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert s.flush(timeout=15)
    assert s.last_error is None and s.pending == 0
    assert s.count_trades() == 600 and s.rows_written == 600
    assert "recovered" in caplog.text
    s.close()


def test_close_times_out_while_locked_and_reports(tmp_path):
    path = tmp_path / "t.db"
    s = SqliteTradeStore(path, busy_timeout_ms=10).start()
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        s.add_trade(make_trades("BTCUSDT", 1)[0])
        assert not s.close(timeout=0.3)
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()


CRASH_CHILD = """
    import sys, time
    from ingest.models import Trade
    from ingest.store.sqlite_trades import SqliteTradeStore
    s = SqliteTradeStore(sys.argv[1], flush_interval_s=3600, batch_size=10**9).start()
    def trade(k):
        return Trade("ETHUSDT", k, 1_700_000_000_000 + k, 2000.0 + k / 7, 0.1, True, 0)
    for k in range(1, 5001):
        s.add_trade(trade(k))
    assert s.flush()
    print("flushed", flush=True)
    for k in range(5001, 8001):  # enqueued, never committed: lost in the crash
        s.add_trade(trade(k))
    print("more", flush=True)
    time.sleep(60)
"""

BUSY_CHILD = """
    import sys
    from ingest.models import Trade
    from ingest.store.sqlite_trades import SqliteTradeStore
    s = SqliteTradeStore(sys.argv[1], flush_interval_s=3600, batch_size=250).start()
    k = 0
    while True:
        k += 1
        s.add_trade(Trade("ETHUSDT", k, k, 1.0, 0.1, True, 0))
        if k == 2500:
            assert s.flush()
            print("running", flush=True)  # and keeps writing until killed
"""


def test_sigkill_after_flush_keeps_exactly_the_flushed_rows(tmp_path):
    path = tmp_path / "t.db"
    child = run_child(CRASH_CHILD, str(path))
    assert child.stdout.readline().strip() == "flushed"
    assert child.stdout.readline().strip() == "more"
    child.send_signal(signal.SIGKILL)
    child.communicate(timeout=30)
    assert child.returncode == -signal.SIGKILL
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    conn.close()
    with SqliteTradeStore(path) as s:
        assert s.count_trades() == 5000
        cols = s.read_trades("ETHUSDT")
        np.testing.assert_array_equal(cols.trade_id, np.arange(1, 5001))
        np.testing.assert_array_equal(cols.price, 2000.0 + np.arange(1, 5001) / 7)


def test_sigkill_mid_write_leaves_whole_batches(tmp_path):
    path = tmp_path / "t.db"
    child = run_child(BUSY_CHILD, str(path))
    assert child.stdout.readline().strip() == "running"
    child.send_signal(signal.SIGKILL)
    child.communicate(timeout=30)
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    conn.close()
    with SqliteTradeStore(path) as s:
        n = s.count_trades()
        assert n >= 2500 and n % 250 == 0  # transactions are all-or-nothing
        np.testing.assert_array_equal(s.trade_ids("ETHUSDT"), np.arange(1, n + 1))
