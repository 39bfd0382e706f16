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
What is the same in every backend (reads, cache, the steps of an upload) is
:class:`ingest.store.dataset_sql.SqlDatasetStore`; here: the connection, the
transaction and the bar insert.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import numpy as np

from analytics.bars import Bars
from ingest.store.dataset_rules import BAR_COL_LIST, BAR_COLS, BAR_QMARKS
from ingest.store.dataset_sql import SqlDatasetStore
from ingest.store.sqlite_schema import DATASET_TABLES, ensure_tables

__all__ = ["SqliteDatasetStore"]

#: The stored bar columns (a module name so a test can break an insert half-way).
_BAR_COLS = BAR_COLS
_INSERT_BAR = (
    f"INSERT INTO dataset_bars (dataset, symbol, {BAR_COL_LIST}) VALUES (?, ?, {BAR_QMARKS})"
)


class SqliteDatasetStore(SqlDatasetStore):
    """Named OHLC datasets in SQLite (see the module docstring)."""

    def __init__(self, path: str | Path, *, readonly: bool = False) -> None:
        self._path = Path(path)
        self._init_common(readonly)
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

    def _has_tables(self, conn: sqlite3.Connection) -> bool:
        row = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'datasets'"
        ).fetchone()
        return row is not None

    # -- writes -------------------------------------------------------------------------
    @contextmanager
    def _transaction(self, conn: sqlite3.Connection) -> Iterator[None]:
        """``BEGIN IMMEDIATE``: the write lock up front, so no other writer interleaves
        between the checks and the inserts."""
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def _insert_bars(self, conn: sqlite3.Connection, name: str, sym: str, bars: Bars,
                     is_new: np.ndarray) -> None:
        """NaN (a column the file did not carry) goes in as NULL: sqlite3 binds it so."""
        columns = [getattr(bars, c)[is_new].tolist() for c in _BAR_COLS]
        conn.executemany(_INSERT_BAR, ((name, sym, *row) for row in zip(*columns, strict=True)))
