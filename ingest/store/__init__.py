"""Stores: trades, bars, gaps, breaks, datasets and alerts behind one interface (SQLite first).

:mod:`ingest.store.interface` is the ONE declaration of what the app asks a store
(and what a new backend implements); :func:`open_store` picks the backend from the
location: a plain path or ``sqlite:///path`` is SQLite; ``postgresql://...`` (or
``postgres://``) is PostgreSQL. Adding a backend is one entry in :data:`BACKENDS`. Only
this package writes SQL.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from ingest.store import interface
from ingest.store.dataset_rules import iso_utc
from ingest.store.interface import *  # noqa: F403  (its names are ours: interface.__all__)
from ingest.store.interface import AlertStore, Backend, Stores, StoreUnavailable

# Everything the interface declares, plus how a backend is chosen.
__all__ = [
    *interface.__all__,
    "BACKENDS",
    "backend_for",
    "iso_utc",
    "open_alert_store",
    "open_store",
]

#: URL scheme -> "module:Class" of its :class:`Backend` (imported on first use).
BACKENDS: dict[str, str] = {
    "sqlite": "ingest.store.sqlite_backend:SqliteBackend",
    "postgresql": "ingest.store.postgres_backend:PostgresBackend",
    "postgres": "ingest.store.postgres_backend:PostgresBackend",
}
#: Schemes with an issue of their own; until it lands they get a clear refusal.
PLANNED: dict[str, str] = {}
#: What to install when a backend's driver is missing.
DRIVERS = {"postgresql": "psycopg[binary]>=3.2,<4", "postgres": "psycopg[binary]>=3.2,<4"}


def scheme_of(location: str | Path) -> str:
    """``postgresql://u@h/db`` -> ``postgresql``; a plain path -> ``sqlite``."""
    text = str(location)
    if "://" not in text:
        return "sqlite"
    return text.split("://", 1)[0].lower().split("+", 1)[0]


def backend_for(location: str | Path) -> Backend:
    """The backend of a location, or :class:`StoreUnavailable` saying what is known."""
    scheme = scheme_of(location)
    target = BACKENDS.get(scheme)
    if target is None:
        if scheme in PLANNED:
            raise StoreUnavailable(
                f"{PLANNED[scheme]} storage ({scheme}://) is not available in this build: "
                f"use a SQLite file path (or sqlite:///path)"
            )
        raise StoreUnavailable(
            f"unknown store {scheme}://: use a file path, or one of "
            + ", ".join(f"{s}://" for s in BACKENDS)
        )
    module, cls = target.split(":")
    try:
        loaded = importlib.import_module(module)
    except ImportError as exc:
        raise StoreUnavailable(
            f"{scheme}:// needs a driver that is not installed ({exc.name}): "
            f"pip install '{DRIVERS.get(scheme, exc.name)}'"
        ) from None
    return getattr(loaded, cls)()


def open_store(
    db: str | Path, *, readonly: bool = False, market: str = "spot"
) -> Stores:
    """The trade, dataset and alert stores of ``db`` (a path or a URL).

    ``readonly``: the trade and dataset stores refuse writes and the schema is never
    migrated (alerts stay editable, see :meth:`Backend.open_alerts`). ``market``: of a
    bare symbol, and of rows migrated from before instruments (the run's ``--market``).
    """
    return backend_for(db).open(str(db), readonly=readonly, market=market)


def open_alert_store(db: str | Path) -> AlertStore:
    """Only the alert store of ``db`` (the alert service on its own, in tests)."""
    return backend_for(db).open_alerts(str(db))
