"""The SQLite schema of the app's DB file, its version and its migrations.

Every table the app keeps lives in one file (``--db``): trades, 1 s bars, gaps and
session breaks (:mod:`ingest.store.sqlite_trades`), uploaded datasets
(:mod:`ingest.store.sqlite_datasets`) and alerts (:mod:`ingest.store.sqlite_alerts`).

Version: ``PRAGMA user_version`` (and, for builds from before it, ``meta.schema_version``,
which an older build checks and so refuses a newer file instead of misreading it).

* 1: trades, bars and gaps keyed by ``symbol`` alone (the schema before instruments;
  its ``user_version`` is 0, ``meta.schema_version`` '1').
* 2: trades, bars_1s, gaps and session_breaks keyed by ``(venue, market, symbol, ...)``.
* 3: adds ``book_bars`` (closed 1 s top-of-book bars, docs/book.md); nothing else
  changes, so the step only creates that table.

A fresh file gets :data:`TABLES` at once. An older one runs each step of
:data:`MIGRATIONS` above its version, all in ONE transaction (a crash half-way leaves the
old schema whole). A step that rebuilds a table copies every row: rows from before
instruments get venue ``binance`` and the market the opening run says (``--market``).
Only a writer migrates: a readonly open of an old file raises :class:`SchemaError`.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable

from analytics.instruments import DEFAULT_VENUE
from ingest.store.interface import SchemaError

log = logging.getLogger(__name__)

SCHEMA_VERSION = 3

# No index on trades(..., time_ms): for trade time monotonic in trade_id (Binance
# assigns both at match time) a time range is found as an id range by binary search on
# the primary key, and the PK range scan it then runs is faster than an index scan plus
# one PK lookup per row. Measured with 5 x 200k trades: the index cut raw write
# throughput from 547k to 314k rows/s and grew the file from 47 to 73 MB, while a 1 h
# range read (84k rows) took ~70 ms either way: fetching rows into Python dominates,
# and the id binary search costs 0.3 ms.
TRADES = """
CREATE TABLE IF NOT EXISTS trades (
    venue           TEXT    NOT NULL,
    market          TEXT    NOT NULL,
    symbol          TEXT    NOT NULL,
    trade_id        INTEGER NOT NULL,
    time_ms         INTEGER NOT NULL,
    price           REAL    NOT NULL,
    qty             REAL    NOT NULL,
    buyer_is_maker  INTEGER NOT NULL,
    PRIMARY KEY (venue, market, symbol, trade_id)
) WITHOUT ROWID"""

BARS = """
CREATE TABLE IF NOT EXISTS bars_1s (
    venue         TEXT NOT NULL,
    market        TEXT NOT NULL,
    symbol        TEXT NOT NULL,
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
    PRIMARY KEY (venue, market, symbol, ts)
) WITHOUT ROWID"""

# Closed 1 s top-of-book bars (analytics.book.BOOK_FIELDS), keyed like bars_1s; only
# seconds with at least one best bid/ask update have a row (readers carry forward).
BOOK_BARS = """
CREATE TABLE IF NOT EXISTS book_bars (
    venue           TEXT NOT NULL,
    market          TEXT NOT NULL,
    symbol          TEXT NOT NULL,
    ts              INTEGER NOT NULL,  -- bucket start, ms (T on futures, receive on spot)
    bid             REAL,
    ask             REAL,
    bid_qty         REAL,
    ask_qty         REAL,
    spread_bps_twa  REAL,
    updates         INTEGER,
    PRIMARY KEY (venue, market, symbol, ts)
) WITHOUT ROWID"""

GAPS = """
CREATE TABLE IF NOT EXISTS gaps (
    venue        TEXT NOT NULL,
    market       TEXT NOT NULL,
    symbol       TEXT NOT NULL,
    first_id     INTEGER,
    last_id      INTEGER,
    detected_ms  INTEGER,
    filled_ms    INTEGER,
    PRIMARY KEY (venue, market, symbol, first_id)
) WITHOUT ROWID"""

# Session breaks (a replay loop seam, an outage whose trades could not be back-filled):
# ts_ms = trade time of the first trade after the break. Re-applied at restore.
BREAKS = """
CREATE TABLE IF NOT EXISTS session_breaks (
    venue       TEXT NOT NULL,
    market      TEXT NOT NULL,
    symbol      TEXT NOT NULL,
    ts_ms       INTEGER,
    reason      TEXT,
    created_at  INTEGER,
    PRIMARY KEY (venue, market, symbol, ts_ms)
) WITHOUT ROWID"""

META = """
CREATE TABLE IF NOT EXISTS meta (
    key    TEXT PRIMARY KEY,
    value  TEXT
)"""

#: Uploaded OHLC datasets (ingest/store/dataset_rules.py): not instruments, uploads.
DATASET_TABLES = (
    """
