"""Hand-made trades and a recording stand-in for an Ingestor (what BusFeed calls)."""

from __future__ import annotations

import time

import numpy as np

from analytics.instruments import DEFAULT_VENUE, Instrument
from ingest.models import Trade


def spot(name: str) -> Instrument:
    return Instrument(DEFAULT_VENUE, "spot", name)


def trade(sym: str, i: int, price: float | None = None) -> Trade:
    t_ms = 1_700_000_000_000 + i * 137
    return Trade(sym, i, t_ms, 100.0 + i / 7 if price is None else price,
                 0.001 * (i % 13 + 1), i % 3 == 0, t_ms + 4)


def wait_for(pred, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class _Engine:
    def __init__(self) -> None:
        self._breaks: dict[str, list[int]] = {}

    def breaks(self, name: str) -> np.ndarray:
        return np.asarray(self._breaks.get(name, []), dtype=np.int64)


class RecordingIngestor:
    """Records the calls BusFeed makes, in order (``Ingestor``'s entry points)."""

    def __init__(self) -> None:
        self.rings: dict = {}
        self.engine = _Engine()
        self.trades: dict[str, list[Trade]] = {}
        self.backfilled: dict[str, list[Trade]] = {}
        self.clocks: list[int] = []
        self.breaks: list[tuple[str, int, str]] = []

    def on_trade(self, t: Trade) -> None:
        self.trades.setdefault(t.symbol, []).append(t)

    def on_backfill(self, symbol: str, trades: list[Trade]) -> None:
        self.backfilled.setdefault(symbol, []).extend(trades)

    def mark_break(self, symbol: str, ts_ms: int, reason: str, *, store: bool = True) -> None:
        self.engine._breaks.setdefault(symbol, []).append(ts_ms)
        self.breaks.append((symbol, ts_ms, reason))

    def close_bars_until(self, close_ms: int) -> list:
        self.clocks.append(close_ms)
        return []

    def ids(self, sym: str) -> list[int]:
        return [t.trade_id for t in self.trades.get(sym, [])]


class FakeStore:
    """Every trade the publisher was given, by instrument: the store's ``fetch``."""

    def __init__(self) -> None:
        self.rows: dict[str, list[Trade]] = {}
        self.reads = 0

    def add(self, t: Trade) -> None:
        self.rows.setdefault(t.instrument.key, []).append(t)

    def fetch(self, inst: Instrument, after_id: int, upto_id: int) -> list[Trade]:
        self.reads += 1
        return [t for t in self.rows.get(inst.key, []) if after_id < t.trade_id <= upto_id]
