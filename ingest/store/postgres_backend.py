"""The PostgreSQL backend: one database holds trades, bars, gaps, breaks, datasets, alerts.

Location: ``postgresql://USER@HOST:PORT/DB`` (also ``postgres://`` and
``postgresql+psycopg://``), read by libpq (:mod:`ingest.store.postgres_conn`). A server
serialises writers itself, so there is no local lock file: the writer lock is a session
advisory lock held by the trade store's writer connection.
"""

from __future__ import annotations

from ingest.store.interface import Backend
from ingest.store.postgres_alerts import PostgresAlertStore
from ingest.store.postgres_datasets import PostgresDatasetStore
from ingest.store.postgres_trades import PostgresTradeStore

__all__ = ["PostgresBackend"]


class PostgresBackend(Backend):
    """PostgreSQL through psycopg 3 (see :mod:`ingest.store.postgres_trades`)."""

    def local_file(self, location: str) -> None:
        return None

    def open_trades(self, location: str, *, readonly: bool, market: str) -> PostgresTradeStore:
        return PostgresTradeStore(location, readonly=readonly, market=market)

    def open_datasets(self, location: str, *, readonly: bool) -> PostgresDatasetStore:
        return PostgresDatasetStore(location, readonly=readonly)

    def open_alerts(self, location: str) -> PostgresAlertStore:
        return PostgresAlertStore(location)
