"""The store contract (tests/ingest/store/contract.py) against a real PostgreSQL server,
plus what only PostgreSQL has: day partitions, the COPY path's idempotence after a
killed connection, the advisory writer lock, TimescaleDB detection, forks.

The server is started by the session fixture ``postgres_server``
(tests/ingest/store/conftest.py); each test gets a fresh database (``pg_url``).
"""

from __future__ import annotations

import logging
import os

import numpy as np
import psycopg
import pytest

from ingest.models import Trade
from ingest.store import SchemaError, StoreUnavailable, backend_for, open_store
from ingest.store.postgres_backend import PostgresBackend
from ingest.store.postgres_lock import WriterHeld
from ingest.store.postgres_schema import DAY_MS, day_partitions
from ingest.store.postgres_trades import PostgresTradeStore
from tests.ingest.store.contract import *  # noqa: F403  (the contract's tests)
from tests.ingest.store.contract import T0, trades, write


@pytest.fixture
def store_factory(pg_url):
    opened = []

    def factory(*, readonly: bool = False, market: str = "spot"):
        stores = open_store(pg_url, readonly=readonly, market=market)
        opened.append(stores)
        return stores

    yield factory
    for stores in opened:
        stores.close()


def _sql(url: str, query: str, args=()) -> list[tuple]:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(query, args).fetchall()


def _partitions(url: str) -> list[str]:
    with psycopg.connect(url, autocommit=True) as conn:
        return day_partitions(conn)


# ---------------------------------------------------------------------- the fixture
def test_missing_server_binaries_fail_naming_the_package(monkeypatch, tmp_path):
    from benchmarks import _servers
    from tests import servers

    monkeypatch.setattr(_servers, "PG_BIN_DIRS", (str(tmp_path),))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(pytest.fail.Exception, match="install postgresql-15"):
        servers.start_postgres()


# ---------------------------------------------------------------------- locations
@pytest.mark.parametrize("url", ["postgresql://u@localhost/ticks", "postgres://h/db",
                                 "postgresql+psycopg://h/db"])
def test_postgresql_locations_pick_the_postgres_backend(url):
    backend = backend_for(url)
    assert isinstance(backend, PostgresBackend) and backend.local_file(url) is None


def test_an_unreachable_server_is_refused_clearly_without_its_password(postgres_server):
    url = f"postgresql://someone:hunter2secret@127.0.0.1:{postgres_server.port + 1}/x"
    with pytest.raises(StoreUnavailable, match="cannot connect to PostgreSQL at") as err:
        open_store(url)
    assert "hunter2secret" not in str(err.value) and "***" in str(err.value)


def test_the_app_refuses_an_unreachable_postgresql_before_touching_anything(
        tmp_path, monkeypatch, postgres_server):
    from ingest.config import parse_config
    from ingest.runtime import Runtime

    monkeypatch.chdir(tmp_path)
    url = f"postgresql://postgres@127.0.0.1:{postgres_server.port + 1}/ticks"
    with pytest.raises(SystemExit, match="--db: cannot connect to PostgreSQL"):
        Runtime(parse_config(["--db", url, "--market", "spot"]))
    assert list(tmp_path.iterdir()) == []  # no lock file, no directory


def test_a_readonly_open_of_an_empty_database_never_creates_the_schema(pg_url):
    with pytest.raises(SchemaError, match="never creates or migrates: start the ingesting"):
        open_store(pg_url, readonly=True)
    assert _sql(pg_url, "SELECT to_regclass('trades')") == [(None,)]


# ---------------------------------------------------------------------- schema
def test_schema_steps_run_once_in_one_transaction_and_readers_never_migrate(
        pg_url, monkeypatch):
    from ingest.store import postgres_schema as schema

    real = schema.MIGRATIONS
    top = schema.SCHEMA_VERSION
    nxt = top + 1
    open_store(pg_url).close()  # this build's schema
    assert [r[0] for r in _sql(pg_url, "SELECT version FROM schema_version")] == list(
        range(1, top + 1))

    def broken_next(conn):
        conn.execute("ALTER TABLE bars_1s ADD COLUMN note text")
        raise RuntimeError("disk on fire")

    def next_step(conn):
        """next: bars get a note."""
        conn.execute("ALTER TABLE bars_1s ADD COLUMN note text")

    monkeypatch.setattr(schema, "SCHEMA_VERSION", nxt)
    monkeypatch.setattr(schema, "MIGRATIONS", (*real, (nxt, broken_next)))
    with pytest.raises(RuntimeError, match="disk on fire"):
        open_store(pg_url)
    assert _sql(pg_url, "SELECT max(version) FROM schema_version") == [(top,)]
    assert _sql(pg_url, "SELECT count(*) FROM information_schema.columns WHERE "
                        "table_name = 'bars_1s' AND column_name = 'note'") == [(0,)]
    with pytest.raises(SchemaError, match=f"version {top} .* never creates or migrates"):
        open_store(pg_url, readonly=True)

    monkeypatch.setattr(schema, "MIGRATIONS", (*real, (nxt, next_step)))
    open_store(pg_url).close()
    assert _sql(pg_url, "SELECT version, note FROM schema_version ORDER BY version")[-1] == (
        nxt, "next: bars get a note.")
    open_store(pg_url, readonly=True).close()

    monkeypatch.setattr(schema, "SCHEMA_VERSION", top)  # an older build meets a newer DB
    with pytest.raises(SchemaError, match=f"newer than this build's {top}"):
        open_store(pg_url)
    with pytest.raises(SchemaError, match=f"newer than this build's {top}"):
        open_store(pg_url, readonly=True)


