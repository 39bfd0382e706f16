"""SQLite persistence for ticks, closed 1 s bars and feed gaps.

cryptofeed's backend pattern: callers enqueue (O(1), never blocks the feed thread) and
ONE writer thread owns the only write connection. It commits each batch as one
``executemany`` per table inside a single transaction, because that is what makes
SQLite fast: one row per commit manages ~20k rows/s, batches of 1,000 131-337k rows/s
(see docs/performance.md). WAL mode lets any number of readers, in this process
or another one, read while the writer writes.

Readers use their own read-only connection, one per calling thread, never the
writer's; ``TickStore(path, readonly=True)`` opens the database with a
``file:...?mode=ro`` URI and has no writer at all (e.g. a research notebook next to
the running app).
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import numpy as np

from ingest.models import Trade

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1

# No index on trades(symbol, time_ms): for trade time monotonic in trade_id (Binance
# assigns both at match time) a time range is found as an id range by binary search on
# the primary key, and the PK range scan it then runs is faster than an index scan plus
# one PK lookup per row. Measured with 5 x 200k trades: the index cut raw write
# throughput from 547k to 314k rows/s and grew the file from 47 to 73 MB, while a 1 h
# range read (84k rows) took ~70 ms either way: fetching rows into Python dominates,
# and the id binary search costs 0.3 ms.
SCHEMA = f"""
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

INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', '{SCHEMA_VERSION}');
"""

_INSERT_TRADE = (
    "INSERT OR IGNORE INTO trades "
    "(symbol, trade_id, time_ms, price, qty, buyer_is_maker) VALUES (?, ?, ?, ?, ?, ?)"
)
# A bar can be closed again after late trades arrive: the newest version wins.
_UPSERT_BAR = "INSERT OR REPLACE INTO bars_1s VALUES (?,?,?,?,?,?,?,?,?,?,?,?)"
# The same gap detected twice (e.g. after a reconnect) keeps its first detection time
# and fill state; only a wider upper bound is taken over.
_UPSERT_GAP = (
    "INSERT INTO gaps (symbol, first_id, last_id, detected_ms, filled_ms) "
    "VALUES (?, ?, ?, ?, NULL) ON CONFLICT (symbol, first_id) "
    "DO UPDATE SET last_id = max(last_id, excluded.last_id)"
)
_FILL_GAP = "UPDATE gaps SET filled_ms = ? WHERE symbol = ? AND first_id = ?"
# Recompute closed 1 s bars from the stored trades after a back-fill added trades to
# buckets the live engine had already closed (open/close by (time, id), as BarBuilder).
# Parameters: symbol, lo id, hi id, start ms, end ms. The id bounds make it a primary
# key range scan (there is no time index, see SCHEMA).
_REBUILD_BARS = """
INSERT OR REPLACE INTO bars_1s
SELECT symbol, ts, min(o), max(price), min(price), min(c), sum(qty), sum(price * qty),
       count(*), sum(CASE WHEN buyer_is_maker THEN 0.0 ELSE qty END), min(fi), min(li)
