"""The ingestor's ``tap`` (what a ``--bus`` ingest process publishes) and the follower's
external clock, on a real Ingestor and engine, no server needed."""

from __future__ import annotations

from analytics.engine import MarketEngine
from ingest.pipeline import Ingestor
from tests.ingest.bus.helpers import trade


class RecordingTap:
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def trade(self, t) -> None:
        self.calls.append(("trade", t.symbol, t.trade_id))

    def backfill(self, symbol, trades) -> None:
        self.calls.append(("backfill", symbol, [t.trade_id for t in trades]))

    def bar(self, symbol, row) -> None:
        self.calls.append(("bar", symbol, row[0]))

    def clock(self, close_ms) -> None:
        self.calls.append(("clock", close_ms))

    def gap(self, symbol, first_id, last_id, detected_ms) -> None:
        self.calls.append(("gap", symbol, first_id, last_id))

    def session_break(self, symbol, ts_ms, reason) -> None:
        self.calls.append(("break", symbol, ts_ms))


def _ingestor() -> Ingestor:
    return Ingestor(["BTCUSDT"], None, MarketEngine(["BTCUSDT"]), write=False)


def test_the_tap_hears_trades_bars_clock_gaps_breaks_and_backfill_in_engine_order():
    ing = _ingestor()
    tap = ing.tap = RecordingTap()
    ing.quiet_probe = lambda: False
    t1, t2, t3 = trade("BTCUSDT", 1), trade("BTCUSDT", 9), trade("BTCUSDT", 10)
    ing.on_trade(t1)
    ing.on_gap("BTCUSDT", 2, 8)
    ing.break_at_next_trade("BTCUSDT", "ids 2..8 missing, back-fill off")
    ing.on_trade(t2)  # the break is marked first, then the trade (whose bucket is new)
    ing.on_backfill("BTCUSDT", [trade("BTCUSDT", 5)])
    ing.on_trade(t3)
    closed = []
    for _ in range(30):  # quiet: the clock closes the last bucket
        closed += ing.clock_tick(0.1)
    assert closed
    kinds = [c[0] for c in tap.calls]
    assert tap.calls[:5] == [
        ("trade", "BTCUSDT", 1), ("gap", "BTCUSDT", 2, 8), ("break", "BTCUSDT", t2.time_ms),
        ("trade", "BTCUSDT", 9), ("bar", "BTCUSDT", t1.time_ms - t1.time_ms % 1000),
    ]
    assert ("backfill", "BTCUSDT", [5]) in tap.calls
    assert kinds.index("backfill") < tap.calls.index(("trade", "BTCUSDT", 10))
    # the closing bar goes before the clock step that closed it; each step once
    last_bar = max(i for i, c in enumerate(tap.calls) if c[0] == "bar")
    assert tap.calls[last_bar + 1][0] == "clock"
    steps = [c[1] for c in tap.calls if c[0] == "clock"]
    assert steps == sorted(set(steps))


def test_an_external_clock_closes_only_when_told():
    ing = _ingestor()
    ing.external_clock = True
    ing.quiet_probe = lambda: False
    t = trade("BTCUSDT", 1)
    ing.on_trade(t)
    for _ in range(30):
        assert ing.clock_tick(0.1) == []  # quiet time never closes a follower's bar
    end = t.time_ms - t.time_ms % 1000 + 1000
    assert ing.close_bars_until(end - 1) == []
    assert [b.ts for _s, b in ing.close_bars_until(end)] == [end - 1000]