def test_a_v1_database_gains_book_bars_and_keeps_its_rows(pg_url, monkeypatch):
    """v1 (before the top of book) -> v2: the step only adds book_bars."""
    from ingest.store import postgres_schema as schema

    with monkeypatch.context() as m:  # the v1 build
        m.setattr(schema, "SCHEMA_VERSION", 1)
        m.setattr(schema, "MIGRATIONS", schema.MIGRATIONS[:1])
        stores = open_store(pg_url)
        try:
            write(stores.trades.start(), trades("BTCUSDT", 300))
        finally:
            stores.close()
        assert _sql(pg_url, "SELECT to_regclass('book_bars')") == [(None,)]
    before = _sql(pg_url, "SELECT * FROM trades ORDER BY inst, trade_id")
    with pytest.raises(SchemaError, match="version 1 .* never creates or migrates"):
        open_store(pg_url, readonly=True)
    stores = open_store(pg_url)
    try:
        st = stores.trades.start()
        assert _sql(pg_url, "SELECT * FROM trades ORDER BY inst, trade_id") == before
        st.add_book_bar("BTCUSDT", (T0, 100.0, 100.5, 1.0, 2.0, 49.9, 3))
        assert st.flush()
        assert st.read_book_bars("BTCUSDT").values.tolist() == [
            [T0, 100.0, 100.5, 1.0, 2.0, 49.9, 3]]
    finally:
        stores.close()
    assert [r[0] for r in _sql(pg_url, "SELECT version FROM schema_version")] == [1, 2]


