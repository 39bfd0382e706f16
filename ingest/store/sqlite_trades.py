"""SQLite trade store: ticks, closed 1 s bars and book bars, feed gaps, session breaks.

cryptofeed's backend pattern, shared with every backend in :mod:`ingest.store.writer`:
callers enqueue (O(1), never blocks the feed thread) and ONE writer thread owns the only
write connection. It commits each batch as one
``executemany`` per table inside a single transaction, because that is what makes
SQLite fast: one row per commit manages ~20k rows/s, batches of 1,000 131-337k rows/s
(see docs/performance.md). WAL mode lets any number of readers, in this process
or another one, read while the writer writes.

Readers use their own read-only connection, one per calling thread, never the
writer's; ``SqliteTradeStore(path, readonly=True)`` opens the database with a
``file:...?mode=ro`` URI and has no writer at all (e.g. a research notebook next to
the running app). Rows are keyed by instrument ``(venue, market, symbol)``; the schema
and its migrations are in :mod:`ingest.store.sqlite_schema`.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import weakref
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pandas as pd

from analytics.bars import BAR_FIELDS, Bars
from analytics.instruments import Instrument, normalize_market
from ingest.models import Trade
from ingest.store.book_rows import BOOK_COLUMN_LIST, book_frame
from ingest.store.interface import Break, Gap, InstrumentRef, TradeColumns
from ingest.store.sqlite_schema import SCHEMA_VERSION, check_readable, ensure_schema
from ingest.store.trade_reads import InstrumentReads, missing_ranges_of
from ingest.store.writer import BREAK, Batch, WriterStore

__all__ = ["SCHEMA_VERSION", "SqliteTradeStore", "trade_row"]

log = logging.getLogger(__name__)

#: The instrument part of every WHERE on the instrument tables (the PK's prefix).
_KEY = "venue = ? AND market = ? AND symbol = ?"

_INSERT_TRADE = (
    "INSERT OR IGNORE INTO trades (venue, market, symbol, trade_id, time_ms, price, qty, "
    "buyer_is_maker) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
# A bar can be closed again after late trades arrive: the newest version wins.
_UPSERT_BAR = (
    "INSERT OR REPLACE INTO bars_1s (venue, market, symbol, " + ", ".join(BAR_FIELDS)
    + ") VALUES (" + ", ".join("?" * (3 + len(BAR_FIELDS))) + ")"
)
# A book bar flushed open at shutdown may be closed again: the newest version wins.
_UPSERT_BOOK = (
    f"INSERT OR REPLACE INTO book_bars (venue, market, symbol, {BOOK_COLUMN_LIST}) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_BOOK_SELECT = f"SELECT {BOOK_COLUMN_LIST} FROM book_bars WHERE {_KEY}"
# The same gap detected twice (e.g. after a reconnect) keeps its first detection time
# and fill state; only a wider upper bound is taken over.
_UPSERT_GAP = (
    "INSERT INTO gaps (venue, market, symbol, first_id, last_id, detected_ms, filled_ms) "
    "VALUES (?, ?, ?, ?, ?, ?, NULL) ON CONFLICT (venue, market, symbol, first_id) "
    "DO UPDATE SET last_id = max(last_id, excluded.last_id)"
)
_FILL_GAP = f"UPDATE gaps SET filled_ms = ? WHERE {_KEY} AND first_id = ?"
# Recompute closed 1 s bars from the stored trades after a back-fill added trades to
# buckets the live engine had already closed (open/close by (time, id), as BarBuilder).
# Parameters: venue, market, symbol, lo id, hi id, start ms, end ms. The id bounds make
# it a primary key range scan (there is no time index, see sqlite_schema.TRADES).
BAR_FIELD_LIST = ", ".join(BAR_FIELDS)
_REBUILD_BARS = f"""
INSERT OR REPLACE INTO bars_1s (venue, market, symbol, {BAR_FIELD_LIST})
SELECT venue, market, symbol, ts, min(o), max(price), min(price), min(c), sum(qty),
       sum(price * qty), count(*), sum(CASE WHEN buyer_is_maker THEN 0.0 ELSE qty END),
       min(fi), min(li)
