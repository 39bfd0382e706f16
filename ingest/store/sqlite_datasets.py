"""Uploaded OHLC datasets in the app's SQLite file (rules: :mod:`ingest.store.dataset_rules`).

Tables (``WITHOUT ROWID``, parameterized SQL only; DDL in :mod:`ingest.store.sqlite_schema`)::

    datasets        (name PK, tf_ms, created_ms)
    dataset_symbols (dataset, symbol) PK, rows, start_ms, end_ms, filename, kind, uploaded_ms
    dataset_bars    (dataset, symbol, ts) PK, open, high, low, close, volume,
                    quote_volume, trades, buy_volume

An upload is one transaction (``BEGIN IMMEDIATE`` ... ``COMMIT``): every check that can
refuse it (name, timeframe of an existing dataset, a conflicting bar, limits) runs
inside it before the first insert, and any error rolls it back, so a refused upload
changes nothing. The store has its **own connection** (not the trade store's writer),
guarded by a lock; a forked child (Dash background callbacks) drops it and reconnects.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from pathlib import Path
from urllib.parse import quote

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
from ingest.store.sqlite_schema import DATASET_TABLES, ensure_tables

__all__ = ["SqliteDatasetStore"]

log = logging.getLogger(__name__)

#: The stored bar columns (a module name so a test can break an insert half-way).
_BAR_COLS = BAR_COLS


class SqliteDatasetStore(DatasetStore):
    """Named OHLC datasets in SQLite (see the module docstring)."""

    def __init__(self, path: str | Path, *, readonly: bool = False) -> None:
        self._path = Path(path)
        self.readonly = readonly
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._cache: dict[tuple[str, str], Bars] = {}
        if not readonly:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            with self._lock:
                ensure_tables(self._connection(), DATASET_TABLES)

    # -- connection ---------------------------------------------------------------------
    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            if self.readonly:
                uri = f"file:{quote(str(self._path))}?mode=ro"
                conn = sqlite3.connect(
                    uri, uri=True, timeout=10, check_same_thread=False
                )
            else:
                conn = sqlite3.connect(
                    str(self._path),
                    timeout=10,
                    check_same_thread=False,
                    isolation_level=None,  # explicit BEGIN/COMMIT below
                )
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
            self._conn = conn
        return self._conn

    def reset_after_fork(self) -> None:
        """In a forked child: never use the parent's connection or lock."""
        self._lock = threading.Lock()
        self._conn = None

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            self._cache.clear()

    @property
    def path(self) -> Path:
        return self._path

    # -- reads --------------------------------------------------------------------------
    def _has_tables(self, conn: sqlite3.Connection) -> bool:
        row = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'datasets'"
        ).fetchone()
        return row is not None

    def list(self) -> list[DatasetInfo]:
        """Every dataset, by name."""
        with self._lock:
            conn = self._connection()
            if not self._has_tables(conn):
                return []
            names = [
                r[0] for r in conn.execute("SELECT name FROM datasets ORDER BY name")
            ]
            return [self._info(conn, n) for n in names]

    def get(self, name: str) -> DatasetInfo | None:
        with self._lock:
            conn = self._connection()
            if not self._has_tables(conn):
                return None
            return self._info(conn, name)

    def _info(self, conn: sqlite3.Connection, name: str) -> DatasetInfo | None:
        row = conn.execute(
            "SELECT tf_ms, created_ms FROM datasets WHERE name = ?", (name,)
        ).fetchone()
        if row is None:
            return None
        syms = conn.execute(
            "SELECT symbol, rows, start_ms, end_ms, filename FROM dataset_symbols "
            "WHERE dataset = ? ORDER BY uploaded_ms, symbol",
            (name,),
        ).fetchall()
        return DatasetInfo(
            name=name,
            tf_ms=int(row[0]),
            created_ms=int(row[1]),
            symbols=tuple(s[0] for s in syms),
            rows={s[0]: int(s[1]) for s in syms},
            start_ms=min((int(s[2]) for s in syms), default=None),
            end_ms=max((int(s[3]) for s in syms), default=None),
            files=tuple(
                dict.fromkeys(f for s in syms for f in (s[4] or "").split(FILE_SEP) if f)
            ),
        )

    def bars(self, name: str, symbol: str) -> Bars:
        """All bars of ``symbol`` in dataset ``name`` (cached; read-only columns).

        Raises
        ------
        KeyError
            If the dataset or the symbol does not exist.
        """
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
                "SELECT ts, open, high, low, close, volume, quote_volume, trades, buy_volume "
                "FROM dataset_bars WHERE dataset = ? AND symbol = ? ORDER BY ts",
                (name, symbol),
            ).fetchall()
            cols = list(zip(*rows, strict=True)) if rows else [()] * len(_BAR_COLS)
            n = len(rows)
            data = {}
            for c, values in zip(_BAR_COLS, cols, strict=True):
                if c in ("ts", "trades"):
                    data[c] = np.array(
                        [0 if x is None else x for x in values], np.int64
                    )
                else:
                    # NULL (a NaN the file did not carry) -> NaN
                    data[c] = np.array(values, dtype=np.float64) if n else np.empty(0)
            bars = Bars(
                **data,
                first_id=np.zeros(n, np.int64),
                last_id=np.zeros(n, np.int64),
                tf_ms=info.tf_ms,
            )
            if sum(len(b) for b in self._cache.values()) + n > CACHE_BARS:
                self._cache.clear()
            self._cache[key] = bars
            return bars

    # -- writes -------------------------------------------------------------------------
    def store(self, name: str, upload: OhlcUpload) -> StoredUpload:
        """Store an accepted upload under ``name`` (new, adding symbols, or appending to a
        symbol it holds: identical overlapping bars merge), atomically.

        Raises
        ------
        DatasetError
            Read-only store, invalid name, a timeframe different from the dataset's, a bar
            that differs from the stored bar of the same time (naming the file line), or
            a limit reached. Nothing is written then.
        """
        if self.readonly:
            raise DatasetError([READONLY_UPLOAD])
        name = check_name(name)
        now = int(time.time() * 1000)
        inserted: dict[str, int] = {}
        identical: dict[str, int] = {}
        with self._lock:
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                info = self._check_add(conn, name, upload)
                held = set() if info is None else set(info.symbols)
                new_rows = self._new_rows(conn, name, upload, held)
                if info is None:
                    conn.execute(
                        "INSERT INTO datasets (name, tf_ms, created_ms) VALUES (?, ?, ?)",
                        (name, upload.tf_ms, now),
                    )
                for sym in upload.symbols:
                    b, is_new = upload.bars[sym], new_rows[sym]
                    inserted[sym] = int(is_new.sum())
                    identical[sym] = len(b) - inserted[sym]
                    columns = [getattr(b, c)[is_new].tolist() for c in _BAR_COLS]
                    conn.executemany(
                        "INSERT INTO dataset_bars (dataset, symbol, ts, open, high, low, close, "
                        "volume, quote_volume, trades, buy_volume) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        ((name, sym, *row) for row in zip(*columns, strict=True)),
                    )
                    self._write_symbol(conn, name, sym, upload, sym in held, now)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            for sym in upload.symbols:
                self._cache.pop((name, sym), None)
            info = self._info(conn, name)
        log.info(
            "datasets: %s += %s (%d new bars, %d identical, %s)",
            name,
            ",".join(upload.symbols),
            sum(inserted.values()),
            sum(identical.values()),
            upload.timeframe,
        )
        assert info is not None
        return StoredUpload(info=info, inserted=inserted, identical=identical)

    def _new_rows(
        self, conn: sqlite3.Connection, name: str, upload: OhlcUpload, held: set[str]
    ) -> dict[str, np.ndarray]:
        """Per symbol of the upload, the mask of bars not stored yet; refuses conflicts."""
        out, problems = {}, []
        for sym in upload.symbols:
            b = upload.bars[sym]
            if sym not in held:
                out[sym] = np.ones(len(b), bool)
                continue
            rows = conn.execute(
                "SELECT " + ", ".join(_BAR_COLS) + " FROM dataset_bars "
                "WHERE dataset = ? AND symbol = ? AND ts BETWEEN ? AND ? ORDER BY ts",
                (name, sym, int(b.ts[0]), int(b.ts[-1])),
            ).fetchall()
            cols = list(zip(*rows, strict=True)) if rows else [()] * len(_BAR_COLS)
            stored = {
                c: np.array([np.nan if x is None else x for x in v], np.float64)
                if c not in ("ts",) else np.array(v, np.int64)
                for c, v in zip(_BAR_COLS, cols, strict=True)
            }
            is_new, found = overlap(sym, stored, b, upload.lines.get(sym))
            problems += found
            out[sym] = is_new
        if problems:
            raise conflict_error(name, problems)
        return out

    @staticmethod
    def _write_symbol(
        conn: sqlite3.Connection, name: str, sym: str, upload: OhlcUpload, held: bool,
        now: int,
    ) -> None:
        """The symbol's row in ``dataset_symbols``: counts and range over all its bars."""
        n, lo, hi = conn.execute(
            "SELECT count(*), min(ts), max(ts) FROM dataset_bars "
            "WHERE dataset = ? AND symbol = ?",
            (name, sym),
        ).fetchone()
        if not held:
            conn.execute(
                "INSERT INTO dataset_symbols (dataset, symbol, rows, start_ms, end_ms, "
                "filename, kind, uploaded_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (name, sym, n, lo, hi, upload.filename, upload.kind, now),
            )
            return
        (files,) = conn.execute(
            "SELECT filename FROM dataset_symbols WHERE dataset = ? AND symbol = ?",
            (name, sym),
        ).fetchone()
        names = [f for f in (files or "").split(FILE_SEP) if f]
        if upload.filename and upload.filename not in names:
            names.append(upload.filename)
        # uploaded_ms is kept: it orders the symbols (leg A first), as first uploaded
        conn.execute(
            "UPDATE dataset_symbols SET rows = ?, start_ms = ?, end_ms = ?, filename = ? "
            "WHERE dataset = ? AND symbol = ?",
            (n, lo, hi, FILE_SEP.join(names) or None, name, sym),
        )

    def _check_add(
        self, conn: sqlite3.Connection, name: str, upload: OhlcUpload
    ) -> DatasetInfo | None:
        """The dataset as it is (None if new), or :class:`DatasetError` if the upload
        cannot go into it (timeframe, limits)."""
        info = self._info(conn, name)
        if info is None:
            check_room(name, conn.execute("SELECT count(*) FROM datasets").fetchone()[0])
            return None
        check_fits(name, info.tf_ms, info.symbols, upload)
        return info

    def remove(self, name: str) -> bool:
        """Delete a dataset and its bars (one transaction); False if there is none."""
        if self.readonly:
            raise DatasetError([READONLY_REMOVE])
        with self._lock:
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                found = conn.execute(
                    "DELETE FROM datasets WHERE name = ?", (name,)
                ).rowcount
                conn.execute("DELETE FROM dataset_symbols WHERE dataset = ?", (name,))
                conn.execute("DELETE FROM dataset_bars WHERE dataset = ?", (name,))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            for key in [k for k in self._cache if k[0] == name]:
                del self._cache[key]
        if found:
            log.info("datasets: removed %s", name)
        return bool(found)