CREATE TABLE IF NOT EXISTS datasets (
    name        TEXT PRIMARY KEY,
    tf_ms       INTEGER NOT NULL,
    created_ms  INTEGER NOT NULL
) WITHOUT ROWID""",
    """
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
) WITHOUT ROWID""",
    """
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
) WITHOUT ROWID""",
)

#: Alert rules (id AUTOINCREMENT: a deleted rule's id is never reused), per-rule state
#: (what a restart resumes from) and fired events (UNIQUE (rule_id, data_ts)).
ALERT_TABLES = (
    """
CREATE TABLE IF NOT EXISTS alert_rules (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    spec        TEXT    NOT NULL,
    enabled     INTEGER NOT NULL,
    created_ms  INTEGER NOT NULL,
    updated_ms  INTEGER NOT NULL
)""",
    """
CREATE TABLE IF NOT EXISTS alert_state (
    rule_id        INTEGER PRIMARY KEY,
    armed          INTEGER NOT NULL,
    last_value     REAL,
    frontier_ts    INTEGER,
    last_fired_ts  INTEGER
)""",
    """
CREATE TABLE IF NOT EXISTS alert_events (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    rule_id      INTEGER NOT NULL,
    data_ts      INTEGER NOT NULL,
    fired_ms     INTEGER NOT NULL,
    value        REAL,
    threshold    REAL    NOT NULL,
    description  TEXT,
    UNIQUE (rule_id, data_ts)
)""",
    "CREATE INDEX IF NOT EXISTS alert_events_fired ON alert_events (fired_ms)",
    # alert delivery (#20): channels and the outbox, one row per (event, channel)
    """
CREATE TABLE IF NOT EXISTS alert_channels (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    kind        TEXT    NOT NULL,
    name        TEXT    NOT NULL,
    url         TEXT    NOT NULL,
    secret      TEXT,
    created_ms  INTEGER NOT NULL,
    updated_ms  INTEGER NOT NULL
)""",
    """