FROM (
    SELECT symbol, time_ms - time_ms % 1000 AS ts, price, qty, buyer_is_maker,
           first_value(price) OVER w AS o, last_value(price) OVER w AS c,
           first_value(trade_id) OVER w AS fi, last_value(trade_id) OVER w AS li
    FROM trades
    WHERE symbol = ? AND trade_id >= ? AND trade_id <= ? AND time_ms >= ? AND time_ms < ?
    WINDOW w AS (PARTITION BY time_ms - time_ms % 1000 ORDER BY time_ms, trade_id
                 ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)
)
GROUP BY ts
"""

_BAR_FIELDS = 11
_RETRY_FIRST_S = 0.1
_RETRY_MAX_S = 5.0

# Queue tags for everything that is not a Trade (trades go in as they are: no tuple
# to build on the feed thread).
_BAR, _GAP, _FILL, _FLUSH, _REBUILD = "bar", "gap", "fill", "flush", "rebuild"
_BREAK = "break"  # rides with the rebuilds: (tag, symbol, ts_ms, reason, created_at)
_INSERT_BREAK = "INSERT OR IGNORE INTO session_breaks VALUES (?, ?, ?, ?)"
_STOP = object()

# Errors caused by the rows themselves: retrying cannot help, so the batch is written
# row by row and only the offending rows are rejected. Every other sqlite3 error
# (locked, busy, disk full, I/O) keeps the whole batch and retries.
_BAD_ROW_ERRORS = (
    sqlite3.IntegrityError,
    sqlite3.InterfaceError,
    sqlite3.ProgrammingError,
    sqlite3.DataError,
)

_TRADE_DTYPE = np.dtype(
    [
        ("time_ms", np.int64),
        ("trade_id", np.int64),
        ("price", np.float64),
        ("qty", np.float64),
        ("buyer_is_maker", np.int64),
    ]
)
_BAR_DTYPE = np.dtype(
    [
        ("ts", np.int64),
        ("open", np.float64),
        ("high", np.float64),
        ("low", np.float64),
        ("close", np.float64),
        ("volume", np.float64),
        ("quote_volume", np.float64),
        ("trades", np.int64),
        ("buy_volume", np.float64),
        ("first_id", np.int64),
        ("last_id", np.int64),
    ]
)
# NULL cannot go into an int64 column: bars without trades report ids of -1.
_BAR_SELECT = (
    "SELECT ts, open, high, low, close, volume, quote_volume, coalesce(trades, 0), "
    "buy_volume, coalesce(first_id, -1), coalesce(last_id, -1) FROM bars_1s "
)
_TRADE_SELECT = "SELECT time_ms, trade_id, price, qty, buyer_is_maker FROM trades "


@dataclass(frozen=True, slots=True)
class TradeColumns:
    """Trades of one symbol as numpy columns, ordered by trade_id."""

    time_ms: np.ndarray  # int64
    trade_id: np.ndarray  # int64
    price: np.ndarray  # float64
    qty: np.ndarray  # float64
    buyer_is_maker: np.ndarray  # bool

    def __len__(self) -> int:
        return len(self.trade_id)


@dataclass(frozen=True, slots=True)
class BarColumns:
    """Closed 1 s bars of one symbol as numpy columns, ordered by ``ts`` (ms)."""

    ts: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    quote_volume: np.ndarray
    trades: np.ndarray
    buy_volume: np.ndarray
    first_id: np.ndarray  # -1 where NULL
    last_id: np.ndarray  # -1 where NULL

    def __len__(self) -> int:
        return len(self.ts)


@dataclass(frozen=True, slots=True)
class Gap:
    """A run of trade ids the feed never received (both ends inclusive)."""

    symbol: str
    first_id: int
    last_id: int
    detected_ms: int
    filled_ms: int | None

    @property
    def missing(self) -> int:
        return self.last_id - self.first_id + 1


def _columns(arr: np.ndarray, cls: type):
    """Structured array -> dataclass of contiguous columns (what analytics want)."""
    return cls(*(np.ascontiguousarray(arr[name]) for name in arr.dtype.names))


class _ThreadReader:
    """One thread's read-only connection, closed when that thread ends.

    The web server runs each request in a thread of its own: a connection per thread
    kept in a list would pile up one open SQLite connection (and its page cache) per
    request that ever read the store. Held only by the thread's ``threading.local``
    (the store keeps a weak reference, to close what is still open on ``close()``), it
    is closed when the thread's locals are dropped.
    """

    __slots__ = ("conn", "__weakref__")

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def close(self) -> None:
        self.conn.close()

    def __del__(self) -> None:
        try:
            self.conn.close()
        except Exception:  # interpreter shutdown: nothing left to release
            pass


class TickStore:
    """Trades, 1 s bars and gaps in one SQLite file (WAL), written by one thread.

    Enqueue from any thread (the feed calls ``add_trade`` up to ~20k times a second);
    the writer commits when ``batch_size`` items are waiting or ``flush_interval_s``
    has passed since the first of them, whichever comes first. If a commit fails with
    an operational error (database locked, disk full, I/O error) the batch is kept and
    retried with backoff (0.1 s doubling to 5 s) while new items keep queueing;
    ``last_error`` says what is wrong until a write succeeds again.

    ``busy_timeout_ms`` is how long one attempt waits for a lock held by another
    connection before it counts as failed (5 s by default, lowered in tests).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        flush_interval_s: float = 0.25,
        batch_size: int = 1000,
        readonly: bool = False,
        busy_timeout_ms: int = 5000,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if flush_interval_s <= 0:
            raise ValueError(f"flush_interval_s must be > 0, got {flush_interval_s}")
        self._path = Path(path)
        self._flush_interval_s = float(flush_interval_s)
        self._batch_size = int(batch_size)
        self._readonly = readonly
        self._busy_timeout_ms = int(busy_timeout_ms)

        self._q: queue.SimpleQueue = queue.SimpleQueue()
        self._put = self._refuse_readonly if readonly else self._q.put
        self._thread: threading.Thread | None = None
        self._closed = False
        self._held = 0  # items the writer has taken off the queue but not committed

        self._local = threading.local()
        self._readers: weakref.WeakSet[_ThreadReader] = weakref.WeakSet()
        self._readers_lock = threading.Lock()

        # Stats: written by the writer thread only, read anywhere.
        self.rows_written = 0  # trades actually inserted
        # Trades INSERT OR IGNORE skipped: an existing (symbol, trade_id), or (OR
        # IGNORE applies to NOT NULL too) a None in a required field.
        self.duplicates_ignored = 0
        self.rows_rejected = 0  # rows of any table that could not be bound at all
        self.commits = 0
        self.last_error: str | None = None
        self.last_error_ms: int | None = None
        self.last_commit_ms: int | None = None
        self.failing_since_ms: int | None = None

        if readonly:
            if not self._path.exists():
                raise FileNotFoundError(f"TickStore: no database at {self._path}")
            self._reader()  # fail now, not in the first callback, if it cannot open
        else:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            conn = self._connect(readonly=False)
            try:
                conn.executescript(SCHEMA)
            finally:
                conn.close()
        version = self._reader().execute(
            "SELECT value FROM meta WHERE key = 'schema_version'"
        ).fetchone()
        if version is None or int(version[0]) != SCHEMA_VERSION:
            raise RuntimeError(
                f"TickStore: {self._path} has schema version "
                f"{None if version is None else version[0]}, expected {SCHEMA_VERSION}"
            )

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> TickStore:
        """Start the writer thread (a readonly store has none). Returns self."""
        if self._readonly:
            return self
        if self._closed:
            raise RuntimeError("TickStore: start() after close()")
        if self._thread is not None:
            raise RuntimeError("TickStore: already started")
        self._thread = threading.Thread(
            target=self._run, name=f"tickstore-{self._path.name}", daemon=True
        )
        self._thread.start()
        return self

    def flush(self, timeout: float = 5.0) -> bool:
        """Block until everything enqueued before this call is committed.

        Returns False on timeout (e.g. the database is locked and the writer is still
        retrying) or when there is no running writer and items are pending.
        """
        if self._thread is None or not self._thread.is_alive():
            return self.pending == 0
        done = threading.Event()
        self._q.put((_FLUSH, done))
        return done.wait(timeout)

    def close(self, timeout: float = 5.0) -> bool:
        """Flush, stop the writer and close all connections. Returns False if the
        writer did not finish in time (its items are then still pending and lost when
        the process exits)."""
        if self._closed:
            return True
        self._closed = True
        self._put = self._refuse_closed
        ok = True
        if self._thread is not None:
            self._q.put(_STOP)
            self._thread.join(timeout)
            if self._thread.is_alive():
                ok = False
                log.error(
                    "%s: writer did not stop within %.1fs; %d items not written (%s)",
                    self._path, timeout, self.pending, self.last_error,
                )
        elif not self._readonly and self.pending:
            ok = False
            log.warning("%s: closed before start(); %d items dropped",
                        self._path, self.pending)
        with self._readers_lock:
            readers, self._readers = list(self._readers), weakref.WeakSet()
        for reader in readers:
            reader.close()
        return ok

    def __enter__(self) -> TickStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ enqueue API
    def add_trade(self, trade: Trade) -> None:
        """Queue one trade (duplicates by (symbol, trade_id) are ignored on write)."""
        self._put(trade)

    def add_bar(self, symbol: str, bar_row: tuple) -> None:
        """Queue a closed 1 s bar: (ts, open, high, low, close, volume, quote_volume,
        trades, buy_volume, first_id, last_id). A later row for the same (symbol, ts)
        replaces the earlier one."""
        if len(bar_row) != _BAR_FIELDS:
            raise ValueError(f"bar_row needs {_BAR_FIELDS} fields, got {len(bar_row)}")
        self._put((_BAR, symbol, bar_row))

    def add_gap(
        self, symbol: str, first_id: int, last_id: int, detected_ms: int
    ) -> None:
        """Queue a detected gap of missing trade ids [first_id, last_id]."""
        self._put((_GAP, symbol, first_id, last_id, detected_ms))

    def mark_gap_filled(self, symbol: str, first_id: int, filled_ms: int) -> None:
        """Queue "the gap starting at first_id was backfilled at filled_ms"."""
        self._put((_FILL, symbol, first_id, filled_ms))

    def rebuild_bars(self, symbol: str, start_ms: int, end_ms: int) -> None:
        """Queue "recompute the stored 1 s bars of [start_ms, end_ms) from the stored
        trades", run in the same transaction as, and after, everything queued before
        it (so the trades of a back-filled page are in)."""
        self._put((_REBUILD, symbol, int(start_ms), int(end_ms)))

    def add_break(self, symbol: str, ts_ms: int, reason: str) -> None:
        """Queue a session break of ``symbol`` at ``ts_ms`` (first trade after it)."""
        self._put((_BREAK, symbol, int(ts_ms), str(reason)[:200], _now_ms()))

    def read_breaks(self, symbol: str | None = None) -> list[tuple[str, int, str, int]]:
        """Stored session breaks as (symbol, ts_ms, reason, created_at), by time."""
        sql = "SELECT symbol, ts_ms, reason, created_at FROM session_breaks"
        args: tuple = ()
        if symbol is not None:
            sql, args = sql + " WHERE symbol = ?", (symbol,)
        try:
            rows = self._reader().execute(sql + " ORDER BY ts_ms", args).fetchall()
        except sqlite3.OperationalError:  # a DB from before the table (read-only)
            return []
        return [tuple(r) for r in rows]

    def first_trade_after(self, symbol: str, trade_id: int) -> tuple[int, int] | None:
        """(id, time_ms) of the first stored trade of ``symbol`` with id > trade_id."""
        row = self._reader().execute(
            "SELECT trade_id, time_ms FROM trades WHERE symbol = ? AND trade_id > ? "
            "ORDER BY trade_id LIMIT 1", (symbol, int(trade_id)),
        ).fetchone()
        return None if row is None else (int(row[0]), int(row[1]))

    def _refuse_readonly(self, _item) -> None:
        raise RuntimeError(f"TickStore: {self._path} was opened readonly")

    def _refuse_closed(self, _item) -> None:
        raise RuntimeError(f"TickStore: {self._path} is closed")

    # ------------------------------------------------------------------ stats
    @property
    def path(self) -> Path:
        return self._path

    @property
    def readonly(self) -> bool:
        return self._readonly

    @property
    def writable(self) -> bool:
        """False while commits fail (locked, disk full, I/O error): items queue up."""
        return not self._readonly and self.last_error is None

    def status(self) -> dict:
        """The ``store`` part of ``/api/health`` minus what the caller adds."""
        return {
            "path": str(self._path),
            "pending": self.pending,
            "writable": self.writable,
            "last_error": self.last_error,
            "last_error_ms": self.last_error_ms,
            "failing_since_ms": self.failing_since_ms,
            "last_commit_ms": self.last_commit_ms,
            "rows_written": self.rows_written,
            "readonly": self._readonly,
        }

    @property
    def pending(self) -> int:
        """Items enqueued but not committed yet (approximate while the writer runs)."""
        return self._q.qsize() + self._held

    # ------------------------------------------------------------------ writer
    def _connect(self, *, readonly: bool) -> sqlite3.Connection:
        if readonly:
            uri = f"file:{quote(str(self._path.resolve()))}?mode=ro"
            # check_same_thread=False only so close() may close every thread's
            # connection; each one is still used by exactly one thread.
            conn = sqlite3.connect(uri, uri=True, check_same_thread=False)
        else:
            # isolation_level=None: we issue BEGIN IMMEDIATE / COMMIT ourselves, so the
            # write lock is taken up front (with the busy timeout) instead of upgrading
            # a read transaction half-way through a batch.
            conn = sqlite3.connect(self._path, isolation_level=None)
        conn.execute(f"PRAGMA busy_timeout={self._busy_timeout_ms}")
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode.lower() != "wal":
            log.warning("%s: journal_mode is %s, not wal", self._path, mode)
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    def _run(self) -> None:
        conn = None
        try:
            conn = self._connect(readonly=False)
            self._loop(conn)
        except Exception as exc:  # nothing else would ever report it: make it visible
            log.exception("%s: writer thread died", self._path)
            self.last_error = f"writer died: {exc!r}"
            self.last_error_ms = _now_ms()
        finally:
            if conn is not None:
                conn.close()

    def _loop(self, conn: sqlite3.Connection) -> None:
        q = self._q
        trades: list = []
        bars: list = []
        gaps: list = []
        fills: list = []
        rebuilds: list = []
        waiters: list[threading.Event] = []
        n = 0
        deadline = 0.0
        while True:
            commit = stop = False
            try:
                if n == 0:
                    item = q.get()
                else:
                    wait = deadline - time.monotonic()
                    item = q.get(timeout=wait) if wait > 0 else q.get_nowait()
            except queue.Empty:
                item, commit = None, True  # the oldest pending item is 250 ms old
            if item is None:
                pass
            elif type(item) is Trade:
                trades.append(
                    (item.symbol, item.trade_id, item.time_ms, item.price, item.qty,
                     item.buyer_is_maker)
                )
            elif item is _STOP:
                commit = stop = True
            else:
                tag = item[0]
                if tag is _BAR:
                    bars.append((item[1], *(_plain(v) for v in item[2])))
                elif tag is _GAP:
                    gaps.append(item[1:])
                elif tag is _FILL:
                    fills.append((item[3], item[1], item[2]))
                elif tag is _REBUILD:
                    rebuilds.append(item[1:])
                elif tag is _BREAK:
                    rebuilds.append(item)
                elif tag is _FLUSH:
                    waiters.append(item[1])
                    commit = True
                else:
                    log.error("%s: unknown queue item %r dropped", self._path, item)
            if item is not None and not commit:
                n += 1
                if n == 1:
                    deadline = time.monotonic() + self._flush_interval_s
                self._held = n
                if n >= self._batch_size:
                    commit = True
            if commit:
                if trades or bars or gaps or fills or rebuilds:
                    self._commit(conn, trades, bars, gaps, fills, rebuilds)
                    trades, bars, gaps, fills, rebuilds = [], [], [], [], []
                n = self._held = 0
                for event in waiters:
                    event.set()
                waiters.clear()
            if stop:
                return

    def _commit(self, conn, trades, bars, gaps, fills, rebuilds=()) -> None:
        """Write one batch in one transaction; on operational errors keep it and retry
        with backoff until it succeeds (nothing enqueued is ever dropped for that)."""
        delay = _RETRY_FIRST_S
        while True:
            try:
                inserted, rejected = self._write(
                    conn, trades, bars, gaps, fills, rebuilds
                )
            except sqlite3.Error as exc:
                items = len(trades) + len(bars) + len(gaps) + len(fills)
                if self.last_error is None:
                    log.warning(
                        "%s: commit of %d items failed (%s); keeping them, retrying",
                        self._path, items, exc,
                    )
                else:
                    log.debug("%s: retry failed (%s); next in %.1fs",
                              self._path, exc, delay)
                self.last_error = f"{type(exc).__name__}: {exc}"
                self.last_error_ms = _now_ms()
                if self.failing_since_ms is None:
                    self.failing_since_ms = self.last_error_ms
                time.sleep(delay)
                delay = min(delay * 2, _RETRY_MAX_S)
                continue
            break
        if self.last_error is not None:
            log.warning("%s: writes recovered after: %s (%d items pending)",
                        self._path, self.last_error, self.pending)
            self.last_error = None
            self.failing_since_ms = None
        self.rows_written += inserted
        self.duplicates_ignored += len(trades) - inserted - rejected
        self.rows_rejected += rejected
        self.commits += 1
        self.last_commit_ms = _now_ms()

    def _write(self, conn, trades, bars, gaps, fills, rebuilds=()) -> tuple[int, int]:
        """One transaction. Returns (trades inserted, rows rejected as malformed)."""
        conn.execute("BEGIN IMMEDIATE")
        try:
            try:
                inserted = rejected = 0
                if trades:
                    inserted = conn.executemany(_INSERT_TRADE, trades).rowcount
                if bars:
                    conn.executemany(_UPSERT_BAR, bars)
                if gaps:
                    conn.executemany(_UPSERT_GAP, gaps)
                if fills:
                    conn.executemany(_FILL_GAP, fills)
            except _BAD_ROW_ERRORS:
                log.exception("%s: malformed rows in batch; writing row by row",
                              self._path)
                conn.execute("ROLLBACK")
                conn.execute("BEGIN IMMEDIATE")
                inserted, rejected = self._write_rows(conn, trades, bars, gaps, fills)
            self._rebuild(conn, rebuilds)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return inserted, rejected

    def _rebuild(self, conn: sqlite3.Connection, rebuilds) -> None:
        """Recompute back-filled buckets, inside the batch's transaction and after its
        trades and bars, so the rebuilt bars see every trade queued before them."""
        for step in rebuilds:
            if step[0] is _BREAK:
                conn.execute(_INSERT_BREAK, step[1:])
                continue
            symbol, start_ms, end_ms = step
            lo = self._first_id_at(conn, symbol, start_ms)
            if lo is None:
                continue
            hi = self._first_id_at(conn, symbol, end_ms)
            hi = 2**63 - 1 if hi is None else hi
            conn.execute(_REBUILD_BARS, (symbol, lo, hi, start_ms, end_ms))

    def _write_rows(self, conn, trades, bars, gaps, fills) -> tuple[int, int]:
        """Slow path for a batch holding a malformed row: skip just the bad rows."""
        inserted = rejected = 0
        for sql, rows in (
            (_INSERT_TRADE, trades), (_UPSERT_BAR, bars),
            (_UPSERT_GAP, gaps), (_FILL_GAP, fills),
        ):
            for row in rows:
                try:
                    changed = conn.execute(sql, row).rowcount
                except _BAD_ROW_ERRORS as exc:
                    rejected += 1
                    log.warning("%s: rejected row %r: %s", self._path, row, exc)
                    continue
                if sql is _INSERT_TRADE:
                    inserted += changed
        return inserted, rejected

    # ------------------------------------------------------------------ reads
    def reset_after_fork(self) -> None:
        """In a forked child: forget the parent's connections (never used across a fork)
        and its writer; the child only reads, through connections of its own."""
        self._local = threading.local()
        self._readers = weakref.WeakSet()
        self._readers_lock = threading.Lock()
        self._thread = None
        self._put = self._refuse_readonly

    def _reader(self) -> sqlite3.Connection:
        """This thread's read-only connection (never the writer's)."""
        reader = getattr(self._local, "reader", None)
        if reader is None:
            if self._closed:
                raise RuntimeError(f"TickStore: {self._path} is closed")
            reader = _ThreadReader(self._connect(readonly=True))
            self._local.reader = reader
            with self._readers_lock:
                self._readers.add(reader)
        return reader.conn

    def count_trades(self, symbol: str | None = None) -> int:
        if symbol is None:
            return self._reader().execute("SELECT count(*) FROM trades").fetchone()[0]
        return self._reader().execute(
            "SELECT count(*) FROM trades WHERE symbol = ?", (symbol,)
        ).fetchone()[0]

    # Loose index scan: jump from one symbol to the next through the primary key
    # instead of visiting every row (SELECT DISTINCT would read the whole table).
    _SYMBOLS_SQL = """
        WITH RECURSIVE s(sym) AS (
            SELECT min(symbol) FROM trades
            UNION ALL
            SELECT (SELECT min(symbol) FROM trades WHERE symbol > s.sym)
            FROM s WHERE s.sym IS NOT NULL
        )
        SELECT sym, (SELECT max(trade_id) FROM trades WHERE symbol = sym)
        FROM s WHERE sym IS NOT NULL
    """

    def symbols(self) -> list[str]:
        """Symbols with at least one stored trade, sorted."""
        return [row[0] for row in self._reader().execute(self._SYMBOLS_SQL)]

    def last_trade_ids(self) -> dict[str, int]:
        """Highest stored trade_id per symbol (where the feed resumes after restart)."""
        return dict(self._reader().execute(self._SYMBOLS_SQL).fetchall())

    def trade_ids(self, symbol: str) -> np.ndarray:
        """All stored trade ids of ``symbol``, ascending (int64)."""
        cur = self._reader().execute(
            "SELECT trade_id FROM trades WHERE symbol = ? ORDER BY trade_id", (symbol,)
        )
        return np.fromiter((row[0] for row in cur), dtype=np.int64)

    def read_trades(
        self,
        symbol: str,
        start_ms: int | None = None,
        end_ms: int | None = None,
        limit: int | None = None,
    ) -> TradeColumns:
        """Trades with ``start_ms <= time_ms < end_ms``, ordered by trade_id.

        ``limit`` keeps the first ``limit`` of them. A time range is first narrowed to
        an id range by binary search on the primary key, then read with a PK range
        scan that also filters on time. That relies on trade time being non-decreasing
        in trade_id, which Binance guarantees in practice (both are assigned by the
        matching engine); a trade out of time order across a bound could be missed.
        """
        conn = self._reader()
        sql = _TRADE_SELECT + "WHERE symbol = ?"
        params: list = [symbol]
        if start_ms is not None:
            lo = self._first_id_at(conn, symbol, start_ms)
            if lo is None:
                return _columns(np.empty(0, _TRADE_DTYPE), _trade_columns)
            sql += " AND trade_id >= ? AND time_ms >= ?"
            params += [lo, start_ms]
        if end_ms is not None:
            hi = self._first_id_at(conn, symbol, end_ms)
            if hi is not None:
                sql += " AND trade_id < ?"
                params.append(hi)
            sql += " AND time_ms < ?"
            params.append(end_ms)
        sql += " ORDER BY trade_id"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(int(limit))
        return _columns(_fetch(conn.execute(sql, params), _TRADE_DTYPE), _trade_columns)

    @staticmethod
    def _first_id_at(conn: sqlite3.Connection, symbol: str, ms: int) -> int | None:
        """Smallest trade_id whose time_ms >= ms, assuming time is monotonic in id,
        found with ~log2(n) indexed point reads; None if every trade is older."""
        # Two queries on purpose: min() and max() in one SELECT defeat SQLite's
        # min/max optimisation and scan the whole symbol (35 ms for 200k rows).
        lo = conn.execute(
            "SELECT min(trade_id) FROM trades WHERE symbol = ?", (symbol,)
        ).fetchone()[0]
        if lo is None:
            return None
        hi = conn.execute(
            "SELECT max(trade_id) FROM trades WHERE symbol = ?", (symbol,)
        ).fetchone()[0]
        probe = (
            "SELECT trade_id, time_ms FROM trades WHERE symbol = ? AND trade_id >= ? "
            "ORDER BY trade_id LIMIT 1"
        )
        # Invariant: the answer is in [lo, hi] or does not exist. Ids can have holes
        # (gaps), so each probe lands on the next id actually stored.
        if conn.execute(probe, (symbol, hi)).fetchone()[1] < ms:
            return None
        while lo < hi:
            mid = (lo + hi) // 2
            found_id, found_ms = conn.execute(probe, (symbol, mid)).fetchone()
            if found_ms >= ms:
                hi = mid
            else:
                lo = found_id + 1  # no stored id in (mid, found_id] can be the answer
        return lo

    def read_trades_after_id(
        self, symbol: str, after_id: int, limit: int | None = None
    ) -> TradeColumns:
        """Trades with ``trade_id > after_id``, ascending: a PK range scan, so a process
        following the database (``--no-ingest``) can poll for new rows cheaply."""
        sql = _TRADE_SELECT + "WHERE symbol = ? AND trade_id > ? ORDER BY trade_id"
        params: list = [symbol, int(after_id)]
        if limit is not None:
            sql += " LIMIT ?"
            params.append(int(limit))
        cur = self._reader().execute(sql, params)
        return _columns(_fetch(cur, _TRADE_DTYPE), _trade_columns)

    def read_recent_trades(self, symbol: str, n: int) -> TradeColumns:
        """The last ``n`` trades by id, ascending (refills the ring on restart)."""
        cur = self._reader().execute(
            "SELECT * FROM (" + _TRADE_SELECT
            + "WHERE symbol = ? ORDER BY trade_id DESC LIMIT ?) ORDER BY trade_id",
            (symbol, int(n)),
        )
        return _columns(_fetch(cur, _TRADE_DTYPE), _trade_columns)

    def read_bars(
        self, symbol: str, start_ms: int | None = None, end_ms: int | None = None
    ) -> BarColumns:
        """1 s bars with ``start_ms <= ts < end_ms``, ordered by ts."""
        sql = _BAR_SELECT + "WHERE symbol = ?"
        params: list = [symbol]
        if start_ms is not None:
            sql += " AND ts >= ?"
            params.append(start_ms)
        if end_ms is not None:
            sql += " AND ts < ?"
            params.append(end_ms)
        cur = self._reader().execute(sql + " ORDER BY ts", params)
        return _columns(_fetch(cur, _BAR_DTYPE), BarColumns)

    def unfilled_gaps(self) -> list[Gap]:
        """Gaps not marked filled (a restart hands them to the back-fill again)."""
        return [g for g in self.read_gaps() if g.filled_ms is None]

    def missing_ranges(
        self, symbol: str, first_id: int, last_id: int
    ) -> list[tuple[int, int]]:
        """Sub-ranges of ``[first_id, last_id]`` with no stored trade, ascending."""
        cur = self._reader().execute(
            "SELECT trade_id FROM trades WHERE symbol = ? AND trade_id >= ? "
            "AND trade_id <= ? ORDER BY trade_id",
            (symbol, int(first_id), int(last_id)),
        )
        out: list[tuple[int, int]] = []
        expect = int(first_id)
        for (tid,) in cur:
            if tid > expect:
                out.append((expect, tid - 1))
            expect = tid + 1
        if expect <= last_id:
            out.append((expect, int(last_id)))
        return out

    def read_gaps(self, symbol: str | None = None) -> list[Gap]:
        sql = "SELECT symbol, first_id, last_id, detected_ms, filled_ms FROM gaps"
        params: tuple = ()
        if symbol is not None:
            sql += " WHERE symbol = ?"
            params = (symbol,)
        rows = self._reader().execute(sql + " ORDER BY symbol, first_id", params)
        return [Gap(*row) for row in rows]


def _trade_columns(time_ms, trade_id, price, qty, buyer_is_maker) -> TradeColumns:
    return TradeColumns(time_ms, trade_id, price, qty, buyer_is_maker.astype(np.bool_))


def _fetch(cur: sqlite3.Cursor, dtype: np.dtype) -> np.ndarray:
    """Rows -> structured array straight from the cursor: no intermediate list, and
    ~17 % faster than fetchall() + np.array (5 x 86,400 bars: 0.69 s vs 0.83 s)."""
    return np.fromiter(cur, dtype=dtype)


def _plain(value):
    """numpy scalars -> Python numbers (sqlite3 cannot bind np.int64)."""
    return value.item() if isinstance(value, np.generic) else value


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
