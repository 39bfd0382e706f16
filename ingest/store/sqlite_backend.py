"""The SQLite backend: one file (WAL) holds trades, bars, gaps, breaks, datasets, alerts.

Location: a plain path (``data/ticks.db``) or ``sqlite:///data/ticks.db`` (relative) /
``sqlite:////abs/ticks.db`` (absolute), as SQLAlchemy spells it.
"""

from __future__ import annotations

from pathlib import Path

from ingest.store.interface import Backend
from ingest.store.sqlite_alerts import SqliteAlertStore
from ingest.store.sqlite_datasets import SqliteDatasetStore
from ingest.store.sqlite_trades import SqliteTradeStore

__all__ = ["SqliteBackend", "sqlite_path"]

_PREFIX = "sqlite:///"


def sqlite_path(location: str | Path) -> Path:
    """The file a SQLite location names."""
    text = str(location)
    if text.startswith(_PREFIX):
        text = text[len(_PREFIX):]
        if not text:
            raise ValueError(f"{location!r}: no file after {_PREFIX!r}")
    return Path(text)


class SqliteBackend(Backend):
    """SQLite, the default backend (see :mod:`ingest.store.sqlite_trades`)."""

    def local_file(self, location) -> Path:
        return sqlite_path(location)

    def open_trades(self, location, *, readonly: bool, market: str) -> SqliteTradeStore:
        return SqliteTradeStore(sqlite_path(location), readonly=readonly, market=market)

    def open_datasets(self, location, *, readonly: bool) -> SqliteDatasetStore:
        return SqliteDatasetStore(sqlite_path(location), readonly=readonly)

    def open_alerts(self, location) -> SqliteAlertStore:
        return SqliteAlertStore(sqlite_path(location))
