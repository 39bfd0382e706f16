"""PostgreSQL trade store: ticks, closed 1 s bars and book bars, gaps, session breaks.

The same shape as the SQLite store (callers enqueue, O(1); ONE writer thread owns the
only write connection and commits a batch per transaction), with what makes PostgreSQL
fast: trades go in with binary ``COPY`` (the issue measured ~300k ticks/s on this machine
kind, against ~110k/s for pipelined ``executemany``).

**Idempotent on (instrument, trade_id).** Ticks are partitioned by day on ``time_ms``,
so the primary key must contain ``time_ms``: ``(inst, trade_id, time_ms)`` alone would
let a trade re-delivered with another time (a REST back-fill page against the socket's
frame) be stored twice. So a batch is COPYed into a per-connection temp table
(``stage_trades``) and moved with ONE ``INSERT ... SELECT ... ON CONFLICT DO NOTHING``
that keeps, per (instrument, trade_id), the first row queued (``DISTINCT ON``), and only
ids that are not stored yet: an id above the instrument's highest stored id is new for
certain (one writer: the advisory lock), anything at or below it is checked with
``NOT EXISTS`` on the ``(inst, trade_id, ...)`` key prefix of every partition. The live
feed only ever appends above the high-water mark, so the check runs for back-fills and
duplicates alone. A batch is one transaction: after a crash, a killed connection or a
retry of a commit whose outcome was lost, every trade is stored exactly once.

Before the COPY, the writer creates the day partitions the batch needs (own short
transaction) and the ids of new instruments. Readers use their own read-only
session borrowed from a small pool (:mod:`ingest.store.postgres_pool`), never the
writer's.
"""

from __future__ import annotations

import logging
import operator
import os
import threading

import numpy as np
import pandas as pd
import psycopg

from analytics.bars import BAR_FIELDS, Bars
from analytics.instruments import Instrument, normalize_market
from ingest.store.book_rows import BOOK_COLUMN_LIST, book_frame, empty_book_frame
from ingest.store.interface import Break, Gap, InstrumentRef, TradeColumns
from ingest.store.postgres_conn import connect, orphan, safe_url
from ingest.store.postgres_lock import release_writer_lock, take_writer_lock
from ingest.store.postgres_pool import ReaderPool
from ingest.store.postgres_schema import (
    DAY_MS,
    check_readable,
    create_day_partition,
    ensure_schema,
    tick_layout,
    timescale_available,
)
from ingest.store.trade_reads import InstrumentReads, missing_ranges_of
from ingest.store.writer import BREAK, Batch, WriterStore

__all__ = ["PostgresTradeStore"]

log = logging.getLogger(__name__)

_I64 = (-(2**63), 2**63 - 1)

