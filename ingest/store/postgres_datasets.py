"""Uploaded OHLC datasets in PostgreSQL (rules: :mod:`ingest.store.dataset_rules`).

Tables (DDL in :mod:`ingest.store.postgres_schema`): ``datasets``, ``dataset_symbols``,
``dataset_bars``, as in SQLite. An upload is one transaction that first takes a
transaction-scoped advisory lock (the role of SQLite's ``BEGIN IMMEDIATE``: two
dashboard workers uploading into one dataset cannot interleave their checks and
inserts), runs every check that can refuse it, then inserts; any error rolls it back,
so a refused upload changes nothing. Own connection, guarded by a lock; a forked child
leaves the parent's session alone and connects anew. What is the same in every backend
(reads, cache, the steps of an upload) is
:class:`ingest.store.dataset_sql.SqlDatasetStore`; here: the connection, the
transaction and the bar insert.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from analytics.bars import Bars
from ingest.store.dataset_rules import BAR_COL_LIST, BAR_COLS, BAR_PYFORMAT
from ingest.store.dataset_sql import SqlDatasetStore
from ingest.store.postgres_conn import OwnSession, safe_url
from ingest.store.postgres_schema import DATASET_TABLES, ensure_tables

__all__ = ["PostgresDatasetStore"]

#: pg_advisory_xact_lock key of dataset writes (ascii "pairsdst").
DATASET_LOCK = 0x7061697273647374
_INSERT_BAR = (
    f"INSERT INTO dataset_bars (dataset, symbol, {BAR_COL_LIST}) VALUES (%s, %s, {BAR_PYFORMAT})"
)


class PostgresDatasetStore(OwnSession, SqlDatasetStore):
    """Named OHLC datasets in PostgreSQL (see the module docstring)."""

    _P = "%s"
    _ROWS = "n_rows"  # ``rows`` is a reserved word here
    _role = "datasets"

    def __init__(self, location: str, *, readonly: bool = False) -> None:
        self._init_common(readonly)
        self._init_session(location, readonly=readonly)
        if not readonly:
            with self._lock:
                ensure_tables(self._connection(), DATASET_TABLES)

    @property
    def path(self) -> str:
        return safe_url(self._location)

    def close(self) -> None:
        with self._lock:
            self._close_session()
            self._cache.clear()

    def _has_tables(self, conn) -> bool:
        return conn.execute("SELECT to_regclass('datasets')").fetchone()[0] is not None

    def _fetch(self, conn, sql: str, args: tuple) -> list[tuple]:
        return conn.execute(sql, args, binary=True).fetchall()

    # -- writes -------------------------------------------------------------------------
    @contextmanager
    def _transaction(self, conn) -> Iterator[None]:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (DATASET_LOCK,))
            yield

    def _insert_bars(self, conn, name: str, sym: str, bars: Bars, is_new: np.ndarray
                     ) -> None:
        columns = [_nulls(getattr(bars, c)[is_new].tolist()) for c in BAR_COLS]
        with conn.cursor() as cur:
            cur.executemany(_INSERT_BAR, [(name, sym, *row)
                                          for row in zip(*columns, strict=True)])


def _nulls(values: list) -> list:
    """NaN (a column the file did not carry) is stored as NULL, as SQLite stores it."""
    return [None if isinstance(v, float) and v != v else v for v in values]
