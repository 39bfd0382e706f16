"""Dataset store: atomic adds, pairs from two files, survival across restart, removal, and
refused adds that change nothing."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from analytics.upload import parse_ohlc_csv
from ingest.store import DatasetError
from ingest.store.sqlite_datasets import SqliteDatasetStore
from ingest.store.sqlite_trades import SqliteTradeStore
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
    store = SqliteDatasetStore(db)
    store.add("m21", upload(BTC))
    info = store.add("m21", upload(ETH))
    assert info.symbols == ("BTCUSDT", "ETHUSDT") and info.tf_ms == 3_600_000
    assert info.rows == {"BTCUSDT": 744, "ETHUSDT": 744}
    assert info.as_dict()["start"] == "2021-01-01T00:00:00.000Z"
    before = store.bars("m21", "ETHUSDT")
    store.close()
    again = SqliteDatasetStore(db)
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
    ticks = SqliteTradeStore(db).start()
    store = SqliteDatasetStore(db)
    store.add("fut", upload(FUT))
    assert ticks.count_trades() == 0 and ticks.symbols() == []
    ticks.close()
    store.close()


def test_refused_adds_change_nothing(tmp_path):
    db = tmp_path / "app.db"
    store = SqliteDatasetStore(db)
    store.add("m21", upload(BTC))
    snapshot = dump(db)
    with pytest.raises(DatasetError, match="holds 1h bars, this file has 1m bars"):
        store.add("m21", upload(FUT))
    with pytest.raises(DatasetError, match="dataset name"):
        store.add("bad name; DROP TABLE datasets", upload(ETH))
    assert dump(db) == snapshot
    store.close()


def test_failed_insert_rolls_back(tmp_path, monkeypatch):
    db = tmp_path / "app.db"
    store = SqliteDatasetStore(db)
    store.add("a", upload(BTC))
    snapshot = dump(db)
    up = upload(ETH)
    # a failure half-way (after the datasets and dataset_symbols rows) must leave nothing
    monkeypatch.setattr("ingest.store.sqlite_datasets._BAR_COLS", ("ts", "nope"))
    with pytest.raises(AttributeError):
        store.add("b", up)
    assert dump(db) == snapshot
    store.close()


def test_remove(tmp_path):
    db = tmp_path / "app.db"
    store = SqliteDatasetStore(db)
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
    SqliteDatasetStore(db).add("x", upload(BTC))
    ro = SqliteDatasetStore(db, readonly=True)
    assert [d.name for d in ro.list()] == ["x"]
    with pytest.raises(DatasetError, match="read-only"):
        ro.add("y", upload(ETH))
    ro.close()


def test_reconnects_after_fork_reset(tmp_path):
    store = SqliteDatasetStore(tmp_path / "app.db")
    store.add("x", upload(BTC))
    store.reset_after_fork()  # what a forked background-callback child does
    assert store.get("x").symbols == ("BTCUSDT",)
    store.close()


# -- appending months: contiguous parts merge, identical overlaps merge, conflicts refused
def part(path, lo, hi, tmp_path, name=None):
    """Lines ``lo..hi-1`` of a real kline file, as an upload (no invented prices)."""
    lines = path.read_text().splitlines()[lo:hi]
    name = name or f"{path.stem}-part{lo}.csv"
    return parse_ohlc_csv(("\n".join(lines) + "\n").encode(), filename=name)


def assert_same_bars(got, want):
    for col in ("ts", "open", "high", "low", "close", "volume", "quote_volume", "trades",
                "buy_volume"):
        np.testing.assert_array_equal(getattr(got, col), getattr(want, col))


def test_the_next_month_appends_to_a_dataset(tmp_path):
    """October then November of one symbol: the dataset holds both, as one file would."""
    store = SqliteDatasetStore(tmp_path / "app.db")
    store.add("btc", part(BTC, 0, 400, tmp_path))
    res = store.store("btc", part(BTC, 400, 744, tmp_path))
    assert res.inserted == {"BTCUSDT": 344} and res.identical == {"BTCUSDT": 0}
    info = store.get("btc")
    assert info.rows == {"BTCUSDT": 744}
    assert info.as_dict()["start"] == "2021-01-01T00:00:00.000Z"
    assert info.as_dict()["end"] == "2021-01-31T23:00:00.000Z"
    assert len(info.files) == 2
    assert_same_bars(store.bars("btc", "BTCUSDT"), upload(BTC).bars["BTCUSDT"])
    store.close()


def test_identical_overlap_merges_and_the_same_file_twice_adds_nothing(tmp_path):
    store = SqliteDatasetStore(tmp_path / "app.db")
    store.add("btc", part(BTC, 0, 400, tmp_path))
    res = store.store("btc", part(BTC, 350, 744, tmp_path))
    assert res.inserted == {"BTCUSDT": 344} and res.identical == {"BTCUSDT": 50}
    assert_same_bars(store.bars("btc", "BTCUSDT"), upload(BTC).bars["BTCUSDT"])
    again = store.store("btc", upload(BTC))
    assert again.inserted == {"BTCUSDT": 0} and again.identical == {"BTCUSDT": 744}
    assert store.get("btc").rows == {"BTCUSDT": 744}
    store.close()


def test_a_conflicting_row_is_refused_with_its_line_and_changes_nothing(tmp_path):
    db = tmp_path / "app.db"
    store = SqliteDatasetStore(db)
    store.add("btc", part(BTC, 0, 400, tmp_path))
    snapshot = dump(db)
    lines = BTC.read_text().splitlines()[390:744]
    cells = lines[5].split(",")  # file line 6: the bar of 2021-01-17 11:00 (row 395)
    cells[5] = "1234.50000000"  # another volume than the stored one
    lines[5] = ",".join(cells)
    bad = parse_ohlc_csv(("\n".join(lines) + "\n").encode(), filename="BTCUSDT-1h-nov.csv")
    with pytest.raises(DatasetError) as exc:
        store.add("btc", bad)
    msg = str(exc.value)
    assert "line 6" in msg and "2021-01-17T11:00:00.000Z" in msg
    assert "volume 1234.5 (stored" in msg and "DELETE /api/datasets/btc" in msg
    assert dump(db) == snapshot
    store.close()
