"""A database written by the build before instruments (schema v1) migrates on the
writer's first open, losing nothing; a reader never migrates it."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from analytics.instruments import Instrument
from ingest.store import Gap, SchemaError, open_store
from ingest.store import sqlite_schema as schema
from ingest.store.sqlite_trades import SqliteTradeStore

T0 = 1_700_000_000_000

#: The CREATE statements of the v1 build, verbatim (ingest/store.py and
#: ingest/datasets.py and ingest/alert_store.py before instruments).
V1_TICKS = """
CREATE TABLE IF NOT EXISTS trades (
    symbol          TEXT    NOT NULL,
    trade_id        INTEGER NOT NULL,
    time_ms         INTEGER NOT NULL,
    price           REAL    NOT NULL,
    qty             REAL    NOT NULL,
    buyer_is_maker  INTEGER NOT NULL,
    PRIMARY KEY (symbol, trade_id)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS bars_1s (
    symbol        TEXT,
    ts            INTEGER,          -- bucket start, ms since epoch (UTC), trade time
    open          REAL,
    high          REAL,
    low           REAL,
    close         REAL,
    volume        REAL,
    quote_volume  REAL,
    trades        INTEGER,
    buy_volume    REAL,
    first_id      INTEGER,
    last_id       INTEGER,
    PRIMARY KEY (symbol, ts)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS gaps (
    symbol       TEXT,
    first_id     INTEGER,
    last_id      INTEGER,
    detected_ms  INTEGER,
    filled_ms    INTEGER,
    PRIMARY KEY (symbol, first_id)
) WITHOUT ROWID;

-- Session breaks (a replay loop seam, an outage whose trades could not be back-filled):
-- ts_ms = trade time of the first trade after the break. Re-applied at restore.
CREATE TABLE IF NOT EXISTS session_breaks (
    symbol      TEXT,
    ts_ms       INTEGER,
    reason      TEXT,
    created_at  INTEGER,
    PRIMARY KEY (symbol, ts_ms)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS meta (
    key    TEXT PRIMARY KEY,
    value  TEXT
);

INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', '1');
"""

V1_DATASETS = """
CREATE TABLE IF NOT EXISTS datasets (
    name        TEXT PRIMARY KEY,
    tf_ms       INTEGER NOT NULL,
    created_ms  INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS dataset_symbols (
    dataset      TEXT NOT NULL,
    symbol       TEXT NOT NULL,
    rows         INTEGER NOT NULL,
    start_ms     INTEGER NOT NULL,
    end_ms       INTEGER NOT NULL,
    filename     TEXT,
    kind         TEXT,
    uploaded_ms  INTEGER NOT NULL,
    PRIMARY KEY (dataset, symbol)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS dataset_bars (
    dataset       TEXT NOT NULL,
    symbol        TEXT NOT NULL,
    ts            INTEGER NOT NULL,
    open          REAL NOT NULL,
    high          REAL NOT NULL,
    low           REAL NOT NULL,
    close         REAL NOT NULL,
    volume        REAL NOT NULL,
    quote_volume  REAL,
    trades        INTEGER,
    buy_volume    REAL,
    PRIMARY KEY (dataset, symbol, ts)
) WITHOUT ROWID;
"""

V1_ALERTS = """
CREATE TABLE IF NOT EXISTS alert_rules (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    spec        TEXT    NOT NULL,
    enabled     INTEGER NOT NULL,
    created_ms  INTEGER NOT NULL,
    updated_ms  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS alert_state (
    rule_id        INTEGER PRIMARY KEY,
    armed          INTEGER NOT NULL,
    last_value     REAL,
    frontier_ts    INTEGER,
    last_fired_ts  INTEGER
);
CREATE TABLE IF NOT EXISTS alert_events (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    rule_id      INTEGER NOT NULL,
    data_ts      INTEGER NOT NULL,
    fired_ms     INTEGER NOT NULL,
    value        REAL,
    threshold    REAL    NOT NULL,
    description  TEXT,
    UNIQUE (rule_id, data_ts)
);
CREATE INDEX IF NOT EXISTS alert_events_fired ON alert_events (fired_ms);
"""

N_TRADES = 2_000


def _v1_rows():
    rng = np.random.default_rng(11)
    trades = [
        (sym, k, T0 + 7 * k, float(p), float(q), int(m))
        for sym, base in (("BTCUSDT", 37_000.0), ("ETHUSDT", 2_000.0))
        for k, p, q, m in zip(
            range(1, N_TRADES + 1),
            base * np.exp(np.cumsum(rng.normal(0, 1e-4, N_TRADES))),
            rng.exponential(0.01, N_TRADES),
            rng.random(N_TRADES) < 0.5,
            strict=True,
        )
    ]
    bars = [("BTCUSDT", T0 + 1000 * k, 1.0 + k, 2.0 + k, 0.5, 1.5 + k, 3.0, 4.5, 9, 1.0,
             10 * k + 1, 10 * k + 9) for k in range(50)]
    bars.append(("ETHUSDT", T0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0, None, 0.0, None, None))
    gaps = [("BTCUSDT", 2_001, 2_010, T0, None), ("ETHUSDT", 5, 9, T0 + 1, T0 + 2)]
    breaks = [("BTCUSDT", T0 + 70, "replay loop seam", T0 + 99)]
    return trades, bars, gaps, breaks


def make_v1_db(path, *, breaks_table: bool = True) -> dict:
    """A database exactly as the v1 build left it, with rows in every table."""
    trades, bars, gaps, breaks = _v1_rows()
    ddl = V1_TICKS if breaks_table else V1_TICKS.replace(
        "CREATE TABLE IF NOT EXISTS session_breaks", "CREATE TABLE IF NOT EXISTS unused_v0")
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.executescript(ddl + V1_DATASETS + V1_ALERTS)
    conn.executemany("INSERT INTO trades VALUES (?, ?, ?, ?, ?, ?)", trades)
    conn.executemany("INSERT INTO bars_1s VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", bars)
    conn.executemany("INSERT INTO gaps VALUES (?, ?, ?, ?, ?)", gaps)
    if breaks_table:
        conn.executemany("INSERT INTO session_breaks VALUES (?, ?, ?, ?)", breaks)
    conn.execute("INSERT INTO datasets VALUES ('m21', 3600000, 1)")
    conn.execute("INSERT INTO dataset_symbols VALUES ('m21', 'BTCUSDT', 1, 0, 0, 'f.csv', "
                 "'kline', 1)")
    conn.execute("INSERT INTO dataset_bars VALUES ('m21', 'BTCUSDT', 0, 1, 2, 0.5, 1.5, 3, "
                 "NULL, NULL, NULL)")
    conn.execute("INSERT INTO alert_rules (spec, enabled, created_ms, updated_ms) "
                 "VALUES ('{\"metric\": \"price\"}', 1, 1, 1)")
    conn.execute("INSERT INTO alert_events (rule_id, data_ts, fired_ms, value, threshold, "
                 "description) VALUES (1, 5, 6, 1.5, 1.0, 'fired')")
    conn.commit()
    conn.close()
    return {"trades": trades, "bars": bars, "gaps": gaps,
            "breaks": breaks if breaks_table else []}


def dump(path, sql: str) -> list:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def test_a_v1_database_migrates_losing_nothing(tmp_path):
    db = tmp_path / "ticks.db"
    rows = make_v1_db(db)
    with SqliteTradeStore(db, market="perp") as st:  # written by --market futures
        assert st.default_market == "perp"
        assert st.count_trades() == 2 * N_TRADES
        # every row, venue and market set, values unchanged
        got = dump(db, "SELECT venue, market, symbol, trade_id, time_ms, price, qty, "
                       "buyer_is_maker FROM trades ORDER BY symbol, trade_id")
        assert got == [("binance", "perp", *r) for r in rows["trades"]]
        got = dump(db, "SELECT * FROM bars_1s ORDER BY symbol, ts")
        assert got == [("binance", "perp", *r) for r in rows["bars"]]
        got = dump(db, "SELECT * FROM gaps ORDER BY symbol, first_id")
        assert got == [("binance", "perp", *r) for r in rows["gaps"]]
        got = dump(db, "SELECT * FROM session_breaks")
        assert got == [("binance", "perp", *r) for r in rows["breaks"]]
        # and the store reads them under the run's names
        assert st.last_trade_ids() == {"BTCUSDT": N_TRADES, "ETHUSDT": N_TRADES}
        perp = Instrument("binance", "perp", "BTCUSDT")
        np.testing.assert_array_equal(
            st.read_trades(perp).price,
            [r[3] for r in rows["trades"] if r[0] == "BTCUSDT"])
        assert len(st.read_bars("BTCUSDT")) == 50
        assert st.read_bars("ETHUSDT").first_id.tolist() == [-1]
        assert st.read_gaps()[0] == Gap("BTCUSDT", 2_001, 2_010, T0, None)
        assert [tuple(b) for b in st.read_breaks()] == [
            ("BTCUSDT", T0 + 70, "replay loop seam", T0 + 99)]
        assert len(st.read_trades("spot:BTCUSDT")) == 0
    assert dump(db, "PRAGMA user_version") == [(schema.SCHEMA_VERSION,)]
    assert dump(db, "SELECT value FROM meta WHERE key = 'schema_version'") == [
        (str(schema.SCHEMA_VERSION),)]
    # datasets and alerts are untouched and readable through the new stores
    stores = open_store(db, market="perp")
    try:
        assert stores.datasets.get("m21").rows == {"BTCUSDT": 1}
        assert [r.spec for r in stores.alerts.rules()] == [{"metric": "price"}]
        assert [e.description for e in stores.alerts.events()] == ["fired"]
        assert stores.trades.count_trades() == 2 * N_TRADES  # a second open: no-op
    finally:
        stores.close()
    assert dump(db, "PRAGMA integrity_check") == [("ok",)]


def test_the_migration_market_is_the_opening_runs(tmp_path):
    db = tmp_path / "ticks.db"
    make_v1_db(db)
    with SqliteTradeStore(db, market="spot"):  # a --replay run opened it first
        pass
    assert dump(db, "SELECT DISTINCT venue, market FROM trades") == [("binance", "spot")]
    with SqliteTradeStore(db, market="perp") as st:  # a later run does not re-migrate
        assert st.last_trade_ids() == {"spot:BTCUSDT": N_TRADES, "spot:ETHUSDT": N_TRADES}


def test_a_v1_database_without_the_breaks_table_migrates(tmp_path):
    db = tmp_path / "ticks.db"
    make_v1_db(db, breaks_table=False)
    with SqliteTradeStore(db).start() as st:
        st.add_break("BTCUSDT", T0, "seam")
        assert st.flush() and len(st.read_breaks()) == 1
        assert st.count_trades() == 2 * N_TRADES


def test_a_reader_never_migrates_and_says_who_must(tmp_path):
    db = tmp_path / "ticks.db"
    make_v1_db(db)
    before = dump(db, "SELECT * FROM trades")
    with pytest.raises(SchemaError, match=r"version 1.*never migrates.*ingesting process"):
        SqliteTradeStore(db, readonly=True)
    with pytest.raises(SchemaError, match="never migrates"):
        open_store(db, readonly=True)
    assert dump(db, "SELECT * FROM trades") == before
    assert dump(db, "PRAGMA user_version") == [(0,)]


def test_a_failed_migration_leaves_the_old_schema_whole(tmp_path, monkeypatch):
    db = tmp_path / "ticks.db"
    make_v1_db(db)
    before = dump(db, "SELECT * FROM trades")

    def half_then_fail(conn, market):
        schema._to_v2(conn, market)  # every table rebuilt...
        raise OSError("disk full")  # ...then the process fails before COMMIT

    monkeypatch.setattr(schema, "MIGRATIONS", ((2, half_then_fail),))
    with pytest.raises(OSError, match="disk full"):
        SqliteTradeStore(db)
    assert dump(db, "SELECT * FROM trades") == before
    assert dump(db, "PRAGMA user_version") == [(0,)]
    monkeypatch.undo()
    with SqliteTradeStore(db) as st:  # the next open migrates it
        assert st.count_trades() == 2 * N_TRADES


def test_a_newer_database_is_refused(tmp_path):
    db = tmp_path / "ticks.db"
    SqliteTradeStore(db).close()
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA user_version = {schema.SCHEMA_VERSION + 1}")
    conn.close()
    for readonly in (False, True):
        with pytest.raises(SchemaError, match="newer than this build"):
            SqliteTradeStore(db, readonly=readonly)


def test_the_app_following_an_old_database_says_the_writer_must_open_it(tmp_path):
    from ingest.config import parse_config
    from ingest.runtime import Runtime

    db = tmp_path / "ticks.db"
    make_v1_db(db)
    with pytest.raises(SystemExit, match="never migrates: start the ingesting process"):
        Runtime(parse_config(["--db", str(db), "--no-ingest"]))
    assert dump(db, "PRAGMA user_version") == [(0,)]


def test_a_v2_database_gains_book_bars_and_keeps_every_row(tmp_path):
    """v2 (before the top of book) -> v3: the step only adds ``book_bars``."""
    db = tmp_path / "ticks.db"
    make_v1_db(db)
    with SqliteTradeStore(db, market="perp"):  # this build: v1 -> v3
        pass
    # what the v2 build left: no book_bars, version 2
    conn = sqlite3.connect(db)
    conn.execute("DROP TABLE book_bars")
    conn.execute("PRAGMA user_version = 2")
    conn.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    before = {t: dump(db, f"SELECT * FROM {t}") for t in (
        "trades", "bars_1s", "gaps", "session_breaks")}
    with pytest.raises(SchemaError, match=r"version 2.*never migrates"):
        SqliteTradeStore(db, readonly=True)
    with SqliteTradeStore(db, market="perp").start() as st:
        assert {t: dump(db, f"SELECT * FROM {t}") for t in before} == before
        st.add_book_bar("BTCUSDT", (T0, 100.0, 100.5, 1.0, 2.0, 49.9, 3))
        assert st.flush()
        assert st.read_book_bars("BTCUSDT").values.tolist() == [
            [T0, 100.0, 100.5, 1.0, 2.0, 49.9, 3]]
    assert dump(db, "PRAGMA user_version") == [(3,)]
    with SqliteTradeStore(db, readonly=True) as ro:
        assert len(ro.read_book_bars("perp:BTCUSDT")) == 1