_STAGE = (
    "CREATE TEMP TABLE IF NOT EXISTS stage_trades (seq integer, inst integer, "
    "trade_id bigint, time_ms bigint, price double precision, qty double precision, "
    "buyer_is_maker boolean) ON COMMIT DELETE ROWS"
)
_COPY = (
    "COPY stage_trades (seq, inst, trade_id, time_ms, price, qty, buyer_is_maker) "
    "FROM STDIN (FORMAT BINARY)"
)
_COPY_TYPES = ["int4", "int4", "int8", "int8", "float8", "float8", "bool"]
_MOVE = """
INSERT INTO trades (inst, trade_id, time_ms, price, qty, buyer_is_maker)
SELECT DISTINCT ON (s.inst, s.trade_id)
       s.inst, s.trade_id, s.time_ms, s.price, s.qty, s.buyer_is_maker
FROM stage_trades s
JOIN unnest(%s::integer[], %s::bigint[]) AS h (inst, hi) ON h.inst = s.inst
WHERE s.trade_id > h.hi
   OR NOT EXISTS (SELECT 1 FROM trades t WHERE t.inst = s.inst AND t.trade_id = s.trade_id)
ORDER BY s.inst, s.trade_id, s.seq
ON CONFLICT DO NOTHING
"""
_BAR_COLS = ", ".join(BAR_FIELDS)
_UPSERT_BAR = (
    f"INSERT INTO bars_1s (inst, {_BAR_COLS}) VALUES (%s, "
    + ", ".join(["%s"] * len(BAR_FIELDS)) + ") ON CONFLICT (inst, ts) DO UPDATE SET "
    + ", ".join(f"{f} = excluded.{f}" for f in BAR_FIELDS if f != "ts")
)
_UPSERT_BOOK = (
    f"INSERT INTO book_bars (inst, {BOOK_COLUMN_LIST}) VALUES "
    "(%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (inst, ts) DO UPDATE SET "
    "bid = excluded.bid, ask = excluded.ask, bid_qty = excluded.bid_qty, "
    "ask_qty = excluded.ask_qty, spread_bps_twa = excluded.spread_bps_twa, "
    "updates = excluded.updates"
)
_BOOK_SELECT = f"SELECT {BOOK_COLUMN_LIST} FROM book_bars WHERE inst = %s"
_UPSERT_GAP = (
    "INSERT INTO gaps (inst, first_id, last_id, detected_ms, filled_ms) "
    "VALUES (%s, %s, %s, %s, NULL) ON CONFLICT (inst, first_id) "
    "DO UPDATE SET last_id = greatest(gaps.last_id, excluded.last_id)"
)
_FILL_GAP = "UPDATE gaps SET filled_ms = %s WHERE inst = %s AND first_id = %s"
_INSERT_BREAK = (
    "INSERT INTO session_breaks (inst, ts_ms, reason, created_at) VALUES (%s, %s, %s, %s) "
    "ON CONFLICT DO NOTHING"
)
# Recompute closed 1 s bars from the stored trades (open/close by (time, id), as
# BarBuilder); the time range prunes to the day partitions it covers.
_REBUILD_BARS = f"""
INSERT INTO bars_1s (inst, {_BAR_COLS})
SELECT inst, ts, min(o), max(price), min(price), min(c), sum(qty), sum(price * qty),
       count(*), sum(CASE WHEN buyer_is_maker THEN 0.0 ELSE qty END), min(fi), min(li)
FROM (
    SELECT inst, time_ms - mod(time_ms, 1000) AS ts, price, qty, buyer_is_maker,
           first_value(price) OVER w AS o, last_value(price) OVER w AS c,
           first_value(trade_id) OVER w AS fi, last_value(trade_id) OVER w AS li
    FROM trades
    WHERE inst = %s AND time_ms >= %s AND time_ms < %s
    WINDOW w AS (PARTITION BY time_ms - mod(time_ms, 1000) ORDER BY time_ms, trade_id
                 ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)
) x
GROUP BY inst, ts
ON CONFLICT (inst, ts) DO UPDATE SET
""" + ", ".join(f"{f} = excluded.{f}" for f in BAR_FIELDS if f != "ts")

_TRADE_DTYPE = np.dtype([("time_ms", np.int64), ("trade_id", np.int64),
                         ("price", np.float64), ("qty", np.float64),
                         ("buyer_is_maker", np.bool_)])
_BARS_EMPTY = Bars.empty(1000)
_BAR_DTYPE = np.dtype([(f, getattr(_BARS_EMPTY, f).dtype) for f in BAR_FIELDS])
_BAR_DEFAULTS = {"trades": 0, "first_id": -1, "last_id": -1}
_BAR_SELECT = (
    "SELECT " + ", ".join(f"coalesce({f}, {_BAR_DEFAULTS[f]})" if f in _BAR_DEFAULTS else f
                          for f in BAR_FIELDS)
    + " FROM bars_1s WHERE inst = %s"
)
_TRADE_SELECT = "SELECT time_ms, trade_id, price, qty, buyer_is_maker FROM trades WHERE inst = %s"
_INSTRUMENT_LAST_IDS = """
SELECT i.venue, i.market, i.symbol, m.last
FROM instruments i CROSS JOIN LATERAL (
    SELECT max(trade_id) AS last FROM trades t WHERE t.inst = i.id) m
WHERE m.last IS NOT NULL
ORDER BY i.venue, i.market, i.symbol
"""

