"""The store contract (tests/ingest/store/contract.py) against SQLite (path and URL
forms), and how :func:`ingest.store.open_store` picks a backend from a location
(PostgreSQL: tests/ingest/store/test_postgres.py)."""

from __future__ import annotations

import pytest

from ingest.store import StoreUnavailable, backend_for, open_store
from ingest.store.sqlite_backend import SqliteBackend, sqlite_path
from tests.ingest.store.contract import *  # noqa: F403  (the contract's tests)


def _sqlite_location(tmp_path, form: str) -> str:
    path = tmp_path / "db" / "app.db"
    return str(path) if form == "path" else "sqlite:///" + str(path)


#: One parameter per location form. PostgreSQL runs the same contract in
#: test_postgres.py (its own store_factory: a fresh database on a real server).
BACKENDS = ["sqlite-path", "sqlite-url"]


@pytest.fixture(params=BACKENDS)
def store_factory(request, tmp_path):
    kind, form = request.param.split("-")
    location = _sqlite_location(tmp_path, form)
    opened = []

    def factory(*, readonly: bool = False, market: str = "spot"):
        stores = open_store(location, readonly=readonly, market=market)
        opened.append(stores)
        return stores

    yield factory
    for stores in opened:
        stores.close()


def test_locations_pick_the_backend(tmp_path):
    assert isinstance(backend_for(tmp_path / "x.db"), SqliteBackend)
    assert isinstance(backend_for("sqlite:///data/x.db"), SqliteBackend)
    assert str(sqlite_path("sqlite:///data/x.db")) == "data/x.db"  # relative
    assert str(sqlite_path("sqlite:////tmp/x.db")) == "/tmp/x.db"  # absolute
    assert str(sqlite_path("data/x.db")) == "data/x.db"


def test_an_unknown_scheme_names_the_known_ones():
    with pytest.raises(StoreUnavailable, match=r"unknown store mysql://: .* sqlite://"):
        open_store("mysql://h/db")


def test_readonly_open_of_a_missing_database_fails(tmp_path):
    with pytest.raises(FileNotFoundError):
        open_store(tmp_path / "missing.db", readonly=True)


def test_a_sqlite_url_db_is_the_same_file_as_its_path(tmp_path, monkeypatch):
    """--db sqlite:///x.db: the writer lock and the --no-ingest check use the file."""
    from ingest.config import parse_config
    from ingest.runtime import Runtime

    monkeypatch.chdir(tmp_path)
    rt = Runtime(parse_config(["--db", "sqlite:///data/x.db", "--market", "spot"]))
    try:
        assert (tmp_path / "data" / "x.db").exists()
        assert (tmp_path / "data" / "x.db.writer.lock").exists()
    finally:
        rt.stop()
    ro = Runtime(parse_config(["--db", "sqlite:///data/x.db", "--no-ingest"]))
    ro.stop()
    with pytest.raises(SystemExit, match="does not exist"):
        Runtime(parse_config(["--db", "sqlite:///data/none.db", "--no-ingest"]))


def test_following_a_database_reads_the_market_its_writer_wrote(tmp_path):
    """`python -m ingest --replay` writes spot trades; `app.py --no-ingest` without
    --market (default futures) still names them BTCUSDT, as before instruments."""
    from ingest.config import parse_config
    from ingest.models import Trade
    from ingest.runtime import Runtime
    from ingest.store.sqlite_trades import SqliteTradeStore

    db = tmp_path / "x.db"
    with SqliteTradeStore(db, market="spot").start() as st:
        for k in range(1, 11):
            st.add_trade(Trade("BTCUSDT", k, 1_700_000_000_000 + k, 1.0, 1.0, True, 0))
    rt = Runtime(parse_config(["--db", str(db), "--no-ingest", "--symbols", "BTCUSDT"]))
    try:
        assert rt.store.default_market == "spot"
        assert rt.store.last_trade_ids() == {"BTCUSDT": 10}
    finally:
        rt.stop()
    rt = Runtime(parse_config(["--db", str(db), "--no-ingest", "--market", "futures"]))
    try:  # a follower's names are its universe's, the store's instruments (C1): the
        # one BTCUSDT held is bare, and it is the spot one
        assert rt.universe.names == ("BTCUSDT",)
        assert rt.store.last_trade_ids() == {"BTCUSDT": 10}
        assert rt.store.instrument("BTCUSDT").market == "spot"
    finally:
        rt.stop()
