"""What every SQL backend of the dataset store does the same way, once.

The rules of a dataset (names, limits, how an append merges) are
:mod:`ingest.store.dataset_rules`; this module is the part that talks to a database
through a DB-API connection with the same tables in every backend (``datasets``,
``dataset_symbols``, ``dataset_bars``): reading a dataset's description and bars (with
the in-memory cache), and the order of an upload's steps (lock, checks, inserts, the
symbol's summary row). A backend says how it connects, how a write transaction is
opened (SQLite ``BEGIN IMMEDIATE``, PostgreSQL a transaction-scoped advisory lock),
how it sees that the tables exist, and how it inserts bars; the statements differ only
in their placeholder (``_P``) and the name of the row-count column (``_ROWS``:
``rows`` is a reserved word in PostgreSQL).
"""

from __future__ import annotations

import logging
import threading
import time
from contextlib import AbstractContextManager

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

__all__ = ["SqlDatasetStore", "bar_columns"]

log = logging.getLogger(__name__)

_COLS = ", ".join(BAR_COLS)


def bar_columns(rows: list[tuple], *, nan_ints: bool = False) -> dict[str, np.ndarray]:
    """Rows of ``BAR_COLS`` -> numpy columns. NULL (a column the file did not carry)
    becomes NaN in the float columns; in ``ts``/``trades`` 0, or with ``nan_ints``
    (stored bars compared as floats) ``trades`` is a float column too."""
    cols = list(zip(*rows, strict=True)) if rows else [()] * len(BAR_COLS)
    data = {}
    for c, values in zip(BAR_COLS, cols, strict=True):
        if c == "ts" or (c == "trades" and not nan_ints):
            data[c] = np.array([0 if x is None else x for x in values], np.int64)
        else:
            data[c] = np.array([np.nan if x is None else x for x in values], np.float64)
    return data