#: Failures a retry may cure: the server, the network, locks, disk. Anything else a
#: batch raises comes from its rows (a type that cannot be sent, a NULL, a range).
_RETRYABLE = (psycopg.OperationalError, psycopg.InterfaceError)


class PostgresTradeStore(InstrumentReads, WriterStore):
    """Trades, 1 s bars, gaps and breaks in PostgreSQL, written by one thread.

    The queue, batching, retries and status are :class:`ingest.store.writer.WriterStore`.
    ``batch_size`` (20,000) and ``flush_interval_s`` (0.25) bound a batch as in SQLite.
    At live rates the 250 ms bound closes a batch first (≤ 5,000 trades at 20k/s); the
    size bound matters when a backlog drains (after an outage, a back-fill), where a
    larger batch pays fewer commits: 1M trades took 9.8 s in batches of 1,000, 7.8-8.3 s
    of 5,000 and 6.4-6.9 s of 20,000 (durable server, this machine).

    A failing commit keeps the batch and retries with backoff (0.1 s doubling to 5 s),
    whatever it raised, reconnecting (and re-taking the writer lock) when the
    connection is gone; ``last_error`` says why meanwhile.
    """

    _kind = "PostgresTradeStore"

    def __init__(self, location: str, *, flush_interval_s: float = 0.25,
                 batch_size: int = 20_000, readonly: bool = False,
                 market: str = "spot") -> None:
        self._init_writer(safe_url(location), batch_size=batch_size,
                          flush_interval_s=flush_interval_s, readonly=readonly)
        self._location = location
        self.default_market = normalize_market(market)
        self._pool = ReaderPool(location)
        self._pid = os.getpid()
        self._ids: dict[tuple[str, str, str], int] = {}  # never change once given
        self._ids_lock = threading.Lock()
        # writer state (writer thread only)
        self._wconn = None
        self._stage_ready = False
        self._days: set[int] = set()  # day partitions known to exist
        self._hw: dict[int, int] = {}  # highest stored trade_id per instrument id
        #: Test hook: called inside a batch's transaction after its COPY.
        self.after_copy = None

        if readonly:
            try:
                with self._pool.session() as conn:
                    check_readable(conn, self._where)
                    self.layout = tick_layout(conn)
                    self.timescaledb_available = timescale_available(conn)
            except BaseException:
                self._pool.close()
                raise
        else:
            conn = connect(location, role="ingest writer")
            try:
                take_writer_lock(conn, location)  # before the schema: one writer migrates
                ensure_schema(conn, self._where)
                self.layout = tick_layout(conn)
                self.timescaledb_available = timescale_available(conn)
            except BaseException:
                release_writer_lock(conn)  # ours if taken: free for the next try at once
                raise
            self._wconn = conn

    # ------------------------------------------------------------------ lifecycle
    def _thread_name(self) -> str:
        return "tickstore-pg"

    def _close_backend(self) -> None:
        writer_done = self._thread is None or not self._thread.is_alive()
        if writer_done and self._wconn is not None and os.getpid() == self._pid:
            release_writer_lock(self._wconn)  # never a parent's session from a child
            self._wconn = None
        self._pool.close()

    def reset_after_fork(self) -> None:
        """In a forked child: the parent's sessions are never closed nor used here
        (closing one would end the parent's session, writer lock included); the child
        only reads, through connections of its own."""
        orphan(self._wconn)
        self._wconn = None
        self._pool.reset_after_fork()
        self._pid = os.getpid()
        self._ids_lock = threading.Lock()
        self._forget_writer()

    # ------------------------------------------------------------------ status
    @property
    def path(self) -> str:
        return self._where

    def status(self) -> dict:
        """SQLite's ``store`` health, plus the backend and how ticks are partitioned."""
        return {
            "backend": "postgresql",
            **super().status(),
            "partitioning": {
                "native": "native: one partition per UTC day",
                "timescaledb": "timescaledb: hypertable, one-day chunks",
            }.get(self.layout, self.layout),
            "timescaledb_available": self.timescaledb_available,
            "writer_lock": None if self._readonly else "pg_advisory_lock (session)",
        }

    # ------------------------------------------------------------------ writer
    def _writer_end(self) -> None:
        if self._wconn is not None:
            release_writer_lock(self._wconn)
            self._wconn = None

    def _retryable(self, exc: Exception) -> bool:
        """Every failure keeps the batch (as SQLite's locked/I/O errors do); one that is
        not the server's nor the network's is logged in full once."""
        if not isinstance(exc, _RETRYABLE) and self.last_error is None:
            log.exception("%s: unexpected failure writing a batch", self._where)
        return True

    def _after_failure(self) -> None:
        """After a failure: a broken connection is replaced on the next attempt, and
        what the writer believed about the database is read again."""
        conn = self._wconn
        if conn is not None and (conn.broken or conn.closed):
            try:
                conn.close()
            except Exception:
                pass
            self._wconn = None
        self._hw.clear()
        self._days.clear()


    def _connection(self):
        if self._wconn is None:
            conn = connect(self._location, role="ingest writer")
            try:
                take_writer_lock(conn, self._location)  # the same lock, again
            except BaseException:
                conn.close()
                raise
            self._wconn = conn
            self._stage_ready = False
        return self._wconn

    def _write(self, batch: Batch) -> tuple[int, int]:
        conn = self._connection()
        self._prepare(conn, batch)
        rows = _trade_rows(batch, self._ids)
        stored = rows
        try:
            with conn.transaction():
                inserted = self._move(conn, rows)
                self._write_small(conn, batch, strict=True)
            rejected = 0
        except _RETRYABLE:
            raise
        except Exception:
            if conn.broken:
                raise
            log.exception("%s: malformed rows in batch; writing row by row", self._where)
            stored = [r for r in rows if _valid_trade(r)]
            rejected = len(rows) - len(stored)
            with conn.transaction():
                inserted = self._move(conn, stored)
                rejected += self._write_small(conn, batch, strict=False)
        # every id of the batch is stored now (inserted, or there already): the new
        # high-water marks (committed; a failed attempt never gets here)
        hw = self._hw
        for r in stored:
            if r[1] > hw[r[0]]:
                hw[r[0]] = r[1]
        return inserted, rejected

    def _prepare(self, conn, batch: Batch) -> None:
        """Outside the batch's transaction: ids of new instruments, the day partitions
        of its trades, and the staging table of this connection."""
        missing = batch.keys() - self._ids.keys()
        if missing:
            with conn.transaction():
                for key in sorted(missing):
                    conn.execute(
                        "INSERT INTO instruments (venue, market, symbol) VALUES (%s, %s, %s) "
                        "ON CONFLICT DO NOTHING", key)
                    row = conn.execute(
                        "SELECT id FROM instruments WHERE venue = %s AND market = %s "
                        "AND symbol = %s", key).fetchone()
                    self._ids[key] = row[0]
        if batch.trades and self.layout == "native":
            days = _days(batch)
            for day in sorted((days | {d + 1 for d in days}) - self._days):  # + tomorrow
                create_day_partition(conn, day)
                self._days.add(day)
        if not self._stage_ready:
            conn.execute(_STAGE)
            self._stage_ready = True
        for inst in _trade_insts(batch, self._ids):
            if inst not in self._hw:
                last = conn.execute("SELECT max(trade_id) FROM trades WHERE inst = %s",
                                    (inst,)).fetchone()[0]
                self._hw[inst] = _I64[0] if last is None else int(last)

    def _move(self, conn, rows: list[tuple]) -> int:
        """COPY the rows into the stage, then into ``trades`` with the identity guard.
        Returns the trades inserted."""
        if not rows:
            return 0
        with conn.cursor() as cur:
            with cur.copy(_COPY) as copy:
                copy.set_types(_COPY_TYPES)
                write = copy.write_row
                for seq, row in enumerate(rows):
                    write((seq, *row))
            if self.after_copy is not None:
                self.after_copy(conn)
            insts = sorted({r[0] for r in rows})
            cur.execute(_MOVE, (insts, [self._hw.get(i, _I64[0]) for i in insts]))
            return cur.rowcount

    def _write_small(self, conn, batch: Batch, *, strict: bool) -> int:
        """Bars, gaps, fills, then rebuilds and breaks in queue order. ``strict``:
        errors propagate; else each row runs in a savepoint and a bad one is skipped.
        Returns the rows rejected."""
        ids = self._ids
        rejected = 0
        work = [(_UPSERT_BAR, [(ids[k], *row) for k, row in batch.bars]),
                (_UPSERT_BOOK, [(ids[k], *row) for k, row in batch.book_bars]),
                (_UPSERT_GAP, [(ids[k], a, b, d) for k, a, b, d in batch.gaps]),
                (_FILL_GAP, [(ms, ids[k], first) for k, ms, first in batch.fills])]
        with conn.cursor() as cur:
            for stmt, params in work:
                if not params:
                    continue
                if strict:
                    cur.executemany(stmt, params)
                    continue
                for p in params:
                    try:
                        with conn.transaction():
                            cur.execute(stmt, p)
                    except _RETRYABLE:
                        raise
                    except Exception as exc:
                        rejected += 1
                        log.warning("%s: rejected row %r: %s", self._where, p, exc)
            for step in batch.steps:
                tag, key = step[0], step[1]
                if tag is BREAK:
                    cur.execute(_INSERT_BREAK, (ids[key], *step[2:]))
                else:
                    cur.execute(_REBUILD_BARS, (ids[key], step[2], step[3]))
        return rejected

    # ------------------------------------------------------------------ reads
    # Each read borrows a pooled read-only session for its statement(s)
    # (ingest/store/postgres_pool.py), never the writer's.
    def _one(self, sql: str, params=()) -> tuple | None:
        return self._pool.run(lambda conn: conn.execute(sql, params).fetchone())

    def _all(self, sql: str, params=()) -> list[tuple]:
        return self._pool.run(lambda conn: conn.execute(sql, params).fetchall())

    def _array(self, sql: str, params, dtype: np.dtype) -> np.ndarray:
        """Rows straight from the cursor into a structured array (no list of tuples)."""
        return self._pool.run(
            lambda conn: np.fromiter(conn.execute(sql, params, binary=True), dtype=dtype))

    def _all_of(self, instrument: InstrumentRef | None, sql: str, alias: str,
                order: str) -> list[tuple]:
        """Rows of ``sql`` (a table ``alias`` with an ``inst`` column), of one
        instrument or of all; none for an instrument the database never saw."""
        params: tuple = ()
        if instrument is not None:
            inst = self._inst(instrument)
            if inst is None:
                return []
            sql, params = f"{sql} WHERE {alias}.inst = %s", (inst,)
        return self._all(f"{sql} ORDER BY {order}", params)

    def _id_array(self, sql: str, params) -> np.ndarray:
        return self._pool.run(lambda conn: np.fromiter(
            (r[0] for r in conn.execute(sql, params, binary=True)), dtype=np.int64))

    def _inst(self, instrument: InstrumentRef) -> int | None:
        """The instrument's id, None if the database has never seen it."""
        key = self._key(instrument)
        found = self._ids.get(key)
        if found is None:
            row = self._one(
                "SELECT id FROM instruments WHERE venue = %s AND market = %s AND symbol = %s",
                key)
            if row is None:
                return None
            with self._ids_lock:
                found = self._ids.setdefault(key, row[0])
        return found

    def count_trades(self, instrument: InstrumentRef | None = None) -> int:
        if instrument is None:
            return int(self._one("SELECT count(*) FROM trades")[0])
        inst = self._inst(instrument)
        if inst is None:
            return 0
        return int(self._one("SELECT count(*) FROM trades WHERE inst = %s", (inst,))[0])

    def _last_ids(self) -> list[tuple[tuple[str, str, str], int]]:
        rows = self._all(_INSTRUMENT_LAST_IDS)
        return [((v, m, s), int(last)) for v, m, s, last in rows]

    def trade_ids(self, instrument: InstrumentRef) -> np.ndarray:
        inst = self._inst(instrument)
        if inst is None:
            return np.empty(0, np.int64)
        return self._id_array(
            "SELECT trade_id FROM trades WHERE inst = %s ORDER BY trade_id", (inst,))

    def read_trades(self, instrument: InstrumentRef, start_ms: int | None = None,
                    end_ms: int | None = None, limit: int | None = None) -> TradeColumns:
        """Trades with ``start_ms <= time_ms < end_ms`` by trade id: the time bounds
        prune the day partitions, the BRIN index the pages inside them."""
        inst = self._inst(instrument)
        if inst is None:
            return _empty_trades()
        sql, params = _TRADE_SELECT, [inst]
        if start_ms is not None:
            sql += " AND time_ms >= %s"
            params.append(int(start_ms))
        if end_ms is not None:
            sql += " AND time_ms < %s"
            params.append(int(end_ms))
        sql += " ORDER BY trade_id"
        if limit is not None:
            sql += " LIMIT %s"
            params.append(int(limit))
        return self._trades(sql, params)

    def read_trades_after_id(self, instrument: InstrumentRef, after_id: int,
                             limit: int | None = None) -> TradeColumns:
        inst = self._inst(instrument)
        if inst is None:
            return _empty_trades()
        sql = _TRADE_SELECT + " AND trade_id > %s ORDER BY trade_id"
        params: list = [inst, int(after_id)]
        if limit is not None:
            sql += " LIMIT %s"
            params.append(int(limit))
        return self._trades(sql, params)

    def read_recent_trades(self, instrument: InstrumentRef, n: int) -> TradeColumns:
        inst = self._inst(instrument)
        if inst is None:
            return _empty_trades()
        arr = self._array(_TRADE_SELECT + " ORDER BY trade_id DESC LIMIT %s", (inst, int(n)),
                          _TRADE_DTYPE)
        return _columns(arr[::-1])

    def _trades(self, sql: str, params: list) -> TradeColumns:
        return _columns(self._array(sql, params, _TRADE_DTYPE))

    def first_trade_after(self, instrument: InstrumentRef, trade_id: int
                          ) -> tuple[int, int] | None:
        inst = self._inst(instrument)
        if inst is None:
            return None
        row = self._one(
            "SELECT trade_id, time_ms FROM trades WHERE inst = %s AND trade_id > %s "
            "ORDER BY trade_id LIMIT 1", (inst, int(trade_id)))
        return None if row is None else (int(row[0]), int(row[1]))

    def read_bars(self, instrument: InstrumentRef, start_ms: int | None = None,
                  end_ms: int | None = None) -> Bars:
        inst = self._inst(instrument)
        if inst is None:
            return Bars.empty(1000)
        sql, params = _BAR_SELECT, [inst]
        sql += _ts_range(params, start_ms, end_ms)
        arr = self._array(sql + " ORDER BY ts", params, _BAR_DTYPE)
        return Bars.from_columns({f: np.ascontiguousarray(arr[f]) for f in BAR_FIELDS},
                                 tf_ms=1000)

    def read_book_bars(self, instrument: InstrumentRef, start_ms: int | None = None,
                       end_ms: int | None = None) -> pd.DataFrame:
        inst = self._inst(instrument)
        if inst is None:
            return empty_book_frame()
        sql, params = _BOOK_SELECT, [inst]
        sql += _ts_range(params, start_ms, end_ms)
        return self._pool.run(
            lambda conn: book_frame(conn.execute(sql + " ORDER BY ts", params).fetchall()))

    def missing_ranges(self, instrument: InstrumentRef, first_id: int, last_id: int
                       ) -> list[tuple[int, int]]:
        first_id, last_id = int(first_id), int(last_id)
        inst = self._inst(instrument)
        ids = np.empty(0, np.int64)
        if inst is not None:
            ids = self._id_array(
                "SELECT trade_id FROM trades WHERE inst = %s AND trade_id >= %s "
                "AND trade_id <= %s ORDER BY trade_id", (inst, first_id, last_id))
        return missing_ranges_of(ids.tolist(), first_id, last_id)

    def read_gaps(self, instrument: InstrumentRef | None = None) -> list[Gap]:
        sql = ("SELECT i.venue, i.market, i.symbol, g.first_id, g.last_id, g.detected_ms, "
               "g.filled_ms FROM gaps g JOIN instruments i ON i.id = g.inst")
        rows = self._all_of(instrument, sql, "g", "i.venue, i.market, i.symbol, g.first_id")
        out = []
        for venue, market, symbol, first, last, detected, filled in rows:
            inst_ = Instrument(venue, market, symbol)
            out.append(Gap(self.name(inst_), int(first), int(last), int(detected),
                           None if filled is None else int(filled), inst_))
        return out

    def read_breaks(self, instrument: InstrumentRef | None = None) -> list[Break]:
        sql = ("SELECT i.venue, i.market, i.symbol, b.ts_ms, b.reason, b.created_at "
               "FROM session_breaks b JOIN instruments i ON i.id = b.inst")
        rows = self._all_of(instrument, sql, "b", "b.ts_ms, i.venue, i.market, i.symbol")
        return [Break(self._name(v, m, s), int(ts), reason, int(created))
                for v, m, s, ts, reason, created in rows]


