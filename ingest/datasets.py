"""Uploaded OHLC datasets: named sets of bars per symbol, in the app's SQLite file.

A dataset is what an accepted upload (:func:`analytics.upload.parse_ohlc_csv`) becomes:
a name, one timeframe, and bars per symbol. Files uploaded under the same name add
their symbols to it (two one-symbol files make a pair). Datasets live in their own
tables of the app DB, so they survive a restart, and they are **never mixed into the
live ticks**: the feed, the rings, the engine and the ``trades``/``bars_1s`` tables never
see them; pages and the API read them through :meth:`DatasetStore.bars` and analyse them
with the same pair tools as live data.

Tables (``WITHOUT ROWID``, parameterized SQL only)::

    datasets        (name PK, tf_ms, created_ms)
    dataset_symbols (dataset, symbol) PK, rows, start_ms, end_ms, filename, kind, uploaded_ms
    dataset_bars    (dataset, symbol, ts) PK, open, high, low, close, volume,
                    quote_volume, trades, buy_volume

An upload is one transaction (``BEGIN IMMEDIATE`` ... ``COMMIT``): every check that can
refuse it (name, timeframe of an existing dataset, a symbol already there, limits) runs
inside it before the first insert, and any error rolls it back, so a refused upload
changes nothing. The store has its **own connection** (not the tick store's writer),
guarded by a lock; a forked child (Dash background callbacks) drops it and reconnects.
"""

from __future__ import annotations

import logging
import re
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import numpy as np

from analytics.bars import BAR_FIELDS, Bars
from analytics.upload import OhlcUpload

__all__ = ["DATASET_RE", "DatasetError", "DatasetInfo", "DatasetStore", "iso_utc"]

log = logging.getLogger(__name__)

DATASET_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
MAX_DATASETS = 200
MAX_SYMBOLS_PER_DATASET = 20
#: Bars cached in memory (pages page through a dataset's table many times).
CACHE_BARS = 2_000_000

SCHEMA = """
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
#: The stored columns of a dataset bar: ``BAR_FIELDS`` without the trade-id range, which
#: an uploaded OHLC file does not have.
_BAR_COLS = tuple(f for f in BAR_FIELDS if f not in ("first_id", "last_id"))


class DatasetError(ValueError):
    """An upload or removal refused; :attr:`problems` as in ``UploadError``."""

    def __init__(self, problems: list[str], *, status: int = 400) -> None:
        self.problems = list(problems)
        self.status = status
        super().__init__("; ".join(self.problems))


@dataclass(frozen=True, slots=True)
class DatasetInfo:
    """One dataset: name, timeframe, and per-symbol row counts and UTC ranges."""

    name: str
    tf_ms: int
    created_ms: int
    symbols: tuple[str, ...]
    rows: dict[str, int]
    start_ms: int | None
    end_ms: int | None
    files: tuple[str, ...]

    def as_dict(self) -> dict:
        from analytics.timeframes import format_timeframe

        return {
            "dataset": self.name,
            "timeframe": format_timeframe(self.tf_ms),
            "symbols": list(self.symbols),
            "rows": dict(self.rows),
            "start": iso_utc(self.start_ms),
            "end": iso_utc(self.end_ms),
            "created": iso_utc(self.created_ms),
            "files": list(self.files),
        }


def iso_utc(ms: int | None) -> str | None:
    if ms is None:
        return None
    dt = np.datetime64(int(ms), "ms")
    return str(np.datetime_as_string(dt, unit="ms")) + "Z"


def check_name(name: object) -> str:
    """A valid dataset name or :class:`DatasetError`."""
    text = "" if name is None else str(name).strip()
    if not DATASET_RE.match(text):
        raise DatasetError(
            [
                f"dataset name {text[:40]!r} is invalid: 1-64 letters, digits, '_', '-' or "
                "'.', starting with a letter or digit"
            ]
        )
    return text


class DatasetStore:
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
                self._connection().executescript(SCHEMA)

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
            files=tuple(dict.fromkeys(s[4] for s in syms if s[4])),
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
    def add(self, name: str, upload: OhlcUpload) -> DatasetInfo:
        """Store an accepted upload under ``name`` (new, or adding symbols), atomically.

        Raises
        ------
        DatasetError
            Read-only store, invalid name, a timeframe different from the dataset's, a
            symbol already in the dataset, or a limit reached. Nothing is written then.
        """
        if self.readonly:
            raise DatasetError(
                ["uploads are off: the app follows a database read-only (--no-ingest)"]
            )
        name = check_name(name)
        now = int(time.time() * 1000)
        with self._lock:
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                self._check_add(conn, name, upload)
                if (
                    conn.execute(
                        "SELECT 1 FROM datasets WHERE name = ?", (name,)
                    ).fetchone()
                    is None
                ):
                    conn.execute(
                        "INSERT INTO datasets (name, tf_ms, created_ms) VALUES (?, ?, ?)",
                        (name, upload.tf_ms, now),
                    )
                for sym in upload.symbols:
                    b = upload.bars[sym]
                    conn.execute(
                        "INSERT INTO dataset_symbols (dataset, symbol, rows, start_ms, end_ms, "
                        "filename, kind, uploaded_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (
                            name,
                            sym,
                            len(b),
                            int(b.ts[0]),
                            int(b.ts[-1]),
                            upload.filename,
                            upload.kind,
                            now,
                        ),
                    )
                    columns = [getattr(b, c).tolist() for c in _BAR_COLS]
                    conn.executemany(
                        "INSERT INTO dataset_bars (dataset, symbol, ts, open, high, low, close, "
                        "volume, quote_volume, trades, buy_volume) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        ((name, sym, *row) for row in zip(*columns, strict=True)),
                    )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            for sym in upload.symbols:
                self._cache.pop((name, sym), None)
            info = self._info(conn, name)
        log.info(
            "datasets: %s += %s (%d bars, %s)",
            name,
            ",".join(upload.symbols),
            upload.rows,
            upload.timeframe,
        )
        assert info is not None
        return info

    def _check_add(
        self, conn: sqlite3.Connection, name: str, upload: OhlcUpload
    ) -> None:
        from analytics.timeframes import format_timeframe

        info = self._info(conn, name)
        if info is None:
            count = conn.execute("SELECT count(*) FROM datasets").fetchone()[0]
            if count >= MAX_DATASETS:
                raise DatasetError(
                    [
                        f"too many datasets ({count}, at most {MAX_DATASETS}): remove one first"
                    ]
                )
            return
        problems = []
        if info.tf_ms != upload.tf_ms:
            problems.append(
                f"dataset {name!r} holds {format_timeframe(info.tf_ms)} bars, this file has "
                f"{format_timeframe(upload.tf_ms)} bars: use another dataset name"
            )
        dup = [s for s in upload.symbols if s in info.symbols]
        if dup:
            problems.append(
                f"dataset {name!r} already holds {', '.join(dup)}: remove the dataset "
                "(DELETE /api/datasets/NAME) or upload under another name"
            )
        if len(info.symbols) + len(upload.symbols) > MAX_SYMBOLS_PER_DATASET:
            problems.append(
                f"a dataset holds at most {MAX_SYMBOLS_PER_DATASET} symbols"
            )
        if problems:
            raise DatasetError(problems)

    def remove(self, name: str) -> bool:
        """Delete a dataset and its bars (one transaction); False if there is none."""
        if self.readonly:
            raise DatasetError(
                ["read-only database (--no-ingest): cannot remove datasets"]
            )
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
