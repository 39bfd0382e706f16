"""The Ingestor's book path without sockets: real recorded futures book updates ->
``Ingestor.on_book`` -> engine 1 s book bars -> store (closed by updates, by the bar
clock, the open one flushed at stop) -> a restart restores them into the engine.
Checked against the independent pandas computation of test_book_replay.py."""

from __future__ import annotations

import numpy as np
import pytest

from analytics.engine import MarketEngine
from ingest.feeds.binance import parse_event
from ingest.pipeline import Ingestor
from ingest.store.sqlite_trades import SqliteTradeStore
from tests.ingest.test_book_replay import (
    RAW,
    assert_bars_equal,
    independent_book_bars,
    raw_book_frames,
)


@pytest.mark.slow
def test_book_updates_are_stored_per_second_flushed_at_stop_and_restored(tmp_path):
    raw = raw_book_frames(RAW["perp"])
    updates = []
    for row in raw.itertuples(index=False):
        ev = {"e": "bookTicker", "u": int(row.u), "s": "BTCUSDT", "b": repr(row.bid),
              "B": repr(row.bid_qty), "a": repr(row.ask), "A": repr(row.ask_qty),
              "T": int(row.T), "E": int(row.T)}
        updates.append(parse_event(ev, market="perp"))
    want = independent_book_bars(raw["T"].astype(np.int64), raw)  # no restart
    half = len(updates) // 2
    db = tmp_path / "b.db"

    store = SqliteTradeStore(db, market="perp").start()
    ing = Ingestor(["BTCUSDT"], store, MarketEngine(["BTCUSDT"]))
    ing.restore()
    for b in updates[:half]:
        ing.on_book(b)
    assert ing.quote("BTCUSDT") == updates[half - 1] and ing.quote("ETHUSDT") is None
    # the bar clock closes the second in progress once it is due (no update needed)
    last_ts = updates[half - 1].time_ms - updates[half - 1].time_ms % 1000
    ing.close_bars_until(last_ts + 1000)
    assert store.flush()
    stored = store.read_book_bars("BTCUSDT")
    assert stored["ts"].iloc[-1] == last_ts
    assert ing.flush_open_bars() == 0  # nothing open: the clock closed it
    store.close()

    # a restart: the stored bars back into the engine, then the rest of the updates
    store = SqliteTradeStore(db, market="perp").start()
    engine = MarketEngine(["BTCUSDT"])
    ing = Ingestor(["BTCUSDT"], store, engine)
    report = ing.restore()
    assert report.book_bars == len(stored) > 50
    restored = engine.book_bars("BTCUSDT", 1_000).to_frame()
    assert_bars_equal(restored, stored, "restored")
    for b in updates[half:]:
        ing.on_book(b)
    assert ing.book_updates == len(updates) - half
    assert ing.flush_open_bars() == 1  # the last second, as it stands
    assert store.flush()
    got = store.read_book_bars("BTCUSDT")
    store.close()
    # Across the restart the quote in force carries over (the restored last quote), so
    # every second equals the uninterrupted computation, except that the second the
    # stop fell in was closed by the clock: updates stamped in it after the restart
    # are taken from the next second on (the floor), by design.
    head = raw.iloc[:half]
    before = independent_book_bars(head["T"].astype(np.int64), head)
    assert_bars_equal(got[got["ts"] <= last_ts], before, "before the stop")
    assert_bars_equal(before.iloc[:-1], want.iloc[: len(before) - 1], "uninterrupted")
    tail_raw = raw.iloc[half:]
    t = np.maximum(tail_raw["T"].astype(np.int64).to_numpy(), last_ts + 1000)
    # the tail computed alone, its first second carrying the quote in force at the stop
    seeded = independent_book_bars(np.concatenate(([last_ts + 1000], t)),
                                   raw.iloc[half - 1:])
    seeded.loc[0, "updates"] -= 1  # the seed is the quote in force, not an update
    after = got[got["ts"] > last_ts].reset_index(drop=True)
    assert_bars_equal(after, seeded, "after the restart")