class SqlDatasetStore(DatasetStore):
    """Named OHLC datasets in a SQL database (see the module docstring).

    A backend sets ``_P``/``_ROWS``, calls :meth:`_init_common` and provides
    ``_connection()``, ``_has_tables(conn)``, ``_transaction(conn)`` (a context manager:
    the write transaction, its lock taken) and ``_insert_bars(conn, name, sym, bars,
    is_new)``; ``_fetch(conn, sql, args)`` may be overridden (e.g. binary results).
    """

    _P = "?"
    _ROWS = "rows"

    def _init_common(self, readonly: bool) -> None:
        self.readonly = readonly
        self._lock = threading.Lock()
        self._conn = None
        self._cache: dict[tuple[str, str], Bars] = {}

    # -- backend hooks ------------------------------------------------------------------
    def _connection(self):
        raise NotImplementedError

    def _has_tables(self, conn) -> bool:
        raise NotImplementedError

    def _transaction(self, conn) -> AbstractContextManager:
        raise NotImplementedError

    def _insert_bars(self, conn, name: str, sym: str, bars: Bars, is_new: np.ndarray
                     ) -> None:
        raise NotImplementedError

    def _fetch(self, conn, sql: str, args: tuple) -> list[tuple]:
        return conn.execute(sql, args).fetchall()

    def _sql(self, text: str) -> str:
        """``text`` with ``?`` placeholders and ``{rows}``, in this backend's words."""
        return text.replace("?", self._P).replace("{rows}", self._ROWS)

    # -- reads --------------------------------------------------------------------------
    def list(self) -> list[DatasetInfo]:
        """Every dataset, by name."""
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

    def _info(self, conn, name: str) -> DatasetInfo | None:
        row = conn.execute(self._sql("SELECT tf_ms, created_ms FROM datasets WHERE name = ?"),
                           (name,)).fetchone()
        if row is None:
            return None
        syms = conn.execute(self._sql(
            "SELECT symbol, {rows}, start_ms, end_ms, filename FROM dataset_symbols "
            "WHERE dataset = ? ORDER BY uploaded_ms, symbol"), (name,)).fetchall()
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
            rows = self._fetch(conn, self._sql(
                f"SELECT {_COLS} FROM dataset_bars WHERE dataset = ? AND symbol = ? "
                "ORDER BY ts"), (name, symbol))
            n = len(rows)
            bars = Bars(**bar_columns(rows), first_id=np.zeros(n, np.int64),
                        last_id=np.zeros(n, np.int64), tf_ms=info.tf_ms)
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
            with self._transaction(conn):
                info = self._check_add(conn, name, upload)
                held = set() if info is None else set(info.symbols)
                new_rows = self._new_rows(conn, name, upload, held)
                if info is None:
                    conn.execute(self._sql(
                        "INSERT INTO datasets (name, tf_ms, created_ms) VALUES (?, ?, ?)"),
                        (name, upload.tf_ms, now))
                for sym in upload.symbols:
                    b, is_new = upload.bars[sym], new_rows[sym]
                    inserted[sym] = int(is_new.sum())
                    identical[sym] = len(b) - inserted[sym]
                    self._insert_bars(conn, name, sym, b, is_new)
                    self._write_symbol(conn, name, sym, upload, sym in held, now)
            for sym in upload.symbols:
                self._cache.pop((name, sym), None)
            info = self._info(conn, name)
        log.info("datasets: %s += %s (%d new bars, %d identical, %s)", name,
                 ",".join(upload.symbols), sum(inserted.values()), sum(identical.values()),
                 upload.timeframe)
        assert info is not None
        return StoredUpload(info=info, inserted=inserted, identical=identical)

    def _check_add(self, conn, name: str, upload: OhlcUpload) -> DatasetInfo | None:
        """The dataset as it is (None if new), or :class:`DatasetError` if the upload
        cannot go into it (timeframe, limits)."""
        info = self._info(conn, name)
        if info is None:
            check_room(name, conn.execute("SELECT count(*) FROM datasets").fetchone()[0])
            return None
        check_fits(name, info.tf_ms, info.symbols, upload)
        return info

    def _new_rows(self, conn, name: str, upload: OhlcUpload, held: set[str]
                  ) -> dict[str, np.ndarray]:
        """Per symbol of the upload, the mask of bars not stored yet; refuses conflicts."""
        out, problems = {}, []
        for sym in upload.symbols:
            b = upload.bars[sym]
            if sym not in held:
                out[sym] = np.ones(len(b), bool)
                continue
            rows = self._fetch(conn, self._sql(
                f"SELECT {_COLS} FROM dataset_bars WHERE dataset = ? AND symbol = ? "
                "AND ts BETWEEN ? AND ? ORDER BY ts"),
                (name, sym, int(b.ts[0]), int(b.ts[-1])))
            is_new, found = overlap(sym, bar_columns(rows, nan_ints=True), b,
                                    upload.lines.get(sym))
            problems += found
            out[sym] = is_new
        if problems:
            raise conflict_error(name, problems)
        return out

    def _write_symbol(self, conn, name: str, sym: str, upload: OhlcUpload, held: bool,
                      now: int) -> None:
        """The symbol's row in ``dataset_symbols``: counts and range over all its bars."""
        n, lo, hi = conn.execute(self._sql(
            "SELECT count(*), min(ts), max(ts) FROM dataset_bars "
            "WHERE dataset = ? AND symbol = ?"), (name, sym)).fetchone()
        if not held:
            conn.execute(self._sql(
                "INSERT INTO dataset_symbols (dataset, symbol, {rows}, start_ms, end_ms, "
                "filename, kind, uploaded_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"),
                (name, sym, n, lo, hi, upload.filename, upload.kind, now))
            return
        (files,) = conn.execute(self._sql(
            "SELECT filename FROM dataset_symbols WHERE dataset = ? AND symbol = ?"),
            (name, sym)).fetchone()
        names = [f for f in (files or "").split(FILE_SEP) if f]
        if upload.filename and upload.filename not in names:
            names.append(upload.filename)
        # uploaded_ms is kept: it orders the symbols (leg A first), as first uploaded
        conn.execute(self._sql(
            "UPDATE dataset_symbols SET {rows} = ?, start_ms = ?, end_ms = ?, filename = ? "
            "WHERE dataset = ? AND symbol = ?"),
            (n, lo, hi, FILE_SEP.join(names) or None, name, sym))

    def remove(self, name: str) -> bool:
        """Delete a dataset and its bars (one transaction); False if there is none."""
        if self.readonly:
            raise DatasetError([READONLY_REMOVE])
        with self._lock:
            conn = self._connection()
            with self._transaction(conn):
                found = conn.execute(self._sql("DELETE FROM datasets WHERE name = ?"),
                                     (name,)).rowcount
                conn.execute(self._sql("DELETE FROM dataset_symbols WHERE dataset = ?"),
                             (name,))
                conn.execute(self._sql("DELETE FROM dataset_bars WHERE dataset = ?"), (name,))
            for key in [k for k in self._cache if k[0] == name]:
                del self._cache[key]
        if found:
            log.info("datasets: removed %s", name)
        return bool(found)