def _ts_range(params: list, start_ms: int | None, end_ms: int | None) -> str:
    """The ``start_ms <= ts < end_ms`` clause of a bar or book-bar read (either bound may
    be None), its values appended to ``params``."""
    sql = ""
    if start_ms is not None:
        sql += " AND ts >= %s"
        params.append(int(start_ms))
    if end_ms is not None:
        sql += " AND ts < %s"
        params.append(int(end_ms))
    return sql


def _days(batch: Batch) -> set[int]:
    """The UTC days of the batch's trades (their partitions must exist first)."""
    out = set()
    for t in batch.trades:
        try:
            out.add(operator.index(t.time_ms) // DAY_MS)
        except TypeError:
            pass  # a malformed row: rejected at the COPY
    return out


def _trade_insts(batch: Batch, ids: dict) -> set[int]:
    return {ids[(t.venue, t.market, t.symbol)] for t in batch.trades}


def _trade_rows(batch: Batch, ids: dict) -> list[tuple]:
    return [(ids[(t.venue, t.market, t.symbol)], t.trade_id, t.time_ms, t.price, t.qty,
             t.buyer_is_maker) for t in batch.trades]


def _valid_trade(row: tuple) -> bool:
    """Can this row be stored at all? (ids and times int64, finite numbers, a bool)"""
    _, tid, t, price, qty, maker = row
    try:
        ok_ints = all(_I64[0] <= operator.index(v) <= _I64[1] for v in (tid, t))
        float(price), float(qty)  # noqa: B018  (raises for what cannot be a float8)
    except (TypeError, ValueError, OverflowError):
        return False
    return ok_ints and isinstance(price, (int, float)) and isinstance(qty, (int, float)) \
        and maker in (True, False)


def _columns(arr: np.ndarray) -> TradeColumns:
    return TradeColumns(*(np.ascontiguousarray(arr[n]) for n in arr.dtype.names))


def _empty_trades() -> TradeColumns:
    return _columns(np.empty(0, _TRADE_DTYPE))
