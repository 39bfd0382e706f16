"""Dataset store: atomic adds, pairs from two files, survival across restart, removal, and
refused adds that change nothing."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from analytics.upload import parse_ohlc_csv
from ingest.datasets import DatasetError, DatasetStore
from ingest.store import TickStore
from tests.analytics.conftest import SAMPLE_DIR

BTC = SAMPLE_DIR / "BTCUSDT-1h-2021-01.csv"
ETH = SAMPLE_DIR / "ETHUSDT-1h-2021-01.csv"
FUT = SAMPLE_DIR / "BTCUSDT-1m-2022-09-05.csv"


def upload(path):
    return parse_ohlc_csv(path.read_bytes(), filename=path.name)


def dump(path) -> list:
    with sqlite3.connect(path) as conn:
        return [
            conn.execute(f"SELECT * FROM {t} ORDER BY 1, 2").fetchall()
            for t in ("datasets", "dataset_symbols", "dataset_bars")
        ]


def test_two_files_make_a_pair_and_survive_a_restart(tmp_path):
    db = tmp_path / "app.db"
    store = DatasetStore(db)
    store.add("m21", upload(BTC))
    info = store.add("m21", upload(ETH))
    assert info.symbols == ("BTCUSDT", "ETHUSDT") and info.tf_ms == 3_600_000
    assert info.rows == {"BTCUSDT": 744, "ETHUSDT": 744}
    assert info.as_dict()["start"] == "2021-01-01T00:00:00.000Z"
    before = store.bars("m21", "ETHUSDT")
    store.close()
    again = DatasetStore(db)
    bars = again.bars("m21", "ETHUSDT")
    for col in (
        "ts",
        "open",
        "high",
        "low",
        "close",
        "volume",
        "quote_volume",
        "trades",
        "buy_volume",
    ):
        np.testing.assert_array_equal(getattr(bars, col), getattr(before, col))
    assert [d.name for d in again.list()] == ["m21"]
    again.close()


def test_shares_the_app_db_with_the_tick_store_without_touching_ticks(tmp_path):
    db = tmp_path / "app.db"
    ticks = TickStore(db).start()
    store = DatasetStore(db)
    store.add("fut", upload(FUT))
    assert ticks.count_trades() == 0 and ticks.symbols() == []
    ticks.close()
    store.close()


def test_refused_adds_change_nothing(tmp_path):
    db = tmp_path / "app.db"
    store = DatasetStore(db)
    store.add("m21", upload(BTC))
    snapshot = dump(db)
    with pytest.raises(DatasetError, match="already holds BTCUSDT"):
        store.add("m21", upload(BTC))
    with pytest.raises(DatasetError, match="holds 1h bars, this file has 1m bars"):
        store.add("m21", upload(FUT))
    with pytest.raises(DatasetError, match="dataset name"):
        store.add("bad name; DROP TABLE datasets", upload(ETH))
    assert dump(db) == snapshot
    store.close()


def test_failed_insert_rolls_back(tmp_path, monkeypatch):
    db = tmp_path / "app.db"
    store = DatasetStore(db)
    store.add("a", upload(BTC))
    snapshot = dump(db)
    up = upload(ETH)
    # a failure half-way (after the datasets and dataset_symbols rows) must leave nothing
    monkeypatch.setattr("ingest.datasets._BAR_COLS", ("ts", "nope"))
    with pytest.raises(AttributeError):
        store.add("b", up)
    assert dump(db) == snapshot
    store.close()


def test_remove(tmp_path):
    db = tmp_path / "app.db"
    store = DatasetStore(db)
    store.add("x", upload(BTC))
    store.bars("x", "BTCUSDT")  # cached
    assert store.remove("x") is True
    assert store.remove("x") is False
    assert store.list() == [] and store.get("x") is None
    with pytest.raises(KeyError):
        store.bars("x", "BTCUSDT")
    assert dump(db) == [[], [], []]
    store.close()


def test_readonly_store_refuses_writes(tmp_path):
    db = tmp_path / "app.db"
    DatasetStore(db).add("x", upload(BTC))
    ro = DatasetStore(db, readonly=True)
    assert [d.name for d in ro.list()] == ["x"]
    with pytest.raises(DatasetError, match="read-only"):
        ro.add("y", upload(ETH))
    ro.close()


def test_reconnects_after_fork_reset(tmp_path):
    store = DatasetStore(tmp_path / "app.db")
    store.add("x", upload(BTC))
    store.reset_after_fork()  # what a forked background-callback child does
    assert store.get("x").symbols == ("BTCUSDT",)
    store.close()
