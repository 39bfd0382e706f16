"""Uploaded OHLC datasets: named sets of bars per symbol, in the app's SQLite file.

A dataset is what an accepted upload (:func:`analytics.upload.parse_ohlc_csv`) becomes:
a name, one timeframe, and bars per symbol. Files uploaded under the same name add
their symbols to it (two one-symbol files make a pair), or **append** to a symbol it
already holds (November after October): the bars are the union of both, a bar whose
time is stored already must be identical (every column the file carries; it is then
merged, i.e. skipped) and a different bar for a stored time refuses the whole file,
naming its line. Gaps between the parts are allowed (a pair carries the last close
forward, as within one file). Datasets live in their own
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
refuse it (name, timeframe of an existing dataset, a conflicting bar, limits) runs
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

__all__ = [
    "DATASET_RE", "DatasetError", "DatasetInfo", "DatasetStore", "StoredUpload", "iso_utc",
]

log = logging.getLogger(__name__)

DATASET_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
MAX_DATASETS = 200
MAX_SYMBOLS_PER_DATASET = 20
#: Bars cached in memory (pages page through a dataset's table many times).
CACHE_BARS = 2_000_000
#: Conflicting lines named in a refusal.
SHOW_CONFLICTS = 5
#: Columns an appended bar must repeat exactly when its time is stored already.
_SAME_ALWAYS = ("open", "high", "low", "close", "volume")
#: Columns compared only when both the stored bar and the file carry them (a generic
#: CSV has no quote volume: NaN; no trade count: 0).
_SAME_IF_CARRIED = ("quote_volume", "trades", "buy_volume")
#: Separates the file names of one symbol's parts in ``dataset_symbols.filename``.
_FILE_SEP = "\n"

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


@dataclass(frozen=True, slots=True)
class StoredUpload:
    """What :meth:`DatasetStore.store` did: the dataset after it, and per symbol of the
    file the bars ``inserted`` (new times) and ``identical`` (times stored already with
    the same bar, merged)."""

    info: DatasetInfo
    inserted: dict[str, int]
    identical: dict[str, int]


def _same(stored: np.ndarray, new: np.ndarray, col: str) -> np.ndarray:
    """Per bar: does the file agree with the stored value of ``col``?"""
    if col in _SAME_ALWAYS:
        return stored == new
    if col == "trades":  # 0 = not carried
        return (stored == new) | (stored == 0) | (new == 0)
    return (stored == new) | np.isnan(stored) | np.isnan(new)


def overlap(
    symbol: str, stored: dict[str, np.ndarray], new, lines: np.ndarray | None
) -> tuple[np.ndarray, list[str]]:
    """Which bars of ``new`` (a :class:`Bars`) are not stored yet, and the conflicts.

    ``stored`` holds the stored columns (``_BAR_COLS``) of ``symbol`` in the file's time
    range. A bar of the file whose ``ts`` is stored is *identical* when every column in
    :data:`_SAME_ALWAYS` is equal (exactly: both come from the same decimal text) and
    every column in :data:`_SAME_IF_CARRIED` is equal where both carry it; otherwise it
    is a conflict, reported with its file line (``lines``), time and first differing
    column. Returns ``(is_new, problems)``.
    """
    ts = np.asarray(new.ts)
    pos = np.searchsorted(stored["ts"], ts)
    pos_c = np.minimum(pos, max(len(stored["ts"]) - 1, 0))
    hit = (pos < len(stored["ts"])) & (stored["ts"][pos_c] == ts) if len(stored["ts"]) else (
        np.zeros(len(ts), bool)
    )
    same = np.ones(int(hit.sum()), bool)
    first_diff: list[str | None] = [None] * len(same)
    k = np.flatnonzero(hit)
    for col in _SAME_ALWAYS + _SAME_IF_CARRIED:
        old_v = np.asarray(stored[col])[pos[k]]
        new_v = np.asarray(getattr(new, col))[k]
        ok = _same(old_v.astype(np.float64), new_v.astype(np.float64), col)
        for j in np.flatnonzero(~ok & same):
            first_diff[j] = f"{col} {new_v[j]:.10g} (stored {old_v[j]:.10g})"
        same &= ok
    bad = np.flatnonzero(~same)
    problems = []
    if len(bad):
        shown = []
        for j in bad[:SHOW_CONFLICTS]:
            i = k[j]
            where = f"line {int(lines[i])} " if lines is not None and len(lines) > i else ""
            shown.append(f"{where}({iso_utc(int(ts[i]))}) has {first_diff[j]}")
        more = f" and {len(bad) - SHOW_CONFLICTS} more" if len(bad) > SHOW_CONFLICTS else ""
        problems.append(
            f"{symbol}: {len(bad)} bar(s) differ from the bars stored for the same times: "
            + "; ".join(shown) + more
        )
    return ~hit, problems


def iso_utc(ms: int | None) -> str | None:
    if ms is None:
        return None
    dt = np.datetime64(int(ms), "ms")
    return str(np.datetime_as_string(dt, unit="ms")) + "Z"


def check_name(name: object) -> str:
    """A valid dataset name or :class:`DatasetError`."""
    text = "" if name is None else str(name).strip()
    if text.lower() == "live":  # ?dataset=live in links means the live feed
        raise DatasetError(
            ["dataset name 'live' is reserved (links use dataset=live for the live feed)"]
        )
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
            files=tuple(
                dict.fromkeys(f for s in syms for f in (s[4] or "").split(_FILE_SEP) if f)
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
    def add(self, name: str, upload: OhlcUpload) -> DatasetInfo:
        """Store an accepted upload under ``name``: :meth:`store`, returning the dataset."""
        return self.store(name, upload).info

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
            raise DatasetError(
                ["uploads are off: the app follows a database read-only (--no-ingest)"]
            )
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
            raise DatasetError(
                [
                    *problems,
                    f"nothing was stored: identical bars merge, but a stored bar is never "
                    f"replaced; to replace the data remove the dataset first "
                    f"(DELETE /api/datasets/{name}) or upload under another name",
                ]
            )
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
        names = [f for f in (files or "").split(_FILE_SEP) if f]
        if upload.filename and upload.filename not in names:
            names.append(upload.filename)
        # uploaded_ms is kept: it orders the symbols (leg A first), as first uploaded
        conn.execute(
            "UPDATE dataset_symbols SET rows = ?, start_ms = ?, end_ms = ?, filename = ? "
            "WHERE dataset = ? AND symbol = ?",
            (n, lo, hi, _FILE_SEP.join(names) or None, name, sym),
        )

    def _check_add(
        self, conn: sqlite3.Connection, name: str, upload: OhlcUpload
    ) -> DatasetInfo | None:
        """The dataset as it is (None if new), or :class:`DatasetError` if the upload
        cannot go into it (timeframe, limits)."""
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
            return None
        problems = []
        if info.tf_ms != upload.tf_ms:
            problems.append(
                f"dataset {name!r} holds {format_timeframe(info.tf_ms)} bars, this file has "
                f"{format_timeframe(upload.tf_ms)} bars: use another dataset name"
            )
        added = [s for s in upload.symbols if s not in info.symbols]
        if len(info.symbols) + len(added) > MAX_SYMBOLS_PER_DATASET:
            problems.append(
                f"a dataset holds at most {MAX_SYMBOLS_PER_DATASET} symbols"
            )
        if problems:
            raise DatasetError(problems)
        return info

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
