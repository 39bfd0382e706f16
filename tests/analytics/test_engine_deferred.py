"""Deferred restore of the top of book (MarketEngine.restore_book_recent) on the REAL
futures captures of test_engine_book.py: restoring the stored 1 s book bars in two
parts (the rows from a cut now, the older ones on the first read) gives exactly what
``restore_book`` with every row gives, before and after the same live updates, at
every timeframe: the book bars, their first bucket's cover, the mid bars, the quote in
force and the open bar. Timeframes of 1 s, 10 s and 30 s so the 2-minute capture holds
complete buckets on both sides of the cut."""

from __future__ import annotations

import numpy as np
import pytest

from analytics.book import BOOK_FIELDS
from analytics.engine import MarketEngine
from tests.analytics.test_engine_book import FILES, run
from tests.analytics.test_engine_book import tape as tape  # noqa: F401  (the fixture)

TFS = (1_000, 10_000, 30_000)


def split(frame, tf_max):
    floor = int(frame["ts"].max()) + 1_000
    cut = floor - floor % tf_max
    carrier = int(frame.loc[frame["ts"] < cut, "ts"].max())
    return cut, frame[frame["ts"] >= carrier], frame[frame["ts"] < cut]


def assert_same_book(a: MarketEngine, b: MarketEngine, name: str) -> None:
    for tf in TFS:
        x, y = a.book_bars(name, tf), b.book_bars(name, tf)
        assert len(x) == len(y) > 0, (name, tf)
        assert (x.first_cover_ms, x.final_ms) == (y.first_cover_ms, y.final_ms), (name, tf)
        for f in BOOK_FIELDS:
            np.testing.assert_array_equal(getattr(x, f), getattr(y, f), err_msg=f"{name} {tf} {f}")
        mx, my = a.mid_bars(name, tf), b.mid_bars(name, tf)
        np.testing.assert_array_equal(mx.ts, my.ts)
        np.testing.assert_array_equal(mx.close, my.close)
    assert a.book_quote(name) == b.book_quote(name)
    assert a.open_book_bar(name) == b.open_book_bar(name)


def test_book_restored_in_two_parts_equals_restore_book_then_live(tape):  # noqa: F811
    # stop 25 s into a 30 s bucket: complete 10 s buckets lie between the cut and it
    cut_at = next(i for i in range(len(tape) * 2 // 3, len(tape))
                  if tape[i][3] % 30_000 >= 25_000)
    first, _ = run(tape, MarketEngine(list(FILES), timeframes_ms=TFS), stop=cut_at)
    t_cut = max(e[3] for e in tape[:cut_at])
    boundary = t_cut - t_cut % 1_000 + 1_000
    first.on_clock(boundary)
    eager = MarketEngine(list(FILES), timeframes_ms=TFS)
    lazy = MarketEngine(list(FILES), timeframes_ms=TFS)
    loads = []
    for name in FILES:
        frame = first.book_bars(name, 1_000).to_frame()
        if name == "ETHUSDT":  # quiet seconds right after the cut: the quote carried
            cut, _, _ = split(frame, TFS[-1])  # from before it fills them (the carrier)
            frame = frame[(frame["ts"] < cut) | (frame["ts"] >= cut + 3_000)]
        eager.restore_book(name, frame)
        cut, recent, older = split(frame, TFS[-1])
        assert len(older) > 30 and (recent["ts"] >= cut).sum() > 0
        lazy.restore_book_recent(name, recent.sample(frac=1.0, random_state=3), cut,
                                 lambda older=older, name=name: loads.append(name) or older)
        # before any read: the quote in force and the open bar are already those
        assert lazy.book_quote(name) == eager.book_quote(name)
        assert lazy.open_book_bar(name) == eager.open_book_bar(name)
    assert lazy.deferred_symbols() == sorted(FILES)
    assert_same_book(eager, lazy, "BTCUSDT")  # loads BTCUSDT's older rows
    assert loads == ["BTCUSDT"]
    rest = [e for e in tape[cut_at:] if e[3] >= boundary or e[1] == "trade"]
    run(rest, eager)
    run(rest, lazy)  # ETHUSDT's older rows are still out while its live updates come
    end = max(e[3] for e in tape) + 60_000
    eager.on_clock(end)
    lazy.on_clock(end)
    for name in FILES:
        assert_same_book(eager, lazy, name)
    assert loads == ["BTCUSDT", "ETHUSDT"] and lazy.deferred_symbols() == []


def test_a_recent_part_without_its_carrier_is_refused(tape):  # noqa: F811
    eng, _ = run(tape, MarketEngine(list(FILES), timeframes_ms=TFS), stop=len(tape) // 2)
    frame = eng.book_bars("BTCUSDT", 1_000).to_frame()
    cut, recent, older = split(frame, TFS[-1])
    fresh = MarketEngine(list(FILES), timeframes_ms=TFS)
    with pytest.raises(ValueError, match="carrier"):
        fresh.restore_book_recent("BTCUSDT", recent[recent["ts"] >= cut], cut, lambda: older)