# ---------------------------------------------------------------------- partitions
def test_ticks_are_partitioned_by_utc_day_created_on_demand(pg_url):
    midnight = (T0 // DAY_MS + 1) * DAY_MS  # 2023-11-15 00:00 UTC
    times = [midnight - 1500, midnight - 1, midnight, midnight + 1, midnight + DAY_MS + 5]
    rows = [Trade("BTCUSDT", k + 1, t, 100.0 + k, 1.0, False, t)
            for k, t in enumerate(times)]
    stores = open_store(pg_url)
    try:
        st = stores.trades.start()
        assert "native" in st.status()["partitioning"]
        assert _partitions(pg_url) == []
        write(st, rows[:2])  # one day (and the next one, made ahead of midnight)
        parts = _partitions(pg_url)
        assert parts == ["trades_20231114", "trades_20231115"]
        write(st, rows[2:])  # two more days, in one batch
        parts = _partitions(pg_url)
        assert parts == ["trades_20231114", "trades_20231115", "trades_20231116",
                         "trades_20231117"]
        per_part = {p: _sql(pg_url, "SELECT count(*) FROM " + p)[0][0] for p in parts}
        assert per_part == {"trades_20231114": 2, "trades_20231115": 2, "trades_20231116": 1,
                            "trades_20231117": 0}
        np.testing.assert_array_equal(st.read_trades("BTCUSDT").time_ms, times)
        np.testing.assert_array_equal(  # a range across midnight
            st.read_trades("BTCUSDT", midnight - 1, midnight + 2).trade_id, [2, 3, 4])
        st.rebuild_bars("BTCUSDT", midnight - 2000, midnight + 1000)
        assert st.flush()
        assert st.read_bars("BTCUSDT").ts.tolist() == [midnight - 2000, midnight - 1000,
                                                      midnight]
    finally:
        stores.close()


def test_a_new_day_behind_a_long_read_waits_then_is_written_once(pg_url):
    """A read that holds ``trades`` (a day-sized download) while a batch needs a new
    partition: the DDL gives up after its lock_timeout, the batch is kept, reported,
    retried, and written once the read ends; the feed never waits."""
    import time

    stores = open_store(pg_url)
    try:
        st = stores.trades.start()
        write(st, trades("BTCUSDT", 10))  # day D and D + 1 exist now
        later = [Trade("BTCUSDT", 100 + k, T0 + 3 * DAY_MS + k, 1.0, 1.0, True, 0)
                 for k in range(10)]  # day D + 3: a partition to create
        with psycopg.connect(pg_url) as reader:  # a transaction holding ACCESS SHARE
            reader.execute("SELECT count(*) FROM trades").fetchone()
            for t in later:
                st.add_trade(t)
            deadline = time.monotonic() + 10
            while st.last_error is None and time.monotonic() < deadline:
                time.sleep(0.05)
            assert "lock timeout" in (st.last_error or "")
            assert not st.writable and st.pending == 10
            reader.rollback()  # the read ends
            assert st.flush(timeout=15)
        assert st.count_trades() == 20 and st.writable and st.rows_written == 20
    finally:
        stores.close()


def test_a_trade_redelivered_with_another_time_in_another_partition_is_ignored(pg_url):
    """(instrument, trade_id) is the identity even though the key must hold time_ms."""
    stores = open_store(pg_url)
    try:
        st = stores.trades.start()
        first = trades("BTCUSDT", 300, seed=3)
        write(st, first)
        moved = [Trade(t.symbol, t.trade_id, t.time_ms + DAY_MS, 1.0, 1.0, True, 0)
                 for t in first[100:200]]
        write(st, moved + first[:50])  # a back-fill page a day off, and plain duplicates
        assert (st.rows_written, st.duplicates_ignored) == (300, 150)
        cols = st.read_trades("BTCUSDT")
        np.testing.assert_array_equal(cols.time_ms, [t.time_ms for t in first])
        np.testing.assert_array_equal(cols.price, [t.price for t in first])
    finally:
        stores.close()


# ---------------------------------------------------------------------- crashes
def test_a_writer_connection_killed_mid_batch_commits_every_row_once(pg_url, caplog):
    stores = open_store(pg_url)
    st = stores.trades
    kills = []

    def kill_my_session(conn):  # after the COPY, before the move: the batch is half-done
        if not kills:
            pid = conn.info.backend_pid
            kills.append(pid)
            _sql(pg_url, "SELECT pg_terminate_backend(%s)", (pid,))

    st.after_copy = kill_my_session
    try:
        st.start()
        batch = trades("BTCUSDT", 2000, seed=11) + trades("ETHUSDT", 500, seed=12)
        with caplog.at_level(logging.WARNING):
            write(st, batch)
        assert kills and "keeping them, retrying" in caplog.text
        assert (st.rows_written, st.duplicates_ignored, st.rows_rejected) == (2500, 0, 0)
        assert st.count_trades() == 2500 and st.last_error is None
        write(st, batch[:700])  # the same rows again (a retry whose commit was lost)
        assert st.count_trades() == 2500 and st.duplicates_ignored == 700
        np.testing.assert_array_equal(st.trade_ids("ETHUSDT"), np.arange(1, 501))
        # the new session took the writer lock again: a second writer is still refused
        with pytest.raises(WriterHeld):
            PostgresTradeStore(pg_url)
    finally:
        stores.close()


def test_a_killed_server_session_keeps_the_batch_until_it_can_write(pg_url):
    """Every session of ours killed (an admin, a failover): writes wait, then resume."""
    stores = open_store(pg_url)
    try:
        st = stores.trades.start()
        write(st, trades("BTCUSDT", 100))
        assert st.count_trades() == 100 and st._pool.idle == 1  # a pooled reader session
        _sql(pg_url, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                     "WHERE datname = current_database() AND pid <> pg_backend_pid()")
        assert st.count_trades() == 100  # the dead pooled session is replaced, once
        assert stores.alerts.rules() == []  # so is the alert store's
        write(st, trades("BTCUSDT", 100, first_id=101))
        assert st.count_trades() == 200 and st.writable and st.commits == 2
    finally:
        stores.close()


# ---------------------------------------------------------------------- writer lock
def test_a_second_writer_is_refused_naming_the_holder(pg_url):
    first = open_store(pg_url)
    try:
        with pytest.raises(WriterHeld, match="already being written by another process") as e:
            open_store(pg_url)
        assert f"pid {os.getpid()}" in str(e.value)  # the holder's application_name
        assert "follow it read-only with --no-ingest" in str(e.value)
        ro = open_store(pg_url, readonly=True)  # readers take no lock
        ro.close()
    finally:
        first.close()
    open_store(pg_url).close()  # released with the writer's session


def test_the_app_refuses_a_second_ingest_on_the_same_database(pg_url, tmp_path, monkeypatch):
    from ingest.config import parse_config
    from ingest.runtime import Runtime

    monkeypatch.chdir(tmp_path)
    rt = Runtime(parse_config(["--db", pg_url, "--market", "spot"]))
    try:
        assert rt.writer_lock is None  # no lock file for a server
        with pytest.raises(SystemExit, match="error: database .* already being written"):
            Runtime(parse_config(["--db", pg_url, "--market", "spot"]))
        ro = Runtime(parse_config(["--db", pg_url, "--no-ingest"]))
        ro.stop()
        assert rt.health()["store"]["backend"] == "postgresql"
    finally:
        rt.stop()
    assert list(tmp_path.iterdir()) == []


def test_the_lock_of_a_dead_writer_is_free_at_once(pg_url):
    st = PostgresTradeStore(pg_url)
    pid = st._wconn.info.backend_pid
    _sql(pg_url, "SELECT pg_terminate_backend(%s)", (pid,))  # as kill -9 of its process
    for _ in range(50):
        if not _sql(pg_url, "SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)):
            break
        __import__("time").sleep(0.05)
    PostgresTradeStore(pg_url).close()
    st._wconn = None  # its session is gone already
    st.close()


# ---------------------------------------------------------------------- timescaledb
def test_without_timescaledb_the_status_says_native_partitioning(pg_url):
    stores = open_store(pg_url)
    try:
        status = stores.trades.status()
        assert status["backend"] == "postgresql"
        assert status["timescaledb_available"] is False
        assert status["partitioning"] == "native: one partition per UTC day"
        for key in ("path", "pending", "writable", "last_error", "last_error_ms",
                    "failing_since_ms", "last_commit_ms", "rows_written", "readonly"):
            assert key in status  # the SQLite store's health, same keys
    finally:
        stores.close()


def test_timescaledb_listed_but_unusable_falls_back_to_native_partitions(
        pg_url, monkeypatch, caplog):
    """The detection path: the extension looks available (as on a server with the
    package but without shared_preload_libraries): the hypertable fails, the schema
    falls back to native partitions in the same transaction, and says so."""
    from ingest.store import postgres_schema

    monkeypatch.setattr(postgres_schema, "timescale_available", lambda conn: True)
    with caplog.at_level(logging.WARNING):
        stores = open_store(pg_url)
    try:
        assert "could not be used" in caplog.text
        assert stores.trades.layout == "native"
        write(stores.trades.start(), trades("BTCUSDT", 10))
        assert stores.trades.count_trades() == 10
    finally:
        stores.close()


# ---------------------------------------------------------------------- readers
def test_a_thread_per_request_reuses_pooled_reader_sessions(pg_url):
    """The web server runs each request in a new thread: a session per thread would
    cost ~6 ms to open each time; the pool keeps reusing one."""
    import threading

    url = pg_url.replace("postgresql://", "postgres://")  # the short scheme works too
    stores = open_store(url)
    try:
        write(stores.trades.start(), trades("BTCUSDT", 50))
        counts = []
        for _ in range(30):  # 30 requests, one after the other, each on its own thread
            t = threading.Thread(target=lambda: counts.append(stores.trades.count_trades()))
            t.start()
            t.join()
        assert counts == [50] * 30
        readers = _sql(pg_url, "SELECT count(*) FROM pg_stat_activity WHERE "
                               "datname = current_database() AND application_name LIKE "
                               "'pairs reader%%'")[0][0]
        assert readers == 1
    finally:
        stores.close()


# ---------------------------------------------------------------------- forks
def test_a_forked_child_reads_on_its_own_sessions_and_leaves_the_parents_alone(pg_url):
    stores = open_store(pg_url)
    try:
        st = stores.trades.start()
        write(st, trades("BTCUSDT", 100))
        assert st.count_trades() == 100  # a pooled reader session now exists
        sessions = (st._wconn.info.backend_pid, stores.alerts._conn.info.backend_pid,
                    stores.datasets._conn.info.backend_pid)
        read, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: no pytest machinery from here, report through the pipe
            code = 1
            try:
                stores.reset_after_fork()
                n = st.count_trades()
                ok = stores.alerts.rules() == [] and stores.datasets.list() == []
                stores.close()  # closes only the child's own sessions
                code = 0 if n == 100 and ok else 2
            finally:
                os.write(write_end, bytes([code]))
                os._exit(0)
        os.close(write_end)
        assert os.read(read, 1) == b"\x00"
        os.waitpid(pid, 0)
        write(st, trades("BTCUSDT", 50, first_id=101))  # the parent's sessions still work
        assert st.count_trades() == 150 and st.last_error is None and st.commits == 2
        assert stores.alerts.insert_rule({"metric": "price"}, True).id == 1
        assert stores.datasets.list() == []
        assert (st._wconn.info.backend_pid, stores.alerts._conn.info.backend_pid,
                stores.datasets._conn.info.backend_pid) == sessions  # none was replaced
        with pytest.raises(WriterHeld):  # and it still holds the lock
            PostgresTradeStore(pg_url)
    finally:
        stores.close()