FROM (
    SELECT venue, market, symbol, time_ms - time_ms % 1000 AS ts, price, qty,
           buyer_is_maker,
           first_value(price) OVER w AS o, last_value(price) OVER w AS c,
           first_value(trade_id) OVER w AS fi, last_value(trade_id) OVER w AS li
    FROM trades
    WHERE {_KEY} AND trade_id >= ? AND trade_id <= ? AND time_ms >= ? AND time_ms < ?
    WINDOW w AS (PARTITION BY time_ms - time_ms % 1000 ORDER BY time_ms, trade_id
                 ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)
)
GROUP BY ts
"""
_INSERT_BREAK = (
    "INSERT OR IGNORE INTO session_breaks (venue, market, symbol, ts_ms, reason, "
    "created_at) VALUES (?, ?, ?, ?, ?, ?)"
)

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
# The bar columns as analytics.bars declares them (names, order and dtypes).
_BARS_EMPTY = Bars.empty(1000)
_BAR_DTYPE = np.dtype([(f, getattr(_BARS_EMPTY, f).dtype) for f in BAR_FIELDS])
# NULL cannot go into an int64 column: bars without trades report ids of -1.
_BAR_DEFAULTS = {"trades": 0, "first_id": -1, "last_id": -1}
_BAR_SELECT = (
    "SELECT "
    + ", ".join(f"coalesce({f}, {_BAR_DEFAULTS[f]})" if f in _BAR_DEFAULTS else f
                for f in BAR_FIELDS)
    + " FROM bars_1s "
)
_TRADE_SELECT = "SELECT time_ms, trade_id, price, qty, buyer_is_maker FROM trades "


def _columns(arr: np.ndarray, cls: type):
    """Structured array -> dataclass of contiguous columns (what analytics want)."""
    return cls(*(np.ascontiguousarray(arr[name]) for name in arr.dtype.names))


def trade_row(trade: Trade) -> tuple:
    """The ``trades`` row of a trade (what ``_INSERT_TRADE`` binds)."""
    return (trade.venue, trade.market, trade.symbol, trade.trade_id, trade.time_ms,
            trade.price, trade.qty, trade.buyer_is_maker)


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


class SqliteTradeStore(InstrumentReads, WriterStore):
    """Trades, 1 s bars, gaps and breaks in one SQLite file (WAL), written by one thread.

    The queue, batching, retries and status are :class:`ingest.store.writer.WriterStore`
    (a batch closes at ``batch_size`` items or ``flush_interval_s``). Only SQLite's own
    errors (database locked, disk full, I/O error) keep a batch for a retry; anything
    else is a bug and ends the writer, reported in ``last_error``.

    ``busy_timeout_ms`` is how long one attempt waits for a lock held by another
    connection before it counts as failed (5 s by default, lowered in tests).
    ``market`` is the default market (:class:`TradeStore`): of a bare symbol, and of
    the rows a migration from before instruments finds.
    """

    _kind = "SqliteTradeStore"

    def __init__(
        self,
        path: str | Path,
        *,
        flush_interval_s: float = 0.25,
        batch_size: int = 1000,
        readonly: bool = False,
        busy_timeout_ms: int = 5000,
        market: str = "spot",
    ) -> None:
        self._path = Path(path)
        self._init_writer(self._path, batch_size=batch_size,
                          flush_interval_s=flush_interval_s, readonly=readonly)
        self._busy_timeout_ms = int(busy_timeout_ms)
        self.default_market = normalize_market(market)
        self._wconn: sqlite3.Connection | None = None  # the writer thread's

        self._local = threading.local()
        self._readers: weakref.WeakSet[_ThreadReader] = weakref.WeakSet()
        self._readers_lock = threading.Lock()

        if readonly:
            if not self._path.exists():
                raise FileNotFoundError(f"SqliteTradeStore: no database at {self._path}")
            # fail now, not in the first callback, if it cannot open or is too old
            check_readable(self._reader(), self._path)
        else:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            conn = self._connect(readonly=False)
            try:
                ensure_schema(conn, self._path, self.default_market)
            finally:
                conn.close()

    # ------------------------------------------------------------------ lifecycle
    def _thread_name(self) -> str:
        return f"tickstore-{self._path.name}"

    def _close_backend(self) -> None:
        with self._readers_lock:
            readers, self._readers = list(self._readers), weakref.WeakSet()
        for reader in readers:
            reader.close()

    def read_breaks(self, instrument: InstrumentRef | None = None) -> list[Break]:
        """Stored session breaks (store names), by time."""
        sql = "SELECT venue, market, symbol, ts_ms, reason, created_at FROM session_breaks"
        args: tuple = ()
        if instrument is not None:
            sql, args = f"{sql} WHERE {_KEY}", self._key(instrument)
        rows = self._reader().execute(sql + " ORDER BY ts_ms", args).fetchall()
        return [Break(self._name(v, m, s), ts, reason, created)
                for v, m, s, ts, reason, created in rows]

    def first_trade_after(
        self, instrument: InstrumentRef, trade_id: int
    ) -> tuple[int, int] | None:
        """(id, time_ms) of the first stored trade with id > trade_id."""
        row = self._reader().execute(
            f"SELECT trade_id, time_ms FROM trades WHERE {_KEY} AND trade_id > ? "
            "ORDER BY trade_id LIMIT 1", (*self._key(instrument), int(trade_id)),
        ).fetchone()
        return None if row is None else (int(row[0]), int(row[1]))

    # ------------------------------------------------------------------ stats
    @property
    def path(self) -> Path:
        return self._path

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

    def _writer_begin(self) -> None:
        self._wconn = self._connect(readonly=False)

    def _writer_end(self) -> None:
        if self._wconn is not None:
            self._wconn.close()
            self._wconn = None

    def _retryable(self, exc: Exception) -> bool:
        """SQLite's own errors (locked, busy, disk full, I/O) may pass: retry them."""
        return isinstance(exc, sqlite3.Error)

    def _write(self, batch: Batch) -> tuple[int, int]:
        """One transaction. Returns (trades inserted, rows rejected as malformed)."""
        conn = self._wconn
        trades = [(t.venue, t.market, t.symbol, t.trade_id, t.time_ms, t.price, t.qty,
                   t.buyer_is_maker) for t in batch.trades]
        bars = [(*key, *row) for key, row in batch.bars]
        books = [(*key, *row) for key, row in batch.book_bars]
        gaps = [(*key, first, last, detected) for key, first, last, detected in batch.gaps]
        fills = [(filled, *key, first) for key, filled, first in batch.fills]
        conn.execute("BEGIN IMMEDIATE")
        try:
            try:
                inserted = rejected = 0
                if trades:
                    inserted = conn.executemany(_INSERT_TRADE, trades).rowcount
                if bars:
                    conn.executemany(_UPSERT_BAR, bars)
                if books:
                    conn.executemany(_UPSERT_BOOK, books)
                if gaps:
                    conn.executemany(_UPSERT_GAP, gaps)
                if fills:
                    conn.executemany(_FILL_GAP, fills)
            except _BAD_ROW_ERRORS:
                log.exception("%s: malformed rows in batch; writing row by row",
                              self._path)
                conn.execute("ROLLBACK")
                conn.execute("BEGIN IMMEDIATE")
                inserted, rejected = self._write_rows(conn, trades, bars, gaps, fills,
                                                      books)
            self._rebuild(conn, batch.steps)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return inserted, rejected

    def _rebuild(self, conn: sqlite3.Connection, steps) -> None:
        """Recompute back-filled buckets and insert breaks, inside the batch's
        transaction and after its trades and bars, so the rebuilt bars see every trade
        queued before them."""
        for step in steps:
            key = step[1]
            if step[0] is BREAK:
                conn.execute(_INSERT_BREAK, (*key, *step[2:]))
                continue
            start_ms, end_ms = step[2], step[3]
            lo = self._first_id_at(conn, key, start_ms)
            if lo is None:
                continue
            hi = self._first_id_at(conn, key, end_ms)
            hi = 2**63 - 1 if hi is None else hi
            conn.execute(_REBUILD_BARS, (*key, lo, hi, start_ms, end_ms))

    def _write_rows(self, conn, trades, bars, gaps, fills, books=()) -> tuple[int, int]:
        """Slow path for a batch holding a malformed row: skip just the bad rows."""
        inserted = rejected = 0
        for sql, rows in (
            (_INSERT_TRADE, trades), (_UPSERT_BAR, bars), (_UPSERT_BOOK, books),
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
        # The parent's write connection (if any) is kept, never used nor closed here:
        # closing a copy of it could touch the parent's WAL and locks.
        self._forget_writer()

    def _reader(self) -> sqlite3.Connection:
        """This thread's read-only connection (never the writer's)."""
        reader = getattr(self._local, "reader", None)
        if reader is None:
            if self._closed:
                raise RuntimeError(f"SqliteTradeStore: {self._path} is closed")
            reader = _ThreadReader(self._connect(readonly=True))
            self._local.reader = reader
            with self._readers_lock:
                self._readers.add(reader)
        return reader.conn

    def count_trades(self, instrument: InstrumentRef | None = None) -> int:
        if instrument is None:
            return self._reader().execute("SELECT count(*) FROM trades").fetchone()[0]
        return self._reader().execute(
            f"SELECT count(*) FROM trades WHERE {_KEY}", self._key(instrument)
        ).fetchone()[0]

    # Loose index scan: jump from one instrument to the next through the primary key
    # instead of visiting every row (SELECT DISTINCT would read the whole table): two
    # indexed seeks per instrument (its max id; the first row past it), and a run holds
    # tens of instruments. The seek is past (v, m, s, max id): a 3-column bound would
    # land on the instrument's first row and step over all of its rows.
    _FIRST_INSTRUMENT = (
        "SELECT venue, market, symbol FROM trades ORDER BY venue, market, symbol, trade_id "
        "LIMIT 1"
    )
    _NEXT_INSTRUMENT = (
        "SELECT venue, market, symbol FROM trades "
        "WHERE (venue, market, symbol, trade_id) > (?, ?, ?, ?) "
        "ORDER BY venue, market, symbol, trade_id LIMIT 1"
    )
    _LAST_ID = f"SELECT max(trade_id) FROM trades WHERE {_KEY}"

    def _last_ids(self) -> list[tuple[tuple[str, str, str], int]]:
        """((venue, market, symbol), max trade_id) per stored instrument, in key order."""
        conn = self._reader()
        out = []
        row = conn.execute(self._FIRST_INSTRUMENT).fetchone()
        while row is not None:
            key = tuple(row)
            last = conn.execute(self._LAST_ID, key).fetchone()[0]
            out.append((key, last))
            row = conn.execute(self._NEXT_INSTRUMENT, (*key, last)).fetchone()
        return out

    def trade_ids(self, instrument: InstrumentRef) -> np.ndarray:
        """All stored trade ids of the instrument, ascending (int64)."""
        cur = self._reader().execute(
            f"SELECT trade_id FROM trades WHERE {_KEY} ORDER BY trade_id",
            self._key(instrument),
        )
        return np.fromiter((row[0] for row in cur), dtype=np.int64)

    def read_trades(
        self,
        instrument: InstrumentRef,
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
        key = self._key(instrument)
        sql = _TRADE_SELECT + f"WHERE {_KEY}"
        params: list = [*key]
        if start_ms is not None:
            lo = self._first_id_at(conn, key, start_ms)
            if lo is None:
                return _columns(np.empty(0, _TRADE_DTYPE), _trade_columns)
            sql += " AND trade_id >= ? AND time_ms >= ?"
            params += [lo, start_ms]
        if end_ms is not None:
            hi = self._first_id_at(conn, key, end_ms)
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
    def _first_id_at(conn: sqlite3.Connection, key: tuple, ms: int) -> int | None:
        """Smallest trade_id whose time_ms >= ms, assuming time is monotonic in id,
        found with ~log2(n) indexed point reads; None if every trade is older."""
        # Two queries on purpose: min() and max() in one SELECT defeat SQLite's
        # min/max optimisation and scan the whole instrument (35 ms for 200k rows).
        lo = conn.execute(f"SELECT min(trade_id) FROM trades WHERE {_KEY}", key).fetchone()[0]
        if lo is None:
            return None
        hi = conn.execute(f"SELECT max(trade_id) FROM trades WHERE {_KEY}", key).fetchone()[0]
        probe = (
            f"SELECT trade_id, time_ms FROM trades WHERE {_KEY} AND trade_id >= ? "
            "ORDER BY trade_id LIMIT 1"
        )
        # Invariant: the answer is in [lo, hi] or does not exist. Ids can have holes
        # (gaps), so each probe lands on the next id actually stored.
        if conn.execute(probe, (*key, hi)).fetchone()[1] < ms:
            return None
        while lo < hi:
            mid = (lo + hi) // 2
            found_id, found_ms = conn.execute(probe, (*key, mid)).fetchone()
            if found_ms >= ms:
                hi = mid
            else:
                lo = found_id + 1  # no stored id in (mid, found_id] can be the answer
        return lo

    def read_trades_after_id(
        self, instrument: InstrumentRef, after_id: int, limit: int | None = None
    ) -> TradeColumns:
        """Trades with ``trade_id > after_id``, ascending: a PK range scan, so a process
        following the database (``--no-ingest``) can poll for new rows cheaply."""
        sql = _TRADE_SELECT + f"WHERE {_KEY} AND trade_id > ? ORDER BY trade_id"
        params: list = [*self._key(instrument), int(after_id)]
        if limit is not None:
            sql += " LIMIT ?"
            params.append(int(limit))
        cur = self._reader().execute(sql, params)
        return _columns(_fetch(cur, _TRADE_DTYPE), _trade_columns)

    def read_recent_trades(self, instrument: InstrumentRef, n: int) -> TradeColumns:
        """The last ``n`` trades by id, ascending (refills the ring on restart)."""
        cur = self._reader().execute(
            "SELECT * FROM (" + _TRADE_SELECT
            + f"WHERE {_KEY} ORDER BY trade_id DESC LIMIT ?) ORDER BY trade_id",
            (*self._key(instrument), int(n)),
        )
        return _columns(_fetch(cur, _TRADE_DTYPE), _trade_columns)

    def read_bars(
        self, instrument: InstrumentRef, start_ms: int | None = None,
        end_ms: int | None = None,
    ) -> Bars:
        """1 s bars with ``start_ms <= ts < end_ms``, ordered by ts."""
        sql = _BAR_SELECT + f"WHERE {_KEY}"
        params: list = [*self._key(instrument)]
        sql += _ts_range(params, start_ms, end_ms)
        arr = _fetch(self._reader().execute(sql + " ORDER BY ts", params), _BAR_DTYPE)
        return Bars.from_columns(
            {f: np.ascontiguousarray(arr[f]) for f in BAR_FIELDS}, tf_ms=1000
        )

    def read_book_bars(
        self, instrument: InstrumentRef, start_ms: int | None = None,
        end_ms: int | None = None,
    ) -> pd.DataFrame:
        """1 s book bars with ``start_ms <= ts < end_ms``, ordered by ts."""
        sql = _BOOK_SELECT
        params: list = [*self._key(instrument)]
        sql += _ts_range(params, start_ms, end_ms)
        return book_frame(self._reader().execute(sql + " ORDER BY ts", params))

    def missing_ranges(
        self, instrument: InstrumentRef, first_id: int, last_id: int
    ) -> list[tuple[int, int]]:
        """Sub-ranges of ``[first_id, last_id]`` with no stored trade, ascending."""
        cur = self._reader().execute(
            f"SELECT trade_id FROM trades WHERE {_KEY} AND trade_id >= ? "
            "AND trade_id <= ? ORDER BY trade_id",
            (*self._key(instrument), int(first_id), int(last_id)),
        )
        return missing_ranges_of((row[0] for row in cur), first_id, last_id)

    def read_gaps(self, instrument: InstrumentRef | None = None) -> list[Gap]:
        """Stored gaps (store names), by (venue, market, symbol, first_id)."""
        sql = ("SELECT venue, market, symbol, first_id, last_id, detected_ms, filled_ms "
               "FROM gaps")
        params: tuple = ()
        if instrument is not None:
            sql += f" WHERE {_KEY}"
            params = self._key(instrument)
        rows = self._reader().execute(
            sql + " ORDER BY venue, market, symbol, first_id", params
        )
        out = []
        for venue, market, symbol, first, last, detected, filled in rows:
            inst = Instrument(venue, market, symbol)
            out.append(Gap(self.name(inst), first, last, detected, filled, inst))
        return out


def _ts_range(params: list, start_ms: int | None, end_ms: int | None) -> str:
    """The ``start_ms <= ts < end_ms`` clause of a bar or book-bar read (either bound may
    be None), its values appended to ``params``."""
    sql = ""
    if start_ms is not None:
        sql += " AND ts >= ?"
        params.append(int(start_ms))
    if end_ms is not None:
        sql += " AND ts < ?"
        params.append(int(end_ms))
    return sql


def _trade_columns(time_ms, trade_id, price, qty, buyer_is_maker) -> TradeColumns:
    return TradeColumns(time_ms, trade_id, price, qty, buyer_is_maker.astype(np.bool_))


def _fetch(cur: sqlite3.Cursor, dtype: np.dtype) -> np.ndarray:
    """Rows -> structured array straight from the cursor: no intermediate list, and
    ~17 % faster than fetchall() + np.array (5 x 86,400 bars: 0.69 s vs 0.83 s)."""
    return np.fromiter(cur, dtype=dtype)

