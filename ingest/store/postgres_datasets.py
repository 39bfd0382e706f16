"""Uploaded OHLC datasets in PostgreSQL (rules: :mod:`ingest.store.dataset_rules`).

Tables (DDL in :mod:`ingest.store.postgres_schema`): ``datasets``, ``dataset_symbols``,
``dataset_bars``, as in SQLite. An upload is one transaction that first takes a
transaction-scoped advisory lock (the role of SQLite's ``BEGIN IMMEDIATE``: two
dashboard workers uploading into one dataset cannot interleave their checks and
inserts), runs every check that can refuse it, then inserts; any error rolls it back,
so a refused upload changes nothing. Own connection, guarded by a lock; a forked child
leaves the parent's session alone and connects anew.
"""

from __future__ import annotations

import logging
import os
import threading
import time

import numpy as np

from analytics.bars import Bars
from analytics.upload import OhlcUpload
from ingest.store.dataset_rules import (
    BAR_COLS,
    CACHE_BARS,
    FILE_SEP,
    READONLY_REMOVE,
    READONLY_UPLOAD,
    check_fits,
    check_name,
    check_room,
    conflict_error,
    overlap,
)
from ingest.store.interface import DatasetError, DatasetInfo, DatasetStore, StoredUpload
from ingest.store.postgres_conn import close_in, connect, live, orphan, safe_url
from ingest.store.postgres_schema import DATASET_TABLES, ensure_tables

__all__ = ["PostgresDatasetStore"]

log = logging.getLogger(__name__)

#: pg_advisory_xact_lock key of dataset writes (ascii "pairsdst").
DATASET_LOCK = 0x7061697273647374
_COLS = ", ".join(BAR_COLS)
_INSERT_BAR = (
    f"INSERT INTO dataset_bars (dataset, symbol, {_COLS}) VALUES (%s, %s, "
    + ", ".join(["%s"] * len(BAR_COLS)) + ")"
)