CREATE TABLE IF NOT EXISTS alert_deliveries (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id         INTEGER NOT NULL,
    rule_id          INTEGER NOT NULL,
    channel_id       INTEGER NOT NULL,
    status           TEXT    NOT NULL,
    attempts         INTEGER NOT NULL,
    last_error       TEXT,
    last_status      INTEGER,
    created_ms       INTEGER NOT NULL,
    next_attempt_ms  INTEGER NOT NULL,
    delivered_ms     INTEGER,
    latency_ms       REAL,
    payload          TEXT    NOT NULL,
    UNIQUE (event_id, channel_id)
)""",
    "CREATE INDEX IF NOT EXISTS alert_deliveries_open ON alert_deliveries (status, id)",
    "CREATE INDEX IF NOT EXISTS alert_deliveries_rule ON alert_deliveries (rule_id, id)",
)

#: Every table of the current version, in creation order.
TABLES: tuple[str, ...] = (
    TRADES, BARS, BOOK_BARS, GAPS, BREAKS, META, *DATASET_TABLES, *ALERT_TABLES
)

#: v1 -> v2 copy of each instrument table: the v1 columns, with (venue, market) put
#: in front. Literal SQL (no identifiers spliced in at run time).
_V2_COPY = {
    "trades": (
        "INSERT INTO trades_v2 (venue, market, symbol, trade_id, time_ms, price, qty, "
        "buyer_is_maker) SELECT ?, ?, symbol, trade_id, time_ms, price, qty, "
        "buyer_is_maker FROM trades"
    ),
    "bars_1s": (
        "INSERT INTO bars_1s_v2 (venue, market, symbol, ts, open, high, low, close, "
        "volume, quote_volume, trades, buy_volume, first_id, last_id) SELECT ?, ?, "
        "symbol, ts, open, high, low, close, volume, quote_volume, trades, buy_volume, "
        "first_id, last_id FROM bars_1s"
    ),
    "gaps": (
        "INSERT INTO gaps_v2 (venue, market, symbol, first_id, last_id, detected_ms, "
        "filled_ms) SELECT ?, ?, symbol, first_id, last_id, detected_ms, filled_ms FROM gaps"
    ),
    "session_breaks": (
        "INSERT INTO session_breaks_v2 (venue, market, symbol, ts_ms, reason, created_at) "
        "SELECT ?, ?, symbol, ts_ms, reason, created_at FROM session_breaks"
    ),
}
_V2_DDL = {"trades": TRADES, "bars_1s": BARS, "gaps": GAPS, "session_breaks": BREAKS}
_V2_SWAP = {
    table: ("DROP TABLE " + table, "ALTER TABLE " + table + "_v2 RENAME TO " + table)
    for table in _V2_COPY
}


def _to_v2(conn: sqlite3.Connection, market: str) -> None:
    """Instruments: rebuild the four tables with (venue, market) in front of the key;
    old rows get venue 'binance' and ``market``."""
    for table, copy in _V2_COPY.items():
        if not _has_table(conn, table):  # e.g. session_breaks, newer than some files
            conn.execute(_V2_DDL[table])
            continue
        conn.execute(_V2_DDL[table].replace("EXISTS " + table + " (", "EXISTS " + table + "_v2 ("))
        moved = conn.execute(copy, (DEFAULT_VENUE, market)).rowcount
        drop, rename = _V2_SWAP[table]
        conn.execute(drop)
        conn.execute(rename)
        log.info("store migration v2: %s: %d rows -> venue %s, market %s",
                 table, moved, DEFAULT_VENUE, market)


def _to_v3(conn: sqlite3.Connection, market: str) -> None:
    """Top of book: the ``book_bars`` table (no existing row changes)."""
    conn.execute(BOOK_BARS)
    log.info("store migration v3: book_bars created")


#: (version reached, step). A step runs inside the migration's transaction and gets
#: the market of rows that carry none. Adding a version = one entry here.
MIGRATIONS: tuple[tuple[int, Callable[[sqlite3.Connection, str], None]], ...] = (
    (2, _to_v2),
    (3, _to_v3),
)


def _has_table(conn: sqlite3.Connection, name: str) -> bool:
    row = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
    ).fetchone()
    return row is not None


def schema_version(conn: sqlite3.Connection) -> int:
    """The file's schema version: 0 for an empty file (no trades table)."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version:
        return int(version)
    if not _has_table(conn, "trades"):
        return 0
    if _has_table(conn, "meta"):
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if row is not None:
            return int(row[0])
    return 1  # a v1 file always wrote its meta row; without one, it is v1 still


def check_readable(conn: sqlite3.Connection, path) -> None:
    """A readonly open: the file must be at this build's version (never migrated
    here: a reader must not write, and another process may be the writer)."""
    version = schema_version(conn)
    if version == SCHEMA_VERSION:
        return
    if version > SCHEMA_VERSION:
        raise SchemaError(
            f"{path} has schema version {version}, newer than this build's "
            f"{SCHEMA_VERSION}: run the newer build"
        )
    raise SchemaError(
        f"{path} has schema version {version}; this build reads version {SCHEMA_VERSION}. "
        f"A read-only open (--no-ingest) never migrates: start the ingesting process "
        f"(python -m ingest, or app.py without --no-ingest) on it once to migrate it"
    )


def ensure_schema(conn: sqlite3.Connection, path, market: str) -> int:
    """Create or migrate the schema (writer side). Returns the version found."""
    conn.execute("BEGIN IMMEDIATE")  # serialises two writers opening one file
    try:
        version = schema_version(conn)
        if version > SCHEMA_VERSION:
            raise SchemaError(
                f"{path} has schema version {version}, newer than this build's "
                f"{SCHEMA_VERSION}: run the newer build"
            )
        started = time.monotonic()
        if version == 0:
            for ddl in TABLES:
                conn.execute(ddl)
        else:
            for ddl in (META, *DATASET_TABLES, *ALERT_TABLES):  # idempotent
                conn.execute(ddl)
            for target, step in MIGRATIONS:
                if target > version:
                    log.warning("%s: migrating schema v%d -> v%d", path, target - 1, target)
                    step(conn, market)
        conn.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)",
            (str(SCHEMA_VERSION),),
        )
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    if 0 < version < SCHEMA_VERSION:
        log.warning("%s: schema migrated to v%d in %.1fs", path, SCHEMA_VERSION,
                    time.monotonic() - started)
    return version


def ensure_tables(conn: sqlite3.Connection, ddl: tuple[str, ...]) -> None:
    """A dataset or alert store on its own: its tables (idempotent, no version)."""
    for statement in ddl:
        conn.execute(statement)