class PostgresDatasetStore(DatasetStore):
    """Named OHLC datasets in PostgreSQL (see the module docstring)."""

    def __init__(self, location: str, *, readonly: bool = False) -> None:
        self._location = location
        self.readonly = readonly
        self._lock = threading.Lock()
        self._conn = None
        self._pid = os.getpid()
        self._cache: dict[tuple[str, str], Bars] = {}
        if not readonly:
            with self._lock:
                ensure_tables(self._connection(), DATASET_TABLES)

    @property
    def path(self) -> str:
        return safe_url(self._location)

    def _connection(self):
        self._conn = conn = live(self._conn) or connect(
            self._location, role="datasets", readonly=self.readonly)
        return conn

    def reset_after_fork(self) -> None:
        orphan(self._conn)
        self._conn = None
        self._lock = threading.Lock()
        self._pid = os.getpid()

    def close(self) -> None:
        with self._lock:
            close_in(self._conn, self._pid)
            self._conn = None
            self._cache.clear()

    # -- reads --------------------------------------------------------------------------
    @staticmethod
    def _has_tables(conn) -> bool:
        return conn.execute("SELECT to_regclass('datasets')").fetchone()[0] is not None

    def list(self) -> list[DatasetInfo]:
        with self._lock:
            conn = self._connection()
            if not self._has_tables(conn):
                return []
            names = [r[0] for r in conn.execute("SELECT name FROM datasets ORDER BY name")]
            return [self._info(conn, n) for n in names]

    def get(self, name: str) -> DatasetInfo | None:
        with self._lock:
            conn = self._connection()
            if not self._has_tables(conn):
                return None
            return self._info(conn, name)

    @staticmethod
    def _info(conn, name: str) -> DatasetInfo | None:
        row = conn.execute("SELECT tf_ms, created_ms FROM datasets WHERE name = %s",
                           (name,)).fetchone()
        if row is None:
            return None
        syms = conn.execute(
            "SELECT symbol, n_rows, start_ms, end_ms, filename FROM dataset_symbols "
            "WHERE dataset = %s ORDER BY uploaded_ms, symbol", (name,)).fetchall()
        return DatasetInfo(
            name=name, tf_ms=int(row[0]), created_ms=int(row[1]),
            symbols=tuple(s[0] for s in syms),
            rows={s[0]: int(s[1]) for s in syms},
            start_ms=min((int(s[2]) for s in syms), default=None),
            end_ms=max((int(s[3]) for s in syms), default=None),
            files=tuple(dict.fromkeys(
                f for s in syms for f in (s[4] or "").split(FILE_SEP) if f)),
        )

    def bars(self, name: str, symbol: str) -> Bars:
        key = (name, symbol)
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None:
                return cached
            conn = self._connection()
            info = self._info(conn, name) if self._has_tables(conn) else None
            if info is None or symbol not in info.symbols:
                raise KeyError(key)
            rows = conn.execute(
                f"SELECT {_COLS} FROM dataset_bars WHERE dataset = %s AND symbol = %s "
                "ORDER BY ts", (name, symbol), binary=True).fetchall()
            data = _columns(rows)
            n = len(rows)
            bars = Bars(**data, first_id=np.zeros(n, np.int64),
                        last_id=np.zeros(n, np.int64), tf_ms=info.tf_ms)
            if sum(len(b) for b in self._cache.values()) + n > CACHE_BARS:
                self._cache.clear()
            self._cache[key] = bars
            return bars

    # -- writes -------------------------------------------------------------------------
    def store(self, name: str, upload: OhlcUpload) -> StoredUpload:
        if self.readonly:
            raise DatasetError([READONLY_UPLOAD])
        name = check_name(name)
        now = int(time.time() * 1000)
        inserted: dict[str, int] = {}
        identical: dict[str, int] = {}
        with self._lock:
            conn = self._connection()
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (DATASET_LOCK,))
                info = self._info(conn, name)
                if info is None:
                    check_room(name, conn.execute("SELECT count(*) FROM datasets")
                               .fetchone()[0])
                else:
                    check_fits(name, info.tf_ms, info.symbols, upload)
                held = set() if info is None else set(info.symbols)
                new_rows = self._new_rows(conn, name, upload, held)
                if info is None:
                    conn.execute("INSERT INTO datasets (name, tf_ms, created_ms) "
                                 "VALUES (%s, %s, %s)", (name, upload.tf_ms, now))
                with conn.cursor() as cur:
                    for sym in upload.symbols:
                        b, is_new = upload.bars[sym], new_rows[sym]
                        inserted[sym] = int(is_new.sum())
                        identical[sym] = len(b) - inserted[sym]
                        columns = [_nulls(getattr(b, c)[is_new].tolist()) for c in BAR_COLS]
                        cur.executemany(_INSERT_BAR, [(name, sym, *row)
                                                      for row in zip(*columns, strict=True)])
                        self._write_symbol(conn, name, sym, upload, sym in held, now)
            for sym in upload.symbols:
                self._cache.pop((name, sym), None)
            info = self._info(conn, name)
        log.info("datasets: %s += %s (%d new bars, %d identical, %s)", name,
                 ",".join(upload.symbols), sum(inserted.values()), sum(identical.values()),
                 upload.timeframe)
        assert info is not None
        return StoredUpload(info=info, inserted=inserted, identical=identical)

    def _new_rows(self, conn, name: str, upload: OhlcUpload, held: set[str]
                  ) -> dict[str, np.ndarray]:
        out, problems = {}, []
        for sym in upload.symbols:
            b = upload.bars[sym]
            if sym not in held:
                out[sym] = np.ones(len(b), bool)
                continue
            rows = conn.execute(
                f"SELECT {_COLS} FROM dataset_bars WHERE dataset = %s AND symbol = %s "
                "AND ts BETWEEN %s AND %s ORDER BY ts",
                (name, sym, int(b.ts[0]), int(b.ts[-1])), binary=True).fetchall()
            stored = {c: (v.astype(np.float64) if c != "ts" else v)
                      for c, v in _columns(rows).items()}
            is_new, found = overlap(sym, stored, b, upload.lines.get(sym))
            problems += found
            out[sym] = is_new
        if problems:
            raise conflict_error(name, problems)
        return out

    @staticmethod
    def _write_symbol(conn, name: str, sym: str, upload: OhlcUpload, held: bool,
                      now: int) -> None:
        n, lo, hi = conn.execute(
            "SELECT count(*), min(ts), max(ts) FROM dataset_bars "
            "WHERE dataset = %s AND symbol = %s", (name, sym)).fetchone()
        if not held:
            conn.execute(
                "INSERT INTO dataset_symbols (dataset, symbol, n_rows, start_ms, end_ms, "
                "filename, kind, uploaded_ms) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                (name, sym, n, lo, hi, upload.filename, upload.kind, now))
            return
        (files,) = conn.execute(
            "SELECT filename FROM dataset_symbols WHERE dataset = %s AND symbol = %s",
            (name, sym)).fetchone()
        names = [f for f in (files or "").split(FILE_SEP) if f]
        if upload.filename and upload.filename not in names:
            names.append(upload.filename)
        conn.execute(
            "UPDATE dataset_symbols SET n_rows = %s, start_ms = %s, end_ms = %s, "
            "filename = %s WHERE dataset = %s AND symbol = %s",
            (n, lo, hi, FILE_SEP.join(names) or None, name, sym))

    def remove(self, name: str) -> bool:
        if self.readonly:
            raise DatasetError([READONLY_REMOVE])
        with self._lock:
            conn = self._connection()
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (DATASET_LOCK,))
                found = conn.execute("DELETE FROM datasets WHERE name = %s", (name,)).rowcount
                conn.execute("DELETE FROM dataset_symbols WHERE dataset = %s", (name,))
                conn.execute("DELETE FROM dataset_bars WHERE dataset = %s", (name,))
            for key in [k for k in self._cache if k[0] == name]:
                del self._cache[key]
        if found:
            log.info("datasets: removed %s", name)
        return bool(found)


def _nulls(values: list) -> list:
    """NaN (a column the file did not carry) is stored as NULL, as SQLite stores it."""
    return [None if isinstance(v, float) and v != v else v for v in values]


def _columns(rows: list[tuple]) -> dict[str, np.ndarray]:
    """Rows of ``BAR_COLS`` -> numpy columns (NULL -> NaN, or 0 for ts/trades)."""
    cols = list(zip(*rows, strict=True)) if rows else [()] * len(BAR_COLS)
    data = {}
    for c, values in zip(BAR_COLS, cols, strict=True):
        if c in ("ts", "trades"):
            data[c] = np.array([0 if x is None else x for x in values], np.int64)
        else:
            data[c] = np.array([np.nan if x is None else x for x in values], np.float64)
    return data
